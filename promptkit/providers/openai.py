"""OpenAI Chat Completions, and every server that speaks it (Ollama, vLLM, LM Studio, ...).

Specs: `openai:gpt-4o-mini`, `ollama:llama3.2`, `vllm:<model>`, `lmstudio:<model>`,
or any compatible server as `openai:<model>@http://host:port/v1`. Where the
endpoint and key come from is data (`providers` in data/models.yaml):

- `openai:` reads what the SDK reads: OPENAI_API_KEY (required) and
  OPENAI_BASE_URL (optional), from the environment or a `.env` file.
- `ollama:` / `vllm:` / `lmstudio:` use their `base_url_env` (e.g. OLLAMA_BASE_URL)
  or `default_base_url`, and `key_env` or the placeholder `default_key`.
- `...@http://host/v1` uses that URL; a key is optional (OPENAI_API_KEY if set).

Calls are not streamed unless the request asks (`Request.stream`, from `stream=True`
in `pk.complete` / `pk.run`): a plain JSON reply costs less client CPU per call and
still gives latency, tokens and cost; time to first token is then None. A streamed
call (`stream_options.include_usage`) measures it, and is an answer only once the
server sends `data: [DONE]`: a stream cut before it is a `truncated` error cell. A
server that ignores `stream: true` and sends JSON is read as the JSON answer it is;
a reply that cannot be read is `malformed`. A server that sends no usage leaves the
token counts (and so the cost) unknown.
Prefill: Chat Completions has no native prefill, so it is sent as a trailing
assistant message; OpenAI's models usually continue it, some compatible servers
(vLLM, llama.cpp) continue it exactly. Completion.text is prefill + the reply.
Retries are the runner's job: the client is built with max_retries=0.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from ..catalog import catalog
from ..config import Secret, env, load_env, require_key
from ..errors import MissingKeyError, redact, require
from ..types import Completion, Request, TokenLogprob
from ._sdk import IncompleteReply, LoopClients, PicklesWithoutClients, classify_sdk_error, is_event_stream, key_hint, timeout_s
from .base import ModelSpec, Provider

SELF_HOSTED_KEY = "not-needed"  # the SDK refuses an empty key; self-hosted servers ignore it
PROBE_TIMEOUT_S = 0.5

_BEARER: dict[str, Any] = {"security": {"bearer_auth": True}}  # what create() asks of the client: the key as a bearer token
FINISH = {"stop": "stop", "length": "length", "content_filter": "content_filter",
          "tool_calls": "tool_calls", "function_call": "tool_calls"}


def _openai() -> Any:
    return require("openai", "the openai provider needs the openai package: pip install 'openai>=3.51'")


@dataclass(frozen=True)
class Endpoint:
    """Where calls go and with which key (repr never shows the key)."""

    base_url: str | None  # None: the SDK's default, https://api.openai.com/v1
    key: Secret
    key_source: str  # the variable the key came from, or a note that none is needed
    base_url_env: str | None = None  # the variable that moves the endpoint

    def __repr__(self) -> str:
        return f"Endpoint(base_url={self.base_url!r}, key from {self.key_source})"

    @property
    def api_key(self) -> str:
        return self.key.reveal()


def resolve_endpoint(spec: ModelSpec) -> Endpoint:
    """Base URL and key for `spec` from models.yaml + environment; MissingKeyError names the variable."""
    load_env()
    cfg = catalog().providers.get(spec.provider) or {}
    key_env = cfg.get("key_env")
    base_env = cfg.get("base_url_env")
    base_url = spec.base_url or (env(base_env) if base_env else None) or cfg.get("default_base_url")
    if key_env and env(key_env):
        return Endpoint(base_url, Secret(env(key_env) or "", key_env), key_env, base_env)
    if cfg.get("default_key"):
        return Endpoint(base_url, Secret(str(cfg["default_key"]), "no key needed", register=False), "no key needed",
                        base_env)
    if spec.base_url:
        return Endpoint(base_url, Secret(SELF_HOSTED_KEY, "no key needed", register=False), "no key needed", base_env)
    var = key_env or "OPENAI_API_KEY"
    return Endpoint(base_url, Secret(require_key(var, spec.provider), var), var, base_env)


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


class OpenAIProvider(PicklesWithoutClients, Provider):
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

    def hint(self, kind: str) -> str:
        """What to do about a failure that is the setup's, not the server's moment."""
        where = self.endpoint.base_url or "https://api.openai.com/v1"
        if kind == "connection":
            fix = f"start the server or set {self.endpoint.base_url_env}" if self.endpoint.base_url_env else (
                "start the server or fix the URL in the model spec" if self.spec.base_url else "check the network")
            return f" (no complete answer from {where}; if nothing listens there, {fix})"
        if kind == "auth":
            return f" ({where} refused the key from {self.endpoint.key_source}: check it)"
        return ""

    def params(self, request: Request) -> dict[str, Any]:
        """The Chat Completions arguments for `request` (prefill as a trailing assistant message)."""
        s = request.settings
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.prefill:
            messages.append({"role": "assistant", "content": request.prefill})
        p: dict[str, Any] = {
            "model": self.model, "messages": messages, "temperature": s.temperature, "top_p": s.top_p,
            "max_tokens": s.max_tokens,
        }
        if request.stream:
            p["stream"] = True
            p["stream_options"] = {"include_usage": True}
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
        if not request.stream:
            # The SDK's own request path (auth, headers, timeout, errors) without
            # `create()`, which walks every call's arguments against its TypedDicts again: ours are plain JSON
            # already, and that walk was a quarter of the client's CPU per call (issue 19).
            # `cast_to=object` is the SDK's own way to hand back the decoded JSON: building its ChatCompletion
            # model from it (a dozen nested objects) was another tenth of the CPU per call, for five fields.
            reply = await client.post("/chat/completions", body=self.params(request), options=_BEARER,
                                      cast_to=object)
            return self._answer(reply, request, t0)
        raw = await client.chat.completions.with_raw_response.create(**self.params(request))
        response = raw.http_response
        try:
            if not is_event_stream(response.headers):  # the server ignored `stream`: its JSON is the answer
                return self._answer(_parse_json(await response.aread()), request, t0)
            return await self._read_stream(response, request, t0)
        finally:
            await response.aclose()

    def _answer(self, reply: Any, request: Request, t0: float) -> Completion:
        """A non-streamed chat completion (its decoded JSON) as a Completion; anything else is `malformed`."""
        try:
            choice = next(c for c in reply["choices"] if c.get("index", 0) == 0)
            text = choice["message"].get("content") or ""
            finish = choice.get("finish_reason")
            usage = reply.get("usage")
            lp = (choice.get("logprobs") or {}).get("content")
            if not isinstance(text, str):
                raise TypeError
        except (AttributeError, TypeError, KeyError, StopIteration) as exc:
            what = f"text {reply[:80]!r}" if isinstance(reply, str) else type(exc).__name__
            raise IncompleteReply("malformed", f"the reply is not a chat completion ({what})") from None
        if not isinstance(usage, dict):  # some compatible servers send none: tokens and cost stay unknown
            usage = {}
        return Completion(
            text=request.prefill + text,
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            latency_s=time.perf_counter() - t0,
            ttft_s=None,  # not measured without streaming
            finish_reason=FINISH.get(finish, finish) if finish else None,
            logprobs=[_token_logprob(t) for t in (lp or [])]
            if (request.settings.logprobs or request.settings.top_logprobs) else None,
        )

    async def _read_stream(self, response: Any, request: Request, t0: float) -> Completion:
        """Read server-sent chunks until `[DONE]`; a stream that ends without it is `truncated`."""
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        ttft = finish = usage = None
        done = False
        data: list[str] = []

        def event(payload: str) -> None:
            nonlocal ttft, finish, usage, done
            if payload.startswith("[DONE]"):
                done = True
                return
            if done:
                return
            try:
                chunk = json.loads(payload)
            except ValueError:
                raise IncompleteReply("malformed", f"a streamed chunk is not JSON: {payload[:80]!r}") from None
            if not isinstance(chunk, dict):
                raise IncompleteReply("malformed", f"a streamed chunk is not a JSON object: {payload[:80]!r}")
            if chunk.get("error"):
                err = chunk["error"]
                msg = err.get("message") if isinstance(err, dict) else None
                raise _openai().APIError(msg or "An error occurred during streaming", request=response.request,
                                         body=err)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    parts.append(text)
                lp = choice.get("logprobs")
                if lp and lp.get("content"):
                    logprobs.extend(_token_logprob(t) for t in lp["content"])
                if choice.get("finish_reason"):
                    finish = FINISH.get(choice["finish_reason"], choice["finish_reason"])

        async for line in response.aiter_lines():  # server-sent events: `data:` lines, a blank line ends one
            if not line:
                if data:
                    event("\n".join(data))
                    data = []
            elif line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
        if data:
            event("\n".join(data))
        if not done:
            raise IncompleteReply("truncated", f"the stream ended without its [DONE] terminator after "
                                               f"{len(''.join(parts))} characters: the answer may be cut short")
        if not isinstance(usage, dict):
            usage = {}
        return Completion(
            text=request.prefill + "".join(parts),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
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


def _token_logprob(t: dict[str, Any]) -> TokenLogprob:
    return TokenLogprob(token=t["token"], logprob=float(t["logprob"]),
                        top={a["token"]: float(a["logprob"]) for a in (t.get("top_logprobs") or [])})


def _parse_json(body: bytes) -> Any:
    """A JSON body decoded, or `malformed` saying what was wrong with it."""
    try:
        return json.loads(body)
    except ValueError as exc:
        raise IncompleteReply("malformed", f"the reply is not readable JSON: {str(exc).splitlines()[0][:160]}") from None
