"""Local-model grid throughput on a Dask LocalCluster with 1 and with 2 workers (one llama.cpp thread each).

The same SmolLM2 grid (distinct prompts, cache off) runs in-process, then on a 1-worker and a 2-worker
LocalCluster; each cluster first answers a warm-up grid so every worker has loaded the model, then the
timed grid. Prints wall time, cells/s, output tokens/s and the speed-up of 2 workers over 1. On a 2-core
machine with nothing else running, expect close to 2x; a machine shared with other work shows less.

Run: PROMPTKIT_THREADS=1 .venv/bin/python benchmarks/bench_cluster.py [--cells 32] [--max-tokens 32]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROMPTKIT_THREADS", "1")
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

    rows = []
    timed(grid(2, a.max_tokens, "warm"))
    rows.append(("in-process", *timed(grid(a.cells, a.max_tokens, "inproc"))[:3]))
    for n in (1, 2):
        with distributed.LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=None) as lc, \
                distributed.Client(lc) as client:
            timed(grid(4 * n, a.max_tokens, f"warm{n}-"), cluster=client)  # every worker loads the model
            rows.append((f"dask {n} worker{'s' if n > 1 else ''}",
                         *timed(grid(a.cells, a.max_tokens, f"w{n}-"), cluster=client)[:3]))
    print(f"SmolLM2-135M, {a.cells} cells x max_tokens {a.max_tokens}, {os.cpu_count()} cores, "
          f"PROMPTKIT_THREADS={os.environ['PROMPTKIT_THREADS']}")
    print(f"{'mode':<16}{'wall s':>8}{'cells/s':>10}{'out tok/s':>11}")
    for name, wall, cps, tps in rows:
        print(f"{name:<16}{wall:>8.2f}{cps:>10.2f}{tps:>11.1f}")
    print(f"2 workers / 1 worker: {rows[2][2] / rows[1][2]:.2f}x cells/s")


if __name__ == "__main__":
    main()
