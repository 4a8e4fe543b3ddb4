"""Correct a model's label bias before reading its scores: contextual calibration and held-out thresholds.

Contextual calibration (Zhao, Wallace, Feng, Klein, Singh 2021, "Calibrate
Before Use", arXiv 2102.09690): fill the prompt with content-free inputs
("N/A", "", "[MASK]"), measure the label probabilities the model gives then
(its bias for a label whatever the row says: majority label, recency, common
tokens), average them, and divide every row's probabilities by them,
renormalising over the label set. Content-free inputs are not dataset rows, so
nothing is fitted on the rows being scored.

A decision threshold for a binary task (predict the positive label when its
probability is at least t) IS fitted on rows, so it is chosen on a calibration
split ("dev") and refused on any row it was chosen on: the `Threshold` remembers
the ids and split it was fitted on and raises if asked to score them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Sequence

from .errors import GraderError
from .metrics import accuracy, balanced_accuracy, macro_f1
from .scoring import LabelScore, _check_labels, _request_for, _score_one, _with_prefill, loaded_model, normalise
from .types import Row, Settings

CONTENT_FREE: tuple[str, ...] = ("N/A", "", "[MASK]")


@dataclass
class ContextualCalibration:
    """The model's label probabilities on content-free inputs, to be divided out of every row's."""

    labels: list[str]
    p_cf: dict[str, float]  # mean over content-free inputs, sums to 1
    per_input: dict[str, dict[str, float]] = field(default_factory=dict)
    fields: tuple[str, ...] = ()

    def apply_one(self, score: LabelScore) -> LabelScore:
        """One row's probabilities divided by the content-free ones and renormalised (argmax relabelled)."""
        if not score.ok:
            return score
        missing = [lab for lab in self.labels if lab not in score.probs]
        if missing:
            raise GraderError(
                f"row {score.row_id!r} has no probability for {missing}; calibrate with the same label set "
                f"as the scores ({sorted(score.probs)} vs {self.labels})"
            )
        logq = {lab: math.log(max(score.probs[lab], 1e-300)) - math.log(self.p_cf[lab]) for lab in self.labels}
        probs = normalise(logq)
        best = max(self.labels, key=probs.__getitem__)
        return replace(score, label=best, probs=probs, calibration="contextual")

    def apply(self, scores: LabelScore | Sequence[LabelScore]) -> Any:
        """Calibrated copies of `scores` (a LabelScore or a list); the raw log-probabilities are kept."""
        if isinstance(scores, LabelScore):
            return self.apply_one(scores)
        return [self.apply_one(s) for s in scores]

    __call__ = apply

    def __str__(self) -> str:
        bias = ", ".join(f"{k} {v:.3f}" for k, v in self.p_cf.items())
        return f"content-free label probabilities (the bias divided out): {bias}"


def _variables(template: Any, fields: Sequence[str] | None, example: Row | None) -> tuple[str, ...]:
    if fields is not None:
        if isinstance(fields, str):
            fields = [fields]
        return tuple(fields)
    if example is not None:
        return tuple(example.input)
    names = getattr(template, "variables", None)
    if names:
        order = template.variable_order() if hasattr(template, "variable_order") else sorted(names)
        return tuple(order)
    raise GraderError(
        "contextual_calibration needs to know which template variables hold the row's input: "
        "pass fields=['notes'] (or example=<a Row>)"
    )


def contextual_calibration(
    model: Any,
    template: Any,
    labels: Sequence[str],
    *,
    content_free: Sequence[str] = CONTENT_FREE,
    fields: Sequence[str] | None = None,
    example: Row | None = None,
    settings: Settings | None = None,
    prefill: str | None = None,
    normalize: str = "sum",
    end_of_answer: bool = False,
) -> ContextualCalibration:
    """Measure the model's label bias on content-free inputs with the same prompt (Zhao et al. 2021).

    Every input variable (`fields`, by default all of the template's variables)
    is set to each content-free string in turn; the label probabilities are
    averaged over them. Use the same prefill and normalize as for the scores.
    """
    labels = _check_labels(labels)
    if isinstance(content_free, str) or not content_free:
        raise GraderError(f"content_free must be a list of strings such as {list(CONTENT_FREE)}, got {content_free!r}")
    names = _variables(template, fields, example)
    lm = loaded_model(model)
    settings = settings or Settings()
    per_input: dict[str, dict[str, float]] = {}
    for text in content_free:
        base = dict(example.input) if example is not None else {}
        row = Row(id=f"content-free:{text!r}", input={**base, **{n: text for n in names}}, split="content-free")
        req = _with_prefill(_request_for(template, row, settings), prefill)
        s = _score_one(lm, req, labels, normalize, end_of_answer, row)
        if not s.ok:
            raise GraderError(f"could not score the content-free input {text!r}: {s.error}")
        per_input[text] = s.probs
    p_cf = {lab: sum(p[lab] for p in per_input.values()) / len(per_input) for lab in labels}
    return ContextualCalibration(labels=labels, p_cf=p_cf, per_input=per_input, fields=names)


