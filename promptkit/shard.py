"""Use more than one core for one run: worker processes take API cells from the run's queue as they free up.

At high concurrency an API run is limited by the client's CPU (the SDK builds and
parses every request in Python), not by the server. With `workers=N` the run
starts N-1 worker processes; the parent keeps answering cells itself, and each
worker asks for more cells whenever calls of its own finish, so no worker holds
more than its window (twice its share of the concurrency) and a slow or stalled
worker never holds back cells another process could take. Each worker has one
event loop and one SDK client, answers through a `calls.Caller` under its share of
the concurrency and rpm limits, writes successful answers to the shared cache
(SQLite WAL or DiskCache are safe across processes) and sends completions back;
the parent grades them, fills the results in cell order and drives the progress
bar. A worker that dies hands its unanswered cells back: the parent answers them.

Workers start by fork when this process has one thread and runs on Linux: after
the parent has read the cache and knows which cells to call (none: no fork). A
forked worker holds the grid, so a cell is handed out as its index, and its first
window is sent as it starts, so it calls from its first moment. Otherwise a worker is a fresh interpreter,
started first so its half second of imports overlaps the parent's own work, and
cells travel pickled. Local-model cells never leave the parent (one process per
loaded model), and a run with a budget stays in one process (a cap needs one ledger).

This module never imports runner.py: the run hands the parent's side what it
needs as a `Host` (its cells and how to finish one).
"""
from __future__ import annotations

import asyncio
import gc
import importlib
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable

from .cache import BackgroundWriter, Cache, DiskCache, SqliteCache
from .calls import Caller, make_gate
from .errors import ExperimentError, PromptkitError, redact
from .limits import Budget, Gate, RetryPolicy
from .types import Cell, Completion

IN_PROCESS: frozenset[str] = frozenset({"local", "score"})  # providers that hold a loaded model
FLUSH_S = 0.005  # a worker sends what it answered at most this long after the answer
POLL_S = 0.05  # how often the parent checks whether a worker that has not asked yet is still needed
START = "auto"  # "fork", "spawn" or "auto" (fork when it is safe); tests set it
_HEAD = struct.Struct("!I")
_BOOT = "import sys; sys.path[:0] = {path!r}; from promptkit.shard import child_main; child_main()"

Queues = dict[str, deque[tuple[Any, str]]]  # gate key -> (provider, cell key) still to call


def check_workers(workers: Any) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ExperimentError(f"workers must be a whole number of at least 1, got {workers!r}")
    return workers


