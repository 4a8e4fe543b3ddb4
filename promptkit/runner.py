"""Run an experiment: every cell answered exactly once, concurrently, from the cache when it can be.

One asyncio loop holds all API calls open (a global limit, per-provider limits,
an optional requests-per-minute pace, retries with backoff honouring
Retry-After, a per-call timeout). Local models get one worker, so they answer
one call at a time while API calls go on in parallel. A failed call becomes an
error cell, never an exception, and the budget cap stops new calls before it is
reached. `run` is the sync wrapper for scripts and notebook cells.

This module schedules cells and assembles results (cache, queues, grading, the
bar, meta); one cell's call under the limits is `calls.Caller`, and worker
processes (`workers=N`) are `shard.Workers`, which get what they need as arguments.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping

from .aio import ctrl_c_raises, loop_running, run_sync
from .cache import BackgroundWriter, Cache, open_cache
from .calls import Caller, budget_message, make_gate, per_provider
from .errors import ExperimentError, PromptkitError, redact
from .limits import Budget, Gate, RetryPolicy
from .shard import Host, Limits, Workers, check_workers
from .types import Cell, CellResult, Completion, Grade, prefill_used

if TYPE_CHECKING:  # pragma: no cover
    from .experiment import Experiment
    from .providers import Provider
    from .results import Results

BAR_INTERVAL_S = 0.1
CacheMode = Literal["use", "refresh", "off"]
CACHE_MODES: tuple[str, ...] = ("use", "refresh", "off")


class _Run:
    """The state of one run; `execute` returns its Results."""

    def __init__(
        self, experiment: "Experiment", *, cache: str, cache_backend: Cache | None, concurrency: int,
        provider_concurrency: Any, rpm: Any, timeout_s: float | None, retry: RetryPolicy, budget: Budget,
        progress: bool, stream: bool = False, timeout_local_s: float | None = None, timeout_default: bool = False,
        workers: int = 1, batch: bool = False, cluster: Any = None,
    ) -> None:
        self.experiment = experiment
        self.batch = batch  # openai:/anthropic: cells go to the vendors' batch APIs (promptkit/batch.py)
        self.batch_part: Any = None
        self.cluster = cluster  # local-model cells go to this Dask scheduler (promptkit/cluster.py)
        self.cluster_part: Any = None
        self.stream = stream
        self.mode = cache
        self.store = cache_backend
        self.concurrency = concurrency
        self.provider_concurrency = per_provider(provider_concurrency, "provider_concurrency")
        self.rpm = per_provider(rpm, "rpm")
        self.timeout_s = timeout_s
        self.timeout_local_s = timeout_local_s  # local calls: no limit unless timeout_s was given
        self.timeout_default = timeout_default
        self.retry = retry
        self.budget = budget
        self.progress = progress
        self.workers = workers
        self.caller = Caller(concurrency=concurrency, timeout_s=timeout_s, timeout_local_s=timeout_local_s,
                             timeout_default=timeout_default, retry=retry, budget=budget)
        self.graders = list(experiment.graders)
        self.async_graders = any(hasattr(g, "agrade") for g in self.graders)
        self.counts = self.caller.counts  # calls and retries (the caller's), cache hits and duplicates
        self.errors: Counter[str] = Counter()
        self.gates: dict[str, Gate] = {}
        self.cache_write_errors: list[str] = []
        self.cache_problems: list[str] = []
        self.unpriced_models: list[str] = []
        self.writer: BackgroundWriter | None = None  # started in execute, after any forked worker
        self.threaded_puts = cache_backend is not None and cache != "off" and getattr(cache_backend, "threaded_puts", False)
        self.processes = 1
        self.workers_summary: list[dict[str, Any]] = []

    # ---- the run -------------------------------------------------------------------------

    async def execute(self) -> "Results":
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        self.cells: list[Cell] = self.experiment.expand()
        if self.stream:  # asked for: API calls stream so time to first token is measured (not part of the key)
            for c in self.cells:
                c.request = replace(c.request, stream=True)
        self.results: list[CellResult | None] = [None] * len(self.cells)
        self.groups: dict[str, list[int]] = {}
        for i, c in enumerate(self.cells):
            self.groups.setdefault(c.key, []).append(i)
        self.grade_slots = asyncio.Semaphore(self.concurrency)
        pool = self._pool()
        self.workers_write = pool is not None and pool.store is not None
        self.bar = self._bar()  # no monitor thread: a fork below still finds one thread
        self.bar_pending, self.bar_next = 0, 0.0
        try:
            if pool is not None:  # fresh interpreters start now, so their imports overlap the cache read
                await pool.spawn_early({c.model for c in self.cells})
            todo = await self._answer_from_cache()
            batched: dict[str, list[str]] = {}
            if self.batch:
                from .batch import take_batchable

                todo, batched = take_batchable(self, todo)
            clustered: list[str] = []
            if self.cluster is not None:
                from .cluster import take_clustered

                todo, clustered = take_clustered(self, todo)
            queues = self._queues(todo)
            host = Host(self.cells, self.groups, self._finish_from_worker, self._answer_queues)
            if pool is not None:  # forked workers start once the cells to call are known, before any thread
                await pool.fork(host, queues)
                if pool.shards:
                    self.caller.share(pool.parent_concurrency())
                    pool.share_gates(self.gates)
            if self.threaded_puts:
                self.writer = BackgroundWriter(self.store)  # type: ignore[arg-type]
            workers = [asyncio.ensure_future(c) for c in (pool.collectors(host, queues) if pool else [])] + [
                asyncio.ensure_future(self._worker(self.gates[gk], queue))
                for gk, queue in queues.items()
                for _ in range(min(self.gates[gk].concurrency, len(queue)))
            ]
            if batched:
                from .batch import run_batches

                workers.append(asyncio.ensure_future(run_batches(self, batched)))
            if clustered:
                from .cluster import run_on_cluster

                workers.append(asyncio.ensure_future(run_on_cluster(self, clustered)))
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                done = sum(1 for r in self.results if r is not None and r.completion.ok)
                kept = ("are in the cache; run again to continue" if self.store is not None and self.mode != "off"
                        else "were not kept (cache off)")
                print(f"promptkit: run interrupted; {done} answered cell(s) {kept}", file=sys.stderr)
                raise
            for s in pool.shards if pool else []:  # what the worker processes did counts as this run's
                self.counts.update({k: s.stats.get(k, 0) for k in ("calls", "retries")})
                self.caller.max_in_flight += s.stats.get("max_in_flight", 0)
                self.cache_write_errors.extend(s.stats.get("cache_write_errors", ()))
            self.processes = 1 + len(pool.shards if pool else [])
            lost = [i for i, r in enumerate(self.results) if r is None]
            for i in lost:  # a safety net: should never trigger, but a cell must never vanish
                self.results[i] = CellResult(self.cells[i], Completion(
                    error_kind="unknown", error="the runner finished without answering this cell"))
        finally:
            if pool is not None:
                await pool.close()
                self.workers_summary = pool.summary()
            self._bar_flush()
            self.bar.close()
            self._flush_writes()
        finished = datetime.now(timezone.utc)
        if self.budget.exhausted:
            msg = self._budget_message()
            print(f"promptkit: {msg}", file=sys.stderr)
        from .results import Results  # here, not at the start: it loads numpy, whose threads would rule out a fork

        return Results(list(self.results), self._meta(started, finished, time.perf_counter() - t0))  # type: ignore[arg-type]

    def _flush_writes(self) -> None:
        """Wait until every answer is on disk (also when interrupted), and note any that failed."""
        if self.writer is None:
            return
        writer, self.writer = self.writer, None
        self.cache_write_errors.extend(redact(e) for e in writer.close())

    async def _answer_from_cache(self) -> list[str]:
        """Fill every cell the cache already answers; return the keys still to call."""
        todo: list[str] = []
        hits: list[tuple[str, Completion]] = []
        read = self.mode == "use" and self.store is not None
        get_many = getattr(self.store, "get_many", None) if read else None
        found = get_many(list(self.groups)) if get_many is not None else {}
        for key in self.groups:
            comp = found.get(key) if get_many is not None else self.store.get(key) if read else None  # type: ignore[union-attr]
            if comp is None:
                todo.append(key)
            else:
                hits.append((key, comp))
        if self.async_graders:
            await asyncio.gather(*(self._finish(k, c, hit=True) for k, c in hits))
        else:
            for k, c in hits:
                await self._finish(k, c, hit=True)
        return todo

    def _queues(self, todo: list[str]) -> dict[str, deque[tuple["Provider", str]]]:
        """Group the keys to call by provider gate; a model that cannot be set up fails its own cells only."""
        from .providers import get_provider, parse_spec

        providers: dict[str, Any] = {}
        gate_keys: dict[str, str] = {}
        queues: dict[str, deque[tuple[Any, str]]] = {}
        for key in todo:
            cell = self.cells[self.groups[key][0]]
            prov = providers.get(cell.model)
            if prov is None:
                try:
                    prov = get_provider(cell.model)
                except PromptkitError as exc:
                    prov = Completion(error_kind="config", error=str(exc), model=cell.model)
                    print(f"promptkit: {cell.model} cannot be called, so its cells are marked error_kind 'config': "
                          f"{exc}", file=sys.stderr)
                providers[cell.model] = prov
                if self.budget.usd is not None and not isinstance(prov, Completion) and self._unpriced(prov):
                    self.unpriced_models.append(cell.model)
                    print(f"promptkit: no price is known for {cell.model}, so budget_usd cannot limit its calls "
                          f"(budget_tokens can; prices live in promptkit/data/models.yaml)", file=sys.stderr)
                if not isinstance(prov, Completion):
                    spec = parse_spec(cell.model)
                    gate_keys[cell.model] = spec.provider + (f"@{spec.base_url}" if spec.base_url else "")
            if isinstance(prov, Completion):
                self._store_all(key, replace(prov), [{}] * len(self.groups[key]), hit=False)
                continue
            gk = gate_keys[cell.model]
            if gk not in self.gates:
                self.gates[gk] = make_gate(gk, self.provider_concurrency, self.rpm, self.concurrency)
            queues.setdefault(gk, deque()).append((prov, key))
        return queues

    @staticmethod
    def _unpriced(provider: "Provider") -> bool:
        from .catalog import catalog

        return catalog().cost(provider.cost_provider, provider.model, 1, 1) is None

    async def _worker(self, gate: Gate, queue: deque[tuple["Provider", str]]) -> None:
        while queue:
            provider, key = queue.popleft()
            comp = await self.caller.answer(self.cells[self.groups[key][0]], gate, provider)
            await self._finish(key, comp, hit=False)

    async def _answer_queues(self, queues: dict[str, deque[tuple["Provider", str]]]) -> None:
        """Answer these cells here, each provider's under its gate (cells a worker process took and never answered)."""
        await asyncio.gather(*(self._worker(self.gates[gk], q) for gk, q in queues.items()
                               for _ in range(min(self.gates[gk].concurrency, len(q)))))

    def _pool(self) -> Workers | None:
        """The worker processes this run asked for, if it can use them (API cells, no budget)."""
        n = Workers.wanted(self.workers, self.concurrency, self.budget.limited, {c.model for c in self.cells})
        if n < 2:
            return None
        return Workers(n, Limits(
            concurrency=self.concurrency, timeout_s=self.timeout_s, timeout_local_s=self.timeout_local_s,
            timeout_default=self.timeout_default, retry=self.retry, provider_concurrency=dict(self.provider_concurrency),
            rpm=dict(self.rpm)), self.store if self.mode != "off" else None)

    # ---- finishing cells ---------------------------------------------------------------

    async def _finish_from_worker(self, key: str, comp: Completion) -> None:
        """An answer a worker process sent (which wrote it to a shared SQLite or folder cache itself)."""
        self.budget.add(comp)
        await self._finish(key, comp, hit=False, write=not self.workers_write)

    async def _finish(self, key: str, comp: Completion, *, hit: bool, write: bool = True) -> None:
        if comp.ok and not comp.prefill:  # answers cached before Completion.prefill existed
            comp.prefill = prefill_used(self.cells[self.groups[key][0]].request, comp)
        if not hit and write:
            if comp.ok and self.store is not None and self.mode != "off":
                if self.writer is not None:  # file writes overlap the calls instead of pausing the loop
                    self.writer.put(key, comp)
                else:
                    try:
                        self.store.put(key, comp)
                    except OSError as exc:  # a full disk must not lose the answer in memory
                        self.cache_write_errors.append(redact(str(exc)))
        # cells that share a key (identical prompts) share one answer, but each is graded against its own target
        by_target: dict[str, dict[str, Grade]] = {}
        grades: list[dict[str, Grade]] = []
        for i in self.groups[key]:
            tkey = repr(self.cells[i].target)
            if tkey not in by_target:
                by_target[tkey] = await self._grade(self.cells[i], comp)
            grades.append(by_target[tkey])
        self._store_all(key, comp, grades, hit)

    def _store_all(self, key: str, comp: Completion, grades: list[dict[str, Grade]], hit: bool) -> None:
        idxs = self.groups[key]
        for j, i in enumerate(idxs):
            # a second cell with the same key (identical rows) shares the one call's answer
            if self.results[i] is not None:  # exactly one result per cell, whatever happens
                raise RuntimeError(f"cell {self.cells[i].key} answered twice")
            self.results[i] = CellResult(self.cells[i], comp if j == 0 else replace(comp, cached=True), dict(grades[j]))
        if hit:
            self.counts["cache_hits"] += len(idxs)
        self.counts["duplicates"] += len(idxs) - 1
        if not comp.ok:
            self.errors[comp.error_kind or "unknown"] += len(idxs)
        self.bar_pending += len(idxs)
        if time.monotonic() >= self.bar_next:  # the bar redraws at most ten times a second anyway
            self._bar_flush()

    def _bar_flush(self) -> None:
        self.bar_next = time.monotonic() + BAR_INTERVAL_S
        if self.bar_pending:
            self.bar.update(self.bar_pending)
            self.bar_pending = 0
        spent = self.budget.spent_usd
        self.bar.set_postfix_str(
            f"errors={sum(self.errors.values())} cached={self.counts['cache_hits']} cost=${spent:.4f}", refresh=False,
        )

    async def _grade(self, cell: Cell, comp: Completion) -> dict[str, Grade]:
        """Grades for an answer (errors are not graded: they are not wrong answers, they are missing ones)."""
        if not comp.ok or not self.graders:
            return {}
        out: dict[str, Grade] = {}
        for g in self.graders:
            try:
                if hasattr(g, "agrade"):
                    async with self.grade_slots:
                        out[g.name] = await g.agrade(comp, cell.target)
                else:
                    out[g.name] = g(comp, cell.target)
            except Exception as exc:  # a grader bug is shown on the cell, it does not end the run
                out[g.name] = Grade(score=0.0, passed=False, parsed=False,
                                    reason=redact(f"grader {g.name!r} failed: {type(exc).__name__}: {exc}"),
                                    details={"grader_error": True})
        return out

    # ---- reporting ------------------------------------------------------------------------

    def _bar(self) -> Any:
        from tqdm.auto import tqdm

        class Bar(tqdm):  # type: ignore[misc,valid-type]
            monitor_interval = 0  # no monitor thread: the runner updates the bar itself, and a fork wants one thread

        return Bar(total=len(self.cells), desc=self.experiment.name, unit="cell", disable=not self.progress,
                    dynamic_ncols=True, leave=True)

    def _budget_message(self, final: bool = True) -> str:
        """Why the run stopped; `final=False` gives the one fixed text every skipped cell carries."""
        return budget_message(self.budget, self.errors.get("budget", 0), final)

    def _meta(self, started: datetime, finished: datetime, wall_s: float) -> dict[str, Any]:
        results = [r for r in self.results if r is not None]
        ok = sum(1 for r in results if r.completion.ok)
        meta: dict[str, Any] = {
            "experiment": self.experiment.describe(),
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": finished.isoformat(timespec="seconds"),
            "wall_s": round(wall_s, 3),
            "stopped_for_budget": self.budget.exhausted,
            "stop_reason": self._budget_message() if self.budget.exhausted else None,
            "counts": {
                "cells": len(results),
                "unique_calls": len(self.groups),
                "ok": ok,
                "errors": len(results) - ok,
                "errors_by_kind": dict(self.errors),
                "cache_hits": self.counts["cache_hits"],
                "calls": self.counts["calls"],
                "retries": self.counts["retries"],
                "duplicates": self.counts["duplicates"],
                "budget_skipped": self.errors.get("budget", 0),
            },
            "spent_usd": round(self.budget.spent_usd, 8),
            "spent_tokens": self.budget.spent_tokens,
            "unpriced_calls": self.budget.unpriced_calls,
            "unpriced_models": self.unpriced_models,
            "budget": {"usd": self.budget.usd, "tokens": self.budget.tokens},
            "cache": self.mode,
            "stream": self.stream,
            "limits": {
                "concurrency": self.concurrency,
                "provider_concurrency": {g.name: g.concurrency for g in self.gates.values()},
                "rpm": {g.name: g.rpm for g in self.gates.values() if g.rpm},
                "timeout_s": self.timeout_s,
                "timeout_s_local": self.timeout_local_s,
                "max_attempts": self.retry.max_attempts,
            },
            "max_in_flight": self.caller.max_in_flight,
            "processes": self.processes,
            "workers": self.workers_summary,
            "max_in_flight_by_provider": {g.name: g.max_in_flight for g in self.gates.values()},
        }
        if self.batch_part is not None:
            bp = self.batch_part
            meta["batch"] = {"submitted": bp.submitted, "batches_adopted": bp.adopted, "ledger": str(bp.ledger.folder)}
        if self.cluster_part is not None:
            cp = self.cluster_part
            meta["cluster"] = {"scheduler": cp.address, "cells_by_worker": dict(cp.by_worker)}
        if self.cache_write_errors:
            meta["cache_write_errors"] = self.cache_write_errors[:5]
        if self.cache_problems:
            meta["cache_problems"] = list(self.cache_problems)
        return meta


