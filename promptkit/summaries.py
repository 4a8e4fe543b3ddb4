"""The summaries of a Results: per-group tables with intervals, label metrics, confusion matrices, paired compares.

`Results.summary`, `.classification`, `.confusion` and `.compare` are these
functions; this module reads a Results (the `results` argument) and never
imports results.py, so summaries sit on the container, not inside it. The
numbers come from metrics.py and stats.py, imported by the functions that use
them: building a Results (every run does) must not load numpy. SUMMARY_VIEWS is
the one definition of which summary columns each view shows.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .errors import ExperimentError, GraderError
from .types import CellResult, Grade

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .metrics import PairedTest
    from .results import Results

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


def summarise(results: Results, by: list[str], grader: str | None, n_boot: int) -> "pd.DataFrame":
    """`Results.summary` without its memo: one row per group of `by` (columns already checked)."""
    from .stats import cluster_bootstrap
    import pandas as pd

    df = results.df
    g = results.resolve_grader(grader) if results.grader_names else None
    classify = g is not None and results.is_classification(g)
    labels = results.labels(g) if classify else []
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
            rec.update(label_metrics(  # df rows are in results order (keys may repeat)
                [results.results[i] for i in ok.index], g, labels, n_boot=min(n_boot, 1000)))
        rows.append(rec)
    out = pd.DataFrame(rows)
    out.attrs["grader"] = g
    out.attrs["score_ci"] = SCORE_CI
    out.attrs["pass_rate"] = PASS_RATE
    if classify:
        out.attrs["accuracy_ci"] = ACCURACY_CI
        out.attrs["labels"] = labels
    return out


def label_metrics(
    cells: list[CellResult], grader: str, labels: list[Any], *, n_boot: int = 1000
) -> dict[str, Any]:
    """One group's label metrics (accuracy beside its baseline, balanced accuracy, macro-F1, intervals), from metrics.py."""
    from . import metrics

    gold, pred = gold_and_answers(cells, grader)
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
        "mentioned": sum(mentioned(c.grades.get(grader)) for c in cells if gold_label(c, grader) is not None),
    }


def classification(results: Results, grader: str | None = None, **where: Any) -> Any:
    """The full `metrics.ClassificationSummary` (per-class stats, verdict) of the matching cells."""
    from . import metrics

    g = results.resolve_grader(grader)
    sub = results.filter(**where) if where else results
    gold, pred = gold_and_answers([r for r in sub.results if r.completion.ok], g)
    if not gold:
        raise GraderError(f"no successful cells with a gold label match {where or 'these results'}")
    return metrics.classification_summary(gold, pred, results.labels(g))


def confusion(
    results: Results, variant: str | None = None, model: str | None = None, grader: str | None = None, **where: Any
) -> "pd.DataFrame":
    """Gold labels down, answers across, with an unparseable column; errors left out."""
    from . import metrics

    g = results.resolve_grader(grader)
    if not results.is_classification(g):
        raise GraderError(f"grader {g!r} sets no labels, so there is no confusion matrix; use a label grader")
    if variant is not None:
        where["variant"] = variant
    if model is not None:
        where["model"] = model
    sub = results.filter(**where) if where else results
    gold, pred = gold_and_answers([r for r in sub.results if r.completion.ok], g)
    if not gold:
        raise GraderError(f"no successful cells with a gold label match {where or 'these results'}")
    return metrics.confusion_matrix(gold, pred, results.labels(g)).to_frame()


def compare(
    results: Results,
    a: str,
    b: str,
    *,
    grader: str | None = None,
    metric: str = "accuracy",
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    **where: Any,
) -> PairedTest:
    """Paired test of two variants (or two models) on the same rows: is the difference real?

    Cells are paired on everything but the compared dimension (row, repeat,
    settings, and the other of variant/model); only pairs where both calls
    succeeded count. Labels use the test that matches the metric
    (`metrics.paired_test`: exact McNemar for accuracy, a paired permutation
    test for balanced accuracy or macro-F1); pass/fail scores use
    McNemar; other scores a paired bootstrap of the mean difference.
    """
    from . import metrics

    if a in results.variants and b in results.variants:
        across = "variant"
    elif a in results.models and b in results.models:
        across = "model"
    else:
        raise ExperimentError(
            f"compare({a!r}, {b!r}): both must be variants {results.variants} or both models {results.models}"
        )
    g = results.resolve_grader(grader)
    other = "model" if across == "variant" else "variant"
    sub = results.filter(**where) if where else results

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
    if results.is_classification(g):
        pairs = [(x, y) for x, y in zip(ra, rb) if gold_label(x, g) is not None]
        gold = [gold_label(x, g) for x, _ in pairs]
        pa = [answer_label(x.grades[g]) for x, _ in pairs]
        pb = [answer_label(y.grades[g]) for _, y in pairs]
        res = metrics.paired_test(gold, pa, pb, metric=metric, labels=results.labels(g), seed=seed,
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


# ---------------------------------------------------------------------- a cell's gold and answer


def _is_label(x: Any) -> bool:
    return isinstance(x, (str, int, bool)) and x is not None


def gold_label(r: CellResult, grader: str) -> Any:
    """A cell's gold label: as the grader read it (`details["gold"]`, canonical spelling), else the target."""
    grade = r.grades.get(grader)
    if grade is not None and isinstance(grade.details, Mapping) and _is_label(grade.details.get("gold")):
        return grade.details["gold"]
    target = r.cell.target
    if isinstance(target, Mapping):
        target = target.get("label", target.get("answer"))
    return target if _is_label(target) else None


def answer_label(grade: Grade | None) -> Any:
    """The label a grade read, or None for an unreadable answer or an ungraded cell."""
    if grade is None or not grade.parsed:
        return None
    return grade.label


def mentioned(grade: Grade | None) -> bool:
    """An unreadable answer that names a label without giving it (counted within `unparseable`)."""
    return (grade is not None and not grade.parsed and isinstance(grade.details, Mapping)
            and grade.details.get("how") == "mention")


def gold_and_answers(cells: Sequence[CellResult], grader: str) -> tuple[list[Any], list[Any]]:
    """Gold labels and parsed answers of cells with a label target; an ungraded cell counts as unparseable."""
    gold, pred = [], []
    for r in cells:
        g = gold_label(r, grader)
        if g is None:
            continue
        gold.append(g)
        pred.append(answer_label(r.grades.get(grader)))
    return gold, pred
