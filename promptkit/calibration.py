"""Correct a model's label bias before reading its scores: contextual calibration and held-out thresholds.

Contextual calibration (Zhao, Wallace, Feng, Klein, Singh 2021, "Calibrate
Before Use", arXiv 2102.09690): fill the prompt with content-free inputs
("N/A", "", "[MASK]"), measure the label probabilities the model gives then
(its bias for a label whatever the row says: majority label, recency, common
tokens), average them, and divide every row's probabilities by them,
renormalising over the label set. Content-free inputs are not dataset rows, so
nothing is fitted on the rows being scored.

Dividing by a tiny content-free probability can push every row to that label
(Qwen 0.5B, 3-shot renewal: p_cf(Likely) = 0.037 and 60 of 60 rows Likely), so
applying a calibration to many rows checks the predicted-label shares against
the dev split's gold shares and warns (`CalibrationCollapseWarning`) when one
label takes far more than its share, offering the dev-fitted rule below.

Decision rules fitted on rows are chosen on a calibration split ("dev") and
refused on any row they were chosen on (they remember ids and split):
- `fit_threshold`: two labels, a cut-off on P(positive);
- `fit_label_offsets`: any number of labels, one log-probability offset per
  label (predict argmax of log P(label) + offset), fitted by class-balanced
  cross-entropy on dev: the model's ranking is kept, its label prior corrected.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from .errors import GraderError
from .metrics import accuracy, balanced_accuracy, macro_f1
from .scoring import (
    LabelScore, cache_spec, check_labels, open_store, request_for, score_cached, with_prefill, loaded_model,
    normalise,
)
from .types import Row, Settings

CONTENT_FREE: tuple[str, ...] = ("N/A", "", "[MASK]")
COLLAPSE_MARGIN = 0.4  # a label predicted on this much more of the rows than its reference share is a collapse


class CalibrationCollapseWarning(UserWarning):
    """A calibration sent far more rows to one label than the reference split holds."""


@dataclass(frozen=True)
class Collapse:
    """One label taking far more of the predictions than its reference share, with what to do about it."""

    label: str
    count: int
    n: int
    reference_share: float
    reference: str  # where the reference share comes from ("the dev split's gold labels", "an even share")
    p_cf: float | None = None  # set when the label's content-free probability is the smallest (the likely cause)
    before: int | None = None  # rows on that label before calibration, when known

    @property
    def share(self) -> float:
        return self.count / self.n

    def __str__(self) -> str:
        fix = "Fit a rule on the dev rows instead: rule = pk.calibration.fit_label_offsets(dev_scores); " \
              "rule.apply(test_scores)"
        if self.before is not None and self.before >= self.count:
            return (f"contextual calibration left {self.count} of {self.n} rows ({self.share:.0%}) on {self.label!r} "
                    f"(before it: {self.before}), against {self.reference_share:.0%} in {self.reference}: it did not "
                    f"correct the model's pull toward {self.label!r}. {fix}")
        why = (f" Its content-free probability p_cf({self.label}) = {self.p_cf:.3f} is the smallest, and every row "
               f"is divided by it, which lifts {self.label!r} on every row." if self.p_cf is not None else "")
        return (f"calibration collapsed: {self.count} of {self.n} rows ({self.share:.0%}) are {self.label!r}, "
                f"against {self.reference_share:.0%} in {self.reference}.{why} {fix}")


def label_shares(items: Iterable[Any], labels: Sequence[str]) -> dict[str, float]:
    """Share of each label among gold labels (Rows, LabelScores' targets, or plain labels)."""
    gold = [getattr(x, "target", x) for x in items]
    gold = [g for g in gold if g in labels]
    if not gold:
        raise GraderError(f"no gold labels among {labels} to take shares from")
    return {lab: sum(g == lab for g in gold) / len(gold) for lab in labels}


def check_collapse(
    scores: Sequence[LabelScore], reference: Mapping[str, float] | None = None, *,
    reference_name: str = "the dev split's gold labels", margin: float = COLLAPSE_MARGIN,
    p_cf: Mapping[str, float] | None = None,
) -> Collapse | None:
    """The label whose predicted share exceeds its reference share by `margin` or more, else None.

    With no reference, each label's even share (1/k) is used.
    """
    ok = [s for s in scores if s.ok and s.label is not None]
    if len(ok) < 5:
        return None  # too few rows to call a share
    labels = list(ok[0].probs)
    if reference is None:
        reference, reference_name = {lab: 1 / len(labels) for lab in labels}, "an even share"
    counts = {lab: sum(s.label == lab for s in ok) for lab in labels}
    worst = max(labels, key=lambda lab: counts[lab] / len(ok) - reference.get(lab, 0.0))
    if counts[worst] / len(ok) - reference.get(worst, 0.0) < margin:
        return None
    smallest = bool(p_cf) and worst in p_cf and p_cf[worst] == min(p_cf.values())
    return Collapse(worst, counts[worst], len(ok), reference.get(worst, 0.0), reference_name,
                    p_cf[worst] if smallest else None)


@dataclass
class ContextualCalibration:
    """The model's label probabilities on content-free inputs, to be divided out of every row's."""

    labels: list[str]
    p_cf: dict[str, float]  # mean over content-free inputs, sums to 1
    per_input: dict[str, dict[str, float]] = field(default_factory=dict)
    fields: tuple[str, ...] = ()
    reference: dict[str, float] | None = None  # gold label shares of the dev rows, to catch a collapse
    last_collapse: Collapse | None = field(default=None, repr=False)

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

    def apply(self, scores: LabelScore | Sequence[LabelScore], *, warn: bool = True) -> Any:
        """Calibrated copies of `scores` (a LabelScore or a list); the raw log-probabilities are kept.

        On a list, warns (CalibrationCollapseWarning) when one label takes far
        more rows than its share of the dev rows (`reference`, else an even
        share); the finding is kept in `last_collapse`.
        """
        if isinstance(scores, LabelScore):
            return self.apply_one(scores)
        out = [self.apply_one(s) for s in scores]
        name = "the dev split's gold labels" if self.reference is not None else "an even share"
        self.last_collapse = check_collapse(out, self.reference, reference_name=name, p_cf=self.p_cf)
        if self.last_collapse is not None:
            lab = self.last_collapse.label
            before = sum(s.ok and s.label == lab for s in scores)
            self.last_collapse = replace(self.last_collapse, before=before)
        if self.last_collapse is not None and warn:
            warnings.warn(str(self.last_collapse), CalibrationCollapseWarning, stacklevel=2)
        return out

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
    dev: Iterable[Any] | None = None,
    cache: str = "use",
    cache_backend: Any = None,
) -> ContextualCalibration:
    """Measure the model's label bias on content-free inputs with the same prompt (Zhao et al. 2021).

    Every input variable (`fields`, by default all of the template's variables)
    is set to each content-free string in turn; the label probabilities are
    averaged over them. Use the same prefill and normalize as for the scores.
    `dev` (rows or scores with gold labels) gives the label shares a collapse
    is measured against. Content-free scores are cached like `score_labels`.
    """
    labels = check_labels(labels)
    if isinstance(content_free, str) or not content_free:
        raise GraderError(f"content_free must be a list of strings such as {list(CONTENT_FREE)}, got {content_free!r}")
    names = _variables(template, fields, example)
    reference = label_shares(dev, labels) if dev is not None else None
    lm = loaded_model(model)
    store = open_store(cache, cache_backend)
    spec = cache_spec(model, labels, normalize, end_of_answer)
    settings = settings or Settings()
    per_input: dict[str, dict[str, float]] = {}
    for text in content_free:
        base = dict(example.input) if example is not None else {}
        row = Row(id=f"content-free:{text!r}", input={**base, **{n: text for n in names}}, split="content-free")
        req = with_prefill(request_for(template, row, settings), prefill)
        s = score_cached(lm, store, spec, cache, req, labels, normalize, end_of_answer, row)
        if not s.ok:
            raise GraderError(f"could not score the content-free input {text!r}: {s.error}")
        per_input[text] = s.probs
    p_cf = {lab: sum(p[lab] for p in per_input.values()) / len(per_input) for lab in labels}
    return ContextualCalibration(labels=labels, p_cf=p_cf, per_input=per_input, fields=names, reference=reference)


