"""Local-model grid throughput: in one process on every core (what a user runs instead) against Dask LocalClusters.

The same SmolLM2 grid (distinct prompts, cache off) runs in-process with promptkit's default threads (printed
as prompt/generation threads), then on LocalClusters: 1 worker on one llama.cpp thread; `cluster="local"`'s
own layout (a worker per core, one llama.cpp thread each: `cluster.local_cluster_options()`); and the layout
it had before, a worker per core each taking every core for the prompt and for generation. Each cluster first answers a warm-up grid
so every worker has loaded the model (cluster start and model loads are not in the timings). Prints wall
time, cells/s, output tokens/s and each row against the in-process run.

Run: .venv/bin/python benchmarks/bench_cluster.py [--cells 32] [--max-tokens 32]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def grid(n: int, max_tokens: int, tag: str):
    from promptkit.experiment import Experiment
    from promptkit.templates import Template
    from promptkit.types import Row, Settings

    t = Template(name="note", turns=[{"role": "user", "content": "Write a short renewal note for {{who}}."}])
    rows = [Row(id=f"{tag}{i}", input={"who": f"{tag} customer number {i}"}) for i in range(n)]
    return Experiment(variants=[t], models=["local:smollm2"], rows=rows, settings=Settings(max_tokens=max_tokens),
                      name=f"bench-{tag}")


def timed(exp, **kw):
    from promptkit.runner import run

    t0 = time.perf_counter()
    res = run(exp, cache="off", progress=False, **kw)
    wall = time.perf_counter() - t0
    bad = [r.completion.error for r in res.results if not r.completion.ok]
    if bad:
        raise SystemExit(f"errors: {bad[:3]}")
    out = sum(r.completion.output_tokens or 0 for r in res.results)
    return wall, len(res.results) / wall, out / wall, res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=32)
    a = ap.parse_args()
    import distributed

    from promptkit.cluster import environ_kept, local_cluster_options
    from promptkit.cpu import thread_plan

    os.environ.pop("PROMPTKIT_THREADS", None)
    rows = []
    timed(grid(2, a.max_tokens, "warm"))
    plan = thread_plan()
    rows.append((f"in-process, {plan.threads}/{plan.decode_threads} threads",
                 *timed(grid(a.cells, a.max_tokens, "inproc"))[:3]))
    own = local_cluster_options()
    layouts = [("dask 1 worker x 1 thread", {**own, "n_workers": 1}),
               (f'cluster="local": {own["n_workers"]} x 1 thread', own),
               (f'before: {own["n_workers"]} x {plan.threads}/{plan.threads} threads',
                {**own, "env": {"PROMPTKIT_THREADS": str(plan.threads), "PROMPTKIT_DECODE_THREADS": str(plan.threads)}})]
    for name, opts in layouts:
        with environ_kept(), distributed.LocalCluster(**opts) as lc, distributed.Client(lc) as client:
            timed(grid(4 * opts["n_workers"], a.max_tokens, f"warm-{len(rows)}-"), cluster=client)  # every worker loads
            rows.append((name, *timed(grid(a.cells, a.max_tokens, f"w{len(rows)}-"), cluster=client)[:3]))
    print(f"SmolLM2-135M, {a.cells} cells x max_tokens {a.max_tokens}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'mode':<32}{'wall s':>8}{'cells/s':>10}{'out tok/s':>11}{'x in-process':>14}")
    for name, wall, cps, tps in rows:
        print(f"{name:<32}{wall:>8.2f}{cps:>10.2f}{tps:>11.1f}{cps / rows[0][2]:>13.2f}x")


if __name__ == "__main__":
    main()
