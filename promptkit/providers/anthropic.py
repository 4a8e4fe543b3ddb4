"""Anthropic Messages API through the official async client.

`anthropic:claude-haiku-4-5` (aliases from data/models.yaml). The key comes
from ANTHROPIC_API_KEY and the endpoint from ANTHROPIC_BASE_URL (environment
or `.env`), as the SDK reads them; `anthropic:<model>@http://host` overrides
the endpoint. How settings map:

- system turns -> `system=`; user/assistant turns -> `messages`.
- prefill -> a trailing assistant turn, which Claude continues natively.
  The API rejects a final assistant turn ending in whitespace, so trailing
  whitespace is stripped from the prefill; Completion.text = that prefill + the reply.
- stop -> `stop_sequences`; max_tokens as is.
- temperature / top_p: SDK 2.x sends API version 2026-10-21, under which current
  Claude models take no sampling parameters (the SDK removed the keywords), so by
  default they are NOT sent and Claude samples at its own default: repeated calls
  can differ even when Settings.temperature is 0. `sampling: send` in the
  `providers.anthropic` section of models.yaml (with `api_version: "2023-06-01"`
  for older models) sends temperature, and top_p when it is not 1.0, via
  `extra_body`. Either way Anthropic's range is 0..1, so a higher temperature is
  recorded as a `bad_request` error completion naming Settings.temperature (no call is made).
- seed: ignored (the API has no seed; repeated calls can differ even at 0).
- logprobs: the Messages API does not return them; Completion.logprobs stays None.
Calls are not streamed unless the request asks (`Request.stream`, from `stream=True`
in `pk.complete` / `pk.run`); a plain reply still gives latency, tokens and cost, and
time to first token is then None. A streamed call measures it, takes tokens from the
message_start and message_delta usage, and is an answer only once `message_stop`
arrives: a stream cut before it is a `truncated` error cell. A server that ignores
`stream: true` and sends JSON is read as the JSON message it is; a reply that cannot
be read is `malformed`. 529 is recorded as `overloaded`.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..catalog import CATALOG_PATH, catalog
from ..config import Secret, env, load_env, require_key
from ..errors import SettingsError, require
from ..types import Completion, Request
from ._sdk import IncompleteReply, LoopClients, PicklesWithoutClients, classify_sdk_error, is_event_stream, key_hint, timeout_s
from .base import ModelSpec, Provider

KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
MAX_TEMPERATURE = 1.0

FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
          "model_context_window_exceeded": "length", "tool_use": "tool_calls",
          "refusal": "refusal", "pause_turn": "pause"}


def _anthropic() -> Any:
    return require("anthropic", "the anthropic provider needs the anthropic package: pip install 'anthropic>=2.10'")


class AnthropicProvider(PicklesWithoutClients, Provider):
    """Messages API calls, streamed, one client per event loop, no SDK retries."""

    name = "anthropic"
    supports_logprobs = False

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        load_env()
        self._key = Secret(require_key(KEY_ENV, "anthropic"), KEY_ENV)
        self.base_url = spec.base_url or env(BASE_URL_ENV)  # None: the SDK default
        self.timeout_s = timeout_s()
        self.send_sampling, self.api_version = _policy()
        self._clients: LoopClients[Any] = LoopClients(self._make_client)

    def __repr__(self) -> str:
        return f"AnthropicProvider({self.label!r}, base_url={self.base_url!r}, key from {KEY_ENV})"

    def hint(self, kind: str) -> str:
        """Which URL or variable to fix when the endpoint is unreachable or refuses the key."""
        where = self.base_url or "https://api.anthropic.com"
        if kind == "connection":
            fix = "fix the URL in the model spec" if self.spec.base_url else f"check {BASE_URL_ENV} or the network"
            return f" (no complete answer from {where}; if nothing listens there, {fix})"
        if kind == "auth":
            return f" ({where} refused the key from {KEY_ENV}: check it)"
        return ""

    def _make_client(self) -> Any:
        headers = {"anthropic-version": self.api_version} if self.api_version else None
        return _anthropic().AsyncAnthropic(
            api_key=self._key.reveal(), base_url=self.base_url, max_retries=0, timeout=self.timeout_s,
            default_headers=headers,
        )

    def params(self, request: Request) -> dict[str, Any]:
        """The Messages API arguments for `request`."""
        s = request.settings
        messages: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in request.turns]
        prefill = request.prefill.rstrip()
        if prefill:
            messages.append({"role": "assistant", "content": prefill})
        p: dict[str, Any] = {"model": self.model, "max_tokens": s.max_tokens, "messages": messages}
        if request.stream:
            p["stream"] = True
        if self.send_sampling:
            sampling: dict[str, Any] = {"temperature": s.temperature}
            if s.top_p != 1.0:
                sampling["top_p"] = s.top_p
            p["extra_body"] = sampling
        if request.system:
            p["system"] = request.system
        if s.stop:
            p["stop_sequences"] = list(s.stop)
        return p

    async def _complete(self, request: Request) -> Completion:
        t = request.settings.temperature
        if t > MAX_TEMPERATURE:
            return Completion(
                error_kind="bad_request",
                error=f"Settings.temperature={t:g} is out of range for anthropic: Anthropic accepts 0 to 1",
            )
        client = await self._clients.get()
        prefill = request.prefill.rstrip()
        t0 = time.perf_counter()
        if not request.stream:
            return _answer(await client.messages.create(**self.params(request)), prefill, t0)
        raw = await client.messages.with_raw_response.create(**self.params(request))
        if not is_event_stream(raw.headers):  # the server ignored `stream`: its JSON is the answer
            try:
                body = await raw.http_response.aread()
            finally:
                await raw.http_response.aclose()
            try:
                message = _anthropic().types.Message.model_validate(json.loads(body))
            except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError
                raise IncompleteReply("malformed", f"the reply is not a readable Message: "
                                                   f"{str(exc).splitlines()[0][:160]}") from None
            return _answer(message, prefill, t0)
        stream = await raw.parse()
        parts: list[str] = []
        ttft = finish = None
        n_in = n_out = None
        stopped = False
        try:
            async for event in stream:
                kind = event.type
                if kind == "message_stop":
                    stopped = True
                if kind == "content_block_delta":
                    text = getattr(event.delta, "text", None)
                    if text:
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        parts.append(text)
                elif kind == "message_start":
                    u = event.message.usage
                    n_in = _input_tokens(u)
                    n_out = u.output_tokens
                elif kind == "message_delta":
                    u = event.usage
                    if u.input_tokens is not None:
                        n_in = _input_tokens(u)
                    n_out = u.output_tokens
                    if event.delta.stop_reason:
                        finish = FINISH.get(event.delta.stop_reason, event.delta.stop_reason)
        finally:
            await stream.close()
        if not stopped:
            raise IncompleteReply("truncated", f"the stream ended without message_stop after "
                                               f"{len(''.join(parts))} characters: the answer may be cut short")
        return Completion(
            text=prefill + "".join(parts),
            input_tokens=n_in,
            output_tokens=n_out,
            latency_s=time.perf_counter() - t0,
            ttft_s=ttft,
            finish_reason=finish,
            logprobs=None,  # the Messages API has no logprobs
        )

    def classify(self, exc: BaseException) -> tuple[str, float | None]:
        got = classify_sdk_error(exc, _anthropic())
        return got if got is not None else super().classify(exc)

    @classmethod
    def status(cls, spec: ModelSpec) -> tuple[bool, str]:
        """Ready when ANTHROPIC_API_KEY is set (never shows its value)."""
        load_env()
        if not env(KEY_ENV):
            return False, key_hint(KEY_ENV)
        where = spec.base_url or env(BASE_URL_ENV) or "https://api.anthropic.com"
        return True, f"key from {KEY_ENV}; endpoint {where}"

    async def aclose(self) -> None:
        await self._clients.aclose()


def _policy() -> tuple[bool, str | None]:
    """(send temperature/top_p?, anthropic-version to send or None) from providers.anthropic in models.yaml."""
    cfg = catalog().providers.get("anthropic") or {}
    where = Path(os.environ.get("PROMPTKIT_MODELS_FILE") or CATALOG_PATH)
    sampling = cfg.get("sampling", "omit")
    if sampling not in ("omit", "send"):
        raise SettingsError(
            f"{where}: providers.anthropic.sampling must be 'omit' or 'send', got {sampling!r}")
    version = cfg.get("api_version")
    if version is not None and not isinstance(version, str):
        raise SettingsError(
            f"{where}: providers.anthropic.api_version must be a quoted date string "
            f"like \"2023-06-01\", got {version!r}")
    return sampling == "send", version


def _answer(message: Any, prefill: str, t0: float) -> Completion:
    """A non-streamed Message as a Completion; anything that is not one is `malformed`."""
    try:
        text = "".join(b.text for b in message.content if b.type == "text")
        stop = message.stop_reason
        usage = message.usage
    except (AttributeError, TypeError) as exc:
        what = f"text {message[:80]!r}" if isinstance(message, str) else type(exc).__name__
        raise IncompleteReply("malformed", f"the reply is not a Message ({what})") from None
    return Completion(
        text=prefill + text,
        input_tokens=_input_tokens(usage),
        output_tokens=getattr(usage, "output_tokens", None),
        latency_s=time.perf_counter() - t0,
        ttft_s=None,  # not measured without streaming
        finish_reason=FINISH.get(stop, stop) if stop else None,
        logprobs=None,
    )


def completion_from_message(message: Any, prefill: str) -> Completion:
    """A Message that did not come from a call of ours (a Message Batches result) as a Completion."""
    return _answer(message, prefill, time.perf_counter())


def _input_tokens(usage: Any) -> int | None:
    """All input tokens the call processed, cached or not."""
    base = getattr(usage, "input_tokens", None)
    if base is None:
        return None
    return base + (getattr(usage, "cache_creation_input_tokens", None) or 0) + (
        getattr(usage, "cache_read_input_tokens", None) or 0)
