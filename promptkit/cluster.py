"""Local models on a Dask cluster: more CPUs (or machines) than one process has.

`pk.run(exp, cluster="tcp://scheduler:8786")` (or `--scheduler` on the command
line, `run: {cluster: ...}` in YAML) hands the experiment's local-model cells to a
Dask distributed scheduler, one task per cell with the cell key as the task key
(`client.submit(..., key=cell_key)`: a cell submitted twice, by two drivers or a
retry, runs once). Each worker process loads a model the first time one of its
cells needs it and keeps it for the rest (promptkit's per-process model registry),
so a model is loaded once per worker, not once per cell. Answers come back to the
driver, which grades them, caches them and builds the Results; workers need the
models installed but no access to the cache. API cells stay in the driver's event
loop (they wait on the network, not the CPU). `cluster="local"` starts a
LocalCluster on this machine with one worker per core, each running llama.cpp on one thread.

Needs `dask` and `distributed` (`pip install 'promptkit[cluster]'`).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import Counter
from typing import Any, Iterator

from .cpu import allowed_cpus
from .errors import ExperimentError, redact, require
from .types import Completion, Request

Run = Any  # the runner's state for one run (runner._Run): cells, groups, results, _finish

IN_CLUSTER: frozenset[str] = frozenset({"local", "score"})  # providers that hold a loaded model
PROVIDERS_SEEN: dict[str, set[int]] = {}  # worker side: the provider objects that answered, by model


def _distributed() -> Any:
    return require("distributed", "cluster= needs Dask distributed: pip install 'promptkit[cluster]' "
                                  "(or pip install dask distributed)")


@contextlib.contextmanager
def environ_kept() -> Iterator[None]:
    """Put this process's environment back as it was: Dask's nanny writes the variables it means for the workers
    it spawns (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_, ...) into os.environ and leaves them,
    and everything this process starts later (a notebook kernel, a dashboard) would inherit them."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for name in [k for k in os.environ if k not in saved]:
            del os.environ[name]
        for name, value in saved.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def local_cluster_options() -> dict[str, Any]:
    """`cluster="local"`: one worker process per CPU this process may use, each running llama.cpp on one thread
    (PROMPTKIT_THREADS, unless the user set it). Without it every worker took every core for its model, two
    workers on two cores ran four llama.cpp threads, and each waited on threads the other had descheduled."""
    return {"n_workers": allowed_cpus()[0], "threads_per_worker": 1, "dashboard_address": None,
            "env": {"PROMPTKIT_THREADS": os.environ.get("PROMPTKIT_THREADS") or "1"}}


def check_cluster(value: Any) -> Any:
    """None, "local", a scheduler address ("tcp://host:8786") or a distributed.Client; a clear message otherwise."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        if value == "local" or "://" in value:
            return value
        raise ExperimentError(f"cluster must be 'local' or a scheduler address like tcp://host:8786, got {value!r}")
    if hasattr(value, "scheduler") and hasattr(value, "submit"):
        return value
    raise ExperimentError(f"cluster must be 'local', a scheduler address or a distributed.Client, got {value!r}")


def answer_cell(model: str, request: Request, timeout_s: float | None) -> tuple[Completion, str]:
    """Worker side: one cell's call with this process's provider (its model loaded once); never raises."""
    from .providers import get_provider

    try:
        from distributed import get_worker

        where = get_worker().address
    except Exception:
        where = f"pid {os.getpid()}"
    try:
        provider = get_provider(model)  # built once per process; it loads its model once (load_model's cache)
        PROVIDERS_SEEN.setdefault(model, set()).add(id(provider))
    except Exception as exc:  # e.g. the model is not installed on this worker
        return Completion(error_kind="config", model=model,
                          error=redact(f"on worker {where}: {type(exc).__name__}: {exc}")), where

    async def call() -> Completion:
        if timeout_s is None:
            return await provider.complete(request)
        try:
            return await asyncio.wait_for(provider.complete(request), timeout_s)
        except asyncio.TimeoutError:
            return Completion(error_kind="timeout", latency_s=timeout_s,
                              error=f"no answer within {timeout_s:g} s on worker {where}")

    return asyncio.run(call()), where


def model_builds() -> dict[str, int]:
    """Worker side: how many provider objects (each holding its loaded model) answered per model: 1 when loaded once."""
    return {m: len(ids) for m, ids in PROVIDERS_SEEN.items()}


def take_clustered(run: Run, todo: list[str]) -> tuple[list[str], list[str]]:
    """Split the keys to call into (stay in the driver, go to the cluster)."""
    from .providers import parse_spec

    rest, out = [], []
    for key in todo:
        model = run.cells[run.groups[key][0]].model
        try:
            prefix = parse_spec(model).provider
        except Exception:
            prefix = ""
        (out if prefix in IN_CLUSTER else rest).append(key)
    return rest, out


class ClusterPart:
    """The cells of one run answered on a Dask cluster."""

    def __init__(self, run: Run, keys: list[str], cluster: Any) -> None:
        self.run, self.keys, self.cluster = run, keys, cluster
        self.by_worker: Counter[str] = Counter()
        self.address: str | None = None

    async def execute(self) -> None:
        distributed = _distributed()
        own_cluster = None
        target = self.cluster
        with environ_kept() if target == "local" else contextlib.nullcontext():
            if target == "local":
                own_cluster = await distributed.LocalCluster(**local_cluster_options(), asynchronous=True)
                target = own_cluster
            elif not isinstance(target, str):
                target = target.scheduler.address  # a user's Client: our own asynchronous one to the same scheduler
            try:
                connect_s = float(os.environ.get("PROMPTKIT_CLUSTER_CONNECT_S") or 20)
                async with distributed.Client(target, asynchronous=True, timeout=connect_s) as client:
                    self.address = client.scheduler.address
                    await self._run(client, distributed)
            finally:
                if own_cluster is not None:
                    await own_cluster.close()

    async def _run(self, client: Any, distributed: Any) -> None:
        timeout = self.run.timeout_local_s
        futures = {}
        for key in self.keys:
            cell = self.run.cells[self.run.groups[key][0]]
            # the cell key is the task key: submitted twice (another driver, a retry), it runs once
            futures[client.submit(answer_cell, cell.model, cell.request, timeout, key=key, pure=False,
                                  retries=1)] = key
        try:
            async for fut in distributed.as_completed(list(futures)):
                key = futures[fut]
                try:
                    comp, where = await fut
                    self.by_worker[where] += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a worker died twice, or the task could not be run
                    comp = Completion(error_kind="unknown",
                                      error=redact(f"cluster task failed: {type(exc).__name__}: {exc}"))
                cell = self.run.cells[self.run.groups[key][0]]
                comp.model = comp.model or cell.model
                self.run.counts["calls"] += 1
                await self.run._finish(key, comp, hit=False)
        except BaseException:
            await client.cancel(list(futures), force=True)
            raise


async def run_on_cluster(run: Run, keys: list[str]) -> None:
    """The runner's hook: answer `keys` (local-model cells) on the run's Dask cluster."""
    part = ClusterPart(run, keys, run.cluster)
    run.cluster_part = part
    try:
        await part.execute()
    except (OSError, asyncio.TimeoutError) as exc:  # no scheduler there: every cell an error, the run goes on
        msg = redact(f"cannot reach the Dask scheduler {run.cluster!r}: {type(exc).__name__}: {exc}; start it "
                     f"(dask scheduler) or fix the address")
        print(f"promptkit: {msg}", file=sys.stderr)
        for key in keys:
            if run.results[run.groups[key][0]] is None:
                await run._finish(key, Completion(error_kind="connection", error=msg), hit=False)