def _share(total: int, n: int, i: int) -> int:
    """Process i's part of a limit split n ways (the parts add up to the limit, each at least 1)."""
    return max(1, total // n + (1 if i < total % n else 0))


def share_gate(gate: Gate, n: int, i: int) -> Gate:
    """Process i's part of a provider's gate: its share of the concurrency and of the rpm."""
    return Gate(gate.name, _share(gate.concurrency, n, i), gate.rpm / n if gate.rpm else None)


def shareable(gate_key: str) -> bool:
    return gate_key.split("@", 1)[0].split(":", 1)[0] not in IN_PROCESS


def _fork_is_safe() -> bool:
    """Fork copies only the calling thread: safe when no other thread could hold a lock the worker needs.

    Every thread must be a Python thread (no OpenMP or other native threads: /proc/self/task counts
    them) and each other one an idle tqdm monitor, which the worker never touches.
    """
    if START != "auto":
        return START == "fork"
    if not sys.platform.startswith("linux"):
        return False
    try:
        native = len(os.listdir("/proc/self/task"))
    except OSError:
        return False
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    return native == 1 + len(others) and all(type(t).__name__ == "TMonitor" for t in others)


def _frame(kind: str, payload: Any) -> bytes:
    blob = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    return _HEAD.pack(len(blob)) + blob


async def _read_frame(reader: asyncio.StreamReader) -> tuple[str, Any] | None:
    try:
        size = _HEAD.unpack(await reader.readexactly(_HEAD.size))[0]
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


@dataclass
class Host:
    """The parent's side of a run, as its workers' collectors use it (filled by runner.py)."""

    cells: list[Cell]
    groups: dict[str, list[int]]  # cell key -> indexes of the cells sharing it
    finish: Callable[[str, Completion], Awaitable[None]]  # an answer a worker sent: grade it, fill its cells
    answer_here: Callable[[Queues], Awaitable[None]]  # cells a worker took and never answered


@dataclass
class Limits:
    """What a worker process needs of the run's settings to answer cells the way the parent would."""

    concurrency: int
    timeout_s: float | None
    timeout_local_s: float | None
    timeout_default: bool
    retry: RetryPolicy
    provider_concurrency: dict[str, Any]
    rpm: dict[str, Any]


class Shard:
    """One worker process: the cells it holds, and the parent's end of its two pipes."""

    def __init__(self, index: int, job: dict[str, Any]) -> None:
        self.index = index
        self.job = job
        self.how = ""
        self.pid = 0
        self.proc: Any = None  # asyncio.subprocess.Process when spawned
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.started = time.perf_counter()
        self.first_ask_s: float | None = None  # seconds from start to its first frame (a request for cells or answers)
        self.handed = 0
        self.answered = 0
        self.stats: dict[str, Any] = {}
        self.outstanding: dict[str, tuple[str, Any]] = {}  # cell key -> (gate key, provider) it holds unanswered
        self.sending = True  # False once it was told "end" (or stopped reading)
        self.fds: list[int] = []  # the parent's ends of a forked worker's pipes (a later fork closes them)

    # ---- starting ----------------------------------------------------------------------

    async def spawn(self) -> None:
        self.how = "spawn"
        code = _BOOT.format(path=[p for p in sys.path if p])
        self.proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE)
        self.pid = self.proc.pid
        self.reader, self.writer = self.proc.stdout, self.proc.stdin
        self._send("job", self.job)

    async def fork(self, cells: list[Cell], close_in_child: list[int]) -> None:
        self.how = "fork"
        down_r, down_w = os.pipe()  # parent -> worker
        up_r, up_w = os.pipe()  # worker -> parent
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        gc.freeze()  # the worker's collections skip what it inherited, so they do not copy the parent's pages
        pid = os.fork()
        if pid != 0:
            gc.unfreeze()
        if pid == 0:  # the worker: never returns into the parent's stack
            code = 1
            try:
                for fd in (down_w, up_r, *close_in_child):
                    os.close(fd)
                code = _forked_main(self.job, cells, down_r, up_w)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(down_r)
        os.close(up_w)
        self.pid, self.fds = pid, [up_r, down_w]
        loop = asyncio.get_running_loop()
        self.reader = asyncio.StreamReader(limit=2**26)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.reader), os.fdopen(up_r, "rb", 0))
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(down_w, "wb", 0))
        self.writer = asyncio.StreamWriter(transport, protocol, None, loop)

    # ---- talking -----------------------------------------------------------------------

    def _send(self, kind: str, payload: Any) -> None:
        assert self.writer is not None
        if not self.writer.is_closing():
            self.writer.write(_frame(kind, payload))

    def hand_out(self, host: Host, queues: Queues, want: int) -> None:
        """Send up to `want` cells, or "end" when none are left (after which nothing more is sent)."""
        if not self.sending:
            return
        batch = _take(queues, want)
        if not batch:  # queues only shrink: nothing more will come
            self._send("end", None)
            self.sending = False
            return
        for gk, prov, key in batch:
            self.outstanding[key] = (gk, prov)
        self.handed += len(batch)
        if self.how == "fork":  # the worker holds the grid: a cell is its index
            self._send("cells", [(gk, host.groups[key][0]) for gk, _, key in batch])
        else:
            self._send("cells", [(gk, replace(host.cells[host.groups[key][0]], target=None)) for gk, _, key in batch])

    async def _first_frame(self, queues: Queues) -> tuple[str, Any] | None:
        """The worker's first frame; None if it ends first, or if the cells run out before it was given any."""
        assert self.reader is not None
        read = asyncio.ensure_future(_read_frame(self.reader))
        try:
            while not (await asyncio.wait({read}, timeout=POLL_S))[0]:
                if self.handed == 0 and not any(q for gk, q in queues.items() if shareable(gk)):
                    return None
            return read.result()
        finally:
            if not read.done():
                read.cancel()

    async def collect(self, host: Host, queues: Queues) -> None:
        """Hand cells out as the worker asks, finish each it answers; cells it never answers are answered here."""
        outstanding = self.outstanding
        try:
            assert self.reader is not None
            frame = await self._first_frame(queues)
            while frame is not None:
                kind, payload = frame
                want = 0
                if self.first_ask_s is None:
                    self.first_ask_s = time.perf_counter() - self.started
                if kind == "want":
                    want = payload
                elif kind == "got":
                    answers, want = payload
                    for key, comp in answers:
                        if outstanding.pop(key, None) is None:
                            continue  # not ours to finish (never happens: a worker answers what it was given)
                        self.answered += 1
                        await host.finish(key, comp)
                elif kind == "done":
                    self.stats = payload
                if want and self.sending:
                    try:
                        self.hand_out(host, queues, want)
                        if self.writer is not None:
                            await self.writer.drain()
                    except (BrokenPipeError, ConnectionResetError):
                        self.sending = False  # it stopped reading; the answers it sent before are still read below
                frame = await _read_frame(self.reader)
        except BaseException:
            self._kill()
            await self._reap()
            raise
        if self.handed == 0 or outstanding:
            self._kill()  # not needed, or it stopped answering: what it holds is answered here
        code = await self._reap()
        if outstanding:
            print(f"promptkit: worker process {self.index} ({self.how}) ended with code {code} holding "
                  f"{len(outstanding)} unanswered cell(s); this process answers them", file=sys.stderr)
            again: Queues = {}
            for key, (gk, prov) in outstanding.items():
                again.setdefault(gk, deque()).append((prov, key))
            await host.answer_here(again)

    def _kill(self) -> None:
        try:
            if self.proc is not None:
                if self.proc.returncode is None:
                    self.proc.kill()
            elif self.pid:
                os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    async def _reap(self) -> int | None:
        if self.writer is not None:
            self.writer.close()
        if self.proc is not None:
            return await self.proc.wait()
        if not self.pid:
            return None
        while True:  # the worker exits right after its last frame: a short wait
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            await asyncio.sleep(0.005)


