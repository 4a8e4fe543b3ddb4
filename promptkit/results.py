"""A finished run: the cell results and a tidy DataFrame of them, with summaries, exports and display one call away.

The runner hands over plain `CellResult` dataclasses; the DataFrame is built
from them here, at the edge, only when first asked for. The container lives
here; its summaries in summaries.py (numbers from metrics.py and stats.py), its
files in results_io.py, its HTML and plots in report.py. Those modules read a
Results and never import this one; their functions are its methods.
"""
from __future__ import annotations

import html
import os
import warnings
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from . import report, results_io, summaries
from .errors import ExperimentError, GraderError, redact
from .files import atomic_write
from .results_io import JSONL_FORMAT  # noqa: F401  (results.JSONL_FORMAT, as before the split)
from .summaries import SUMMARY_VIEWS, interval_columns  # noqa: F401  (the views' one definition, read from here)
from .types import CellResult, Grade, Settings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Settings))
CELL_COLUMNS: tuple[str, ...] = ("key", "variant", "model", "settings_label", *SETTINGS_FIELDS, "row_id", "repeat")
COMPLETION_COLUMNS: tuple[str, ...] = (
    "latency_s", "ttft_s", "input_tokens", "output_tokens", "cost_usd", "finish_reason", "error_kind", "error", "cached",
)
GRADE_FIELDS: tuple[str, ...] = ("score", "passed", "label", "parsed", "reason")


