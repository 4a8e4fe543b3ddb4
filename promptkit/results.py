"""A finished run: the cell results, a tidy DataFrame of them, summaries and exports.

The runner hands over plain `CellResult` dataclasses; the DataFrame is built
from them here, at the edge, only when first asked for.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from .errors import ExperimentError, redact
from .types import Cell, CellResult, Completion, Grade, Request, Settings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Settings))
CELL_COLUMNS: tuple[str, ...] = ("key", "variant", "model", "settings_label", *SETTINGS_FIELDS, "row_id", "repeat")
COMPLETION_COLUMNS: tuple[str, ...] = (
    "latency_s", "ttft_s", "input_tokens", "output_tokens", "cost_usd", "finish_reason", "error_kind", "error", "cached",
)
GRADE_FIELDS: tuple[str, ...] = ("score", "passed", "label", "parsed", "reason")


class Results:
    """The outcome of a run: one CellResult per call, plus what the run was (meta)."""

    def __init__(self, results: Iterable[CellResult], meta: dict[str, Any] | None = None) -> None:
        self.results: list[CellResult] = list(results)
        self.meta: dict[str, Any] = dict(meta or {})
        self._df: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[CellResult]:
        return iter(self.results)

    def __repr__(self) -> str:
        errors = sum(1 for r in self.results if not r.completion.ok)
        return f"<Results {len(self.results)} cells, {errors} errors, graders={self.grader_names}>"

    @property
    def grader_names(self) -> list[str]:
        """Grader names in the order they first appear."""
        seen: dict[str, None] = {}
        for r in self.results:
            for name in r.grades:
                seen.setdefault(name, None)
        return list(seen)

    @property
    def primary_grader(self) -> str | None:
        """The grader whose score fills the plain `score` / `passed` columns (the first one)."""
        names = self.grader_names
        return names[0] if names else None

    @property
    def df(self) -> "pd.DataFrame":
        """One row per call: cell, settings, output, grades, measurements and error."""
        if self._df is None:
            self._df = self._build_df()
        return self._df

    def _build_df(self) -> "pd.DataFrame":
        import pandas as pd

        graders = self.grader_names
        primary = self.primary_grader
        records = []
        for r in self.results:
            c, comp = r.cell, r.completion
            rec: dict[str, Any] = {
                "key": c.key, "variant": c.variant, "model": c.model, "settings_label": c.settings_label,
            }
            for f in SETTINGS_FIELDS:
                rec[f] = getattr(c.settings, f)
            rec["row_id"] = c.row_id
            rec["repeat"] = c.repeat
            rec["output"] = comp.text
            rec["target"] = c.target
            for g in graders:
                grade = r.grades.get(g)
                for f in GRADE_FIELDS:
                    rec[f"{g}_{f}"] = getattr(grade, f) if grade is not None else None
            if primary is not None:
                grade = r.grades.get(primary)
                rec["score"] = grade.score if grade is not None else None
                rec["passed"] = grade.passed if grade is not None else None
            for f in COMPLETION_COLUMNS:
                rec[f] = getattr(comp, f)
            rec["error"] = redact(comp.error) if comp.error else comp.error
            records.append(rec)
        columns = list(CELL_COLUMNS) + ["output", "target"]
        for g in graders:
            columns += [f"{g}_{f}" for f in GRADE_FIELDS]
        if primary is not None:
            columns += ["score", "passed"]
        columns += list(COMPLETION_COLUMNS)
        df = pd.DataFrame.from_records(records, columns=columns)
        for col in ("latency_s", "ttft_s", "cost_usd", "score", *(f"{g}_score" for g in graders)):
            if col in df:
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        for col in ("input_tokens", "output_tokens"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
        for col in ("passed", *(f"{g}_{f}" for g in graders for f in ("passed", "parsed"))):
            if col in df:
                df[col] = df[col].astype("boolean")
        return df
