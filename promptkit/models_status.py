"""Which models can answer here and, for the others, what to do about it."""
from __future__ import annotations

from typing import Any

from .catalog import catalog
from .local_models import status as local_status
from .providers import parse_spec, provider_class


def model_table() -> list[dict[str, Any]]:
    """One row per local model and per API provider: spec, ready, why (never a key's value)."""
    rows: list[dict[str, Any]] = []
    cat = catalog()
    for name, lm in cat.local.items():
        st = local_status(lm)
        facts = f"{lm.size_mb} MB, ~{lm.ram_mb} MB RAM, {lm.speed}"
        if st.state == "installed":
            why = f"installed; {facts}; {lm.licence}"
        elif st.state == "joinable":
            why = f"packages installed, joined on first use (or now: promptkit models --install {name}); {facts}"
        else:
            why = f"not installed; {facts}; install: {lm.install}"
        rows.append({"spec": f"local:{name}", "ready": st.ready, "why": why, "kind": "local", "state": st.state,
                     "path": str(st.path) if st.path else None, "size_mb": lm.size_mb, "ram_mb": lm.ram_mb,
                     "speed": lm.speed, "install": lm.install, "missing": list(st.missing)})
    for prefix, meta in cat.providers.items():
        if prefix == "local":
            continue
        example = next((m.id for m in cat.models.values() if m.provider == prefix), "<model>")
        try:
            spec = parse_spec(f"{prefix}:{example}")
            ready, why = provider_class(prefix).status(spec)
        except Exception as exc:  # a provider whose SDK is missing still gets a row
            ready, why = False, str(exc)
        rows.append({"spec": f"{prefix}:{example if example != '<model>' else '<model>'}", "ready": ready,
                     "why": why, "kind": "api"})
    return rows