def _take(queues: Queues, n: int) -> list[tuple[str, Any, str]]:
    """Up to n cells from the front of the shareable queues, the same way the parent's own workers take them."""
    out: list[tuple[str, Any, str]] = []
    for gk, q in queues.items():
        if not shareable(gk):
            continue
        while q and len(out) < n:
            prov, key = q.popleft()
            out.append((gk, prov, key))
    return out


class Workers:
    """The worker processes of one run, from the parent's side: start them, feed them, stop them."""

    def __init__(self, n: int, limits: Limits, store: Cache | None) -> None:
        self.n = n
        self.limits = limits
        where = None  # the parent's store by its kind (a SqliteCache file need not end in .sqlite3)
        if isinstance(store, SqliteCache):
            where = ("sqlite", str(store.path))
        elif isinstance(store, DiskCache):
            where = ("disk", str(store.root))
        self.store = where
        self.shards: list[Shard] = []
        self.forking = _fork_is_safe()

    @staticmethod
    def wanted(n: int, concurrency: int, budget_limited: bool, models: set[str]) -> int:
        """How many processes a run uses: 1 when it asked for one, has a budget or calls no API model."""
        if budget_limited or not any(shareable(m.partition(":")[0]) for m in models):
            return 1
        return min(n, concurrency)

    def parent_concurrency(self) -> int:
        return _share(self.limits.concurrency, self.n, 0)

    def _job(self, i: int, modules: list[str]) -> dict[str, Any]:
        conc = _share(self.limits.concurrency, self.n, i)
        return {"limits": self.limits, "store": self.store, "modules": modules, "concurrency": conc,
                "window": 2 * conc, "n": self.n, "index": i}

    async def spawn_early(self, models: set[str]) -> None:
        """Fresh interpreters start before the parent reads the cache, so their imports overlap its work."""
        if not self.forking:
            await self._spawn(_providers(models))

    async def _spawn(self, providers: list[Any]) -> None:
        modules = sorted({type(p).__module__ for p in providers} - {"__main__"})  # a plugin's provider registers there
        for i in range(1, self.n):
            s = Shard(i, self._job(i, modules))
            await s.spawn()
            self.shards.append(s)

    async def fork(self, host: Host, queues: Queues) -> None:
        """Forked workers start once the cells to call are known (none to share: none start), each with its
        first window of cells already sent, so it calls from its first moment."""
        if not self.forking or not any(q for gk, q in queues.items() if shareable(gk)):
            return
        providers = _providers_of(queues)
        if not _fork_is_safe():  # a thread started since the run began (a plugin's, say): fresh interpreters
            self.forking = False
            await self._spawn(providers)
            return
        await _build_clients(providers)
        for i in range(1, self.n):
            s = Shard(i, self._job(i, []))
            await s.fork(host.cells, [fd for prev in self.shards for fd in prev.fds])
            s.hand_out(host, queues, s.job["window"])
            self.shards.append(s)

    def share_gates(self, gates: dict[str, Gate]) -> None:
        """The parent's own part of each shared gate's limits (the workers have theirs)."""
        if self.shards:
            for gk, gate in list(gates.items()):
                if shareable(gk):
                    gates[gk] = share_gate(gate, self.n, 0)

    def collectors(self, host: Host, queues: Queues) -> list[Awaitable[None]]:
        return [s.collect(host, queues) for s in self.shards]

    async def close(self) -> None:
        """Stop any worker still running (a run that ended before collecting from it)."""
        for s in self.shards:
            if s.pid and (s.proc is None or s.proc.returncode is None):
                s._kill()
                await s._reap()

    def summary(self) -> list[dict[str, Any]]:
        """What each worker did, for the run's meta."""
        return [{"process": s.index, "start": s.how,
                 "first_ask_s": None if s.first_ask_s is None else round(s.first_ask_s, 3), "cells": s.answered}
                for s in self.shards]


