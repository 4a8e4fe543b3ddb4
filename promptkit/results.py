"""A finished run: the cell results, a tidy DataFrame of them, summaries and exports.

The runner hands over plain `CellResult` dataclasses; the DataFrame is built
from them here, at the edge, only when first asked for. Classification numbers
(baseline, balanced accuracy, macro-F1, paired tests) come from `metrics.py`.
"""
from __future__ import annotations

import html
import json
import math
import os
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, TextIO

from .files import atomic_write
from .stats import cluster_bootstrap
from .errors import DatasetError, ExperimentError, GraderError, redact
from .types import Cell, CellResult, Completion, Grade, Request, Settings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pandas.io.formats.style import Styler

    from .metrics import PairedTest

SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Settings))
CELL_COLUMNS: tuple[str, ...] = ("key", "variant", "model", "settings_label", *SETTINGS_FIELDS, "row_id", "repeat")
COMPLETION_COLUMNS: tuple[str, ...] = (
    "latency_s", "ttft_s", "input_tokens", "output_tokens", "cost_usd", "finish_reason", "error_kind", "error", "cached",
)
GRADE_FIELDS: tuple[str, ...] = ("score", "passed", "label", "parsed", "reason")
JSONL_FORMAT = "promptkit.results/1"
SCORE_CI = "95% percentile bootstrap over dataset rows (a row's repeats and settings resampled together), 2000 resamples, seed 0"
ACCURACY_CI = ("95% Wilson interval over cells (as metrics.classification_summary); balanced accuracy and "
               "macro-F1: 95% percentile bootstrap over cells, 1000 resamples, seed 0")
PASS_RATE = "passed / n: every cell counts, an error cell as a failure; score and accuracy are over answered cells"


def interval_columns(metric: str) -> tuple[str, str]:
    """The summary's columns holding `metric`'s 95% interval: ("score_low", "score_high") for "score"."""
    return f"{metric}_low", f"{metric}_high"


# The summary columns each view shows, in reading order, chosen here from the names `summary()` makes, so no view
# asks for a column that does not exist (the live builder once asked for score_lo/score_hi and never showed the
# interval). "<metric> CI" is report.py's one-column form of the metric's interval_columns.
SUMMARY_VIEWS: dict[str, tuple[str, ...]] = {
    "report": (
        "variant", "model", "settings_label", "n", "errors", "score", "score CI", "accuracy", "accuracy CI", "baseline",
        "majority_label", "flag", "balanced_accuracy", "balanced_accuracy CI", "chance", "macro_f1", "unparseable", "wrong",
        "latency_p50", "latency_p95", "input_tokens_mean", "output_tokens_mean", "tokens_per_100", "cost_per_100", "cached",
    ),
    "scoreboard": (  # lessons.scoreboard: what keeps a classification score honest
        "variant", "model", "n", "errors", "accuracy", "baseline", "balanced_accuracy", "chance", "macro_f1",
        "unparseable", "mentioned", "flag", "latency_p50", "output_tokens_mean", "cost_per_100",
    ),
    "builder": (  # widgets.PromptBuilder's results
        "variant", "model", "n", "errors", "score", *interval_columns("score"), "accuracy", "baseline", "balanced_accuracy",
        "unparseable", "latency_p50", "latency_p95", "output_tokens_mean", "cost_per_100",
    ),
}
# report.py renders Results as HTML and sits above this module: it installs its renderer here when imported
# (`import promptkit` imports it), so the data never imports its display.
_HTML_REPORT: Callable[..., str] | None = None


def install_html_report(render: Callable[..., str]) -> None:
    """Set the renderer behind `Results.to_html` (report.py calls this; results.py never imports report.py)."""
    global _HTML_REPORT
    _HTML_REPORT = render


