"""Classify by likelihood: ask the model how probable each label is, instead of parsing its text.

Small models often answer the same label for every row, or ramble, yet the
probabilities they give the labels still carry signal. For a prompt and a label
set this module computes, on a local model, the log-probability of each
COMPLETE label (the sum over all of its tokens, "At-Risk" = "At" + "-" + "Risk"),
conditioned on the prompt rendered with the model's own chat template up to the
assistant header, plus the request's prefill if any ("Answer: "). The predicted
label is the most probable one; probabilities are renormalised over the label set.

Design:
- Efficient: the prompt is decoded once per row, and each label is then
  decoded in one small batch after it (`LoadedModel.continuation_logprobs`):
  cost ~ one prompt evaluation per row, whatever the number of labels. No
  generation, no second model copy: the ordinary model (logits_all=False, full
  context window) is used, reading logits only at the label's positions.
- Reproducible: by default each row's prompt is decoded from scratch, because
  llama.cpp's numbers shift slightly with batch sizes (see
  continuation_logprobs); `score_labels(..., reuse_prefix=True)` keeps the
  prefix shared with the previous row (few-shot turns) for speed instead.
- Default `normalize="sum"`: the total log-probability is the true probability
  of the label as an answer, so the label-set distribution is a real
  (renormalised) probability, which calibration and ROC AUC need. After a
  label's first token the rest is usually near-certain, so the sum is not unfair
  to long labels; `normalize="mean"` (per-token average) instead inflates them,
  since near-zero later terms pull the average up. Use "mean" only for labels
  that are long free phrases.
- `end_of_answer=True` also counts the end-of-turn token, i.e. the probability
  that the answer is exactly the label and nothing more.
- Runner-compatible: `scoring_model("local:smollm2", labels)` returns a model
  spec (`score:smollm2[Commit|Likely|At-Risk]`) served by `ScoringProvider`,
  whose completions have the predicted label as text (after any prefill, as for
  every completion), so existing label graders and summaries work unchanged.
  The per-label scores travel in `Completion.logprobs` (one entry for the
  predicted label whose `top` maps every label to its log-probability) and
  `label_probs(completion)` reads them back as normalised probabilities.
  The spec carries the labels, so cached cells of different label sets differ.
"""
from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from .errors import GraderError, ModelSpecError, PromptkitError
from .providers import get_provider, register
from .providers.base import ModelSpec, Provider
from .types import Completion, Request, Row, Settings, TokenLogprob

NORMALIZE = ("sum", "mean")


@dataclass
class LabelScore:
    """One row classified by likelihood: every label's log-probability and its probability over the label set."""

    row_id: str | None
    label: str | None  # the most probable label (None when scoring failed)
    probs: dict[str, float]  # renormalised over the label set, sums to 1
    logprobs: dict[str, float]  # log P(label tokens | prompt), summed (or averaged if normalize="mean")
    tokens: dict[str, list[str]] = field(default_factory=dict)  # how each label was tokenized
    target: Any = None
    split: str | None = None
    normalize: str = "sum"
    error: str | None = None
    calibration: str | None = None  # set when probs were recalibrated (e.g. "contextual")

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def correct(self) -> bool:
        return self.label is not None and self.label == self.target

    def prob(self, label: str) -> float:
        """Probability of `label` over the label set (0.0 if scoring failed)."""
        return self.probs.get(label, 0.0)


def normalise(logprobs: Mapping[str, float]) -> dict[str, float]:
    """Softmax over the label set: probabilities of the labels given that the answer is one of them."""
    if not logprobs:
        return {}
    m = max(logprobs.values())
    exp = {k: math.exp(v - m) for k, v in logprobs.items()}
    total = sum(exp.values())
    return {k: v / total for k, v in exp.items()}


def check_labels(labels: Sequence[str] | None) -> list[str]:
    """The label list, or an error saying what a label list looks like (shared with calibration.py)."""
    if labels is None or isinstance(labels, str):
        raise GraderError(f"labels must be a list of label strings like ['Commit', 'Likely', 'At-Risk'], got {labels!r}")
    labels = list(labels)
    if len(labels) < 2:
        raise GraderError(f"label scoring needs at least two labels to choose between, got {labels}")
    for i, lab in enumerate(labels):
        if not isinstance(lab, str) or not lab:
            raise GraderError(f"labels[{i}] must be non-empty text, got {lab!r}")
    if len(set(labels)) != len(labels):
        raise GraderError(f"labels has duplicates: {labels}")
    return labels


def _check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZE:
        raise GraderError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")