def _resolve_cache(cache: str, cache_backend: Cache | str | os.PathLike[str] | None) -> Cache | None:
    if cache not in CACHE_MODES:
        raise ExperimentError(f"cache must be one of {list(CACHE_MODES)}, got {cache!r}")
    if cache == "off":
        return None
    if cache_backend is None or isinstance(cache_backend, (str, Path, os.PathLike)):
        return open_cache(cache_backend)
    return cache_backend


_UNSET: Any = object()
RUN_DEFAULTS: dict[str, Any] = {
    "cache": "use", "concurrency": 16, "provider_concurrency": None, "rpm": None, "timeout_s": 120.0,
    "max_attempts": 4, "budget_usd": None, "budget_tokens": None, "stream": False, "workers": 1,
    "batch": False, "cluster": None,
}


async def arun(
    experiment: "Experiment | str | os.PathLike[str]",
    *,
    cache: CacheMode = _UNSET,
    cache_backend: Cache | str | os.PathLike[str] | None = None,
    concurrency: int = _UNSET,
    provider_concurrency: int | Mapping[str, int] | None = _UNSET,
    rpm: float | Mapping[str, float] | None = _UNSET,
    timeout_s: float | None = _UNSET,
    max_attempts: int = _UNSET,
    retry: RetryPolicy | None = None,
    budget_usd: float | None = _UNSET,
    budget_tokens: int | None = _UNSET,
    stream: bool = _UNSET,
    workers: int = _UNSET,
    batch: bool = _UNSET,
    cluster: Any = _UNSET,
    progress: bool = True,
) -> "Results":
    """Run every cell of `experiment` (or of a YAML file) and return its Results.

    Options not given come from the experiment's `run_options` (a YAML file's `run:` section),
    then from RUN_DEFAULTS.

    Args:
        cache: "use" answers from the cache and stores new answers; "refresh" calls again and
            overwrites; "off" neither reads nor writes.
        cache_backend: a Cache object, a .sqlite3 file (SqliteCache) or a folder (DiskCache, for shared
            filesystems); default: the SqliteCache in promptkit's cache folder.
        concurrency: calls in flight at once across all providers (default 16).
        provider_concurrency: per provider prefix (e.g. {"openai": 8}); local models default to 1.
        rpm: requests per minute per provider prefix (one number applies to every API provider).
        timeout_s: seconds one call may take before it is cancelled and retried (None: no limit). By
            default 120 s for API calls and no limit for local models (a long prompt on a small CPU
            can take minutes); a value given here or in the YAML `run:` section applies to both.
        max_attempts: tries per call for rate limits, overload, server errors, timeouts, lost connections.
        budget_usd, budget_tokens: stop starting calls before spending more; unstarted cells get
            error_kind "budget" and `meta["stopped_for_budget"]` is True.
        stream: stream API calls so time to first token is measured (default False: a plain reply
            costs less client CPU per call and still gives latency, tokens and cost).
        workers: processes that make API calls (default 1); 2 uses both cores of a 2-core machine
            when the client's CPU is the limit (promptkit/shard.py). Workers take cells as they free
            up, so a slow one holds back only its own few. Local models stay in this process; a run
            with a budget stays in one process.
        batch: send openai:/anthropic: cells through the vendors' batch APIs (half price, results within
            24 h; resumable: running again collects the batches instead of submitting again; promptkit/batch.py).
        cluster: answer local-model cells on a Dask cluster: a scheduler address ("tcp://host:8786"), a
            distributed.Client, or "local" for a LocalCluster of this machine's cores (promptkit/cluster.py).
    """
    if isinstance(experiment, (str, os.PathLike)):
        from .experiment import load_experiment

        experiment = load_experiment(experiment)
    given = {
        "cache": cache, "concurrency": concurrency, "provider_concurrency": provider_concurrency, "rpm": rpm,
        "timeout_s": timeout_s, "max_attempts": max_attempts, "budget_usd": budget_usd, "budget_tokens": budget_tokens,
        "stream": stream, "workers": workers, "batch": batch,
        "cluster": cluster,
    }
    opts = {**RUN_DEFAULTS, **getattr(experiment, "run_options", {}), **{k: v for k, v in given.items() if v is not _UNSET}}
    conc = opts["concurrency"]
    if not isinstance(conc, int) or isinstance(conc, bool) or conc < 1:
        raise ExperimentError(f"concurrency must be a whole number of at least 1, got {conc!r}")
    if opts["timeout_s"] is not None and not (isinstance(opts["timeout_s"], (int, float)) and opts["timeout_s"] > 0):
        raise ExperimentError(f"timeout_s must be a positive number of seconds or None, got {opts['timeout_s']!r}")
    try:
        policy = retry or RetryPolicy(max_attempts=opts["max_attempts"])
        budget = Budget(usd=opts["budget_usd"], tokens=opts["budget_tokens"])
        per_provider(opts["provider_concurrency"], "provider_concurrency")
        per_provider(opts["rpm"], "rpm")
        n_workers = check_workers(opts["workers"])
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None
    if not isinstance(opts["batch"], bool):
        raise ExperimentError(f"batch must be true or false, got {opts['batch']!r}")
    if opts["batch"] and opts["cache"] == "off":
        raise ExperimentError("batch mode needs the cache (cache='use' or 'refresh'): batch answers arrive "
                              "later, and the cache is where a re-run finds them instead of paying again")
    if opts["cluster"] is not None:
        from .cluster import check_cluster

        opts["cluster"] = check_cluster(opts["cluster"])
    if not isinstance(opts["stream"], bool):
        raise ExperimentError(f"stream must be true or false, got {opts['stream']!r}")
    store = _resolve_cache(opts["cache"], cache_backend)
    cache_problems = store.check() if store is not None and hasattr(store, "check") else []
    for problem in cache_problems:  # said before the first call: a broken cache means paying again
        print(f"promptkit: {problem}", file=sys.stderr)
    timeout_given = timeout_s is not _UNSET or "timeout_s" in getattr(experiment, "run_options", {})
    run_ = _Run(
        experiment, cache=opts["cache"], cache_backend=store, concurrency=conc,
        provider_concurrency=opts["provider_concurrency"], rpm=opts["rpm"], timeout_s=opts["timeout_s"],
        retry=policy, budget=budget, progress=progress, stream=opts["stream"], workers=n_workers, batch=opts["batch"],
        cluster=opts["cluster"],
        timeout_local_s=opts["timeout_s"] if timeout_given else None, timeout_default=not timeout_given,
    )
    run_.cache_problems = cache_problems
    res = await run_.execute()
    _say_setup_errors(res)
    failed = res.meta.get("cache_write_errors")
    if failed:
        print(f"promptkit: some answers could not be written to the cache ({failed[0]}); they are in these "
              f"results but a re-run will ask for them again", file=sys.stderr)
    return res