PASS_COLOUR, FAIL_COLOUR, ERROR_COLOUR, UNPARSED_COLOUR = "#e3f4e1", "#fbe3e1", "#eeeeee", "#fff4d6"


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
            gold = _gold(r, g)
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
            df[col] = _redact_column(df[col].tolist())
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
            self._summaries[memo] = self._summary(by, grader, n_boot)
        out = self._summaries[memo].copy()
        out.attrs = dict(self._summaries[memo].attrs)
        return out

    def _summary(self, by: list[str], grader: str | None, n_boot: int) -> "pd.DataFrame":
        import pandas as pd

        df = self.df
        bad = [b for b in by if b not in df.columns]
        if bad:
            raise ExperimentError(f"cannot group results by {bad}; columns include {list(CELL_COLUMNS)}")
        g = self.resolve_grader(grader) if self.grader_names else None
        classify = g is not None and self.is_classification(g)
        labels = self.labels(g) if classify else []
        rows = []
        for keys, part in df.groupby(by, sort=False, dropna=False):
            keys = keys if isinstance(keys, tuple) else (keys,)
            ok = part[part["error_kind"].isna()]
            rec: dict[str, Any] = dict(zip(by, keys))
            rec["n"] = len(part)
            rec["errors"] = int(part["error_kind"].notna().sum())
            if g is not None:
                scores = ok[f"{g}_score"]
                have = ok[scores.notna()]
                rec["scored"] = len(have)
                mean, lo, hi = cluster_bootstrap(
                    have[f"{g}_score"].to_numpy(dtype=float), have["row_id"].astype(str).to_numpy(), n_boot=n_boot
                )
                rec.update(zip(("score", *interval_columns("score")), (mean, lo, hi)))
                # a failed call is not a pass: pass_rate is over every cell, errors counted as failures
                rec["passed"] = int(have[f"{g}_passed"].dropna().astype(bool).sum())
                rec["pass_rate"] = rec["passed"] / len(part) if len(part) else math.nan
            lat = ok["latency_s"].dropna()
            rec["latency_p50"] = float(lat.quantile(0.5)) if len(lat) else math.nan
            rec["latency_p95"] = float(lat.quantile(0.95)) if len(lat) else math.nan
            ttft = ok["ttft_s"].dropna()
            rec["ttft_p50"] = float(ttft.quantile(0.5)) if len(ttft) else math.nan
            tin = ok["input_tokens"].dropna().astype(float)
            tout = ok["output_tokens"].dropna().astype(float)
            rec["input_tokens_mean"] = float(tin.mean()) if len(tin) else math.nan
            rec["output_tokens_mean"] = float(tout.mean()) if len(tout) else math.nan
            rec["tokens_per_100"] = (
                100 * (float(tin.mean() if len(tin) else 0.0) + float(tout.mean() if len(tout) else 0.0))
                if len(tin) or len(tout) else math.nan
            )
            cost = part["cost_usd"].dropna()
            ok_cost = ok["cost_usd"].dropna()
            rec["cost_usd"] = float(cost.sum()) if len(cost) else math.nan
            rec["cost_per_100"] = 100 * float(ok_cost.mean()) if len(ok_cost) else math.nan
            rec["cached"] = int(part["cached"].sum())
            if classify:
                rec.update(self._classification(  # df rows are in results order (keys may repeat)
                    [self.results[i] for i in ok.index], g, labels, n_boot=min(n_boot, 1000)))
            rows.append(rec)
        out = pd.DataFrame(rows)
        out.attrs["grader"] = g
        out.attrs["score_ci"] = SCORE_CI
        out.attrs["pass_rate"] = PASS_RATE
        if classify:
            out.attrs["accuracy_ci"] = ACCURACY_CI
            out.attrs["labels"] = labels
        return out

    def _classification(
        self, cells: list[CellResult], grader: str, labels: list[Any], *, n_boot: int = 1000
    ) -> dict[str, Any]:
        """One group's label metrics, from metrics.py."""
        from . import metrics

        gold, pred = _gold_pred(cells, grader)
        if not gold:
            return {"accuracy": math.nan, "flag": "no labelled rows"}
        n = len(gold)
        correct = sum(g == p for g, p in zip(gold, pred))
        unparseable = metrics.unparseable_count(pred)
        acc_ci = metrics.wilson_interval(correct, n)
        maj_label, maj_rate = metrics.majority_baseline(gold, labels)
        beats = acc_ci.low > maj_rate  # the rule of metrics.classification_summary
        present = sorted(set(gold), key=labels.index)
        cis = metrics.label_metric_intervals(gold, pred, labels, n_boot=n_boot)
        return {
            "accuracy": correct / n, "accuracy_low": acc_ci.low, "accuracy_high": acc_ci.high,
            "majority_label": maj_label, "baseline": maj_rate, "beats_baseline": beats,
            "flag": "" if beats else "not above majority baseline",
            "balanced_accuracy": metrics.balanced_accuracy(gold, pred, labels),
            "balanced_accuracy_low": cis["balanced_accuracy"].low, "balanced_accuracy_high": cis["balanced_accuracy"].high,
            "chance": 1 / len(present), "macro_f1": metrics.macro_f1(gold, pred, labels),
            "macro_f1_low": cis["macro_f1"].low, "macro_f1_high": cis["macro_f1"].high,
            "correct": correct, "wrong": n - correct - unparseable, "unparseable": unparseable,
            "mentioned": sum(_mentioned(c.grades.get(grader)) for c in cells if _gold(c, grader) is not None),
        }

    def classification(self, grader: str | None = None, **where: Any) -> Any:
        """The full `metrics.ClassificationSummary` (per-class stats, verdict) of the matching cells."""
        from . import metrics

        g = self.resolve_grader(grader)
        sub = self.filter(**where) if where else self
        gold, pred = _gold_pred([r for r in sub.results if r.completion.ok], g)
        if not gold:
            raise GraderError(f"no successful cells with a gold label match {where or 'these results'}")
        return metrics.classification_summary(gold, pred, self.labels(g))

    def confusion(
        self, variant: str | None = None, model: str | None = None, grader: str | None = None, **where: Any
    ) -> "pd.DataFrame":
        """Gold labels down, answers across, with an unparseable column; errors left out."""
        from . import metrics

        g = self.resolve_grader(grader)
        if not self.is_classification(g):
            raise GraderError(f"grader {g!r} sets no labels, so there is no confusion matrix; use a label grader")
        if variant is not None:
            where["variant"] = variant
        if model is not None:
            where["model"] = model
        sub = self.filter(**where) if where else self
        gold, pred = _gold_pred([r for r in sub.results if r.completion.ok], g)
        if not gold:
            raise GraderError(f"no successful cells with a gold label match {where or 'these results'}")
        return metrics.confusion_matrix(gold, pred, self.labels(g)).to_frame()

    def compare(
        self,
        a: str,
        b: str,
        *,
        grader: str | None = None,
        metric: str = "accuracy",
        alpha: float = 0.05,
        n_boot: int = 2000,
        seed: int = 0,
        **where: Any,
    ) -> "PairedTest":
        """Paired test of two variants (or two models) on the same rows: is the difference real?

        Cells are paired on everything but the compared dimension (row, repeat,
        settings, and the other of variant/model); only pairs where both calls
        succeeded count. Labels use the test that matches the metric
        (`metrics.paired_test`: exact McNemar for accuracy, a paired permutation
        test for balanced accuracy or macro-F1); pass/fail scores use
        McNemar; other scores a paired bootstrap of the mean difference.
        """
        from . import metrics

        if a in self.variants and b in self.variants:
            across = "variant"
        elif a in self.models and b in self.models:
            across = "model"
        else:
            raise ExperimentError(
                f"compare({a!r}, {b!r}): both must be variants {self.variants} or both models {self.models}"
            )
        g = self.resolve_grader(grader)
        other = "model" if across == "variant" else "variant"
        sub = self.filter(**where) if where else self

        def pair_key(r: CellResult) -> tuple[Any, ...]:
            return (r.cell.row_id, r.cell.repeat, r.cell.settings_label, getattr(r.cell, other))

        side: dict[str, dict[tuple[Any, ...], CellResult]] = {a: {}, b: {}}
        for r in sub.results:
            name = getattr(r.cell, across)
            if name in side and r.completion.ok and g in r.grades:
                side[name][pair_key(r)] = r
        common = [k for k in side[a] if k in side[b]]
        if not common:
            raise ExperimentError(f"{a!r} and {b!r} share no successfully graded rows to pair")
        ra = [side[a][k] for k in common]
        rb = [side[b][k] for k in common]
        if self.is_classification(g):
            pairs = [(x, y) for x, y in zip(ra, rb) if _gold(x, g) is not None]
            gold = [_gold(x, g) for x, _ in pairs]
            pa = [_pred(x.grades[g]) for x, _ in pairs]
            pb = [_pred(y.grades[g]) for _, y in pairs]
            res = metrics.paired_test(gold, pa, pb, metric=metric, labels=self.labels(g), seed=seed,
                                      alpha=alpha, name_a=a, name_b=b)
        else:
            sa = [x.grades[g].score for x in ra]
            sb = [y.grades[g].score for y in rb]
            if all(s in (0, 1) for s in sa + sb):
                res = metrics.mcnemar_test([1] * len(sa), sa, sb, alpha=alpha, name_a=a, name_b=b)
            else:
                res = metrics.paired_bootstrap_means(sa, sb, alpha=alpha, n_boot=n_boot, seed=seed, name_a=a, name_b=b)
        res.details.update(across=across, pairs=len(common), grader=g)
        return res

    # ------------------------------------------------------------------ side by side

    def side_by_side(
        self,
        across: str = "variant",
        *,
        grader: str | None = None,
        repeat: int | None = 0,
        max_chars: int = 160,
        style: bool = True,
        **where: Any,
    ) -> "Styler | pd.DataFrame":
        """Dataset rows down, variants (or models) across: each output with its grade, coloured pass/fail.

        Returns a pandas Styler (HTML-escaped, long outputs cut to `max_chars`)
        for a notebook, or with `style=False` the plain DataFrame of cell texts.
        """
        import pandas as pd

        if across not in ("variant", "model"):
            raise ExperimentError(f"side_by_side(across=...) must be 'variant' or 'model', got {across!r}")
        if repeat is not None:
            where.setdefault("repeat", repeat)
        sub = self.filter(**where) if where else self
        g = self.resolve_grader(grader) if sub.grader_names else None
        other = "model" if across == "variant" else "variant"
        many_other = len({getattr(r.cell, other) for r in sub.results}) > 1
        many_settings = len({r.cell.settings_label for r in sub.results}) > 1
        many_repeats = len({r.cell.repeat for r in sub.results}) > 1

        def column(r: CellResult) -> str:
            parts = []
            if many_other:
                parts.append(str(getattr(r.cell, other)))
            parts.append(str(getattr(r.cell, across)))
            if many_settings:
                parts.append(r.cell.settings_label or "default")
            if many_repeats:
                parts.append(f"#{r.cell.repeat}")
            return " · ".join(parts)

        text: dict[str, dict[str, str]] = {}
        state: dict[str, dict[str, str]] = {}
        targets: dict[str, str] = {}
        for r in sub.results:
            col, row = column(r), str(r.cell.row_id)
            targets.setdefault(row, _short(_display(r.cell.target), max_chars))
            text.setdefault(col, {})[row] = _cell_text(r, g, max_chars)
            state.setdefault(col, {})[row] = _cell_state(r, g)
        rows = list(targets)
        frame = pd.DataFrame({"target": pd.Series(targets), **{c: pd.Series(v) for c, v in text.items()}}, index=rows)
        frame.index.name = "row_id"
        frame = frame.fillna("")
        if not style:
            return frame
        states = pd.DataFrame({"target": "", **{c: pd.Series(v) for c, v in state.items()}}, index=rows).fillna("")
        colours = {"pass": PASS_COLOUR, "fail": FAIL_COLOUR, "error": ERROR_COLOUR, "unparsed": UNPARSED_COLOUR}

        def paint(_: Any) -> pd.DataFrame:
            return states.map(lambda s: f"background-color: {colours[s]}" if s in colours else "")

        return (
            frame.style.format(escape="html")
            .apply(paint, axis=None)
            .set_properties(**{"white-space": "pre-wrap", "vertical-align": "top", "text-align": "left",
                               "font-size": "0.85em", "max-width": "28em"})
            .set_table_styles([{"selector": "th", "props": "text-align: left; vertical-align: top;"}])
        )

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
        return [_redact_tree(_cell_result_to_dict(r)) for r in self.results]

    def to_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """One JSON object per cell, lossless (secrets redacted); the first line also carries the run's meta."""
        meta = _redact_tree(_jsonable(self.meta))

        def write(f: TextIO) -> None:
            for i, r in enumerate(self.results):
                obj = _redact_tree(_cell_result_to_dict(r))
                if i == 0:
                    obj = {"format": JSONL_FORMAT, "meta": meta, **obj}
                f.write(json.dumps(obj, ensure_ascii=False, default=_json_default))
                f.write("\n")
            if not self.results:
                f.write(json.dumps({"format": JSONL_FORMAT, "meta": meta}, ensure_ascii=False, default=_json_default))
                f.write("\n")

        return atomic_write(path, write)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> "Results":
        """Read back a `to_jsonl` export exactly (to regrade or report it without calling a model)."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DatasetError(f"results file {path} does not exist") from None
        meta: dict[str, Any] = {}
        results = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}, line {n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DatasetError(f"{path}, line {n}: expected a JSON object, got {type(obj).__name__}")
            if "meta" in obj:
                meta = obj["meta"] or {}
            if "cell" not in obj:
                if "meta" in obj:
                    continue
                raise DatasetError(f"{path}, line {n}: missing field 'cell'; is this a promptkit results export?")
            try:
                results.append(_cell_result_from_dict(obj))
            except (KeyError, TypeError, ValueError) as exc:
                what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                raise DatasetError(f"{path}, line {n}: malformed cell result: {what}") from None
        return cls(results, meta)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """The DataFrame as CSV (one row per call; lists and dicts as JSON), secrets redacted."""
        df = self.df.copy()
        for col in df.columns:
            if df[col].dtype == object or str(df[col].dtype) in ("str", "string"):
                df[col] = _redact_column([_csv_value(v) for v in df[col].tolist()])
        return atomic_write(path, lambda f: df.to_csv(f, index=False, lineterminator="\n"))

    def to_html(self, path: str | os.PathLike[str], title: str | None = None, **kwargs: Any) -> Path:
        """One self-contained HTML report (tables and inline plots), written atomically: report.html_report's."""
        if _HTML_REPORT is None:  # pragma: no cover - `import promptkit` imports report.py, which installs it
            raise ExperimentError("Results.to_html needs promptkit.report: import promptkit.report first")
        text = _HTML_REPORT(self, title=title, **kwargs)
        return atomic_write(path, lambda f: f.write(text))