# ---------------------------------------------------------------- thresholds

_METRICS = {"balanced_accuracy": balanced_accuracy, "accuracy": lambda g, p, labels=None: accuracy(g, p),
            "macro_f1": macro_f1}


@dataclass
class Threshold:
    """Predict `positive` when P(positive) >= `threshold`; fitted on one split and refused on it."""

    positive: str
    negative: str
    threshold: float
    metric: str
    fitted_value: float  # the metric on the fitting rows (optimistic by construction)
    fitted_split: str | None
    fitted_ids: frozenset[str]

    def check_held_out(self, scores: Sequence[LabelScore]) -> None:
        """Raise when any row was used to choose the threshold (by id, or by coming from the fitting split)."""
        if any(s.row_id is None for s in scores):
            raise GraderError("every scored row needs a row_id, so it can be checked against the rows the threshold was chosen on")
        overlap = sorted({s.row_id for s in scores} & self.fitted_ids)
        if overlap:
            shown = ", ".join(map(repr, overlap[:5])) + (" ..." if len(overlap) > 5 else "")
            raise GraderError(
                f"{len(overlap)} row(s) were used to choose this threshold ({shown}); a threshold must be scored "
                f"on held-out rows (e.g. split='test'), never on the rows it was chosen on"
            )
        if self.fitted_split is not None:
            same = [s.row_id for s in scores if s.split == self.fitted_split]
            if same:
                raise GraderError(
                    f"{len(same)} row(s) come from the {self.fitted_split!r} split the threshold was chosen on "
                    f"(e.g. {same[0]!r}); score it on another split"
                )

    def predict(self, score: LabelScore) -> str | None:
        if not score.ok:
            return None
        return self.positive if score.prob(self.positive) >= self.threshold else self.negative

    def apply(self, scores: Sequence[LabelScore]) -> list[LabelScore]:
        """Relabelled copies of held-out `scores`; raises if any was used to fit the threshold."""
        scores = list(scores)
        self.check_held_out(scores)
        return [s if not s.ok else replace(s, label=self.predict(s)) for s in scores]

    def __str__(self) -> str:
        return (f"predict {self.positive!r} when P({self.positive}) >= {self.threshold:.4f} "
                f"(chosen on {len(self.fitted_ids)} {self.fitted_split or ''} rows, {self.metric} there "
                f"{self.fitted_value:.3f})")


def fit_threshold(
    scores: Sequence[LabelScore],
    positive: str,
    *,
    split: str | None = "dev",
    metric: str = "balanced_accuracy",
) -> Threshold:
    """Choose the P(positive) cut-off that maximises `metric` on the calibration split's rows.

    `split` names the split the rows must all come from ("dev" by default; None
    accepts any rows but still records their ids). Among equally good cut-offs
    the middle one is taken, so the choice does not hug one row's score.
    """
    if metric not in _METRICS:
        raise GraderError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
    scores = [s for s in scores]
    if not scores:
        raise GraderError("fit_threshold needs scored rows from the calibration split; got none")
    if split is not None:
        wrong = [(s.row_id, s.split) for s in scores if s.split != split]
        if wrong:
            raise GraderError(
                f"fit_threshold(split={split!r}) got {len(wrong)} row(s) from other splits, e.g. {wrong[0]}; "
                f"choose the threshold on the {split!r} rows only"
            )
    ok = [s for s in scores if s.ok]
    labels = list(ok[0].probs) if ok else []
    if len(labels) != 2 or positive not in labels:
        raise GraderError(f"fit_threshold is for two labels with positive among them; got labels {labels}, positive {positive!r}")
    negative = next(lab for lab in labels if lab != positive)
    if any(s.target not in labels for s in ok):
        bad = next(s for s in ok if s.target not in labels)
        raise GraderError(f"row {bad.row_id!r} has target {bad.target!r}, not one of {labels}")
    gold = [s.target for s in ok]
    p = sorted({s.prob(positive) for s in ok})
    cands = [0.0] + [(a + b) / 2 for a, b in zip(p, p[1:])] + [p[-1] + 1e-12]
    fn = _METRICS[metric]

    def value(t: float) -> float:
        pred = [positive if s.prob(positive) >= t else negative for s in ok]
        return fn(gold, pred, labels)

    vals = [value(t) for t in cands]
    best = max(vals)
    best_ts = [t for t, v in zip(cands, vals) if v >= best - 1e-12]
    t = best_ts[len(best_ts) // 2]
    return Threshold(positive=positive, negative=negative, threshold=t, metric=metric, fitted_value=best,
                     fitted_split=split, fitted_ids=frozenset(s.row_id for s in scores if s.row_id is not None))


def split_rows(rows: Iterable[Row], split: str) -> list[Row]:
    """The rows of one split, so a notebook says explicitly which rows calibrate and which are scored."""
    out = [r for r in rows if r.split == split]
    if not out:
        raise GraderError(f"no rows in split {split!r}")
    return out
