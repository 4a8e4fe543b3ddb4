"""The CPU budget of local models: threads that sleep while they wait, and how many of them.

llama.cpp here is built with OpenMP (libgomp). By default libgomp's threads
spin while they wait at a barrier; when other processes (a second notebook, a
dashboard kernel, a browser) hold the cores, every barrier then waits for a
thread that is not running, and a 0.6 s SmolLM2 answer takes 7-75 s (issue 21).
`OMP_WAIT_POLICY=PASSIVE` makes them sleep instead, but libgomp reads it once,
when it is loaded. So:

- `import promptkit` sets it (unless the environment already chose) before
  anything loads llama.cpp, and child processes (the dashboard's kernels,
  subprocesses) inherit it from the environment;
- when a model loads, `omp_spin_count()` asks the libgomp llama.cpp really uses
  what it was initialised with (`omp_display_env`); if it spins (llama_cpp was
  imported before promptkit, or the environment asked for ACTIVE), promptkit
  warns and runs llama.cpp on one thread, which never enters an OpenMP region.

Threads: every CPU this process may run on (sched_getaffinity, capped by a
cgroup CPU quota), or PROMPTKIT_THREADS; on a machine of two CPUs, generation
runs on one of them (ONE_DECODE_THREAD_UP_TO_CPUS below; PROMPTKIT_DECODE_THREADS).
Fewer threads when the machine is busy was measured and is slower: with passive waiting, sleeping threads are
woken ahead of CPU-bound processes, so two threads under two busy processes
answered in 1.5 s where one thread took 3.2 s.
"""
from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import PromptkitError

WAIT_POLICY = "OMP_WAIT_POLICY"


class SpinningThreadsWarning(UserWarning):
    """libgomp was initialised to spin, so promptkit runs llama.cpp on one thread."""


def prefer_passive_wait() -> None:
    """Ask OpenMP threads to sleep while they wait, unless the environment already chose a policy.

    Runs at `import promptkit`, before llama.cpp (and its libgomp) can load; the
    setting is in os.environ, so processes started from here inherit it.
    """
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")


def _read_fd2(call: Any) -> str:
    """What `call()` writes to file descriptor 2 (C stderr), captured through a pipe."""
    try:
        sys.stderr.flush()
    except Exception:
        pass
    r, w = os.pipe()
    saved = os.dup(2)
    try:
        os.dup2(w, 2)
        call()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    return b"".join(chunks).decode("utf-8", "replace")


def omp_spin_count(lib: Any = None) -> int | None:
    """How long llama.cpp's OpenMP threads spin before sleeping (0 = passive), as its libgomp was initialised.

    Reads libgomp's own report (`omp_display_env`), found through llama.cpp's
    library so it is the copy llama.cpp uses. None when llama.cpp is not built
    with OpenMP or the runtime cannot report.
    """
    if lib is None:
        import llama_cpp  # a core dependency; imported here, not through providers/local.py, which imports this module

        lib = llama_cpp.llama_cpp._lib
    try:
        display = lib.omp_display_env
    except AttributeError:
        return None
    import ctypes

    display.argtypes, display.restype = [ctypes.c_int], None
    text = _read_fd2(lambda: display(1))
    for line in text.splitlines():
        name, _, value = line.strip().partition("=")
        if name.strip() == "GOMP_SPINCOUNT":
            try:
                return int(value.strip().strip("'"))
            except ValueError:
                return None
    return None


def allowed_cpus() -> tuple[int, str]:
    """CPUs this process may use and where that number comes from (affinity, cgroup quota)."""
    try:
        n = len(os.sched_getaffinity(0))
        why = f"{n} CPU{'s' if n != 1 else ''} in this process's affinity"
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
        why = f"{n} CPU{'s' if n != 1 else ''}"
    quota = cgroup_cpu_quota()
    if quota is not None and math.ceil(quota) < n:
        n = max(1, math.ceil(quota))
        why += f", capped by the cgroup CPU quota of {quota:g}"
    return n, why