# ---------------------------------------------------------------- thresholds

_METRICS = {"balanced_accuracy": balanced_accuracy, "accuracy": lambda g, p, labels=None: accuracy(g, p),
            "macro_f1": macro_f1}


def _check_held_out(scores: Sequence[LabelScore], fitted_ids: frozenset[str], fitted_split: str | None,
                    what: str) -> None:
    """Refuse rows a fitted rule was chosen on: by id, or by coming from its fitting split."""
    if any(s.row_id is None for s in scores):
        raise GraderError(f"every scored row needs a row_id, so it can be checked against the rows the {what} was chosen on")
    overlap = sorted({s.row_id for s in scores} & fitted_ids)
    if overlap:
        shown = ", ".join(map(repr, overlap[:5])) + (" ..." if len(overlap) > 5 else "")
        raise GraderError(
            f"{len(overlap)} row(s) were used to choose this {what} ({shown}); a {what} must be scored "
            f"on held-out rows (e.g. split='test'), never on the rows it was chosen on"
        )
    if fitted_split is not None:
        same = [s.row_id for s in scores if s.split == fitted_split]
        if same:
            raise GraderError(
                f"{len(same)} row(s) come from the {fitted_split!r} split the {what} was chosen on "
                f"(e.g. {same[0]!r}); score it on another split"
            )


