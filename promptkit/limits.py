"""What keeps a run polite and affordable: per-provider gates, retry backoff and the budget.

The runner asks a Gate before each call (concurrency slot, requests-per-minute
pacing, pauses asked for by Retry-After) and the Budget before starting a
cell, so that spending stops before the cap instead of after it.
"""
from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import Any

from .types import Completion, Request

# Error kinds worth another attempt: the same request may succeed a moment later (a reply that was
# unreadable or cut short is a fault of the moment too).
RETRYABLE: frozenset[str] = frozenset({"rate_limit", "overloaded", "server", "timeout", "connection",
                                       "malformed", "truncated"})

# Default calls in flight per provider prefix; the local model answers one call at a time.
DEFAULT_PROVIDER_CONCURRENCY: dict[str, int] = {"local": 1}


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed call is tried again."""

    max_attempts: int = 4
    base_s: float = 0.5
    max_s: float = 60.0
    retry_on: frozenset[str] = RETRYABLE

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number of at least 1, got {self.max_attempts!r}")

    def should_retry(self, completion: Completion, attempt: int) -> bool:
        return completion.error_kind in self.retry_on and attempt < self.max_attempts

    def delay(self, completion: Completion, attempt: int) -> float:
        """Seconds before attempt `attempt + 1`: the server's Retry-After if given, else exponential with jitter."""
        if completion.retry_after_s is not None and completion.retry_after_s >= 0:
            return min(self.max_s, completion.retry_after_s)
        backoff = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)


class Gate:
    """One provider's door: starts spaced for `rpm` requests per minute, and paused when Retry-After says so.

    How many calls are inside at once is set by how many workers the runner
    gives the provider; the gate only decides when the next one may start.
    """

    def __init__(self, name: str, concurrency: int, rpm: float | None = None) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency for {name!r} must be a whole number of at least 1, got {concurrency!r}")
        if rpm is not None and not (isinstance(rpm, (int, float)) and rpm > 0):
            raise ValueError(f"requests per minute for {name!r} must be positive, got {rpm!r}")
        self.name = name
        self.concurrency = concurrency
        self.rpm = rpm
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next_start = float("-inf")  # loop time before which no call may start
        self.in_flight = 0
        self.max_in_flight = 0

    def try_start(self, now: float) -> float:
        """Take the start slot and return 0, or return the seconds to wait for it (nothing taken)."""
        if now >= self._next_start:
            self._next_start = now + self.interval
            return 0.0
        return self._next_start - now

    def pause(self, now: float, seconds: float) -> None:
        """Hold every new start to this provider for `seconds` (the server said Retry-After)."""
        self._next_start = max(self._next_start, now + seconds)


def estimate_tokens(request: Request) -> tuple[int, int]:
    """Upper-bound guess of (input, output) tokens before a call: ~3 characters a token, and max_tokens out."""
    chars = sum(len(m.content) for m in request.messages) + len(request.prefill)
    return math.ceil(chars / 3) + 8 * len(request.messages), request.settings.max_tokens


class Reservation:
    """Room a call holds in the budget: its estimate as scaled when it started."""

    __slots__ = ("usd", "tokens", "base_usd", "base_tokens", "key", "probe")

    def __init__(self, usd: float, tokens: int, base_usd: float = 0.0, base_tokens: int = 0,
                 key: str | None = None, probe: bool = False) -> None:
        self.usd, self.tokens, self.base_usd, self.base_tokens = usd, tokens, base_usd, base_tokens
        self.key, self.probe = key, probe


_FREE = Reservation(0.0, 0)


