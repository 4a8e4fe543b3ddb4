"""Prompt and generation threads for the local models: which layout answers fastest on this machine.

Each layout runs in a fresh process (llama.cpp reads its thread counts when a model loads): the same six
answers of up to 32 tokens after a ~250-token account-notes prompt, cache off, after one warm-up answer.
Layouts, as (prompt threads, generation threads): every CPU for both (promptkit's default before 1 Dec 2026),
every CPU for the prompt and one for generation (the default on a machine of two CPUs, see
promptkit.cpu.ONE_DECODE_THREAD_UP_TO_CPUS), and one for both. Rounds interleave the layouts; medians print.
`--busy` runs every measurement next to one CPU-bound process per core (promptkit.cpu.busy_cpu).

Run: .venv/bin/python benchmarks/bench_threads.py [--rounds 2] [--models local:smollm2,...] [--busy]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOTES = ("Usage of the reporting module fell 20% after the reorganisation; two support tickets about SSO are open; "
         "the champion was promoted and the new VP has not joined a call. ") * 6

CHILD = """
import json, sys, time
import promptkit as pk
from promptkit.experiment import Experiment
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Row, Settings
model, notes, tag = sys.argv[1], sys.argv[2], sys.argv[3]
def grid(t, k):
    tpl = Template(name="note", turns=[{"role": "user", "content": "Account notes: " + notes + "Write a short renewal-risk note for {{who}}."}])
    return Experiment(variants=[tpl], models=[model], rows=[Row(id=f"{t}{i}", input={"who": f"{t} customer {i}"}) for i in range(k)],
                      settings=Settings(max_tokens=32), name="threads")
run(grid("warm", 1), cache="off", progress=False)
t0, c0 = time.perf_counter(), time.process_time()
res = run(grid(tag, 6), cache="off", progress=False)
bad = [r.completion.error for r in res.results if not r.completion.ok]
assert not bad, bad
lm = __import__("promptkit.providers", fromlist=["get_provider"]).get_provider(model).loaded()
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "tokens": sum(r.completion.output_tokens or 0 for r in res.results),
                  "threads": [lm.llm.n_threads_batch, lm.llm.n_threads]}))
"""


def measure(model: str, prompt_threads: int, decode_threads: int, tag: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMPTKIT_THREADS", "PROMPTKIT_DECODE_THREADS")}
    env.update(PROMPTKIT_THREADS=str(prompt_threads), PROMPTKIT_DECODE_THREADS=str(decode_threads),
               PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", CHILD, model, NOTES, tag], capture_output=True, text=True, env=env,
                         timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"{model} ({prompt_threads}, {decode_threads}) failed:\n{out.stderr[-2000:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["threads"] == [prompt_threads, decode_threads], got
    return got


def main() -> None:
    from promptkit.cpu import allowed_cpus, busy_cpu

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", default="local:smollm2,local:qwen2.5-0.5b,local:qwen2.5-1.5b")
    ap.add_argument("--busy", action="store_true")
    a = ap.parse_args()
    n = allowed_cpus()[0]
    layouts = [(n, n), (n, 1), (1, 1)] if n > 1 else [(1, 1)]
    print(f"local models, 6 answers x 32 tokens after a ~250-token prompt; {n} CPUs; "
          f"{'next to a busy process per core' if a.busy else 'idle'}; load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':<22}{'prompt/gen threads':>20}{'wall s':>9}{'tok/s':>8}{'CPU s':>8}{'x first':>9}   all rounds (wall s)")
    for model in a.models.split(","):
        got: dict[tuple[int, int], list[dict]] = {lay: [] for lay in layouts}
        for r in range(a.rounds):
            for lay in layouts[r % len(layouts):] + layouts[:r % len(layouts)]:
                tag = f"r{r}-{lay[0]}-{lay[1]}-{time.time()}"
                if a.busy:
                    with busy_cpu(seconds=300):
                        got[lay].append(measure(model, *lay, tag))
                else:
                    got[lay].append(measure(model, *lay, tag))
        base = statistics.median(x["wall"] for x in got[layouts[0]])
        for lay in layouts:
            rows = got[lay]
            wall = statistics.median(x["wall"] for x in rows)
            print(f"{model:<22}{f'{lay[0]} / {lay[1]}':>20}{wall:>9.2f}"
                  f"{statistics.median(x['tokens'] / x['wall'] for x in rows):>8.1f}"
                  f"{statistics.median(x['cpu'] for x in rows):>8.2f}{base / wall:>8.2f}x   "
                  + ", ".join(f"{x['wall']:.2f}" for x in rows))


if __name__ == "__main__":
    main()