class Results:
    """The outcome of a run: one CellResult per call, plus what the run was (meta).

    Treat it as read-only: the DataFrame and summaries are built once and kept;
    `regrade` and `filter` return new Results.
    """

    def __init__(self, results: Iterable[CellResult], meta: dict[str, Any] | None = None) -> None:
        self.results: list[CellResult] = list(results)
        self.meta: dict[str, Any] = dict(meta or {})
        self._df: pd.DataFrame | None = None
        self._summaries: dict[tuple[Any, ...], pd.DataFrame] = {}

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[CellResult]:
        return iter(self.results)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Results):
            return NotImplemented
        return self.results == other.results and self.meta == other.meta

    def __repr__(self) -> str:
        errors = sum(1 for r in self.results if not r.completion.ok)
        return f"<Results {len(self.results)} cells, {errors} errors, graders={self.grader_names}>"

    def _repr_html_(self) -> str:
        """In a notebook a Results shows its summary table."""
        try:
            return self.summary().to_html()
        except Exception:  # never break a notebook display
            return html.escape(repr(self))

    # ------------------------------------------------------------------ names

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
    def variants(self) -> list[str]:
        return list(dict.fromkeys(r.cell.variant for r in self.results))

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r.cell.model for r in self.results))

    def cells_by(self, *fields: str) -> dict[tuple[Any, ...], list[CellResult]]:
        """The cell results grouped by cell fields (default variant and model), in run order, for tables."""
        groups: dict[tuple[Any, ...], list[CellResult]] = {}
        for r in self.results:
            groups.setdefault(tuple(getattr(r.cell, f) for f in fields or ("variant", "model")), []).append(r)
        return groups

    def default_by(self) -> list[str]:
        """variant and model, and settings_label when there is more than one (never pool a sweep)."""
        many = len({r.cell.settings_label for r in self.results}) > 1
        return ["variant", "model", "settings_label"] if many else ["variant", "model"]

    def resolve_grader(self, grader: str | None = None) -> str:
        """The grader a view reads: the one named (checked), else the first; report.py uses it too."""
        names = self.grader_names
        if grader is None:
            if not names:
                raise GraderError("these results carry no grades; grade them first with results.regrade([...graders])")
            return names[0]
        if grader not in names:
            raise GraderError(f"no grader named {grader!r} in these results; graders are {names}")
        return grader

    def is_classification(self, grader: str | None = None) -> bool:
        """True when the grader reads labels, so label metrics apply.

        A label grader says so by a string `details["gold"]` (then even a run
        where no answer could be read counts), or by setting `Grade.label` on
        cells whose target is a plain label.
        """
        g = self.resolve_grader(grader)
        for r in self.results:
            grade = r.grades.get(g)
            if grade is None:
                continue
            if isinstance(grade.details, Mapping) and isinstance(grade.details.get("gold"), str):
                return True
            if grade.label is not None and isinstance(r.cell.target, (str, bool)):
                return True
        return False

    def labels(self, grader: str | None = None) -> list[Any]:
        """The label set: `meta["labels"]` if given, then every gold label, then answers that match none."""
        g = self.resolve_grader(grader)
        seen: dict[Any, None] = {}
        for lab in self.meta.get("labels") or ():
            seen.setdefault(lab, None)
        for r in self.results:
            gold = summaries.gold_label(r, g)
            if gold is not None:
                seen.setdefault(gold, None)
        return list(seen)

    # ------------------------------------------------------------------ DataFrame

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
            records.append(rec)
        columns = list(CELL_COLUMNS) + ["output", "target"]
        for g in graders:
            columns += [f"{g}_{f}" for f in GRADE_FIELDS]
        if primary is not None:
            columns += ["score", "passed"]
        columns += list(COMPLETION_COLUMNS)
        df = pd.DataFrame.from_records(records, columns=columns)
        for col in ("output", "error", *(f"{g}_reason" for g in graders)):
            df[col] = results_io.redact_column(df[col].tolist())
        for col in ("latency_s", "ttft_s", "cost_usd", "score", *(f"{g}_score" for g in graders)):
            if col in df:
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        for col in ("input_tokens", "output_tokens"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
        for col in ("passed", *(f"{g}_{f}" for g in graders for f in ("passed", "parsed"))):
            if col in df:
                df[col] = df[col].astype("boolean")
        df["cached"] = df["cached"].astype(bool)
        return df

    def filter(self, **where: Any) -> "Results":
        """The cells whose fields match, e.g. `results.filter(model="local:smollm2", repeat=0)`."""
        allowed = {"key", "variant", "model", "settings_label", "row_id", "repeat"}
        bad = sorted(set(where) - allowed)
        if bad:
            raise ExperimentError(f"cannot filter results by {bad}; filter by any of {sorted(allowed)}")
        kept = []
        for r in self.results:
            ok = True
            for k, v in where.items():
                have = getattr(r.cell, k)
                if isinstance(v, (list, tuple, set, frozenset)):
                    ok = have in v
                else:
                    ok = have == v
                if not ok:
                    break
            if ok:
                kept.append(r)
        return Results(kept, self.meta)

    # ------------------------------------------------------------------ summaries

    def summary(
        self,
        by: str | Sequence[str] | None = None,
        grader: str | None = None,
        *,
        n_boot: int = 2000,
    ) -> "pd.DataFrame":
        """Per group: calls, errors, mean score with CI, latency p50/p95, tokens and cost per 100 rows.

        `errors` counts failed calls. `pass_rate` is `passed` over every cell, so an
        error cell counts as a failure there; `score`, accuracy and the other label
        metrics are over the answered cells only (a rate limit says nothing about
        the prompt), with `errors` beside them. For a classification grader each group also
        gets accuracy beside the majority baseline of its rows, balanced
        accuracy, macro-F1, unparseable count and a `flag` when accuracy does
        not beat the baseline by more than its interval. The CI methods are in
        `df.attrs["score_ci"]` and `df.attrs["accuracy_ci"]`. `by` defaults to
        variant and model, plus settings_label when the run swept settings.
        """
        by = self.default_by() if by is None else [by] if isinstance(by, str) else list(by)
        memo = (tuple(by), grader, n_boot)
        if memo not in self._summaries:
            bad = [b for b in by if b not in self.df.columns]
            if bad:
                raise ExperimentError(f"cannot group results by {bad}; columns include {list(CELL_COLUMNS)}")
            self._summaries[memo] = summaries.summarise(self, by, grader, n_boot)
        out = self._summaries[memo].copy()
        out.attrs = dict(self._summaries[memo].attrs)
        return out

    # Summaries (summaries.py) and the side-by-side view (report.py) are functions of a Results; here they are
    # its methods too, with the same signature and docstring.
    classification = summaries.classification
    confusion = summaries.confusion
    compare = summaries.compare

    # ------------------------------------------------------------------ side by side

    side_by_side = report.side_by_side

    # ------------------------------------------------------------------ combining

    @classmethod
    def concat(cls, parts: Iterable["Results"]) -> "Results":
        """One Results from several runs (e.g. one experiment per exercise): cells in order, meta merged.

        `meta["parts"]` keeps each run's own meta; counts, spend and wall time are summed,
        so summaries, exports and the CLI summary read the whole.
        """
        parts = list(parts)
        if not parts or not all(isinstance(p, Results) for p in parts):
            raise ExperimentError("Results.concat takes a non-empty list of Results")
        metas = [p.meta for p in parts]
        exps = [m.get("experiment") or {} for m in metas]

        def union(key: str) -> list[Any]:
            return list(dict.fromkeys(x for e in exps for x in (e.get(key) or [])))

        counts: dict[str, Any] = {}
        for m in metas:
            for k, v in (m.get("counts") or {}).items():
                if isinstance(v, dict):
                    acc = counts.setdefault(k, {})
                    for kk, vv in v.items():
                        acc[kk] = acc.get(kk, 0) + vv
                elif isinstance(v, (int, float)):
                    counts[k] = counts.get(k, 0) + v
        meta: dict[str, Any] = {
            "experiment": {
                "name": "+".join(dict.fromkeys(str(e.get("name") or "results") for e in exps)),
                "variants": union("variants"), "models": union("models"), "graders": union("graders"),
                "settings_labels": union("settings_labels") or ["default"],
                "cells": sum(len(p) for p in parts),
            },
            "counts": counts,
            "wall_s": sum(float(m.get("wall_s") or 0.0) for m in metas),
            "spent_usd": sum(float(m.get("spent_usd") or 0.0) for m in metas),
            "stopped_for_budget": any(m.get("stopped_for_budget") for m in metas),
            "stop_reason": next((m["stop_reason"] for m in metas if m.get("stop_reason")), None),
            "parts": metas,
        }
        labels = list(dict.fromkeys(x for m in metas for x in (m.get("labels") or [])))
        if labels:
            meta["labels"] = labels
        return cls([r for p in parts for r in p.results], meta)

    def __add__(self, other: "Results") -> "Results":
        if not isinstance(other, Results):
            return NotImplemented
        return Results.concat([self, other])

    # ------------------------------------------------------------------ regrade

    def regrade(self, graders: Any, *, keep: bool = False) -> "Results":
        """Grade every successful cell again with other graders, calling no model; returns new Results.

        `graders` is one grader, a list of them, or a dict name -> grader.
        With `keep=True` the old grades stay beside the new ones (same name: new wins).
        Failed calls get no grade, as in a run; a grader that raises gives that
        cell a failing unparseable grade and a warning, as in a run.
        """
        named = _named_graders(graders)
        out = []
        failures: list[str] = []
        for r in self.results:
            grades = dict(r.grades) if keep else {}
            if r.completion.ok:
                for name, grader in named.items():
                    try:
                        grade = grader(r.completion, r.cell.target)
                        if not isinstance(grade, Grade):
                            raise GraderError(f"returned {type(grade).__name__}, expected a Grade")
                    except Exception as exc:  # as in a run: shown on the cell, not the end of the regrade
                        reason = redact(f"grader {name!r} failed: {type(exc).__name__}: {exc}")
                        grade = Grade(score=0.0, passed=False, parsed=False, reason=reason,
                                      details={"grader_error": True})
                        failures.append(f"row {r.cell.row_id!r} (variant {r.cell.variant!r}, "
                                        f"model {r.cell.model!r}): {reason}")
                    grades[name] = grade
            out.append(CellResult(r.cell, r.completion, grades))
        if failures:
            warnings.warn(f"regrade: a grader failed on {len(failures)} cell(s), recorded as unparseable "
                          f"grades; first: {failures[0]}", stacklevel=2)
        meta = dict(self.meta)
        meta["graders"] = list(dict.fromkeys([*(self.grader_names if keep else []), *named]))
        return Results(out, meta)

    # ------------------------------------------------------------------ exports

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per cell (cell, completion, grades), secrets redacted."""
        return results_io.to_records(self.results)

    def to_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """One JSON object per cell, lossless (secrets redacted); the first line also carries the run's meta."""
        return results_io.write_jsonl(path, self.results, self.meta)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> "Results":
        """Read back a `to_jsonl` export exactly (to regrade or report it without calling a model)."""
        return cls(*results_io.read_jsonl(path))

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """The DataFrame as CSV (one row per call; lists and dicts as JSON), secrets redacted."""
        return results_io.write_csv(path, self.df)

    def to_html(self, path: str | os.PathLike[str], title: str | None = None, **kwargs: Any) -> Path:
        """One self-contained HTML report (tables and inline plots), written atomically: report.html_report's."""
        text = report.html_report(self, title=title, **kwargs)
        return atomic_write(path, lambda f: f.write(text))


# ---------------------------------------------------------------------- helpers


def _named_graders(graders: Any) -> dict[str, Any]:
    if isinstance(graders, Mapping):
        items = list(graders.items())
    else:
        seq = [graders] if callable(graders) and not isinstance(graders, (list, tuple)) else list(graders)
        items = []
        for gr in seq:
            name = getattr(gr, "name", None)
            if not name or not isinstance(name, str):
                raise GraderError(f"grader {gr!r} has no .name; graders are factories returning objects with a name")
            items.append((name, gr))
    named: dict[str, Any] = {}
    for name, gr in items:
        if name in named:
            raise GraderError(f"two graders are named {name!r}; give them different names")
        if not callable(gr):
            raise GraderError(f"grader {name!r} is not callable")
        named[name] = gr
    if not named:
        raise GraderError("regrade needs at least one grader")
    return named
