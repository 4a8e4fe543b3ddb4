"""Use more than one core for one run: worker processes take API cells from the run's queue as they free up.

At high concurrency an API run is limited by the client's CPU (the SDK builds and
parses every request in Python), not by the server. With `workers=N` the run
starts N-1 worker processes; the parent keeps answering cells itself, and each
worker asks for more cells whenever calls of its own finish, so no worker holds
more than its window (twice its share of the concurrency) and a slow or stalled
worker never holds back cells another process could take. Each worker has one
event loop and one SDK client, answers under its share of the concurrency and
rpm limits, writes successful answers to the shared cache (SQLite WAL or
DiskCache are safe across processes) and sends completions back; the parent
grades them, fills the results in cell order and drives the progress bar. A
worker that dies hands its unanswered cells back: the parent answers them.

Workers start by fork when this process has one thread and runs on Linux (a few
milliseconds: the SDK is already imported), else as a fresh interpreter (about
half a second of imports, which the parent spends answering cells). Local-model
cells never leave the parent (one process per loaded model), and a run with a
budget stays in one process (a cap needs one ledger).
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
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

from .cache import BackgroundWriter, DiskCache, SqliteCache
from .errors import ExperimentError, PromptkitError, redact
from .limits import Budget, Gate
from .types import Cell, Completion

if TYPE_CHECKING:  # pragma: no cover
    from .runner import _Run

IN_PROCESS: frozenset[str] = frozenset({"local", "score"})  # providers that hold a loaded model
FLUSH_S = 0.005  # a worker sends what it answered at most this long after the answer
POLL_S = 0.05  # how often the parent checks whether a worker that has not asked yet is still needed
START = "auto"  # "fork", "spawn" or "auto" (fork when it is safe); tests set it
_HEAD = struct.Struct("!I")
_BOOT = "import sys; sys.path[:0] = {path!r}; from promptkit.shard import child_main; child_main()"


def check_workers(workers: Any) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ExperimentError(f"workers must be a whole number of at least 1, got {workers!r}")
    return workers


def _share(total: int, n: int, i: int) -> int:
    """Process i's part of a limit split n ways (the parts add up to the limit, each at least 1)."""
    return max(1, total // n + (1 if i < total % n else 0))


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
        self.first_ask_s: float | None = None  # seconds from start to its first request for cells
        self.handed = 0
        self.answered = 0
        self.stats: dict[str, Any] = {}
        self._fds: list[int] = []  # the parent's ends of a forked worker's pipes

    # ---- starting ----------------------------------------------------------------------

    async def start(self, close_in_child: list[int]) -> None:
        if _fork_is_safe():
            await self._fork(close_in_child)
        else:
            await self._spawn()

    async def _spawn(self) -> None:
        self.how = "spawn"
        code = _BOOT.format(path=[p for p in sys.path if p])
        self.proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE)
        self.pid = self.proc.pid
        self.reader, self.writer = self.proc.stdout, self.proc.stdin
        self._send("job", self.job)

    async def _fork(self, close_in_child: list[int]) -> None:
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
                code = _forked_main(self.job, down_r, up_w)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(down_r)
        os.close(up_w)
        self.pid, self._fds = pid, [up_r, down_w]
        loop = asyncio.get_running_loop()
        self.reader = asyncio.StreamReader(limit=2**26)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.reader), os.fdopen(up_r, "rb", 0))
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(down_w, "wb", 0))
        self.writer = asyncio.StreamWriter(transport, protocol, None, loop)

    def parent_fds(self) -> list[int]:
        """This worker's pipe ends held by the parent (a later fork closes them, or EOF would never come)."""
        return list(self._fds)

    # ---- talking -----------------------------------------------------------------------

    def _send(self, kind: str, payload: Any) -> None:
        assert self.writer is not None
        if not self.writer.is_closing():
            self.writer.write(_frame(kind, payload))

    async def collect(self, run: "_Run", queues: dict[str, deque[Any]]) -> None:
        """Hand cells out as the worker asks, finish each it answers; cells it never answers are answered here."""
        outstanding: dict[str, tuple[str, Any]] = {}
        ended = False
        read: asyncio.Task[Any] | None = None
        try:
            assert self.reader is not None
            while True:
                if read is None:
                    read = asyncio.ensure_future(_read_frame(self.reader))
                done, _ = await asyncio.wait({read}, timeout=POLL_S)
                if not done:
                    if self.handed == 0 and not any(q for gk, q in queues.items() if shareable(gk)):
                        break  # still starting, and nothing is left to give it
                    continue
                frame, read = read.result(), None
                if frame is None:
                    break
                kind, payload = frame
                want = 0
                if kind == "want":
                    want = payload
                    if self.first_ask_s is None:
                        self.first_ask_s = time.perf_counter() - self.started
                elif kind == "got":
                    answers, want = payload
                    for key, comp in answers:
                        if outstanding.pop(key, None) is None:
                            continue  # not ours to finish (never happens: a worker answers what it was given)
                        self.answered += 1
                        run.budget.add(comp)
                        await run._finish(key, comp, hit=False, write=not self.job["store"])
                elif kind == "done":
                    self.stats = payload
                    continue
                if want and not ended:
                    batch = _take(queues, want)
                    if batch:
                        for gk, prov, key in batch:
                            outstanding[key] = (gk, prov)
                        self.handed += len(batch)
                        self._send("cells", [(gk, replace(run.cells[run.groups[key][0]], target=None))
                                             for gk, prov, key in batch])
                    else:  # queues only shrink: nothing more will come
                        self._send("end", None)
                        ended = True
                if self.writer is not None:
                    await self.writer.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass
        except BaseException:
            self._kill()
            await self._reap()
            raise
        finally:
            if read is not None and not read.done():
                read.cancel()
        if self.handed == 0 or outstanding:
            self._kill()  # not needed, or it stopped answering: what it holds is answered here
        code = await self._reap()
        if outstanding:
            print(f"promptkit: worker process {self.index} ({self.how}) ended with code {code} holding "
                  f"{len(outstanding)} unanswered cell(s); this process answers them", file=sys.stderr)
            again: dict[str, deque[Any]] = {}
            for key, (gk, prov) in outstanding.items():
                again.setdefault(gk, deque()).append((prov, key))
            await asyncio.gather(*(run._worker(run.gates[gk], q) for gk, q in again.items()
                                   for _ in range(min(run.gates[gk].concurrency, len(q)))))

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


