"""From label probabilities to decisions, measured on held-out rows: the ladder chapter 3 teaches.

A model's text answer, the argmax of its label probabilities, the same after
contextual calibration, and after per-label offsets fitted on dev rows are four
decision rules over the same rows. `ladder` builds them, `ladder_table` scores
them on the same test rows (balanced accuracy with its interval, each step's
paired permutation test against the text answers), and the `*_sentences`
functions write the chapter's claims from those numbers, so no sentence can
disagree with its run. The plots show what tables hide: how P(label) separates
the gold labels, ROC curves, and where answers land (confusion heat maps).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .errors import GraderError
from .scoring import LabelScore


def balanced_rows(rows: Sequence[Any], n: int | None) -> list[Any]:
    """The first `n` rows taken in turn from each gold label, so a small sample still holds every label."""
    rows = list(rows)
    if not n or n >= len(rows):
        return rows
    by: dict[Any, list[Any]] = {}
    for r in rows:
        by.setdefault(r.target, []).append(r)
    out, i = [], 0
    while len(out) < n:
        for group in by.values():
            if i < len(group) and len(out) < n:
                out.append(group[i])
        i += 1
    keep = {id(r) for r in out}
    return [r for r in rows if id(r) in keep]  # in dataset order


@dataclass
class Ladder:
    """Predictions of each decision rule on the same test rows (row ids in order), with what was fitted."""

    model: str
    labels: list[str]
    row_ids: list[str]
    gold: list[str]
    steps: dict[str, list[Any]] = field(default_factory=dict)  # step name -> predicted label (None unreadable)
    scores: dict[str, list[LabelScore]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # generated remarks (a collapse, a fitted rule)


def text_predictions(results: Any, model: str, row_ids: Sequence[str]) -> list[Any]:
    """The graded text answer of `model` for each row id (None when unreadable or failed), in that order."""
    g = results.primary_grader
    by_id = {}
    for r in results.results:
        if r.cell.model == model and r.cell.repeat == 0:
            grade = r.grades.get(g)
            by_id[r.cell.row_id] = grade.label if (grade is not None and grade.parsed and r.completion.ok) else None
    missing = [i for i in row_ids if i not in by_id]
    if missing:
        raise GraderError(f"the text results have no answer of {model} for rows {missing[:3]}; run them on the same rows")
    return [by_id[i] for i in row_ids]


def ladder(model: str, template: Any, labels: Sequence[str], dev: Sequence[Any], test: Sequence[Any], *,
           text_results: Any = None, progress: bool = True) -> Ladder:
    """Text answers (if given), raw argmax, contextual calibration and dev-fitted offsets on the test rows."""
    from .calibration import contextual_calibration, fit_label_offsets
    from .scoring import score_labels

    labels = list(labels)
    raw_dev = score_labels(model, template, dev, labels, progress=progress)
    raw = score_labels(model, template, test, labels, progress=progress)
    lad = Ladder(model, labels, [r.id for r in test], [r.target for r in test])
    if text_results is not None:
        lad.steps["text answer"] = text_predictions(text_results, model, lad.row_ids)
    lad.steps["label scores (argmax)"] = [s.label for s in raw]
    lad.scores["label scores (argmax)"] = raw
    cal = contextual_calibration(model, template, labels, dev=dev)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported below, in the chapter's words
        calibrated = cal.apply(raw)
    lad.steps["contextual calibration"] = [s.label for s in calibrated]
    lad.scores["contextual calibration"] = calibrated
    if cal.last_collapse is not None:
        lad.notes.append(str(cal.last_collapse))
    rule = fit_label_offsets(raw_dev)
    fitted = rule.apply(raw)
    lad.steps["dev-fitted offsets"] = [s.label for s in fitted]
    lad.scores["dev-fitted offsets"] = fitted
    lad.notes.append(f"The dev-fitted rule: {rule}.")
    return lad


def ladder_table(lad: Ladder, *, baseline: str | None = None, seed: int = 0) -> Any:
    """One row per step on the same test rows: balanced accuracy [95% interval], accuracy, answers, and
    each step's paired permutation test against `baseline` (default: the first step)."""
    import pandas as pd

    from .metrics import classification_summary, paired_test

    names = list(lad.steps)
    base = baseline or names[0]
    rows = []
    for name in names:
        pred = lad.steps[name]
        s = classification_summary(lad.gold, pred, lad.labels, seed=seed)
        rec = {"step": name, "n": s.n, "balanced accuracy": s.balanced_accuracy,
               "low": s.balanced_accuracy_ci.low, "high": s.balanced_accuracy_ci.high, "chance": s.chance,
               "accuracy": s.accuracy, "unreadable": s.unparseable,
               "answers": ", ".join(f"{k} {v}" for k, v in s.predicted_counts.items())}
        if name != base:
            t = paired_test(lad.gold, pred, lad.steps[base], metric="balanced_accuracy", labels=lad.labels, seed=seed,
                            name_a=name, name_b=base)
            rec.update({f"Δ vs {base}": t.difference, "test": "paired permutation", "p": t.p_value})
        rows.append(rec)
    return pd.DataFrame(rows)


