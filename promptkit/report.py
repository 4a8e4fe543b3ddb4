"""One self-contained HTML report of a run, and the plots notebooks show.

The report is a single file: inline CSS, plots as base64 PNG, no scripts, no
links out, so it can be mailed or attached to a ticket and open anywhere.
Figures are built on matplotlib's Agg canvas without pyplot, so making a
report never changes a notebook's backend or global figure state.
"""
from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
from typing import TYPE_CHECKING, Any, Sequence

from .errors import ExperimentError, redact
from .htmlrender import render, trusted
from .results_io import json_default, jsonable
from .summaries import SUMMARY_VIEWS, interval_columns
from .types import CellResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure
    from pandas.io.formats.style import Styler

    from .results import Results

BASELINE_COLOUR = "#222222"
PASS_COLOUR, FAIL_COLOUR, ERROR_COLOUR, UNPARSED_COLOUR = "#e3f4e1", "#fbe3e1", "#eeeeee", "#fff4d6"
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]



# ---------------------------------------------------------------------- figures


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _empty(fig: "Figure", message: str) -> "Figure":
    ax = fig.add_subplot()
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555")
    ax.set_axis_off()
    return fig


def plot_scores(results: Results, grader: str | None = None, *, metric: str | None = None) -> "Figure":
    """Score per variant x model with its CI as error bars, and each group's majority baseline as a line.

    For a label grader the bar is accuracy (Wilson CI) unless `metric` names
    another summary column (e.g. "balanced_accuracy"); otherwise the mean score
    (row bootstrap CI).
    """
    fig = _figure(max(5.0, 1.2 + 0.9 * max(1, len(results.variants)) * max(1, len(results.models)) ** 0.5), 3.6)
    if not results.grader_names:
        return _empty(fig, "no grades: grade the results to plot scores")
    s = results.summary(None, grader)
    if "settings_label" in s:  # a sweep: one bar per model and settings
        s = s.assign(model=[f"{m} · {lab or 'default'}" for m, lab in zip(s["model"], s["settings_label"])])
    classify = "accuracy" in s.columns
    metric = metric or ("accuracy" if classify else "score")
    if metric not in s.columns:
        raise ValueError(f"plot_scores(metric={metric!r}): summary has no such column; try one of "
                         f"{[c for c in ('score', 'accuracy', 'balanced_accuracy', 'macro_f1', 'pass_rate') if c in s]}")
    low, high = f"{metric}_low", f"{metric}_high"
    variants = list(dict.fromkeys(s["variant"]))
    models = list(dict.fromkeys(s["model"]))
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    baseline_drawn = False
    for j, model in enumerate(models):
        part = s[s["model"] == model].set_index("variant")
        xs, ys, err_lo, err_hi = [], [], [], []
        for i, v in enumerate(variants):
            if v not in part.index:
                continue
            row = part.loc[v]
            x = i - 0.4 + width * (j + 0.5)
            y = float(row[metric])
            xs.append(x)
            ys.append(y)
            lo = float(row[low]) if low in part and not _nan(row[low]) else y
            hi = float(row[high]) if high in part and not _nan(row[high]) else y
            err_lo.append(max(0.0, y - lo))
            err_hi.append(max(0.0, hi - y))
            if "baseline" in part and not _nan(row["baseline"]) and metric in ("accuracy", "score", "pass_rate"):
                ax.hlines(float(row["baseline"]), x - width / 2, x + width / 2, colors=BASELINE_COLOUR,
                          linestyles="--", linewidth=1.5, label=None if baseline_drawn else "majority baseline", zorder=3)
                baseline_drawn = True
        ax.bar(xs, ys, width * 0.92, yerr=[err_lo, err_hi], capsize=3, color=PALETTE[j % len(PALETTE)],
               label=model, error_kw={"elinewidth": 1, "ecolor": "#333"})
    if metric in ("balanced_accuracy",) and "chance" in s:
        ax.axhline(float(s["chance"].max()), color="#888", linestyle=":", linewidth=1, label="chance (1/k)")
    ax.set_xticks(range(len(variants)), [_clip(v, 24) for v in variants], rotation=20 if len(variants) > 3 else 0,
                  ha="right" if len(variants) > 3 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(f"{metric.replace('_', ' ')} by variant and model ({s.attrs.get('grader')}), 95% CI", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_latency(results: Results, by: str = "model") -> "Figure":
    """Latency of successful calls per model (or variant) as box plots with every call drawn as a dot."""
    import numpy as np

    if by not in ("model", "variant"):
        raise ValueError(f"plot_latency(by=...) must be 'model' or 'variant', got {by!r}")
    df = results.df
    ok = df[df["error_kind"].isna() & df["latency_s"].notna()]
    groups = list(dict.fromkeys(ok[by]))
    fig = _figure(max(5.0, 1.5 + 1.1 * len(groups)), 3.4)
    if not groups:
        return _empty(fig, "no successful calls with a measured latency")
    data = [ok.loc[ok[by] == g, "latency_s"].to_numpy(float) for g in groups]
    ax = fig.add_subplot()
    ax.boxplot(data, showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, 1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, s=8, alpha=0.5, color=PALETTE[(i - 1) % len(PALETTE)])
    ax.set_xticks(range(1, len(groups) + 1), [_clip(g, 28) for g in groups])
    ax.set_ylabel("latency (s)")
    ax.set_title(f"latency per successful call, by {by}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_confusion(results: Results, variant: str | None = None, model: str | None = None,
                   grader: str | None = None) -> "Figure":
    """A confusion matrix as a heat map with counts (gold down, answer across, unparseable last)."""
    cm = results.confusion(variant=variant, model=model, grader=grader)
    fig = _figure(1.6 + 0.8 * cm.shape[1], 1.2 + 0.6 * cm.shape[0])
    ax = fig.add_subplot()
    values = cm.to_numpy(float)
    ax.imshow(values, cmap="Blues", vmin=0, vmax=max(1.0, values.max()))
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, int(values[i, j]), ha="center", va="center",
                    color="white" if values[i, j] > values.max() / 2 else "black", fontsize=9)
    ax.set_xticks(range(cm.shape[1]), list(cm.columns), rotation=30, ha="right")
    ax.set_yticks(range(cm.shape[0]), list(cm.index))
    ax.set_xlabel("answer")
    ax.set_ylabel("gold")
    ax.set_title(" · ".join(x for x in (variant, model) if x) or "all cells", fontsize=9)
    return fig


def figure_to_data_uri(fig: "Figure") -> str:
    """A figure as a `data:image/png;base64,...` URI, so the report needs no image files."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------------- side by side


def side_by_side(
    results: Results,
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
    sub = results.filter(**where) if where else results
    g = results.resolve_grader(grader) if sub.grader_names else None
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


def _display(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, str):
        return x
    return json.dumps(jsonable(x), ensure_ascii=False, default=json_default)


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


# ---------------------------------------------------------------------- HTML


def html_report(
    results: Results,
    title: str | None = None,
    *,
    grader: str | None = None,
    across: str = "variant",
    max_rows: int = 60,
    max_chars: int = 160,
    max_confusions: int = 12,
) -> str:
    """The whole report as one HTML string: meta, summary, plots, confusion matrices, side-by-side.

    The page is `data/templates/report.html.j2`; this function only gathers what it shows.
    """
    meta = results.meta
    experiment = meta.get("experiment") if isinstance(meta.get("experiment"), dict) else {}
    title = title or str(meta.get("name") or meta.get("title") or experiment.get("name") or "promptkit results")
    page: dict[str, Any] = {
        "title": title, "calls": len(results), "variants": ", ".join(results.variants),
        "models": ", ".join(results.models), "across": across,
        "generated": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "meta_rows": _meta_rows(meta),
    }
    if not len(results):
        return render("report.html.j2", **page)

    graded = bool(results.grader_names)
    g = results.resolve_grader(grader) if graded else None
    summary = results.summary(None, g)
    page["summary"] = _summary_table(summary)
    page["score_ci"] = summary.attrs["score_ci"]
    page["accuracy_ci"] = summary.attrs["accuracy_ci"] if "accuracy" in summary else None
    page["score_plots"] = []
    if graded:
        page["score_plots"].append(_plot(plot_scores(results, g), "scores by variant and model"))
        if "balanced_accuracy" in summary:
            page["score_plots"].append(_plot(plot_scores(results, g, metric="balanced_accuracy"), "balanced accuracy"))
    page["latency_plot"] = _plot(plot_latency(results), "latency by model")

    df = results.df
    page["errors"] = None
    if df["error_kind"].notna().any():
        failed = df[df["error_kind"].notna()]
        page["errors"] = {
            "counts": _table(failed.groupby(["model", "error_kind"]).size().rename("calls").reset_index()),
            "first": _table(failed.drop_duplicates("error_kind")[["model", "error_kind", "error"]]),
        }

    page["confusions"] = None
    if g is not None and results.is_classification(g):
        keys = [k for k in ("variant", "model", "settings_label") if k in summary]
        groups = [dict(zip(keys, vals)) for vals in dict.fromkeys(zip(*(summary[k] for k in keys)))]
        page["confusions"] = []
        for where in groups[:max_confusions]:
            group: dict[str, Any] = {"name": " · ".join(str(v or "default") for v in where.values()), "error": None}
            try:
                group["matrix"] = _confusion_table(results.confusion(grader=g, **where))
            except Exception as exc:  # e.g. every call of this group failed
                group["error"] = str(exc)
            page["confusions"].append(group)
        page["more_confusions"] = max(0, len(groups) - max_confusions)

    single = _single_repeat(results)
    sbs = results.side_by_side(across=across, grader=g, repeat=None if single else 0, max_chars=max_chars)
    n_rows = len(sbs.data)
    page["shown_rows"], page["total_rows"] = None, n_rows
    if n_rows > max_rows:
        sbs = results.side_by_side(across=across, grader=g, repeat=None if single else 0, max_chars=max_chars,
                                   row_id=list(dict.fromkeys(sbs.data.index))[:max_rows])
        page["shown_rows"] = max_rows
    page["repeat_zero"] = not single
    page["side_by_side"] = trusted(sbs.to_html())  # pandas escaped every cell (format(escape="html"))
    return render("report.html.j2", **page)


def _single_repeat(results: Results) -> bool:
    return len({r.cell.repeat for r in results}) <= 1


def _nan(x: Any) -> bool:
    try:
        return x is None or math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def _clip(text: Any, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _plot(fig: "Figure", alt: str) -> dict[str, Any]:
    return {"alt": alt, "uri": trusted(figure_to_data_uri(fig))}


def _flatten(meta: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested meta (the runner's experiment, counts, limits) as dotted keys, one line each."""
    out: list[tuple[str, Any]] = []
    for k, v in meta.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def _meta_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for k, v in _flatten(meta):
        if v is None or v == "" or v == [] or v == {}:
            continue
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
        rows.append((k, _clip(text, 2000)))
    return rows


def _fmt(col: str, x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        if col.startswith("cost"):
            return f"{x:.4g}"
        if col.startswith(("latency", "ttft")):
            return f"{x:.3f}"
        if col.endswith(("tokens_mean", "per_100")):
            return f"{x:,.1f}"
        return f"{x:.3f}"
    return str(x)


def _table(df: Any, flag_col: str | None = None) -> dict[str, Any]:
    """A DataFrame as the template's table: (class, text) per header and cell; text columns left-aligned."""
    cols = list(df.columns)
    head = [("text" if df[c].dtype == object or str(df[c].dtype) == "str" else "", str(c)) for c in cols]
    rows = [{"flag": bool(flag_col and row.get(flag_col)),
             "cells": [("text" if isinstance(row[c], str) else "", _fmt(c, row[c])) for c in cols]}
            for _, row in df.iterrows()]
    return {"head": head, "rows": rows}


SUMMARY_COLUMNS: Sequence[str] = SUMMARY_VIEWS["report"]


def _summary_table(summary: Any) -> dict[str, Any]:
    """The summary with each CI in one column; for label graders accuracy replaces the (equal) mean score."""
    df = summary.copy()
    for metric in ("score", "accuracy", "balanced_accuracy"):
        lo, hi = interval_columns(metric)
        if lo in df and hi in df:
            df[f"{metric} CI"] = [
                "" if _nan(a) or _nan(b) else f"{float(a):.3f}–{float(b):.3f}" for a, b in zip(df[lo], df[hi])
            ]
    skip = {"score", "score CI"} if "accuracy" in df else set()
    cols = [c for c in SUMMARY_COLUMNS if c in df.columns and c not in skip]
    return _table(df[cols], flag_col="flag" if "flag" in df else None)


def _confusion_table(cm: Any) -> dict[str, Any]:
    """A confusion frame as the template's matrix: counts shaded by size, the diagonal in bold."""
    top = max(1, int(cm.to_numpy().max()))
    rows = [{"gold": str(gold),
             "cells": [{"n": int(n), "alpha": f"{0.08 + 0.6 * int(n) / top:.2f}" if n else None,
                        "diagonal": str(col) == str(gold)} for col, n in row.items()]}
            for gold, row in cm.iterrows()]
    return {"columns": [str(c) for c in cm.columns], "rows": rows}