def _take(queues: dict[str, deque[Any]], n: int) -> list[tuple[str, Any, str]]:
    """Up to n cells from the front of the shareable queues, the same way the parent's own workers take them."""
    out: list[tuple[str, Any, str]] = []
    for gk, q in queues.items():
        if not shareable(gk):
            continue
        while q and len(out) < n:
            prov, key = q.popleft()
            out.append((gk, prov, key))
    return out


async def start_workers(run: "_Run") -> list[Shard]:
    """Start the worker processes of a run whose cells include API calls; shrink the parent's limits to its share.

    They start before the parent reads the cache, so a fresh interpreter's imports overlap the parent's own work.
    """
    n = min(run.workers, run.concurrency)
    if n < 2 or run.budget.limited:
        return []
    models = {c.model for c in run.cells if shareable(c.model.partition(":")[0])}
    if not models:
        return []
    await _build_clients(models)
    run.global_slots = asyncio.Semaphore(_share(run.concurrency, n, 0))
    store = run.store if run.mode != "off" else None
    where = None
    if isinstance(store, SqliteCache):
        where = ("sqlite", str(store.path))
    elif isinstance(store, DiskCache):
        where = ("disk", str(store.root))
    from .providers import _REGISTERED

    modules = sorted({cls.__module__ for cls in _REGISTERED.values() if cls.__module__ != "__main__"})
    shards: list[Shard] = []
    for i in range(1, n):
        conc = _share(run.concurrency, n, i)
        job = {
            "name": f"{run.experiment.name}[{i}]", "store": where, "modules": modules, "concurrency": conc,
            "window": 2 * conc, "timeout_s": run.timeout_s, "timeout_local_s": run.timeout_local_s,
            "retry": run.retry, "stream": run.stream, "n": n, "index": i,
            "provider_concurrency": dict(run.provider_concurrency), "rpm": dict(run.rpm),
        }
        s = Shard(i, job)
        await s.start([fd for prev in shards for fd in prev.parent_fds()])
        shards.append(s)
    return shards