def cgroup_cpu_quota() -> float | None:
    """The container's CPU quota in CPUs (cgroup v2 cpu.max or v1 cfs quota), None when unlimited."""
    def read(path: str) -> str:
        with open(path, encoding="ascii") as f:
            return f.read()

    try:
        quota, period = read("/sys/fs/cgroup/cpu.max").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))
        period = int(read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class ThreadPlan:
    """How many threads llama.cpp gets and why, in words `promptkit models` prints.

    `threads` evaluate the prompt (llama.cpp's n_threads_batch); `decode` generate the answer token by token
    (n_threads; None: as many as `threads`).
    """

    threads: int
    why: str
    spin_count: int | None = None  # None: not checked (no model loaded yet) or not OpenMP
    decode: int | None = None

    @property
    def decode_threads(self) -> int:
        return self.decode or self.threads

    def __str__(self) -> str:
        def n(k: int) -> str:
            return f"{k} thread{'s' if k != 1 else ''}"

        if self.decode_threads == self.threads:
            return f"{n(self.threads)}: {self.why}"
        return f"{n(self.threads)} for the prompt and {n(self.decode_threads)} while generating: {self.why}"


# Generation on one thread on machines this small: each generated token is a few hundred small steps, and with
# passive waiting the second thread sleeps and is woken for every one. Measured on the 2-core development
# machine (benchmarks/bench_threads.py: 6 answers of 32 tokens after a ~250-token prompt, 2 rounds), the prompt
# on both threads and generation on one against both on both: idle, SmolLM2 1.50x, Qwen2.5 0.5B 1.19x and 1.5B
# 1.03x faster, each on less CPU; next to a busy process per core, SmolLM2 1.16x and Qwen2.5 0.5B 0.87x. The
# prompt, one big batch, still takes every core. More CPUs were not measured, so they keep every core for both.
ONE_DECODE_THREAD_UP_TO_CPUS = 2


def _explicit_threads(name: str = "PROMPTKIT_THREADS") -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise PromptkitError(f"{name} must be a whole number of threads, got {value!r}") from None
    if n < 1:
        raise PromptkitError(f"{name} must be at least 1, got {value!r}")
    return n


def thread_plan(spin_count: int | None = None, *, check: bool = False) -> ThreadPlan:
    """The thread counts for llama.cpp: PROMPTKIT_THREADS, else every allowed CPU (generation on one thread on a
    machine of up to two; PROMPTKIT_DECODE_THREADS sets that count), else 1 if its threads spin.

    `check=True` asks llama.cpp's libgomp for its spin count (loads llama_cpp).
    """
    if check and spin_count is None:
        spin_count = omp_spin_count()
    explicit = _explicit_threads()
    decode = _explicit_threads("PROMPTKIT_DECODE_THREADS")
    policy = os.environ.get(WAIT_POLICY)
    if explicit is not None:
        why = "set by PROMPTKIT_THREADS" + (" and PROMPTKIT_DECODE_THREADS" if decode else "")
        if spin_count:
            why += f" (OpenMP threads spin, GOMP_SPINCOUNT {spin_count}: slow when other processes share the CPU)"
        return ThreadPlan(explicit, why, spin_count, decode)
    n, why = allowed_cpus()
    if spin_count:
        cause = (f"the environment sets {WAIT_POLICY}={policy}" if policy and policy.upper() != "PASSIVE" else
                 "llama.cpp's OpenMP runtime was loaded before promptkit could ask it to wait passively "
                 "(llama_cpp or another OpenMP library was imported first)")
        return ThreadPlan(1, f"not {n}, because OpenMP threads spin while waiting (GOMP_SPINCOUNT {spin_count}) because "
                             f"{cause}; one thread never waits for another, so a shared CPU cannot stall it. "
                             f"To use every core, import promptkit first or start Python with "
                             f"{WAIT_POLICY}=PASSIVE", spin_count)
    load = load_average()
    busy = f"; load average {load:.1f}" if load is not None else ""
    how = "threads sleep while they wait (OpenMP passive)" if spin_count == 0 else \
        f"{WAIT_POLICY}={policy or 'unset'}"
    why = f"{why}; {how}, so a busy machine costs time in proportion to its share{busy}"
    if decode:
        why += "; generation threads set by PROMPTKIT_DECODE_THREADS"
    elif 1 < n <= ONE_DECODE_THREAD_UP_TO_CPUS:
        decode = 1
        why += ("; generation on one thread: on this few CPUs, waking a sleeping second thread for every step "
                "costs more than it brings")
    return ThreadPlan(n, why, spin_count, decode)


def warn_if_spinning(plan: ThreadPlan) -> None:
    """Say once per process, on stderr via warnings, that llama.cpp fell back to one thread and why."""
    if plan.spin_count and "PROMPTKIT_THREADS" not in plan.why:
        warnings.warn(f"promptkit: local models run on {plan}", SpinningThreadsWarning, stacklevel=3)


@contextlib.contextmanager
def busy_cpu(processes: int | None = None, seconds: float = 120.0) -> Iterator[list[subprocess.Popen]]:
    """Processes that keep every allowed CPU busy for at most `seconds`, killed on exit (benchmarks, tests).

    Each child also stops on its own at the deadline, so nothing outlives a crashed caller for long.
    """
    n = processes or allowed_cpus()[0]
    code = f"import time\nend = time.time() + {float(seconds)!r}\nwhile time.time() < end:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        time.sleep(0.2)  # let them reach the loop
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


__all__ = ["SpinningThreadsWarning", "ThreadPlan", "allowed_cpus", "busy_cpu", "omp_spin_count",
           "prefer_passive_wait", "thread_plan"]