def ladder_sentences(lad: Ladder, table: Any) -> str:
    """The chapter's claims about the ladder, each written from `table` (same rows, one named test per claim)."""
    base = table.iloc[0]
    lines = [f"On the same {int(base['n'])} held-out test rows, {lad.model}:"]
    for _, r in table.iterrows():
        line = (f"- {r['step']}: balanced accuracy {r['balanced accuracy']:.2f} [{r['low']:.2f}, {r['high']:.2f}] "
                f"(chance {r['chance']:.2f}); answers {r['answers']}")
        dcol = next((c for c in table.columns if c.startswith("Δ vs ")), None)
        if dcol and r["step"] != base["step"] and r.get(dcol) == r.get(dcol):
            verdict = "a real difference at 0.05" if r["p"] < 0.05 else "could be chance on these rows"
            line += f"; {r[dcol]:+.2f} vs {base['step']} (paired permutation test, p = {r['p']:.2f}: {verdict})"
        lines.append(line + ".")
    above = [r["step"] for _, r in table.iterrows() if r["low"] > r["chance"]]
    lines.append("Above chance beyond its interval: " + (", ".join(above) if above else "none of the steps") + ".")
    return "\n".join(lines + lad.notes)


def ovr_auc(scores: Sequence[LabelScore], label: str) -> float | None:
    """One-vs-rest ROC AUC of P(label), or None when the rows hold only one side."""
    from .metrics import roc_auc

    ok = [s for s in scores if s.ok]
    pos = sum(s.target == label for s in ok)
    if pos == 0 or pos == len(ok):
        return None
    return roc_auc([s.target for s in ok], [s.prob(label) for s in ok], positive=label)


def auc_table(scores_by_model: Mapping[str, Sequence[LabelScore]], labels: Sequence[str]) -> Any:
    """One-vs-rest ROC AUC of each label's probability, per model (0.5: no ranking, 1.0: perfect)."""
    import pandas as pd

    return pd.DataFrame([{"model": m, **{f"AUC {lab}": ovr_auc(s, lab) for lab in labels}}
                         for m, s in scores_by_model.items()])


def models_sentences(text_results: Any, scores_by_model: Mapping[str, Sequence[LabelScore]],
                     labels: Sequence[str]) -> str:
    """Per model: its most frequent text answer and on how many rows, and how well its P(label) ranks the rows."""
    df = text_results.df
    g = text_results.primary_grader
    out = []
    for m, scores in scores_by_model.items():
        part = df[df["model"] == m]
        answers = part[f"{g}_label"].where(part[f"{g}_parsed"].astype("boolean").fillna(False), "(unreadable)")
        counts = answers.value_counts()
        top, k = (counts.index[0], int(counts.iloc[0])) if len(counts) else ("nothing", 0)
        aucs = {lab: ovr_auc(scores, lab) for lab in labels}
        shown = ", ".join(f"{lab} {v:.2f}" for lab, v in aucs.items() if v is not None)
        said = (f"left {k} of {len(part)} text answers unreadable" if top == "(unreadable)" else
                f"answered {top!r} on {k} of {len(part)} rows in text")
        out.append(f"{m} {said}; the one-vs-rest ROC AUC of its label probabilities on the scored rows: "
                   f"{shown or 'not computable (one class only)'}.")
    return "\n".join(out)


def constrained_sentences(free: Any, forced: Any, model: str) -> str:
    """What a grammar changed for one model, from both runs on the same rows (says so when nothing changed)."""
    gf, gc = free.primary_grader, forced.primary_grader
    a = free.filter(model=model).df.sort_values("row_id")
    b = forced.filter(model=model).df.sort_values("row_id")
    same = list(a[f"{gf}_label"].fillna("")) == list(b[f"{gc}_label"].fillna(""))
    ua, ub = int((~a[f"{gf}_parsed"].astype("boolean").fillna(False)).sum()), \
        int((~b[f"{gc}_parsed"].astype("boolean").fillna(False)).sum())
    if same:
        return (f"{model}: the grammar gave the same label on all {len(a)} rows ({ua} unreadable before, {ub} after), "
                f"so it changed nothing here.")
    return f"{model}: unreadable answers {ua} → {ub} of {len(a)} with the grammar; the labels changed on " \
           f"{sum(x != y for x, y in zip(a[f'{gf}_label'].fillna(''), b[f'{gc}_label'].fillna('')))} rows."