def _say_setup_errors(res: "Results") -> None:
    """On stderr, per model: cells that failed because an endpoint was unreachable or refused the key (which
    URL or variable to fix is in the error), so a wrong setup is not found only in the results file."""
    first: dict[tuple[str, str], str] = {}
    count: Counter[tuple[str, str]] = Counter()
    for r in res.results:
        kind = r.completion.error_kind
        if kind in ("auth", "connection"):
            count[r.cell.model, kind] += 1
            first.setdefault((r.cell.model, kind), r.completion.error or "")
    for (model, kind), n in count.items():
        print(f"promptkit: {n} cell(s) of {model} failed with '{kind}': {first[model, kind]}", file=sys.stderr)


def run(experiment: "Experiment | str | os.PathLike[str]", **kwargs: Any) -> "Results":
    """Sync `arun` for scripts, the CLI and notebook cells (works where an event loop already runs).

    Interrupting it (Ctrl-C, Jupyter's stop button) cancels the calls in flight and starts no
    more; answers already received stay in the cache, so running again continues the grid.
    """
    if not loop_running():
        return run_sync(arun(experiment, **kwargs))  # asyncio.run cancels the run on Ctrl-C itself
    # A loop already runs in this thread (Jupyter): run on a fresh loop in a worker thread, and
    # pass an interrupt of this thread on to that loop, or the calls would go on (and cost) unseen.
    held: dict[str, Any] = {}
    started = threading.Event()

    async def main() -> "Results":
        held["loop"], held["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await arun(experiment, **kwargs)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="promptkit-run")
    try:
        with ctrl_c_raises():  # under asyncio.run, Ctrl-C would otherwise only cancel a task that never yields
            return _wait_for_run(pool.submit(asyncio.run, main()), held, started)
    finally:
        pool.shutdown(wait=False)


def _wait_for_run(
    future: "concurrent.futures.Future[Results]", held: dict[str, Any], started: threading.Event,
) -> "Results":
    """Wait for the run's thread; on Ctrl-C cancel its calls in flight, wait for them to stop, re-raise."""
    try:
        while True:  # short waits, so an interrupt is seen however it is delivered
            try:
                return future.result(timeout=0.1)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        if started.wait(timeout=5):
            held["loop"].call_soon_threadsafe(held["task"].cancel)
        try:
            future.result(timeout=30)
        except BaseException:
            pass
        raise