def _fitting_rows(scores: Iterable[LabelScore], split: str | None, fitter: str, do: str) -> list[LabelScore]:
    """The rows a rule is fitted on, all from `split` (None: any split): else an error naming a stray row."""
    scores = list(scores)
    if not scores:
        raise GraderError(f"{fitter} needs scored rows from the calibration split; got none")
    if split is not None:
        wrong = [(s.row_id, s.split) for s in scores if s.split != split]
        if wrong:
            raise GraderError(
                f"{fitter}(split={split!r}) got {len(wrong)} row(s) from other splits, e.g. {wrong[0]}; "
                f"{do} on the {split!r} rows only"
            )
    return scores


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
        _check_held_out(scores, self.fitted_ids, self.fitted_split, "threshold")

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
    scores = _fitting_rows(scores, split, "fit_threshold", "choose the threshold")
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


@dataclass
class LabelOffsets:
    """Predict the label with the highest log P(label) + offset; fitted on one split and refused on it.

    Works for any number of labels. The offsets shift every row alike, so the
    model's ranking of rows is kept and only its label prior is corrected.
    """

    labels: list[str]
    offsets: dict[str, float]
    fitted_value: float  # balanced accuracy on the fitting rows (optimistic by construction)
    fitted_split: str | None
    fitted_ids: frozenset[str]
    on: str | None = None  # the calibration of the scores it was fitted on (None: raw)

    def check_held_out(self, scores: Sequence[LabelScore]) -> None:
        _check_held_out(scores, self.fitted_ids, self.fitted_split, "rule")

    def apply_one(self, score: LabelScore) -> LabelScore:
        if not score.ok:
            return score
        if score.calibration != self.on:
            raise GraderError(
                f"this rule was fitted on {self.on or 'raw'} scores but row {score.row_id!r} has "
                f"{score.calibration or 'raw'} scores; apply it to scores prepared the same way as the dev ones"
            )
        logq = {lab: math.log(max(score.probs[lab], 1e-300)) + self.offsets[lab] for lab in self.labels}
        probs = normalise(logq)
        return replace(score, label=max(self.labels, key=probs.__getitem__), probs=probs,
                       calibration=f"{self.on}+offsets" if self.on else "offsets")

    def apply(self, scores: Sequence[LabelScore]) -> list[LabelScore]:
        """Relabelled copies of held-out `scores`; raises if any was used to fit the rule."""
        scores = list(scores)
        self.check_held_out(scores)
        return [self.apply_one(s) for s in scores]

    __call__ = apply

    def __str__(self) -> str:
        offs = ", ".join(f"{k} {v:+.2f}" for k, v in self.offsets.items())
        return (f"log-probability offsets {offs} (fitted on {len(self.fitted_ids)} {self.fitted_split or ''} rows, "
                f"balanced accuracy there {self.fitted_value:.3f})")


