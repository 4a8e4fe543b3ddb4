"""Local models on a shared CPU (issue 21): OpenMP threads sleep while they wait, whatever was imported first.

Each import-order case runs in a fresh interpreter, because libgomp reads its
wait policy once, when it is loaded.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import pytest

import promptkit as pk
from promptkit.errors import PromptkitError
from promptkit.cpu import ONE_DECODE_THREAD_UP_TO_CPUS, allowed_cpus, busy_cpu, thread_plan

PROMPT = "Write a long poem about the sea."
TOKENS = 26

PROBE = """
import json, sys, warnings
warnings.simplefilter("always")
caught = []
warnings.showwarning = lambda m, c, *a, **k: caught.append(c.__name__ + ": " + str(m))
{before}
import promptkit as pk
from promptkit.providers import get_provider
lm = get_provider("local:smollm2").loaded()
print(json.dumps({{"policy": __import__("os").environ.get("OMP_WAIT_POLICY"), "spin": lm.threads.spin_count,
                  "threads": lm.threads.threads, "why": lm.threads.why, "n_threads": lm.llm.n_threads,
                  "n_threads_batch": lm.llm.n_threads_batch, "warnings": caught}}))
"""


def _probe(before: str = "", **env: str) -> dict:
    e = {k: v for k, v in os.environ.items()
         if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "PROMPTKIT_THREADS", "PROMPTKIT_DECODE_THREADS")}
    e.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], capture_output=True, text=True,
                         env=e, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_asks_for_passive_wait_and_child_processes_inherit_it():
    """Dashboard kernels and other children start from this environment, so they wait passively too."""
    e = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = ("import promptkit, subprocess, sys; print(subprocess.run([sys.executable, '-c', "
            "'import os; print(os.environ.get(\"OMP_WAIT_POLICY\"))'], capture_output=True, text=True).stdout)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=60)
    assert out.stdout.strip() == "PASSIVE", out.stderr


@pytest.mark.local_model
def test_numpy_and_pandas_imported_first_still_give_sleeping_threads_on_every_core():
    r = _probe("import numpy, pandas, matplotlib.pyplot")
    assert r["policy"] == "PASSIVE"
    assert r["spin"] == 0
    n = allowed_cpus()[0]
    assert r["threads"] == n == r["n_threads_batch"]
    assert r["n_threads"] == (1 if n <= ONE_DECODE_THREAD_UP_TO_CPUS else n)  # generation: one thread on 2 CPUs
    assert not r["warnings"]


@pytest.mark.local_model
def test_llama_cpp_imported_first_spins_so_one_thread_is_used_and_the_user_is_told():
    r = _probe("import llama_cpp")
    assert r["spin"] > 0
    assert r["threads"] == r["n_threads"] == r["n_threads_batch"] == 1
    assert any("SpinningThreadsWarning" in w and "import promptkit first" in w for w in r["warnings"]), r


@pytest.mark.local_model
def test_an_explicit_active_policy_is_kept_and_named_in_the_reason():
    r = _probe(OMP_WAIT_POLICY="ACTIVE")
    assert r["policy"] == "ACTIVE" and r["spin"] > 0 and r["threads"] == 1
    assert "OMP_WAIT_POLICY=ACTIVE" in r["why"]


@pytest.mark.local_model
def test_promptkit_threads_sets_generation_and_prompt_threads():
    r = _probe(PROMPTKIT_THREADS="1")
    assert r["n_threads"] == r["n_threads_batch"] == 1 and r["spin"] == 0
    assert "PROMPTKIT_THREADS" in r["why"]


@pytest.mark.local_model
def test_promptkit_decode_threads_sets_the_generation_threads_alone():
    r = _probe(PROMPTKIT_DECODE_THREADS="2")
    assert (r["n_threads"], r["n_threads_batch"]) == (2, allowed_cpus()[0])
    assert "PROMPTKIT_DECODE_THREADS" in r["why"]


@pytest.mark.parametrize("cpus, env, want", [
    (1, {}, (1, 1)),
    (2, {}, (2, 1)),  # a 2-CPU machine: the prompt on both, generation on one
    (4, {}, (4, 4)),  # not measured beyond two CPUs: every core for both
    (2, {"PROMPTKIT_DECODE_THREADS": "2"}, (2, 2)),
    (2, {"PROMPTKIT_THREADS": "2"}, (2, 2)),  # the user's count is both unless generation is named too
    (4, {"PROMPTKIT_THREADS": "3", "PROMPTKIT_DECODE_THREADS": "1"}, (3, 1)),
])
def test_prompt_and_generation_threads(cpus, env, want, monkeypatch):
    import promptkit.cpu as cpu

    for name in ("PROMPTKIT_THREADS", "PROMPTKIT_DECODE_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: (cpus, f"{cpus} CPUs"))
    plan = thread_plan(spin_count=0)
    assert (plan.threads, plan.decode_threads) == want
    assert str(plan).startswith(f"{want[0]} thread" if want[0] == want[1] else
                                f"{want[0]} threads for the prompt and {want[1]} thread")


def test_bad_promptkit_threads_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PROMPTKIT_THREADS", "many")
    with pytest.raises(PromptkitError, match="PROMPTKIT_THREADS must be a whole number"):
        thread_plan()
    monkeypatch.delenv("PROMPTKIT_THREADS")
    monkeypatch.setenv("PROMPTKIT_DECODE_THREADS", "0")
    with pytest.raises(PromptkitError, match="PROMPTKIT_DECODE_THREADS must be at least 1, got '0'"):
        thread_plan()


def test_busy_processes_are_bounded_and_killed():
    t0 = time.perf_counter()
    with busy_cpu(2, seconds=1.0) as procs:
        assert all(p.poll() is None for p in procs)
    assert all(p.poll() is not None for p in procs)
    with busy_cpu(1, seconds=0.3) as procs:
        procs[0].wait(timeout=10)  # stops on its own at the deadline
    assert time.perf_counter() - t0 < 15


def _timed() -> float:
    c = pk.complete(PROMPT, "local:smollm2", max_tokens=TOKENS, temperature=0)
    assert c.ok and c.output_tokens == TOKENS, (c.error, c.output_tokens)
    return c.latency_s


@pytest.mark.local_model
def test_a_busy_process_on_every_core_costs_at_most_3x_with_margin():
    """Issue 21's bound is 3x (the benchmark prints the ratio); 6x here leaves room for other work on the machine.

    Other work can slow the quiet runs too (spinning threads collapse under any load), so the busy median is
    also held under 15 s: before the fix these seven calls took 399 s on this machine (7-75 s each)."""
    _timed()  # load and warm up
    quiet, busy = [], []
    for _ in range(3):  # alternate, so a change in other load hits both sides
        quiet.append(_timed())
        with busy_cpu(seconds=60):
            busy.append(_timed())
    ratio = statistics.median(busy) / statistics.median(quiet)
    assert ratio <= 6.0, f"busy {busy} vs quiet {quiet}: {ratio:.1f}x"
    assert statistics.median(busy) < 15.0, f"busy {busy}: a {TOKENS}-token SmolLM2 answer should take seconds"
