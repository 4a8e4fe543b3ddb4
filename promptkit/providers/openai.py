"""OpenAI Chat Completions, and every server that speaks it (Ollama, vLLM, LM Studio, ...).

Specs: `openai:gpt-4o-mini`, `ollama:llama3.2`, `vllm:<model>`, `lmstudio:<model>`,
or any compatible server as `openai:<model>@http://host:port/v1`. Where the
endpoint and key come from is data (`providers` in data/models.yaml):

- `openai:` reads what the SDK reads: OPENAI_API_KEY (required) and
  OPENAI_BASE_URL (optional), from the environment or a `.env` file.
- `ollama:` / `vllm:` / `lmstudio:` use their `base_url_env` (e.g. OLLAMA_BASE_URL)
  or `default_base_url`, and `key_env` or the placeholder `default_key`.
- `...@http://host/v1` uses that URL; a key is optional (OPENAI_API_KEY if set).

Calls stream (`stream_options.include_usage`) so time to first token is measured;
a server that sends no usage leaves the token counts (and so the cost) unknown.
Prefill: Chat Completions has no native prefill, so it is sent as a trailing
assistant message; OpenAI's models usually continue it, some compatible servers
(vLLM, llama.cpp) continue it exactly. Completion.text is prefill + the reply.
Retries are the runner's job: the client is built with max_retries=0.
"""
from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..catalog import catalog
from ..config import env, load_env, require_key
from ..errors import MissingKeyError, MissingPackageError, redact
from ..types import Completion, Request, TokenLogprob
from ._sdk import LoopClients, classify_sdk_error, key_hint, timeout_s
from .base import ModelSpec, Provider

SELF_HOSTED_KEY = "not-needed"  # the SDK refuses an empty key; self-hosted servers ignore it
PROBE_TIMEOUT_S = 0.5

FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter",
          "tool_calls": "tool_calls", "function_call": "tool_calls"}


def _openai() -> Any:
    try:
        import openai
    except ImportError as exc:  # pragma: no cover - core dependency
        raise MissingPackageError("the openai provider needs the openai package: pip install 'openai>=3.51'") from exc
    return openai


@dataclass(frozen=True)
class Endpoint:
    """Where calls go and with which key (repr never shows the key)."""

    base_url: str | None  # None: the SDK's default, https://api.openai.com/v1
    api_key: str
    key_source: str  # the variable the key came from, or a note that none is needed

    def __repr__(self) -> str:
        return f"Endpoint(base_url={self.base_url!r}, key from {self.key_source})"


def resolve_endpoint(spec: ModelSpec) -> Endpoint:
    """Base URL and key for `spec` from models.yaml + environment; MissingKeyError names the variable."""
    load_env()
    cfg = catalog().providers.get(spec.provider) or {}
    key_env = cfg.get("key_env")
    base_env = cfg.get("base_url_env")
    base_url = spec.base_url or (env(base_env) if base_env else None) or cfg.get("default_base_url")
    if key_env and env(key_env):
        return Endpoint(base_url, env(key_env) or "", key_env)
    if cfg.get("default_key"):
        return Endpoint(base_url, str(cfg["default_key"]), "no key needed")
    if spec.base_url:
        return Endpoint(base_url, SELF_HOSTED_KEY, "no key needed")
    return Endpoint(base_url, require_key(key_env or "OPENAI_API_KEY", spec.provider), key_env or "OPENAI_API_KEY")


def probe(base_url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if an OpenAI-compatible server answers GET /models at `base_url`, else why not."""
    url = base_url.rstrip("/") + "/models"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read(1)
        return None
    except urllib.error.HTTPError as exc:  # it answers; /models may need a key or not exist
        return None if exc.code in (401, 403, 404) else f"HTTP {exc.code}"
    except Exception as exc:
        return redact(f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")


class OpenAIProvider(Provider):
    """Chat Completions through the official async client, one client per event loop."""

    name = "openai"
    supports_logprobs = True

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.endpoint = resolve_endpoint(spec)
        self.timeout_s = timeout_s()
        self._clients: LoopClients[Any] = LoopClients(self._make_client)

    def __repr__(self) -> str:
        return f"OpenAIProvider({self.label!r}, {self.endpoint!r})"

    def _make_client(self) -> Any:
        return _openai().AsyncOpenAI(
            api_key=self.endpoint.api_key, base_url=self.endpoint.base_url,
            max_retries=0, timeout=self.timeout_s,
        )

    def params(self, request: Request) -> dict[str, Any]:
        """The Chat Completions arguments for `request` (prefill as a trailing assistant message)."""
        s = request.settings
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.prefill:
            messages.append({"role": "assistant", "content": request.prefill})
        p: dict[str, Any] = {
            "model": self.model, "messages": messages, "temperature": s.temperature, "top_p": s.top_p,
            "max_tokens": s.max_tokens, "stream": True, "stream_options": {"include_usage": True},
        }
        if s.stop:
            p["stop"] = list(s.stop)
        if s.seed is not None:
            p["seed"] = s.seed
        if s.logprobs or s.top_logprobs:
            p["logprobs"] = True
            if s.top_logprobs:
                p["top_logprobs"] = s.top_logprobs
        return p

    async def _complete(self, request: Request) -> Completion:
        client = await self._clients.get()
        t0 = time.perf_counter()
        stream = await client.chat.completions.create(**self.params(request))
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        ttft = finish = usage = None
        try:
            async for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                for choice in chunk.choices or []:
                    if choice.index != 0:
                        continue
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        parts.append(text)
                    if choice.logprobs is not None and choice.logprobs.content:
                        logprobs.extend(_token_logprob(t) for t in choice.logprobs.content)
                    if choice.finish_reason:
                        finish = FINISH.get(choice.finish_reason, choice.finish_reason)
        finally:
            await stream.close()
        return Completion(
            text=request.prefill + "".join(parts),
            input_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "completion_tokens", None),
            latency_s=time.perf_counter() - t0,
            ttft_s=ttft,
            finish_reason=finish,
            logprobs=logprobs if (request.settings.logprobs or request.settings.top_logprobs) else None,
        )

    def classify(self, exc: BaseException) -> tuple[str, float | None]:
        got = classify_sdk_error(exc, _openai())
        return got if got is not None else super().classify(exc)

    @classmethod
    def status(cls, spec: ModelSpec) -> tuple[bool, str]:
        """Ready or not, and why; names variables, never their values."""
        cfg = catalog().providers.get(spec.provider) or {}
        try:
            ep = resolve_endpoint(spec)
        except MissingKeyError:
            return False, key_hint(cfg.get("key_env") or "OPENAI_API_KEY")
        self_hosted = spec.base_url is not None or cfg.get("via") == "openai"
        where = ep.base_url or "https://api.openai.com/v1"
        if not self_hosted:
            return True, f"key from {ep.key_source}; endpoint {where}"
        why_not = probe(where)
        if why_not is None:
            return True, f"server answers at {where}"
        fix = f"start the server or set {cfg['base_url_env']}" if cfg.get("base_url_env") else "start the server"
        return False, f"no server at {where} ({why_not}); {fix}"

    async def aclose(self) -> None:
        await self._clients.aclose()


def _token_logprob(t: Any) -> TokenLogprob:
    return TokenLogprob(token=t.token, logprob=float(t.logprob),
                        top={a.token: float(a.logprob) for a in (t.top_logprobs or [])})