def fit_label_offsets(
    scores: Sequence[LabelScore],
    *,
    split: str | None = "dev",
    l2: float = 0.01,
) -> LabelOffsets:
    """Fit one offset per label on the calibration split's rows (class-balanced cross-entropy, convex).

    The offsets minimise the cross-entropy of softmax(log P + offset) with
    each gold label weighted by 1/its count (so a common label cannot buy the
    fit), plus `l2` times their squared size; the first label's offset is 0.
    Every label needs at least one row in the split.
    """
    import numpy as np

    scores = _fitting_rows(scores, split, "fit_label_offsets", "fit it")
    ok = [s for s in scores if s.ok]
    if not ok:
        raise GraderError("none of the scored rows has probabilities (every one failed); nothing to fit")
    labels = list(ok[0].probs)
    bad = next((s for s in ok if s.target not in labels), None)
    if bad is not None:
        raise GraderError(f"row {bad.row_id!r} has target {bad.target!r}, not one of {labels}")
    counts = {lab: sum(s.target == lab for s in ok) for lab in labels}
    absent = [lab for lab, c in counts.items() if c == 0]
    if absent:
        raise GraderError(f"no {split or 'fitting'} row has gold label {absent}; every label needs a row to fit its offset")
    ons = {s.calibration for s in ok}
    if len(ons) > 1:
        raise GraderError(f"the rows mix scores prepared differently ({sorted(map(str, ons))}); fit on one kind")
    z = np.array([[math.log(max(s.probs[lab], 1e-300)) for lab in labels] for s in ok])
    y = np.array([labels.index(s.target) for s in ok])
    w = np.array([1.0 / (counts[s.target] * len(labels)) for s in ok])
    k = len(labels)
    z = np.maximum(z, -700.0)  # keep exp() finite for labels with probability ~0
    onehot = np.eye(k)[y]

    def loss(b: Any) -> float:
        logits = z + b
        m = logits.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
        return float((w * (lse - logits[np.arange(len(y)), y])).sum() + l2 * (b ** 2).sum())

    b = np.zeros(k)
    for _ in range(200):  # damped Newton on the k-1 free offsets (convex: converges from anywhere)
        logits = z + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = (w[:, None] * (p - onehot)).sum(axis=0) + 2 * l2 * b
        hess = np.diag((w[:, None] * p).sum(axis=0)) - np.einsum("i,ij,ik->jk", w, p, p) + 2 * l2 * np.eye(k)
        step = np.zeros(k)
        step[1:] = np.linalg.solve(hess[1:, 1:], grad[1:])
        t, now = 1.0, loss(b)
        while loss(b - t * step) > now - 1e-4 * t * float(grad @ step) and t > 1e-8:
            t /= 2
        b = b - t * step
        if np.abs(t * step).max() < 1e-9:
            break
    offsets = {lab: float(v) for lab, v in zip(labels, b)}
    rule = LabelOffsets(labels=labels, offsets=offsets, fitted_value=0.0, fitted_split=split,
                        fitted_ids=frozenset(s.row_id for s in scores if s.row_id is not None), on=ons.pop())
    pred = [rule.apply_one(s).label for s in ok]
    rule.fitted_value = balanced_accuracy([s.target for s in ok], pred, labels)
    return rule


def split_rows(rows: Iterable[Row], split: str) -> list[Row]:
    """The rows of one split, so a notebook says explicitly which rows calibrate and which are scored."""
    out = [r for r in rows if r.split == split]
    if not out:
        raise GraderError(f"no rows in split {split!r}")
    return out
