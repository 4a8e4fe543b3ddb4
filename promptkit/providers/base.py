"""The one interface every model sits behind.

A provider implements `_complete(request) -> Completion`; the shared `complete`
around it times the call, prices it from the catalog and turns any failure into
an error completion, so no model call can abort a run.
"""
from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from ..catalog import catalog
from ..errors import redact
from ..types import Completion, Request, prefill_used


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: `provider:model`, optionally `@base_url` for OpenAI-compatible servers."""

    provider: str
    model: str
    base_url: str | None = None

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}" + (f"@{self.base_url}" if self.base_url else "")


class Provider(ABC):
    """Base of all providers: one async method, failures returned as data."""

    name: ClassVar[str] = ""
    supports_logprobs: ClassVar[bool] = False

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.model = catalog().resolve(spec.provider, spec.model)

    @property
    def label(self) -> str:
        return str(self.spec)

    async def complete(self, request: Request) -> Completion:
        """Answer `request`; never raises for a failed call (the error is recorded in the completion)."""
        t0 = time.perf_counter()
        try:
            c = await self._complete(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes data
            kind, retry_after = self.classify(exc)
            c = Completion(error_kind=kind, error=redact(f"{type(exc).__name__}: {exc}{self.hint(kind)}"),
                           retry_after_s=retry_after)
        c.provider = c.provider or self.spec.provider
        c.model = c.model or self.model
        if c.ok and not c.prefill:
            c.prefill = prefill_used(request, c)
        if c.latency_s is None:
            c.latency_s = time.perf_counter() - t0
        if c.ok and c.cost_usd is None:
            c.cost_usd = catalog().cost(self.cost_provider, self.model, c.input_tokens, c.output_tokens)
        if c.error:
            c.error = redact(c.error)
        return c

    @property
    def cost_provider(self) -> str:
        """Which price list applies (a self-hosted OpenAI-compatible server is not priced as OpenAI)."""
        return self.spec.provider if not self.spec.base_url else "self-hosted"

    @abstractmethod
    async def _complete(self, request: Request) -> Completion:
        """Call the model. May raise; `complete` records the exception as an error completion."""

    def classify(self, exc: BaseException) -> tuple[str, float | None]:
        """Map an exception to an error kind and an optional Retry-After in seconds."""
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return "timeout", None
        if isinstance(exc, ConnectionError):
            return "connection", None
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            headers = getattr(getattr(exc, "response", None), "headers", None) or {}
            return classify_status(status, str(exc)), retry_after_seconds(headers)
        return "unknown", None

    def hint(self, kind: str) -> str:
        """What to do about a failed call of this kind (which URL, which variable), or ''."""
        return ""

    @classmethod
    def status(cls, spec: ModelSpec) -> tuple[bool, str]:
        """Whether this provider can answer now, and if not, why (for `promptkit models`)."""
        return True, "ready"

    async def aclose(self) -> None:
        """Release network clients; local models stay loaded for the process."""


def classify_status(status: int, message: str = "") -> str:
    """Error kind for an HTTP status from any vendor API."""
    low = message.lower()
    if status == 429:
        return "rate_limit"
    if status in (503, 529) or "overloaded" in low:
        return "overloaded"
    if status >= 500:
        return "server"
    if status in (401, 403):
        return "auth"
    if status in (400, 413, 422) and any(w in low for w in ("context", "too long", "maximum", "too many tokens")):
        return "context_length"
    if status == 408:
        return "timeout"
    return "bad_request"


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        ra = headers.get("retry-after")
    except Exception:
        return None
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(ra)
        return max(0.0, when.timestamp() - time.time())
    except Exception:
        return None
