"""Answering one cell under a run's limits: a global slot, the provider's gate, the budget, a timeout, retries.

The runner (runner.py) answers its cells through a Caller, and so does each worker
process of a sharded run (shard.py), which has no grid, cache reads, grading or
results of its own: this is the part of a run both need. A call always returns a
Completion: a timeout, a budget stop or a bug in the runner becomes an error cell.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping

from .errors import ExperimentError, redact
from .limits import DEFAULT_PROVIDER_CONCURRENCY, Budget, Gate, RetryPolicy, estimate_tokens
from .types import Cell, Completion

if TYPE_CHECKING:  # pragma: no cover
    from .providers import Provider

_timeout = getattr(asyncio, "timeout", None)


def per_provider(value: Any, name: str) -> dict[str, Any]:
    """Accept one number for every provider or a mapping of provider prefix -> number."""
    if value is None or isinstance(value, Mapping):
        return dict(value or {})
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"*": value}
    raise ValueError(f"{name} must be a number or a mapping of provider -> number, got {value!r}")


def limit_for(table: Mapping[str, Any], gate_key: str, prefix: str, default: Any) -> Any:
    """A per-provider limit: the gate's own entry, its provider's, else "*" (never for local models)."""
    for k in (gate_key, prefix):
        if k in table:
            return table[k]
    if "*" in table and prefix != "local":
        return table["*"]
    return default


def make_gate(gate_key: str, provider_concurrency: Mapping[str, Any], rpm: Mapping[str, Any], concurrency: int) -> Gate:
    """The gate of one provider (`provider` or `provider@base_url`) under a run's limits."""
    prefix = gate_key.split("@", 1)[0]
    limit = limit_for(provider_concurrency, gate_key, prefix, DEFAULT_PROVIDER_CONCURRENCY.get(prefix, concurrency))
    try:
        return Gate(gate_key, min(int(limit), concurrency), limit_for(rpm, gate_key, prefix, None))
    except (TypeError, ValueError) as exc:
        raise ExperimentError(f"run limits: {exc}") from None


def budget_message(budget: Budget, skipped: int = 0, final: bool = True) -> str:
    """Why a run stopped; `final=False` gives the one fixed text every skipped cell carries."""
    caps = []
    if budget.usd is not None:
        caps.append(f"${budget.usd:g}" + (f" (spent ${budget.spent_usd:.4f})" if final else ""))
    if budget.tokens is not None:
        caps.append(f"{budget.tokens} tokens" + (f" (spent {budget.spent_tokens})" if final else ""))
    tail = f"; {skipped} cell(s) were not run and are marked error_kind 'budget'" if skipped and final else ""
    return "stopped for budget: the next call could exceed the cap of " + " and ".join(caps) + tail


class Caller:
    """The calls of one process: at most `concurrency` in flight, each timed out, retried and paid for."""

    def __init__(self, *, concurrency: int, timeout_s: float | None, timeout_local_s: float | None,
                 timeout_default: bool, retry: RetryPolicy, budget: Budget) -> None:
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.timeout_local_s = timeout_local_s  # local calls: no limit unless timeout_s was given
        self.timeout_default = timeout_default
        self.retry = retry
        self.budget = budget
        self.counts: Counter[str] = Counter()  # calls, retries
        self.in_flight = 0
        self.max_in_flight = 0
        self.slots: asyncio.Semaphore | None = None  # made on first use, inside the loop that runs the calls

    def share(self, concurrency: int) -> None:
        """Hold this process to its part of the run's concurrency (the worker processes have the rest)."""
        self.concurrency = concurrency
        self.slots = None

    async def answer(self, cell: Cell, gate: Gate, provider: "Provider") -> Completion:
        """`call`, with a bug in the runner kept on the cell, and the provider and model filled in."""
        try:
            comp = await self.call(cell, gate, provider)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a runner bug must not drop the cell
            comp = Completion(error_kind="unknown", error=redact(f"runner: {type(exc).__name__}: {exc}"))
        comp.provider = comp.provider or provider.spec.provider
        comp.model = comp.model or provider.model
        return comp

    async def call(self, cell: Cell, gate: Gate, provider: "Provider") -> Completion:
        """One cell's call with budget, gate, timeout and retries; always returns a Completion."""
        est_usd, est_tokens = self._estimate(cell, provider)
        held = await self.budget.reserve(est_usd, est_tokens, cell.model)
        if held is None:
            return Completion(error_kind="budget", error="not run: " + budget_message(self.budget, final=False))
        comp: Completion | None = None
        try:
            attempt = 0
            while True:
                attempt += 1
                await self._enter(gate)
                try:
                    comp = await self._attempt(provider, cell)
                finally:
                    self._leave(gate)
                self.counts["calls"] += 1
                if not self.retry.should_retry(comp, attempt):
                    break
                delay = self.retry.delay(comp, attempt)
                if comp.retry_after_s is not None:
                    gate.pause(asyncio.get_running_loop().time(), delay)
                self.counts["retries"] += 1
                await asyncio.sleep(delay)
            if not comp.ok and attempt > 1:
                comp.error = f"{comp.error} (gave up after {attempt} attempts)"
            return comp
        finally:
            await self.budget.settle(held, comp)

    async def _enter(self, gate: Gate) -> None:
        """Take a global slot and the provider's next start slot, without holding the first while pacing."""
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.concurrency)
        loop = asyncio.get_running_loop()
        while True:
            await self.slots.acquire()
            wait = gate.try_start(loop.time())
            if wait <= 0:
                break
            self.slots.release()
            await asyncio.sleep(wait)
        self.in_flight += 1
        gate.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        gate.max_in_flight = max(gate.max_in_flight, gate.in_flight)

    def _leave(self, gate: Gate) -> None:
        self.in_flight -= 1
        gate.in_flight -= 1
        assert self.slots is not None
        self.slots.release()

    async def _attempt(self, provider: "Provider", cell: Cell) -> Completion:
        limit = self.timeout_local_s if provider.spec.provider == "local" else self.timeout_s
        if limit is None:
            return await provider.complete(cell.request)
        try:
            if _timeout is not None:  # Python 3.11+: no extra task per call
                async with _timeout(limit):
                    return await provider.complete(cell.request)
            return await asyncio.wait_for(provider.complete(cell.request), limit)
        except asyncio.TimeoutError:
            why = "the default for API calls" if self.timeout_default else "as set"
            return Completion(error_kind="timeout", latency_s=limit,
                              error=f"no answer within {limit:g} s, so the call was cancelled (timeout_s={limit:g}, "
                                    f"{why}; raise timeout_s, or pass timeout_s=None for no limit)")

    def _estimate(self, cell: Cell, provider: "Provider") -> tuple[float, int]:
        if not self.budget.limited:
            return 0.0, 0
        from .catalog import catalog

        n_in, n_out = estimate_tokens(cell.request)
        usd = catalog().cost(provider.cost_provider, provider.model, n_in, n_out)
        return (usd or 0.0), n_in + n_out
