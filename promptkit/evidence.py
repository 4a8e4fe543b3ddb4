"""Published results the tour cites, from the copies shipped in the package (data/evidence_curriculum*.yaml).

The rows are copied word for word from the kit's research notes; a chapter shows
them beside its own measurement and never states a published number from memory.
"""
from __future__ import annotations

from importlib.resources import files
from typing import Any

from . import yamlfile
from .errors import PromptkitError

COLUMNS = ("technique", "method", "source", "models", "effect", "notes")


def evidence_rows() -> dict[str, dict[str, Any]]:
    """Every cited row of every evidence_curriculum*.yaml file, by id (an id may appear in one file only)."""
    rows: dict[str, dict[str, Any]] = {}
    data = files("promptkit").joinpath("data")
    for entry in sorted(data.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("evidence_curriculum") and entry.name.endswith(".yaml"):
            for r in yamlfile.load(str(entry), PromptkitError, "evidence file") or []:
                if r["id"] in rows:
                    raise ValueError(f"{entry.name}: evidence id {r['id']!r} is defined twice")
                rows[r["id"]] = r
    return rows


def cited(*ids: str) -> Any:
    """The published rows with these ids as a table, to show beside a measurement."""
    import pandas as pd

    rows = evidence_rows()
    missing = [i for i in ids if i not in rows]
    if missing:
        raise KeyError(f"no cited row {missing}; known: {sorted(rows)}")
    return pd.DataFrame([rows[i] for i in ids], index=list(ids))[list(COLUMNS)]


__all__ = ["cited", "evidence_rows"]