class Budget:
    """A spending cap in USD and/or tokens, checked before each call starts.

    A call may start only if what is spent, plus the reservations of calls in
    flight, plus its own reservation stays under the cap. A reservation is the
    call's estimate (`estimate_tokens`) times the largest ratio of billed to
    estimated cost seen so far for its model; until one call of a model has been
    billed, that model runs one call at a time, so a server that bills far more
    than estimated is learnt from one call, not from a whole burst. When a call
    does not fit but calls are in flight, it waits for them to settle; when
    nothing is in flight and it still does not fit, the budget is exhausted.
    So the cap holds exactly when no call bills more than its scaled estimate;
    otherwise the overshoot is at most what the calls in flight bill beyond their
    reservations.
    """

    def __init__(self, usd: float | None = None, tokens: int | None = None) -> None:
        if usd is not None and not usd >= 0:
            raise ValueError(f"budget_usd must be zero or more, got {usd!r}")
        if tokens is not None and not tokens >= 0:
            raise ValueError(f"budget_tokens must be zero or more, got {tokens!r}")
        self.usd = usd
        self.tokens = tokens
        self.spent_usd = 0.0
        self.spent_tokens = 0
        self.unpriced_calls = 0
        self._flight_usd = 0.0
        self._flight_tokens = 0
        self._in_flight = 0
        self.exhausted = False
        self._cond: asyncio.Condition | None = None
        self._ratio: dict[str | None, tuple[float, float]] = {}  # model -> (usd, tokens) billed / estimated, max
        self._probing: set[str | None] = set()

    @property
    def limited(self) -> bool:
        return self.usd is not None or self.tokens is not None

    def _fits(self, usd: float, tokens: int) -> bool:
        if self.usd is not None and self.spent_usd + self._flight_usd + usd > self.usd + 1e-12:
            return False
        if self.tokens is not None and self.spent_tokens + self._flight_tokens + tokens > self.tokens:
            return False
        return True

    async def reserve(self, usd: float, tokens: int, key: str | None = None) -> Reservation | None:
        """Hold room for one call of model `key`; None means the budget is exhausted and it must not start."""
        if not self.limited:
            return _FREE
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            while True:
                if self.exhausted:
                    return None
                learnt = key in self._ratio
                if not learnt and key in self._probing:  # this model's first bill is not in yet
                    await self._cond.wait()
                    continue
                r_usd, r_tokens = self._ratio.get(key, (1.0, 1.0))
                held = Reservation(usd * r_usd, math.ceil(tokens * r_tokens), usd, tokens, key, probe=not learnt)
                if self._fits(held.usd, held.tokens):
                    self._flight_usd += held.usd
                    self._flight_tokens += held.tokens
                    self._in_flight += 1
                    if held.probe:
                        self._probing.add(key)
                    return held
                if self._in_flight == 0:
                    self.exhausted = True
                    self._cond.notify_all()
                    return None
                await self._cond.wait()

    async def settle(self, held: Reservation, completion: Completion | None) -> None:
        """Replace a call's reservation by what it actually cost, and learn how far the estimate was off."""
        if completion is not None:
            self.add(completion)
        if not self.limited:
            return
        assert self._cond is not None
        async with self._cond:
            self._flight_usd -= held.usd
            self._flight_tokens -= held.tokens
            self._in_flight -= 1
            if held.probe:
                self._probing.discard(held.key)
            if completion is not None and completion.ok:
                self._learn(held, completion)
            self._cond.notify_all()

    def _learn(self, held: Reservation, completion: Completion) -> None:
        r_usd, r_tokens = self._ratio.get(held.key, (1.0, 1.0))
        if completion.cost_usd is not None and held.base_usd > 0:
            r_usd = max(r_usd, completion.cost_usd / held.base_usd)
        billed = (completion.input_tokens or 0) + (completion.output_tokens or 0)
        if held.base_tokens > 0:
            r_tokens = max(r_tokens, billed / held.base_tokens)
        self._ratio[held.key] = (r_usd, r_tokens)

    def add(self, completion: Completion) -> None:
        """Count what a finished (not cached) call cost."""
        if completion.cost_usd is not None:
            self.spent_usd += completion.cost_usd
        elif completion.ok:
            self.unpriced_calls += 1
        self.spent_tokens += (completion.input_tokens or 0) + (completion.output_tokens or 0)