async def _build_clients(models: set[str]) -> None:
    """Build this process's SDK client for each API model now, which its first call would do anyway: a forked
    worker then inherits the imported SDK (0.3 s of CPU) instead of importing it a second time."""
    from .providers import get_provider

    for model in sorted(models):
        try:
            clients = getattr(get_provider(model), "_clients", None)  # the SDK providers' per-loop clients (_sdk.py)
        except PromptkitError:
            continue  # the run reports it on the model's cells
        if clients is not None and _fork_is_safe():
            await clients.get()


def shrink_parent_gates(run: "_Run", n: int) -> None:
    """The parent's own part of each shared gate's limits (the workers have theirs)."""
    for gk, gate in list(run.gates.items()):
        if shareable(gk):
            run.gates[gk] = Gate(gk, _share(gate.concurrency, n, 0), gate.rpm / n if gate.rpm else None)


def summary(shards: list[Shard]) -> list[dict[str, Any]]:
    """What each worker did, for the run's meta."""
    return [{"process": s.index, "start": s.how, "first_ask_s": None if s.first_ask_s is None else round(s.first_ask_s, 3),
             "cells": s.answered} for s in shards]


async def close(shards: list[Shard]) -> None:
    """Stop any worker still running (a run that ended before collecting from it)."""
    for s in shards:
        if s.pid and (s.proc is None or s.proc.returncode is None):
            s._kill()
            await s._reap()


# ---- the worker process ----------------------------------------------------------------


async def _serve(job: dict[str, Any], reader: asyncio.StreamReader, write: Callable[[bytes], None]) -> None:
    """Ask for cells, answer them under this worker's limits, send answers back in small batches."""
    from .limits import DEFAULT_PROVIDER_CONCURRENCY
    from .providers import get_provider, parse_spec
    from .runner import _Run, limit_for

    class _Part:
        name, graders, cells = job["name"], [], []

    n, i, conc = job["n"], job["index"], job["concurrency"]
    store = None
    if job["store"]:  # the parent's store by its kind (a SqliteCache file need not end in .sqlite3)
        kind, where = job["store"]
        store = SqliteCache(where) if kind == "sqlite" else DiskCache(where)
    run = _Run(_Part(), cache="refresh" if store is not None else "off", cache_backend=None,  # type: ignore[arg-type]
               concurrency=conc, provider_concurrency=None, rpm=None, timeout_s=job["timeout_s"],
               timeout_local_s=job["timeout_local_s"], retry=job["retry"], budget=Budget(), progress=False,
               stream=job["stream"])
    run.global_slots = asyncio.Semaphore(conc)
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
            prefix = gk.split("@", 1)[0]
            limit = limit_for(job["provider_concurrency"], gk, prefix, DEFAULT_PROVIDER_CONCURRENCY.get(prefix, 10**9))
            rpm = limit_for(job["rpm"], gk, prefix, None)
            g = Gate(gk, min(_share(int(limit), n, i), conc), rpm / n if rpm else None)
            gates[gk] = (g, asyncio.Semaphore(g.concurrency))
        return gates[gk]

    async def one(gk: str, cell: Cell) -> None:
        nonlocal credit
        gate, slots = gate_of(gk)
        async with slots:
            try:
                prov = providers.get(cell.model)
                if prov is None:
                    prov = providers[cell.model] = get_provider(cell.model)
                comp = await run._call(cell, gate, prov)
                comp.provider = comp.provider or prov.spec.provider
                comp.model = comp.model or prov.model
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
    write(_frame("want", job["window"]))
    try:
        while True:
            frame = await _read_frame(reader)
            if frame is None or frame[0] == "end":
                break
            for gk, cell in frame[1]:
                t = asyncio.ensure_future(one(gk, cell))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        while tasks:
            await asyncio.gather(*list(tasks))
        flush()
    finally:
        errors = [redact(e) for e in writer.close()] if writer is not None else []
    write(_frame("done", {"calls": run.counts["calls"], "retries": run.counts["retries"],
                          "max_in_flight": run.max_in_flight, "cache_write_errors": errors}))


def _writer_to(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return write


def _forked_main(job: dict[str, Any], down: int, up: int) -> int:
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
        await _serve(job, reader, _writer_to(up))

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
        await _serve(job, reader, _writer_to(up))

    asyncio.run(main())
    os.close(up)