def loaded_model(model: Any) -> Any:
    """The in-memory local model behind a spec ('local:smollm2'), a LocalProvider or a LoadedModel."""
    from .providers.local import LoadedModel, LocalProvider

    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, ScoringProvider):
        return model.base.loaded()
    if isinstance(model, str) and ":" not in model:
        model = f"local:{model}"
    prov = model if isinstance(model, Provider) else get_provider(model)
    if not isinstance(prov, LocalProvider):
        raise ModelSpecError(
            f"label scoring needs the probability of any given text, which only local models give; "
            f"{getattr(prov, 'label', model)!r} is not a local model (use e.g. 'local:smollm2'). "
            f"Vendor APIs return log-probabilities of generated tokens only (OpenAI top_logprobs); Anthropic returns none."
        )
    return prov.loaded()


def _score_on_thread(lm: Any, request: Request, labels: list[str], normalize: str, end_of_answer: bool,
                     reuse_prefix: bool = False) -> tuple[dict, dict, int]:
    context = lm.render(request)
    with lm.lock:
        per_token = lm.continuation_logprobs(context, labels, append_eos=end_of_answer, reuse_prefix=reuse_prefix)
    scores, tokens = {}, {}
    for lab, toks in zip(labels, per_token):
        total = sum(lp for _, lp in toks)
        scores[lab] = total / len(toks) if normalize == "mean" else total
        tokens[lab] = [t for t, _ in toks]
    return scores, tokens, len(lm.tokenize(context))


def with_prefill(request: Request, prefill: str | None) -> Request:
    """The request with the assistant prefill the scores continue from."""
    return request if prefill is None else replace(request, prefill=prefill)


def label_logprobs(model: Any, request: Request | str, labels: Sequence[str], **options: Any) -> dict[str, float]:
    """Log-probability of each complete label as the answer to `request` (a Request or a plain prompt).

    Keywords as score_request (prefill, normalize, end_of_answer); a failure is raised here, not recorded.
    """
    q = _query(model, request, labels, **options)
    scores, _, _ = q.lm.executor.submit(_score_on_thread, q.lm, q.request, q.labels, q.normalize,
                                        q.end_of_answer).result()
    return scores


def score_request(model: Any, request: Request | str, labels: Sequence[str], *, row: Row | None = None,
                  **options: Any) -> LabelScore:
    """One request classified by likelihood; a failure is recorded in `.error`, not raised.

    Keywords: prefill (the assistant text the labels continue, e.g. "Answer: "), normalize ("sum" or "mean"
    over a label's tokens), end_of_answer (also count the end-of-turn token).
    """
    q = _query(model, request, labels, **options)
    return _score_one(q.lm, q.request, q.labels, q.normalize, q.end_of_answer, row)


@dataclass(frozen=True)
class _Query:
    lm: Any
    request: Request
    labels: list[str]
    normalize: str
    end_of_answer: bool


def _query(model: Any, request: Request | str, labels: Sequence[str], *, prefill: str | None = None,
           normalize: str = "sum", end_of_answer: bool = False) -> _Query:
    """The checked arguments of one scoring call, with the model loaded (shared by the two calls above)."""
    from .complete import build_request

    labels = check_labels(labels)
    _check_normalize(normalize)
    return _Query(loaded_model(model), with_prefill(build_request(request), prefill), labels, normalize,
                  end_of_answer)


def _score_one(lm: Any, req: Request, labels: list[str], normalize: str, end_of_answer: bool, row: Row | None,
               reuse_prefix: bool = False) -> LabelScore:
    rid, target, split = (row.id, row.target, row.split) if row is not None else (None, None, None)
    try:
        scores, tokens, _ = lm.executor.submit(
            _score_on_thread, lm, req, labels, normalize, end_of_answer, reuse_prefix).result()
    except PromptkitError as exc:
        return LabelScore(rid, None, {}, {}, target=target, split=split, normalize=normalize, error=str(exc))
    probs = normalise(scores)
    best = max(labels, key=lambda lab: scores[lab])
    return LabelScore(rid, best, probs, scores, tokens, target=target, split=split, normalize=normalize)


def cache_spec(model: Any, labels: list[str], normalize: str, end_of_answer: bool) -> str | None:
    """The runner's spec for these scores (`score:smollm2[Yes|No]`), so both share cache entries; None if unnamed."""
    from .providers.local import LocalProvider

    if isinstance(model, ScoringProvider):
        return str(model.spec)
    if isinstance(model, LocalProvider):
        model = str(model.spec)
    if not isinstance(model, str):
        return None  # a LoadedModel has no spec to key on
    try:
        return scoring_model(model if ":" in model else f"local:{model}", labels, normalize=normalize,
                             end_of_answer=end_of_answer)
    except PromptkitError:
        return None


