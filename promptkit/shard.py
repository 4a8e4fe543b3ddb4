"""Use more than one core for one run: API cells split by key across worker processes.

At high concurrency an API run is limited by the client's CPU (the SDK builds and
parses every request in Python), not by the server. With `workers=N` the run keeps
its own share of the API cells and starts N-1 worker processes for the rest; each
has one event loop and one SDK client, answers its cells under its share of the
concurrency and rpm limits, writes successful answers to the shared cache (SQLite
WAL or DiskCache are safe across processes) and streams completions back. The
parent grades them, fills the results in cell order and drives the progress bar.
Local-model cells never leave the parent (one process per loaded model), and a
run with a budget stays in one process (a cap needs one ledger).
"""
from __future__ import annotations

import asyncio
import importlib
import os
import pickle
import struct
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .cache import DiskCache, SqliteCache
from .errors import ExperimentError
from .limits import Budget, Gate
from .types import Cell, Completion

if TYPE_CHECKING:  # pragma: no cover
    from .runner import _Run

IN_PROCESS: frozenset[str] = frozenset({"local", "score"})  # providers that hold a loaded model
FLUSH_S = 0.02  # how often a worker sends what it has answered
_HEAD = struct.Struct("!I")
_BOOT = "import sys; sys.path[:0] = {path!r}; from promptkit.shard import child_main; child_main()"


def check_workers(workers: Any) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ExperimentError(f"workers must be a whole number of at least 1, got {workers!r}")
    return workers


def _share(total: int, n: int, i: int) -> int:
    """Process i's part of a limit split n ways (the parts add up to the limit, each at least 1)."""
    return max(1, total // n + (1 if i < total % n else 0))


def _which(key: str, n: int) -> int:
    return int(key[:8], 16) % n


class Shard:
    """One worker process and the cells it answers."""

    def __init__(self, index: int, proc: Any, cells: list[Cell], job: dict[str, Any], parent_writes: bool) -> None:
        self.index, self.proc = index, proc
        self.cells = cells
        self.job = job
        self.parent_writes = parent_writes
        self.stats: dict[str, Any] = {}

    async def collect(self, run: "_Run") -> None:
        """Send the worker its cells, finish each one it answers; cells it never answers become error cells."""
        proc = self.proc
        pending = {c.key for c in self.cells}
        try:
            assert proc.stdin is not None and proc.stdout is not None
            blob = pickle.dumps({**self.job, "cells": self.cells}, protocol=pickle.HIGHEST_PROTOCOL)
            try:
                proc.stdin.write(_HEAD.pack(len(blob)) + blob)
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):  # it died at start: its cells become error cells below
                pass
            finally:
                proc.stdin.close()
            while True:
                try:
                    size = _HEAD.unpack(await proc.stdout.readexactly(_HEAD.size))[0]
                    kind, payload = pickle.loads(await proc.stdout.readexactly(size))
                except asyncio.IncompleteReadError:
                    break
                if kind == "done":
                    self.stats = payload
                    continue
                for key, comp in payload:
                    pending.discard(key)
                    run.budget.add(comp)
                    await run._finish(key, comp, hit=False, write=self.parent_writes)
            code_ = await proc.wait()
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        why = f"worker process {self.index} exited with code {code_} before answering this cell (see its messages above)"
        for key in [c.key for c in self.cells if c.key in pending]:
            await run._finish(key, Completion(error_kind="unknown", error=why), hit=False)


