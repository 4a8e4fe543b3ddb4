"""Which models can answer here and, for the others, what to do about it."""
from __future__ import annotations

from typing import Any

from .catalog import catalog
from .local_models import installed_path
from .providers import parse_spec, provider_class


def model_table() -> list[dict[str, Any]]:
    """One row per local model and per API provider: spec, ready, why (never a key's value)."""
    rows: list[dict[str, Any]] = []
    cat = catalog()
    for name, lm in cat.local.items():
        path = installed_path(lm)
        if path is not None:
            why = f"installed, {path.stat().st_size / 1e6:.0f} MB on disk, ~{lm.ram_mb} MB RAM, {lm.speed}; {lm.licence}"
        else:
            why = f"not installed ({lm.size_mb} MB download); install: {lm.install}"
        rows.append({"spec": f"local:{name}", "ready": path is not None, "why": why, "kind": "local"})
    for prefix, meta in cat.providers.items():
        if prefix == "local":
            continue
        example = next((m.id for m in cat.models.values() if m.provider == prefix), "<model>")
        spec = parse_spec(f"{prefix}:{example}")
        try:
            ready, why = provider_class(prefix).status(spec)
        except Exception as exc:  # a provider whose SDK is missing still gets a row
            ready, why = False, str(exc)
        rows.append({"spec": f"{prefix}:{example if example != '<model>' else '<model>'}", "ready": ready,
                     "why": why, "kind": "api"})
    return rows
