"""Local GGUF models run in-process with llama-cpp-python.

A model file is loaded once per process and shared; each loaded model has one
worker thread, so calls run one at a time without blocking the event loop
(API calls in the same run go on in parallel). The model's own chat template
(from the GGUF metadata) turns messages into its prompt, and a prefill is
appended after the assistant header so the model continues it.
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import catalog
from ..errors import MissingPackageError, PromptkitError
from ..local_models import gguf_path
from ..types import Completion, Request, TokenLogprob
from .base import ModelSpec, Provider

DEFAULT_N_CTX = 4096
DEFAULT_N_CTX_LOGITS = 1024  # logits_all keeps n_ctx x vocab floats: 1024 x 49k x 4 B = 200 MB for SmolLM2


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - core dependency
        raise MissingPackageError(
            "the local provider needs llama-cpp-python: pip install 'llama-cpp-python>=0.3.36'"
        ) from exc
    return llama_cpp


@dataclass
class LoadedModel:
    """One llama.cpp model in memory, with the single thread that may use it."""

    path: Path
    llm: Any
    n_ctx: int
    logits_all: bool
    formatter: Any
    load_s: float
    executor: concurrent.futures.ThreadPoolExecutor = field(repr=False)
    grammars: dict[str, Any] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def render(self, request: Request) -> str:
        """The model's chat template applied to the request, ending where the model should continue."""
        msgs = [{"role": m.role, "content": m.content} for m in request.messages]
        prompt = self.formatter(messages=msgs).prompt
        return prompt + request.prefill

    def tokenize(self, text: str) -> list[int]:
        toks = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        bos = self.llm.token_bos()
        if self.llm._model.add_bos_token() and bos >= 0 and (not toks or toks[0] != bos):
            toks = [bos] + toks
        return toks

    def grammar(self, gbnf: str) -> Any:
        g = self.grammars.get(gbnf)
        if g is None:
            g = _llama_cpp().LlamaGrammar.from_string(gbnf, verbose=False)
            self.grammars[gbnf] = g
        return g


_LOADED: dict[tuple[str, bool], LoadedModel] = {}
_LOAD_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Free models before interpreter shutdown (llama-cpp's own finaliser fails once its globals are gone)."""
    for lm in list(_LOADED.values()):
        lm.executor.shutdown(wait=True, cancel_futures=True)
        try:
            lm.llm.close()
        except Exception:
            pass
    _LOADED.clear()


def load_model(path: Path, n_ctx: int = DEFAULT_N_CTX, logits_all: bool = False) -> LoadedModel:
    """Load `path` once per process (a second load with the same options returns the same model)."""
    key = (str(path), logits_all)
    with _LOAD_LOCK:
        lm = _LOADED.get(key)
        if lm is not None:
            return lm
        lc = _llama_cpp()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        t0 = time.perf_counter()
        llm = lc.Llama(
            model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, verbose=False,
            n_threads=max(1, os.cpu_count() or 1), seed=0,
        )
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise PromptkitError(f"{path} has no chat template in its GGUF metadata (tokenizer.chat_template)")

        def tok_text(i: int) -> str:
            return llm.detokenize([i], special=True).decode("utf-8", "ignore") if i >= 0 else ""

        formatter = Jinja2ChatFormatter(
            template=template, eos_token=tok_text(llm.token_eos()), bos_token=tok_text(llm.token_bos()),
        )
        lm = LoadedModel(
            path=path, llm=llm, n_ctx=n_ctx, logits_all=logits_all, formatter=formatter,
            load_s=time.perf_counter() - t0,
            executor=concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"promptkit-{path.stem}"),
        )
        _LOADED[key] = lm
        return lm


class LocalProvider(Provider):
    """`local:smollm2` (default), `local:<catalog name>` or `local:/path/to/model.gguf`."""

    name = "local"
    supports_logprobs = True

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.info = None if ("/" in spec.model or spec.model.endswith(".gguf")) else catalog().local_model(spec.model)
        self.path = gguf_path(spec.model)
        self.n_ctx = self.info.n_ctx if self.info else DEFAULT_N_CTX
        self.n_ctx_logits = int(self.info.raw.get("n_ctx_logits", DEFAULT_N_CTX_LOGITS)) if self.info else DEFAULT_N_CTX_LOGITS

    def loaded(self, logits: bool = False) -> LoadedModel:
        """The shared in-memory model; `logits=True` loads the variant that keeps every token's logits."""
        return load_model(self.path, self.n_ctx_logits if logits else self.n_ctx, logits_all=logits)

    async def _complete(self, request: Request) -> Completion:
        lm = self.loaded(logits=request.settings.logprobs)
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(lm.executor, self._generate, lm, request, cancel)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancel.set()  # the worker stops at its next token; the model is free for the next call
            raise

    def _generate(self, lm: LoadedModel, request: Request, cancel: threading.Event) -> Completion:
        lc = _llama_cpp()
        s = request.settings
        t0 = time.perf_counter()
        prompt = lm.render(request)
        tokens = lm.tokenize(prompt)
        if len(tokens) + 1 > lm.n_ctx:
            return Completion(
                error_kind="context_length",
                error=f"the prompt is {len(tokens)} tokens but {self.label} is loaded with a context window "
                      f"of {lm.n_ctx} tokens; shorten the input or the few-shot examples",
                input_tokens=len(tokens),
            )
        first: list[float] = []

        def stop_when(_ids: Any, _logits: Any) -> bool:
            if not first:
                first.append(time.perf_counter())
            return cancel.is_set()

        kwargs: dict[str, Any] = dict(
            max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, top_k=0, min_p=0.0,
            repeat_penalty=1.0, stop=list(s.stop), seed=s.seed if s.seed is not None else int(time.time_ns() % 2**31),
            stopping_criteria=lc.StoppingCriteriaList([stop_when]),
        )
        if s.logprobs:
            kwargs["logprobs"] = max(1, s.top_logprobs)
        if s.grammar:
            kwargs["grammar"] = lm.grammar(s.grammar)
        with lm.lock:
            out = lm.llm.create_completion(tokens, **kwargs)
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        return Completion(
            text=request.prefill + choice["text"],
            input_tokens=usage.get("prompt_tokens", len(tokens)),
            output_tokens=usage.get("completion_tokens"),
            latency_s=time.perf_counter() - t0,
            ttft_s=(first[0] - t0) if first else None,
            finish_reason="cancelled" if cancel.is_set() else choice.get("finish_reason"),
            logprobs=_logprobs(choice.get("logprobs")) if s.logprobs else None,
        )

    @classmethod
    def status(cls, spec: ModelSpec) -> tuple[bool, str]:
        try:
            path = gguf_path(spec.model)
        except PromptkitError as exc:
            return False, str(exc)
        try:
            _llama_cpp()
        except PromptkitError as exc:
            return False, str(exc)
        return True, f"ready ({path.name}, {path.stat().st_size / 1e6:.0f} MB)"


def _logprobs(lp: dict[str, Any] | None) -> list[TokenLogprob] | None:
    if not lp:
        return None
    tops = lp.get("top_logprobs") or [None] * len(lp["tokens"])
    return [
        TokenLogprob(token=t, logprob=float(l) if l is not None else float("nan"),
                     top={k: float(v) for k, v in (top or {}).items()})
        for t, l, top in zip(lp["tokens"], lp["token_logprobs"], tops)
    ]