def _providers(models: set[str]) -> list[Any]:
    from .providers import get_provider

    out = []
    for model in sorted(models):
        if shareable(model.partition(":")[0]):
            try:
                out.append(get_provider(model))
            except PromptkitError:
                continue  # the run reports it on the model's cells
    return out


def _providers_of(queues: Queues) -> list[Any]:
    seen: dict[int, Any] = {}
    for gk, q in queues.items():
        if shareable(gk):
            for prov, _ in q:
                seen.setdefault(id(prov), prov)
    return list(seen.values())


async def _build_clients(providers: list[Any]) -> None:
    """Build this process's SDK client for each API provider now, which its first call would do anyway: a forked
    worker then inherits the imported SDK (0.3 s of CPU) instead of importing it a second time."""
    for prov in providers:
        clients = getattr(prov, "_clients", None)  # the SDK providers' per-loop clients (_sdk.py)
        if clients is not None:
            await clients.get()


# ---- the worker process ----------------------------------------------------------------


async def _serve(job: dict[str, Any], cells: list[Cell] | None, reader: asyncio.StreamReader,
                 write: Callable[[bytes], None]) -> None:
    """Ask for cells, answer them under this worker's limits, send answers back in small batches.

    A forked worker holds the run's `cells` and is sent indexes into them; a spawned one is sent cells.
    """
    from .providers import get_provider

    lim: Limits = job["limits"]
    n, i, conc = job["n"], job["index"], job["concurrency"]
    store = None
    if job["store"]:
        kind, where = job["store"]
        store = SqliteCache(where) if kind == "sqlite" else DiskCache(where)
    caller = Caller(concurrency=conc, timeout_s=lim.timeout_s, timeout_local_s=lim.timeout_local_s,
                    timeout_default=lim.timeout_default, retry=lim.retry, budget=Budget())
    writer = BackgroundWriter(store) if store is not None else None
    gates: dict[str, tuple[Gate, asyncio.Semaphore]] = {}
    providers: dict[str, Any] = {}
    outbox: list[tuple[str, Completion]] = []
    credit = 0
    loop = asyncio.get_running_loop()

    def flush() -> None:
        nonlocal credit
        if outbox or credit:
            write(_frame("got", (outbox[:], credit)))
            outbox.clear()
            credit = 0

    def gate_of(gk: str) -> tuple[Gate, asyncio.Semaphore]:
        if gk not in gates:
            g = share_gate(make_gate(gk, lim.provider_concurrency, lim.rpm, lim.concurrency), n, i)
            gates[gk] = (g, asyncio.Semaphore(min(g.concurrency, conc)))
        return gates[gk]

    async def one(gk: str, cell: Cell) -> None:
        nonlocal credit
        gate, slots = gate_of(gk)
        async with slots:
            try:
                prov = providers.get(cell.model)
                if prov is None:
                    prov = providers[cell.model] = get_provider(cell.model)
                comp = await caller.answer(cell, gate, prov)
            except asyncio.CancelledError:
                raise
            except PromptkitError as exc:
                comp = Completion(error_kind="config", error=str(exc), model=cell.model)
            except Exception as exc:  # a runner bug must not drop the cell
                comp = Completion(error_kind="unknown", error=redact(f"worker: {type(exc).__name__}: {exc}"))
        if comp.ok and writer is not None:
            writer.put(cell.key, comp)
        outbox.append((cell.key, comp))
        credit += 1
        if len(outbox) == 1:
            loop.call_later(FLUSH_S, flush)

    tasks: set[asyncio.Task[None]] = set()
    if cells is None:  # a spawned worker asks; a forked one (it holds the grid) was sent its first window at fork
        write(_frame("want", job["window"]))
    try:
        while True:
            frame = await _read_frame(reader)
            if frame is None or frame[0] == "end":
                break
            for gk, cell in frame[1]:
                t = asyncio.ensure_future(one(gk, cells[cell] if cells is not None else cell))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))
        flush()
    finally:
        errors = [redact(e) for e in writer.close()] if writer is not None else []
    write(_frame("done", {"calls": caller.counts["calls"], "retries": caller.counts["retries"],
                          "max_in_flight": caller.max_in_flight, "cache_write_errors": errors}))


def _writer_to(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return write


def _forked_main(job: dict[str, Any], cells: list[Cell], down: int, up: int) -> int:
    """The worker's life after fork: a fresh event loop of its own, then exit without touching the parent's state."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent's handler belongs to the parent's loop
    try:
        signal.set_wakeup_fd(-1)  # a signal here must not wake the parent's loop through its (shared) self-pipe
    except ValueError:
        pass
    asyncio.events._set_running_loop(None)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def main() -> None:
        reader = asyncio.StreamReader(limit=2**26)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(down, "rb", 0))
        await _serve(job, cells, reader, _writer_to(up))

    loop.run_until_complete(main())
    os.close(up)
    return 0


def child_main() -> None:
    """Entry of a spawned worker: the job arrives on stdin, frames go to the original stdout."""
    up = os.dup(1)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the frames

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**26)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(0, "rb", 0))
        frame = await _read_frame(reader)
        if frame is None or frame[0] != "job":
            return
        job = frame[1]
        for mod in job["modules"]:
            importlib.import_module(mod)
        await _serve(job, None, reader, _writer_to(up))

    asyncio.run(main())
    os.close(up)
