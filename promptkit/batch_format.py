"""The vendors' batch formats: a cell as a batch request line, a result line as the cell's answer.

OpenAI's batch JSONL (`openai_batch_lines`, `write_openai_batch`, `read_openai_batch`) is also the format of
`vllm run-batch`; Anthropic's Message Batches take the same params as a synchronous call. batch.py sends
these through the SDKs and keeps the ledger; this module only translates, so it can be read and tested apart.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .errors import ExperimentError, redact
from .types import Cell, Completion, prefill_used

if TYPE_CHECKING:  # pragma: no cover
    from .providers import Provider

OPENAI_ENDPOINT = "/v1/chat/completions"


# ---- request bodies ---------------------------------------------------------------------------

def openai_body(provider: "Provider", cell: Cell) -> dict[str, Any]:
    """The Chat Completions body of a cell, exactly as the synchronous call sends it (never streamed)."""
    return provider.params(replace(cell.request, stream=False))  # type: ignore[attr-defined]


def anthropic_params(provider: "Provider", cell: Cell) -> dict[str, Any]:
    """The Message Batches params of a cell, as the synchronous call sends them (never streamed)."""
    p = dict(provider.params(replace(cell.request, stream=False)))  # type: ignore[attr-defined]
    p.update(p.pop("extra_body", None) or {})
    return p


def openai_batch_lines(provider: "Provider", cells: Iterable[Cell]) -> Iterator[bytes]:
    """OpenAI batch JSONL lines (`custom_id` = cell key); `vllm run-batch -i` reads the same format."""
    for cell in cells:
        line = {"custom_id": cell.key, "method": "POST", "url": OPENAI_ENDPOINT, "body": openai_body(provider, cell)}
        yield json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"


def write_openai_batch(experiment: Any, path: str | os.PathLike[str], model: str | None = None) -> int:
    """Write an experiment's cells of one OpenAI-compatible model as batch JSONL (for `vllm run-batch`); returns lines."""
    from .providers import get_provider

    cells = experiment.expand()
    models = sorted({c.model for c in cells})
    model = model or (models[0] if len(models) == 1 else None)
    if model is None or model not in models:
        raise ExperimentError(f"write_openai_batch needs model= one of {models} (one model per batch file)")
    provider = get_provider(model)
    seen: set[str] = set()
    unique = [c for c in cells if c.model == model and not (c.key in seen or seen.add(c.key))]  # type: ignore[func-returns-value]
    with open(path, "wb") as f:
        for line in openai_batch_lines(provider, unique):
            f.write(line)
    return len(unique)


def read_openai_batch(experiment: Any, path: str | os.PathLike[str], model: str,
                      cache_backend: Any = None) -> dict[str, int]:
    """Store the answers of an OpenAI-format batch output file (OpenAI's, or `vllm run-batch -o`) in the cache.

    Lines are matched to the experiment's cells of `model` by `custom_id`; a later `pk.run(experiment)`
    answers them from the cache. Returns counts: stored, errors (not stored), unknown (no such cell).
    """
    from .cache import open_cache
    from .providers import get_provider

    store = cache_backend if cache_backend is not None and not isinstance(cache_backend, (str, os.PathLike)) \
        else open_cache(cache_backend)
    provider = get_provider(model)
    cells = {c.key: c for c in experiment.expand() if c.model == model}
    counts = {"stored": 0, "errors": 0, "unknown": 0}
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                raise ExperimentError(f"{path}, line {n}: not JSON (is this a batch output file?)") from None
            cell = cells.get(line.get("custom_id") if isinstance(line, dict) else None)
            if cell is None:
                counts["unknown"] += 1
                continue
            comp = openai_result(provider, cell, line)
            if comp is None or not comp.ok:
                counts["errors"] += 1
                continue
            store.put(cell.key, finish_answer(provider, cell, comp, 1.0))
            counts["stored"] += 1
    return counts


# ---- answers from result lines ----------------------------------------------------------------

def finish_answer(provider: "Provider", cell: Cell, comp: Completion, factor: float) -> Completion:
    """What Provider.complete does to an answer, at the batch price; batch calls have no per-call latency."""
    from .catalog import catalog

    comp.provider = comp.provider or provider.spec.provider
    comp.model = comp.model or provider.model
    comp.latency_s = None
    if comp.ok:
        comp.prefill = comp.prefill or prefill_used(cell.request, comp)
        cost = catalog().cost(provider.cost_provider, provider.model, comp.input_tokens, comp.output_tokens)
        comp.cost_usd = None if cost is None else cost * factor
    if comp.error:
        comp.error = redact(comp.error)
    return comp


def refusal(provider: "Provider", cell: Cell) -> Completion | None:
    """The error cell the provider would record without calling, e.g. an Anthropic temperature above 1."""
    if provider.spec.provider == "anthropic":
        from .providers.anthropic import MAX_TEMPERATURE

        t = cell.request.settings.temperature
        if t > MAX_TEMPERATURE:
            return error_completion("bad_request", f"Settings.temperature={t:g} is out of range for anthropic: Anthropic "
                                         f"accepts 0 to 1")
    return None


def error_completion(kind: str, message: str) -> Completion:
    """An error cell's answer: what went wrong, as data."""
    return Completion(error_kind=kind, error=message)


def openai_result(provider: "Provider", cell: Cell, line: dict[str, Any]) -> Completion | None:
    """A Completion from an OpenAI output/error line; None when the request was not run (expired, cancelled)."""
    from .providers._sdk import IncompleteReply, body_error_kind
    from .providers.base import classify_status

    resp = line.get("response")
    err = line.get("error")
    if resp is None:
        code = (err or {}).get("code") if isinstance(err, dict) else None
        if code in ("batch_expired", "batch_cancelled"):
            return None
        return error_completion("server", f"batch request failed: {(err or {}).get('message') or err!r}")
    status = resp.get("status_code")
    body = resp.get("body")
    if status != 200:
        msg = ((body or {}).get("error") or {}).get("message") if isinstance(body, dict) else None
        kind = classify_status(int(status), msg or "") if isinstance(status, int) else body_error_kind(body)
        return error_completion(kind, f"batch request failed with HTTP {status}: {msg or body!r}")
    try:  # the same reading as a plain call's decoded JSON
        return provider._answer(body, cell.request, time.perf_counter())  # type: ignore[attr-defined]
    except IncompleteReply as exc:
        return error_completion("malformed", f"the batch result is not a chat completion: {str(exc).splitlines()[0][:160]}")


def anthropic_result(provider: "Provider", cell: Cell, item: Any) -> Completion | None:
    """A Completion from an Anthropic result; None when the request was not run (expired, canceled)."""
    from .providers._sdk import IncompleteReply, body_error_kind
    from .providers.anthropic import completion_from_message

    result = item.result
    if result.type == "succeeded":
        try:
            return completion_from_message(result.message, cell.request.prefill.rstrip())
        except IncompleteReply as exc:
            return error_completion("malformed", str(exc))
    if result.type == "errored":
        inner = getattr(getattr(result, "error", None), "error", None)
        etype = getattr(inner, "type", None) or ""
        return error_completion(body_error_kind({"error": {"type": etype}}),
                      f"batch request failed: {etype}: {getattr(inner, 'message', '') or ''}".rstrip(": "))
    return None  # expired, canceled