# ---------------------------------------------------------------------- helpers




def _is_label(x: Any) -> bool:
    return isinstance(x, (str, int, bool)) and x is not None


def _gold(r: CellResult, grader: str) -> Any:
    """A cell's gold label: as the grader read it (`details["gold"]`, canonical spelling), else the target."""
    grade = r.grades.get(grader)
    if grade is not None and isinstance(grade.details, Mapping) and _is_label(grade.details.get("gold")):
        return grade.details["gold"]
    target = r.cell.target
    if isinstance(target, Mapping):
        target = target.get("label", target.get("answer"))
    return target if _is_label(target) else None


def _pred(grade: Grade | None) -> Any:
    if grade is None or not grade.parsed:
        return None
    return grade.label


def _mentioned(grade: Grade | None) -> bool:
    """An unreadable answer that names a label without giving it (counted within `unparseable`)."""
    return (grade is not None and not grade.parsed and isinstance(grade.details, Mapping)
            and grade.details.get("how") == "mention")


def _gold_pred(cells: Sequence[CellResult], grader: str) -> tuple[list[Any], list[Any]]:
    """Gold labels and parsed answers of cells with a label target; an ungraded cell counts as unparseable."""
    gold, pred = [], []
    for r in cells:
        g = _gold(r, grader)
        if g is None:
            continue
        gold.append(g)
        pred.append(_pred(r.grades.get(grader)))
    return gold, pred


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


