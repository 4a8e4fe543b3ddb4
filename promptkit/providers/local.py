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
from typing import Any, Sequence

from ..catalog import catalog
from ..cpu import ThreadPlan, thread_plan, warn_if_spinning
from ..errors import PromptkitError, SettingsError, require
from ..local_models import gguf_path
from ..types import Completion, Request, TokenLogprob
from .base import ModelSpec, Provider

DEFAULT_N_CTX = 4096  # for a GGUF given by path; catalog models name their own n_ctx in models.yaml
DEFAULT_N_CTX_LOGITS = 1024  # logits_all keeps n_ctx x vocab floats: 1024 x 49k x 4 B = 200 MB for SmolLM2


def _llama_cpp() -> Any:
    return require("llama_cpp", "the local provider needs llama-cpp-python: pip install 'llama-cpp-python>=0.3.36'")


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
    threads: ThreadPlan | None = field(default=None, repr=False)  # how many threads llama.cpp runs, and why
    grammars: dict[str, Any] = field(default_factory=dict, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _scored: list[int] | None = field(default=None, repr=False)  # prompt tokens continuation_logprobs left in the cache

    def kv_mb(self, n_ctx: int | None = None) -> float | None:
        """Memory the KV cache takes for a window of `n_ctx` tokens (f16 keys and values), from the GGUF metadata."""
        md = getattr(self.llm, "metadata", None) or {}
        arch = md.get("general.architecture")
        try:
            layers = int(md[f"{arch}.block_count"])
            embd, heads = int(md[f"{arch}.embedding_length"]), int(md[f"{arch}.attention.head_count"])
            kv_heads = int(md.get(f"{arch}.attention.head_count_kv", heads))
            head_dim = int(md.get(f"{arch}.attention.key_length", embd // heads))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None
        return 2 * layers * kv_heads * head_dim * 2 * (n_ctx or self.n_ctx) / 1e6

    def trained_ctx(self) -> int | None:
        """The context length the model was trained with (GGUF metadata), the most a window should be."""
        md = getattr(self.llm, "metadata", None) or {}
        try:
            return int(md[f"{md.get('general.architecture')}.context_length"])
        except (KeyError, TypeError, ValueError):
            return None

    def too_long(self, label: str, n_tokens: int, what: str = "the prompt") -> str:
        """Why a prompt does not fit, naming the window (ours, not the model's limit) and how to raise it."""
        trained = self.trained_ctx()
        msg = (f"{what} is {n_tokens} tokens but {label} runs with a context window of n_ctx={self.n_ctx} tokens "
               f"(Settings.n_ctx; the default is the model's n_ctx in models.yaml)")
        if trained and n_tokens < trained and trained > self.n_ctx:
            want = min(trained, 1 << (n_tokens + 256).bit_length())
            extra = self.kv_mb(want)
            cost = f", about {extra - (self.kv_mb() or 0):.0f} MB more memory" if extra is not None else ""
            return (msg + f"; the model supports {trained}: raise it with Settings(n_ctx={want}) "
                    f"(YAML settings: n_ctx: {want}{cost}), or shorten the input or the few-shot examples")
        if trained and n_tokens >= trained:
            return msg + f"; that is more than the model's own limit of {trained} tokens: shorten the input or the few-shot examples"
        return msg + "; shorten the input or the few-shot examples"

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

    def continuation_logprobs(
        self, context: str, continuations: Sequence[str], *, append_eos: bool = False, reuse_prefix: bool = False,
    ) -> list[list[tuple[str, float]]]:
        """Per-token log-probabilities of each continuation after `context`, the context evaluated once.

        The context is decoded once; each continuation is then decoded in one
        batch after it (with the context's last token, so no decode holds a
        lone token) with logits kept for its positions, and dropped from the
        cache afterwards. Spaces at the end of the context move to the start of
        the continuation, where the tokenizer expects them (" Commit" is one
        token, " " + "Commit" an unusual two).

        llama.cpp's numbers depend slightly on how tokens are batched: a lone
        token takes another kernel (up to ~0.1 nats apart on SmolLM2), and on
        the Qwen Q4_K_M files any change of batch size moves log-probabilities
        by ~0.01-0.05 nats. So by default the context is decoded from position
        0 in fixed chunks and a score depends only on its prompt.
        `reuse_prefix=True` keeps the prefix shared with the previous call in
        the cache (faster for long few-shot prompts) at the price of scores
        that can depend on the order of calls. Must run on `executor` while
        holding `lock`.
        """
        import numpy as np

        lc = _llama_cpp()
        llm = self.llm
        stripped = context.rstrip(" ")
        lead = context[len(stripped):]
        ctx_tokens = self.tokenize(stripped)
        conts = [self._continuation_tokens(stripped, ctx_tokens, lead + c) for c in continuations]
        if append_eos:
            conts = [t + [llm.token_eos()] for t in conts]
        n = len(ctx_tokens)
        longest = max((len(t) for t in conts), default=0)
        if n + longest > self.n_ctx:
            raise PromptkitError(self.too_long(self.path.stem, n + longest, "the prompt with its longest continuation"))
        n_vocab = llm.n_vocab()

        def log_softmax(i: int) -> Any:
            x = np.ctypeslib.as_array(lc.llama_get_logits_ith(llm._ctx.ctx, i), shape=(n_vocab,)).astype(np.float64)
            m = x.max()
            return x - (m + np.log(np.exp(x - m).sum()))

        # reuse only a prefix this method decoded itself, and only if nothing has run on the model since
        common = 0
        prev = self._scored
        if reuse_prefix and prev is not None and llm.n_tokens == max(0, len(prev) - 2) and \
                llm.input_ids[: llm.n_tokens].tolist() == prev[: llm.n_tokens]:
            for a, b in zip(prev, ctx_tokens):
                if a != b:
                    break
                common += 1
        self._scored = None
        start = max(0, min(common, llm.n_tokens, n - 2))  # the cache holds only llm.n_tokens positions
        llm.n_tokens = start
        i = start
        while i < n:  # llm.eval would leave a lone last token when n - start = n_batch + 1
            j = min(n, i + llm.n_batch)
            if n - j == 1:
                j -= 1
            llm.eval(ctx_tokens[i:j])
            i = j
        first = log_softmax(-1)
        out = []
        try:
            for toks in conts:
                lps = [float(first[toks[0]])]
                if len(toks) > 1:
                    # the prompt's last token again, then the label's: a batch of at least two
                    llm._ctx.kv_cache_seq_rm(-1, n - 1, -1)
                    llm._batch.set_batch([ctx_tokens[-1]] + toks[:-1], n_past=n - 1, logits_all=True)
                    llm._ctx.decode(llm._batch)
                    lps += [float(log_softmax(k)[t]) for k, t in enumerate(toks[1:], start=1)]
                out.append([(self.token_text(t), lp) for t, lp in zip(toks, lps)])
        finally:
            # the last logits now belong to a continuation: the next call re-decodes the prompt's last two tokens
            keep = max(0, n - 2)
            llm._ctx.kv_cache_seq_rm(-1, keep, -1)
            llm.n_tokens = keep
        self._scored = ctx_tokens
        return out

    def _continuation_tokens(self, context: str, ctx_tokens: list[int], cont: str) -> list[int]:
        """Tokens of `cont` as the model would write them after `context` (tokenized together when they split cleanly)."""
        if not cont:
            raise PromptkitError("cannot score an empty continuation (a label must have at least one character)")
        full = self.tokenize(context + cont)
        if len(full) > len(ctx_tokens) and full[: len(ctx_tokens)] == ctx_tokens:
            return full[len(ctx_tokens):]
        return self.llm.tokenize(cont.encode("utf-8"), add_bos=False, special=False)

    def token_text(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", "replace")

    def grammar(self, gbnf: str) -> Any:
        """The parsed grammar; raises SettingsError for GBNF llama.cpp rejects (it would crash the process later)."""
        g = self.grammars.get(gbnf)
        if g is None:
            lc = _llama_cpp()
            probe = lc.llama_sampler_init_grammar(self.llm._model.vocab, gbnf.encode("utf-8"), b"root")
            if not probe:
                first = gbnf.strip().splitlines()[0][:80] if gbnf.strip() else ""
                raise SettingsError(
                    f"Settings.grammar is not valid GBNF with a 'root' rule (llama.cpp printed the reason on stderr); "
                    f"it starts {first!r}. Build grammars with promptkit.grammars.label_grammar or json_grammar"
                )
            lc.llama_sampler_free(probe)
            g = lc.LlamaGrammar.from_string(gbnf, verbose=False)
            self.grammars[gbnf] = g
        return g


_LOADED: dict[tuple[str, bool, int], LoadedModel] = {}
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
    """Load `path` once per process (a second load with the same options returns the same model).

    Each context window is its own load: its KV cache is sized when the model is created.
    """
    key = (str(path), logits_all, int(n_ctx))
    with _LOAD_LOCK:
        lm = _LOADED.get(key)
        if lm is not None:
            return lm
        lc = _llama_cpp()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        plan = thread_plan(check=True)  # llama_cpp is loaded now: ask its OpenMP runtime whether it spins
        warn_if_spinning(plan)
        t0 = time.perf_counter()
        llm = lc.Llama(  # n_threads_batch too: llama-cpp-python would otherwise use every core for prompts
            model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, verbose=False,
            n_threads=plan.decode_threads, n_threads_batch=plan.threads, seed=0,
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
            load_s=time.perf_counter() - t0, threads=plan,
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

    def loaded(self, logits: bool = False, n_ctx: int | None = None) -> LoadedModel:
        """The shared in-memory model; `logits=True` loads the variant that keeps every token's logits.

        `n_ctx` (Settings.n_ctx) overrides the window; by default the catalog's n_ctx (n_ctx_logits with logits).
        """
        return load_model(self.path, n_ctx or (self.n_ctx_logits if logits else self.n_ctx), logits_all=logits)

    async def _complete(self, request: Request) -> Completion:
        window = request.settings.n_ctx
        limit = self.info.context_length if self.info else None
        if window is not None and limit and window > limit:
            return Completion(error_kind="bad_request",
                              error=f"Settings.n_ctx={window} is more than {self.label} supports ({limit} tokens, "
                                    f"context_length in models.yaml); use n_ctx={limit} or less")
        lm = self.loaded(logits=request.settings.logprobs, n_ctx=window)
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
            return Completion(error_kind="context_length", error=lm.too_long(self.label, len(tokens)),
                              input_tokens=len(tokens))
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
            try:
                kwargs["grammar"] = lm.grammar(s.grammar)
            except SettingsError as exc:
                return Completion(error_kind="bad_request", error=str(exc), input_tokens=len(tokens))
        with lm.lock:
            # Evaluate every prompt from position 0: reusing a cached prefix changes how tokens are
            # batched, which moves llama.cpp's logits enough to flip greedy answers (measured: 1 of 6
            # renewal-tier rows answered differently when the rows ran in another order).
            lm.llm.reset()
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
        """Ready when the GGUF file is on disk or its chunk packages can be joined; never joins here."""
        from ..local_models import status as local_status

        if "/" in spec.model or spec.model.endswith(".gguf"):
            try:
                path = gguf_path(spec.model)
            except PromptkitError as exc:
                return False, str(exc)
            return True, f"ready ({path.name}, {path.stat().st_size / 1e6:.0f} MB)"
        try:
            st = local_status(catalog().local_model(spec.model))
        except PromptkitError as exc:
            return False, str(exc)
        if st.path is not None:
            return True, f"ready ({st.path.name}, {st.path.stat().st_size / 1e6:.0f} MB)"
        return st.ready, st.state


def _logprobs(lp: dict[str, Any] | None) -> list[TokenLogprob] | None:
    if not lp:
        return None
    tops = lp.get("top_logprobs") or [None] * len(lp["tokens"])
    return [
        TokenLogprob(token=t, logprob=float(l) if l is not None else float("nan"),
                     top={k: float(v) for k, v in (top or {}).items()})
        for t, l, top in zip(lp["tokens"], lp["token_logprobs"], tops)
    ]