def score_cached(lm: Any, store: Any, spec: str | None, mode: str, req: Request, labels: list[str], normalize: str,
                  end_of_answer: bool, row: Row | None, reuse_prefix: bool = False) -> LabelScore:
    """`_score_one`, answered from and saved to the cache under the cell key the runner would use.

    Each row is stored as soon as it is scored, so an interrupted run keeps
    what it did. Scores with reuse_prefix=True depend on the previous row, so
    they are neither read nor written.
    """
    if store is None or spec is None or mode == "off" or reuse_prefix:
        return _score_one(lm, req, labels, normalize, end_of_answer, row, reuse_prefix)
    from .cache import cell_key

    key = cell_key(spec, req)
    rid, target, split = (row.id, row.target, row.split) if row is not None else (None, None, None)
    if mode == "use":
        hit = store.get(key)
        if hit is not None and label_probs(hit):
            return replace(score_from_completion(hit, rid, target, split), normalize=normalize)
    out = _score_one(lm, req, labels, normalize, end_of_answer, row, reuse_prefix)
    if out.ok:
        store.put(key, Completion(
            text=req.prefill + out.label, output_tokens=0, finish_reason="scored",
            logprobs=[TokenLogprob(token=out.label, logprob=out.logprobs[out.label], top=dict(out.logprobs))],
        ))
    return out


def open_store(cache: str, cache_backend: Any) -> Any:
    """The cache the runner would use for these scores, or None when caching is off."""
    from .cache import open_cache

    if cache not in ("use", "refresh", "off"):
        raise GraderError(f"cache must be 'use', 'refresh' or 'off', got {cache!r}")
    if cache == "off":
        return None
    if cache_backend is None or isinstance(cache_backend, (str, bytes)) or hasattr(cache_backend, "__fspath__"):
        return open_cache(cache_backend)
    return cache_backend


def request_for(template: Any, row: Row, settings: Settings) -> Request:
    """The request a template (or a plain prompt string) makes for one row."""
    if hasattr(template, "to_request"):
        return template.to_request(row.input, settings)
    if callable(template):
        req = template(row)
        if not isinstance(req, Request):
            raise GraderError(f"the template callable must return a Request for row {row.id!r}, got {type(req).__name__}")
        return req
    raise GraderError(
        f"template must be a Template (anything with to_request(variables, settings)) or a function row -> Request, "
        f"got {type(template).__name__}"
    )


def score_labels(
    model: Any,
    template: Any,
    rows: Iterable[Row],
    labels: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    prefill: str | None = None,
    normalize: str = "sum",
    end_of_answer: bool = False,
    progress: bool = True,
    reuse_prefix: bool = False,
    cache: str = "use",
    cache_backend: Any = None,
) -> list[LabelScore]:
    """Classify every row by the likelihood of each label; labels default to the dataset's label set.

    Example: `scores = pk.score_labels("local:smollm2", template, dataset.split("test"))`.
    `reuse_prefix=True` keeps the prompt prefix shared with the previous row
    in the cache: faster for long few-shot prompts, but llama.cpp's batching
    then shifts scores slightly (~0.01-0.05 nats on the Qwen files) by row order.
    Each row's scores are cached like a runner cell (`cache="use"`, "refresh"
    or "off"; the key is the runner's for `scoring_model(model, labels)`), so
    an interrupted run keeps the rows it scored and a re-run is immediate.
    """
    from tqdm.auto import tqdm

    if labels is None:
        labels = getattr(rows, "labels", None)
    labels = check_labels(labels)
    _check_normalize(normalize)
    rows = list(rows)
    for i, r in enumerate(rows):
        if not isinstance(r, Row):
            raise GraderError(f"rows[{i}] must be a Row (from a dataset), got {type(r).__name__}")
    lm = loaded_model(model)
    store = open_store(cache, cache_backend)
    spec = cache_spec(model, labels, normalize, end_of_answer)
    settings = settings or Settings()
    out = []
    for row in tqdm(rows, desc="label scoring", unit="row", disable=not progress):
        req = with_prefill(request_for(template, row, settings), prefill)
        out.append(score_cached(lm, store, spec, cache, req, labels, normalize, end_of_answer, row, reuse_prefix))
    return out


def predictions(scores: Sequence[LabelScore]) -> list[str | None]:
    """The predicted labels, ready for `metrics.classification_summary(gold, pred)`."""
    return [s.label for s in scores]


def targets(scores: Sequence[LabelScore]) -> list[Any]:
    return [s.target for s in scores]


def summarize(scores: Sequence[LabelScore], labels: Sequence[str] | None = None, **kwargs: Any) -> Any:
    """`metrics.classification_summary` of scored rows (failed rows count as unparseable)."""
    from .metrics import classification_summary

    if labels is None:
        labels = next((list(s.probs) for s in scores if s.ok), None)
    return classification_summary(targets(scores), predictions(scores), labels, **kwargs)