def _cell_result_to_dict(r: CellResult) -> dict[str, Any]:
    c = r.cell
    return {
        "cell": {
            "key": c.key, "variant": c.variant, "model": c.model, "settings_label": c.settings_label,
            "settings": c.settings.to_dict(), "row_id": c.row_id, "repeat": c.repeat,
            "target": _jsonable(c.target), "request": c.request.to_dict(),
        },
        "completion": r.completion.to_dict(),
        "grades": {name: _jsonable(asdict(g)) for name, g in r.grades.items()},
    }


def _cell_result_from_dict(d: dict[str, Any]) -> CellResult:
    c = d["cell"]
    cell = Cell(
        key=c["key"], variant=c["variant"], model=c["model"], settings=Settings.from_dict(c["settings"]),
        row_id=c["row_id"], repeat=c["repeat"], request=Request.from_dict(c["request"]),
        target=c.get("target"), settings_label=c.get("settings_label", ""),
    )
    grades = {name: Grade(**g) for name, g in (d.get("grades") or {}).items()}
    return CellResult(cell, Completion.from_dict(d["completion"]), grades)


def _json_default(x: Any) -> Any:
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, (set, frozenset)):
        return sorted(x, key=str)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return str(x)


def _jsonable(x: Any) -> Any:
    """Tuples become lists (as JSON has them) so that what is written is what is read back."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _redact_tree(x: Any) -> Any:
    """Every string in a nested structure passed through `redact`: exports never carry an API key.

    One `redact` over all the strings joined decides whether any needs it, so
    the common clean record costs one regex pass instead of one per string.
    """
    strings: list[str] = []
    _collect_strings(x, strings)
    joined = "\x00".join(strings)
    if redact(joined) == joined:
        return x
    return _redact_each(x)


def _collect_strings(x: Any, out: list[str]) -> None:
    if isinstance(x, str):
        out.append(x)
    elif isinstance(x, dict):
        for k, v in x.items():
            if isinstance(k, str):
                out.append(k)
            _collect_strings(v, out)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _collect_strings(v, out)


def _redact_each(x: Any) -> Any:
    if isinstance(x, str):
        return redact(x)
    if isinstance(x, dict):
        return {(redact(k) if isinstance(k, str) else k): _redact_each(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_redact_each(v) for v in x]
    return x


def _redact_column(values: Sequence[Any]) -> list[Any]:
    """A column's strings redacted, with one regex pass when none needs it."""
    values = list(values)
    joined = "\x00".join(v for v in values if isinstance(v, str))
    if redact(joined) == joined:
        return values
    return [redact(v) if isinstance(v, str) else v for v in values]