async def split(run: "_Run", queues: dict[str, Any]) -> list[Shard]:
    """Move a share of every API queue to new worker processes; shrink the parent's limits to its own share.

    The workers start before the parent's first call, so their imports overlap the parent's own.
    """
    n = min(run.workers, run.concurrency)
    if n < 2 or run.budget.limited:
        return []
    moved: list[list[Cell]] = [[] for _ in range(n)]
    sharded: list[str] = []
    for gk, queue in queues.items():
        if gk.split("@", 1)[0] in IN_PROCESS:
            continue
        kept = type(queue)()
        for prov, key in queue:
            i = _which(key, n)
            if i == 0:
                kept.append((prov, key))
            else:  # one cell per key goes; the parent shares the answer among identical cells
                moved[i].append(replace(run.cells[run.groups[key][0]], target=None))
        queue.clear()
        queue.extend(kept)
        sharded.append(gk)
    if not any(moved):
        return []
    limits = {gk: run.gates[gk].concurrency for gk in sharded}
    rpms = {gk: run.gates[gk].rpm for gk in sharded if run.gates[gk].rpm}
    for gk in sharded:
        run.gates[gk] = Gate(gk, _share(limits[gk], n, 0), rpms[gk] / n if gk in rpms else None)
    run.global_slots = asyncio.Semaphore(_share(run.concurrency, n, 0))
    store = run.store if run.mode != "off" else None
    where = None
    if isinstance(store, SqliteCache):
        where = ("sqlite", str(store.path))
    elif isinstance(store, DiskCache):
        where = ("disk", str(store.root))
    from .providers import _REGISTERED

    modules = sorted({cls.__module__ for cls in _REGISTERED.values() if cls.__module__ != "__main__"})
    code = _BOOT.format(path=[p for p in sys.path if p])
    shards = []
    for i in range(1, n):
        if moved[i]:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.PIPE)
            job = {
                "name": f"{run.experiment.name}[{i}]", "store": where, "modules": modules,
                "concurrency": _share(run.concurrency, n, i), "timeout_s": run.timeout_s, "retry": run.retry,
                "stream": run.stream,
                "provider_concurrency": {gk: _share(lim, n, i) for gk, lim in limits.items()},
                "rpm": {gk: r / n for gk, r in rpms.items()},
            }
            shards.append(Shard(i, proc, moved[i], job, parent_writes=store is not None and where is None))
    return shards


# ---- the worker process ----------------------------------------------------------------


class _Part:
    """A worker's cells, shaped like the Experiment the runner expands."""

    graders: list[Any] = []

    def __init__(self, name: str, cells: list[Cell]) -> None:
        self.name = name
        self.cells = cells

    def expand(self) -> list[Cell]:
        return self.cells

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


async def _work(job: dict[str, Any], out: Any) -> None:
    from .runner import _Run

    outbox: list[tuple[str, Completion]] = []

    def send(kind: str, payload: Any) -> None:
        blob = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_HEAD.pack(len(blob)) + blob)
        out.flush()

    class _WorkerRun(_Run):
        def _store_all(self, key: str, comp: Completion, grades: Any, hit: bool) -> None:
            super()._store_all(key, comp, grades, hit)
            outbox.append((key, comp))

    store = None
    if job["store"]:  # the parent's store by its kind (a SqliteCache file need not end in .sqlite3)
        kind, where = job["store"]
        store = SqliteCache(where) if kind == "sqlite" else DiskCache(where)
    run = _WorkerRun(
        _Part(job["name"], job["cells"]), cache="refresh" if store is not None else "off", cache_backend=store,
        concurrency=job["concurrency"], provider_concurrency=job["provider_concurrency"], rpm=job["rpm"] or None,
        timeout_s=job["timeout_s"], retry=job["retry"], budget=Budget(), progress=False, stream=job["stream"],
    )

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            if outbox:
                send("cells", outbox[:])
                outbox.clear()

    task = asyncio.ensure_future(flusher())
    try:
        res = await run.execute()
    finally:
        task.cancel()
    if outbox:
        send("cells", outbox[:])
        outbox.clear()
    send("done", {"calls": run.counts["calls"], "retries": run.counts["retries"],
                  "max_in_flight": run.max_in_flight, "cache_write_errors": run.cache_write_errors,
                  "cells": len(res)})


def child_main() -> None:
    """Entry of a worker process: read the job from stdin, answer, stream frames to the original stdout."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the frames
    inp = sys.stdin.buffer
    size = _HEAD.unpack(inp.read(_HEAD.size))[0]
    job = pickle.loads(inp.read(size))
    for mod in job["modules"]:
        importlib.import_module(mod)
    asyncio.run(_work(job, out))
    out.close()
