"""What the vendor-SDK providers (OpenAI, Anthropic) share: per-loop clients and error kinds.

An SDK's async client owns an httpx connection pool bound to the event loop
that first used it; `promptkit.complete` may run each call on a fresh loop, so
each running loop gets its own client. Exceptions from the SDKs, from httpx
underneath them and from JSON decoding map to the Completion error kinds the
runner retries on (or not).
"""
from __future__ import annotations

import asyncio
import json
import threading
import weakref
from typing import Any, AsyncIterator, Callable, Generic, TypeVar

from ..config import env
from ..errors import SettingsError
from .base import classify_status, retry_after_seconds

C = TypeVar("C")

DEFAULT_TIMEOUT_S = 120.0


def timeout_s() -> float:
    """Per-request SDK timeout: PROMPTKIT_TIMEOUT_S or 120 s (the runner has its own overall limit)."""
    raw = env("PROMPTKIT_TIMEOUT_S")
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SettingsError(f"environment variable PROMPTKIT_TIMEOUT_S must be a positive number of seconds, got {raw!r}")
    return value


class LoopClients(Generic[C]):
    """One client per running event loop, closed on that loop when it shuts down.

    `asyncio.run` finalises live async generators before closing its loop; a
    small generator per client closes the client there, so no connection is
    left to be torn down later from another loop (which the SDKs attempt in
    `__del__`, failing with "Event loop is closed").
    """

    def __init__(self, factory: Callable[[], C]) -> None:
        self._factory = factory
        self._by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[C, Any]]" = (
            weakref.WeakKeyDictionary())
        self._lock = threading.Lock()

    async def get(self) -> C:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._by_loop.get(loop)
            if entry is not None:
                return entry[0]
            for old in [lp for lp in list(self._by_loop.keys()) if lp.is_closed()]:
                self._by_loop.pop(old, None)
            client = self._factory()
            closer = _close_at_loop_end(client)
            self._by_loop[loop] = (client, closer)
        await closer.__anext__()  # registers the generator with this loop's shutdown_asyncgens
        return client

    def __len__(self) -> int:
        return len(self._by_loop)

    async def aclose(self) -> None:
        """Close the client of the running loop (others belong to loops we cannot await on)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._by_loop.pop(loop, None)
        if entry is not None:
            await entry[1].aclose()


async def _close_at_loop_end(client: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        try:
            await client.close()
        except Exception:
            pass


_BODY_KIND = {  # error types vendors put in a JSON body (also mid-stream "error" events)
    "rate_limit_error": "rate_limit",
    "overloaded_error": "overloaded",
    "api_error": "server",
    "server_error": "server",
    "timeout_error": "timeout",
    "authentication_error": "auth",
    "permission_error": "auth",
    "invalid_request_error": "bad_request",
}


class IncompleteReply(Exception):
    """A 200 reply that is not a whole answer: `malformed` (unreadable) or `truncated` (a stream cut short).

    Raised by the providers so the reply becomes an error cell (retried, never cached)
    instead of an empty or partial answer that would be graded and cached as if complete.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def is_event_stream(headers: Any) -> bool:
    """Whether a response is server-sent events (a server may ignore `stream: true` and send JSON)."""
    return "text/event-stream" in (headers.get("content-type") or "").lower()


def classify_sdk_error(exc: BaseException, sdk: Any) -> tuple[str, float | None] | None:
    """Error kind and Retry-After for an exception from `sdk` (openai or anthropic), or None if unknown."""
    if isinstance(exc, IncompleteReply):
        return exc.kind, None
    if isinstance(exc, sdk.APITimeoutError):
        return "timeout", None
    if isinstance(exc, sdk.APIConnectionError):
        return "connection", None
    if isinstance(exc, sdk.APIResponseValidationError):
        return "malformed", None
    if isinstance(exc, sdk.APIStatusError):
        headers = getattr(exc.response, "headers", None) or {}
        status = exc.status_code
        if status < 400:  # an error event inside a 200 stream: the body names the kind
            etype = _body_error_type(getattr(exc, "body", None))
            return _BODY_KIND.get(etype or "", "server"), retry_after_seconds(headers)
        return classify_status(status, str(exc)), retry_after_seconds(headers)
    if isinstance(exc, sdk.APIError):  # e.g. an OpenAI error object inside a stream
        etype = _body_error_type({"error": getattr(exc, "body", None)})
        return _BODY_KIND.get(etype or "", "server"), None
    return classify_transport_error(exc)


def classify_transport_error(exc: BaseException) -> tuple[str, float | None] | None:
    """Kinds for what the SDKs let through unwrapped: httpx errors mid-stream, undecodable JSON."""
    if isinstance(exc, json.JSONDecodeError):
        return "malformed", None
    for mod_name in ("httpx2", "httpx"):
        mod = _module(mod_name)
        if mod is None:
            continue
        if isinstance(exc, mod.TimeoutException):
            return "timeout", None
        if isinstance(exc, (mod.TransportError, mod.StreamError)):
            return "connection", None
        if isinstance(exc, getattr(mod, "DecodingError", ())):
            return "malformed", None
    return None


def _module(name: str) -> Any:
    import sys

    return sys.modules.get(name)


def _body_error_type(body: Any) -> str | None:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return err["type"]
    return None


def body_error_kind(body: Any, default: str = "server") -> str:
    """The error kind a vendor's JSON error body names (`{"error": {"type": ...}}`), e.g. in a batch result."""
    return _BODY_KIND.get(_body_error_type(body) or "", default)


def key_hint(var: str) -> str:
    """How to set a key, naming the variable only."""
    return f"set {var} (export {var}=... or a line {var}=... in a .env file)"


__all__ = ["DEFAULT_TIMEOUT_S", "IncompleteReply", "LoopClients", "body_error_kind", "classify_sdk_error", "classify_transport_error",
           "is_event_stream", "key_hint", "timeout_s"]


class PicklesWithoutClients:
    """For SDK providers: pickle without the per-loop clients (they hold the key and open connections)."""

    _clients: "LoopClients[Any]"

    def _make_client(self) -> Any:  # pragma: no cover - each provider defines it
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state.pop("_clients", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._clients = LoopClients(self._make_client)