def auc(scores: Sequence[LabelScore], positive: str) -> float:
    """ROC AUC of P(positive): whether the probabilities rank the rows well even when the argmax is constant."""
    from .metrics import roc_auc

    ok = [s for s in scores if s.ok]
    return roc_auc([s.target for s in ok], [s.prob(positive) for s in ok], positive=positive)


def scores_frame(scores: Sequence[LabelScore]) -> Any:
    """A DataFrame with one row per scored row: id, split, target, predicted label and p(label) columns."""
    import pandas as pd

    recs = []
    for s in scores:
        rec = {"row_id": s.row_id, "split": s.split, "target": s.target, "label": s.label, "correct": s.correct}
        rec.update({f"p({k})": v for k, v in s.probs.items()})
        rec["error"] = s.error
        recs.append(rec)
    return pd.DataFrame(recs)


# ---------------------------------------------------------------- runner-compatible form

_SPEC = re.compile(r"^(?P<model>.+?)\[(?P<labels>[^\[\]]+)\](?P<opts>(?:\+(?:mean|eos))*)$")


def scoring_model(model: str, labels: Sequence[str], *, normalize: str = "sum", end_of_answer: bool = False) -> str:
    """A model spec the runner can use like any other: its answers are the most likely label.

    `scoring_model("local:smollm2", ["Yes", "No"])` -> "score:smollm2[Yes|No]".
    """
    labels = check_labels(labels)
    _check_normalize(normalize)
    for lab in labels:
        if any(c in lab for c in "|[]+"):
            raise GraderError(f"label {lab!r} cannot be used in a scoring spec (it contains one of | [ ] +)")
    base = model[len("local:"):] if model.startswith("local:") else model
    if ":" in base and not base.startswith("/"):
        raise ModelSpecError(f"label scoring runs on local models only; got {model!r} (use e.g. 'local:smollm2')")
    opts = ("+mean" if normalize == "mean" else "") + ("+eos" if end_of_answer else "")
    return f"score:{base}[{'|'.join(labels)}]{opts}"


class ScoringProvider(Provider):
    """`score:<local model>[A|B|C]`: answers with the most likely label, its scores in `Completion.logprobs`."""

    name = "score"
    supports_logprobs = True

    def __init__(self, spec: ModelSpec) -> None:
        m = _SPEC.match(spec.model)
        if not m:
            raise ModelSpecError(
                f"scoring spec {str(spec)!r} must look like score:smollm2[Commit|Likely|At-Risk] "
                f"(optionally followed by +mean and/or +eos); build it with scoring_model(model, labels)"
            )
        self.labels = check_labels(m.group("labels").split("|"))
        opts = m.group("opts") or ""
        self.normalize = "mean" if "+mean" in opts else "sum"
        self.end_of_answer = "+eos" in opts
        super().__init__(ModelSpec("local", m.group("model")))
        self.spec = spec
        self._base_spec = f"local:{m.group('model')}"

    @property
    def base(self) -> Provider:
        """The local provider that holds the model (looked up on use: the registry is locked while we are built)."""
        return get_provider(self._base_spec)

    @property
    def cost_provider(self) -> str:
        return "local"

    async def _complete(self, request: Request) -> Completion:
        lm = self.base.loaded()
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            scores, tokens, n_in = await loop.run_in_executor(
                lm.executor, _score_on_thread, lm, request, self.labels, self.normalize, self.end_of_answer,
            )
        except PromptkitError as exc:
            kind = "context_length" if "context window" in str(exc) else "bad_request"
            return Completion(error_kind=kind, error=str(exc))
        best = max(self.labels, key=lambda lab: scores[lab])
        return Completion(
            text=request.prefill + best,
            input_tokens=n_in,
            output_tokens=0,
            latency_s=time.perf_counter() - t0,
            finish_reason="scored",
            logprobs=[TokenLogprob(token=best, logprob=scores[best], top=dict(scores))],
        )


register("score", ScoringProvider)


def label_probs(completion: Completion) -> dict[str, float]:
    """Per-label probabilities carried by a scoring completion (empty for an error or a generated answer)."""
    if not completion.ok or not completion.logprobs or completion.finish_reason != "scored":
        return {}
    return normalise(completion.logprobs[0].top)


def score_from_completion(completion: Completion, row_id: str | None = None, target: Any = None,
                          split: str | None = None) -> LabelScore:
    """A LabelScore rebuilt from a runner's scoring completion (for calibration and ROC AUC on run results)."""
    scores = dict(completion.logprobs[0].top) if label_probs(completion) else {}
    label = max(scores, key=scores.__getitem__) if scores else None
    return LabelScore(row_id, label, normalise(scores), scores, target=target, split=split,
                      error=None if scores else (completion.error or "not a scoring completion"))