def _csv_value(x: Any) -> Any:
    if isinstance(x, (list, tuple, dict)):
        return json.dumps(_jsonable(x), ensure_ascii=False, default=_json_default)
    return x


def _display(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    return json.dumps(_jsonable(x), ensure_ascii=False, default=_json_default)


def _short(text: str, max_chars: int) -> str:
    text = redact(text)
    return text if len(text) <= max_chars else text[: max(1, max_chars - 1)].rstrip() + "…"


def _cell_state(r: CellResult, grader: str | None) -> str:
    if not r.completion.ok:
        return "error"
    grade = r.grades.get(grader) if grader else None
    if grade is None:
        return ""
    if not grade.parsed:
        return "unparsed"
    return "pass" if grade.passed else "fail"


def _cell_text(r: CellResult, grader: str | None, max_chars: int) -> str:
    if not r.completion.ok:
        return _short(f"[{r.completion.error_kind}] {r.completion.error or ''}", max_chars)
    out = _short(r.completion.text, max_chars)
    grade = r.grades.get(grader) if grader else None
    if grade is None:
        return out
    mark = "?" if not grade.parsed else ("✓" if grade.passed else "✗")
    tail = f"{mark} {grade.score:.2f}"
    if grade.label is not None:
        tail += f" {grade.label}"
    elif not grade.parsed:
        tail += " unparseable"
    return f"{out}\n— {tail}"