# ---------------------------------------------------------------- plots


def plot_label_probs(scores_by_model: Mapping[str, Sequence[LabelScore]], labels: Sequence[str]) -> Any:
    """P(label) of each row, grouped by its gold label: one panel per model and label (separation at a glance)."""
    import numpy as np
    from matplotlib.figure import Figure

    models = list(scores_by_model)
    fig = Figure(figsize=(3.2 * len(labels), 2.4 * len(models) + 0.4))
    axes = np.atleast_2d(fig.subplots(len(models), len(labels), squeeze=False))
    rng = np.random.default_rng(0)
    for i, m in enumerate(models):
        ok = [s for s in scores_by_model[m] if s.ok]
        for j, lab in enumerate(labels):
            ax = axes[i, j]
            for k, gold in enumerate(labels):
                ys = [s.prob(lab) for s in ok if s.target == gold]
                ax.scatter(k + rng.uniform(-0.15, 0.15, len(ys)), ys, s=14, alpha=0.7,
                           color="#2e7d32" if gold == lab else "#9e9e9e")
                if ys:
                    ax.hlines(np.median(ys), k - 0.3, k + 0.3, color="black", lw=1.5)
            ax.set_xticks(range(len(labels)), [f"gold {g}" for g in labels], fontsize=7)
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(f"P({lab}) · {m.split(':')[-1]}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_roc(scores_by_model: Mapping[str, Sequence[LabelScore]], labels: Sequence[str]) -> Any:
    """One-vs-rest ROC curve of each label's probability, one panel per label, one line per model."""
    import numpy as np
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.3 * len(labels), 3.3))
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    for ax, lab in zip(axes, labels):
        for m, scores in scores_by_model.items():
            ok = [s for s in scores if s.ok]
            y = np.array([s.target == lab for s in ok])
            if y.all() or not y.any():
                continue
            p = np.array([s.prob(lab) for s in ok])
            order = np.argsort(-p, kind="stable")
            tpr = np.concatenate([[0], np.cumsum(y[order]) / y.sum()])
            fpr = np.concatenate([[0], np.cumsum(~y[order]) / (~y).sum()])
            ax.plot(fpr, tpr, label=f"{m.split(':')[-1]} ({ovr_auc(ok, lab):.2f})")
        ax.plot([0, 1], [0, 1], color="#bdbdbd", lw=1, ls="--")
        ax.set_title(f"{lab} vs rest (AUC)", fontsize=9)
        ax.set_xlabel("false-positive rate", fontsize=8)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("true-positive rate", fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusions(panels: Mapping[str, tuple[Sequence[Any], Sequence[Any]]], labels: Sequence[str]) -> Any:
    """Confusion heat maps side by side (gold down, answer across, unreadable last), one per (title -> gold, pred)."""
    from matplotlib.figure import Figure

    from .metrics import confusion_matrix

    fig = Figure(figsize=(3.1 * len(panels), 3.0))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, (gold, pred)) in zip(axes, panels.items()):
        cm = confusion_matrix(gold, pred, labels)
        values = [[float(x) for x in row] for row in cm.counts]
        top = max(1.0, max(max(r) for r in values))
        ax.imshow(values, cmap="Blues", vmin=0, vmax=top)
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                ax.text(j, i, int(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
        ax.set_xticks(range(len(cm.columns)), [str(c).replace("(unparseable)", "unread.") for c in cm.columns],
                      rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(cm.labels)), [str(x) for x in cm.labels], fontsize=7)
        ax.set_title(title, fontsize=8)
    axes[0].set_ylabel("gold", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["Ladder", "auc_table", "balanced_rows", "constrained_sentences", "ladder", "ladder_sentences", "largest_local",
           "ladder_table", "models_sentences", "ovr_auc", "plot_confusions", "plot_label_probs", "plot_roc",
           "text_predictions"]


def largest_local(models: Sequence[str]) -> str | None:
    """The local model with the largest file among `models` (the best one installed, for the ladder)."""
    from .catalog import catalog

    local = [m for m in models if m.startswith("local:")]

    def size(spec: str) -> int:
        try:
            return catalog().local_model(spec.split(":", 1)[1]).size or 0
        except Exception:
            return 0

    return max(local, key=size) if local else None
