"""Load time, tokens per second and memory of each installed local model, each in a fresh process.

Run: .venv/bin/python benchmarks/local_models.py [name ...]   (default: every local model in the catalog)
Prints one line per model; models whose packages are missing are reported, not measured. Then a
"shared CPU" row per model: the same 26-token completion with a busy process on every core (bounded in
time, killed after), alternating with quiet runs, as a ratio to the quiet median (issue 21 target: <= 3x).
"""
from __future__ import annotations

import json
import subprocess
import sys

PROMPT = ("Write a short renewal reminder email to a customer whose contract ends next month. "
          "Mention the value they got this year and offer a call.")
MAX_TOKENS = 96
SHARED_PROMPT = "Write a long poem about the sea."
SHARED_TOKENS = 26
SHARED_ROUNDS = 3


def rss_mb() -> float:
    """This process's resident memory now (Linux /proc); bench_logprobs.py uses it too."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(name: str) -> dict:
    """Run inside the child process: join if needed, load, generate once, report numbers."""
    import resource
    import time

    import promptkit as pk
    from promptkit.providers import get_provider

    rss0 = rss_mb()
    t = time.perf_counter()
    prov = get_provider(f"local:{name}")  # joins on first use
    join_s = time.perf_counter() - t
    lm = prov.loaded()
    rss_loaded = rss_mb()
    pk.complete("Hi", f"local:{name}", max_tokens=1)  # warm-up: first call allocates buffers
    c = pk.complete(PROMPT, f"local:{name}", max_tokens=MAX_TOKENS, temperature=0, seed=0)
    decode_s = c.latency_s - (c.ttft_s or 0)
    return {
        "model": name, "join_or_find_s": round(join_s, 3), "load_s": round(lm.load_s, 2),
        "prompt_tokens": c.input_tokens, "output_tokens": c.output_tokens, "ttft_s": round(c.ttft_s or 0, 3),
        "decode_tok_s": round((c.output_tokens - 1) / decode_s, 1) if decode_s > 0 and c.output_tokens > 1 else None,
        "overall_tok_s": round(c.output_tokens / c.latency_s, 1),
        "rss_loaded_mb": round(rss_loaded - rss0), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "n_threads": lm.llm.n_threads if hasattr(lm.llm, "n_threads") else None,
        "threads_why": lm.threads.why if lm.threads else None,
        "loadavg_1min": float(open("/proc/loadavg").read().split()[0]),  # other work on the machine skews speed
    }


def shared_cpu(name: str) -> dict:
    """Run inside the child process: quiet and busy-CPU runs of one completion, alternated, medians and ratio."""
    import statistics

    import promptkit as pk
    from promptkit.cpu import busy_cpu

    def timed() -> float:
        c = pk.complete(SHARED_PROMPT, f"local:{name}", max_tokens=SHARED_TOKENS, temperature=0, seed=0)
        if not c.ok:
            raise RuntimeError(c.error)
        return c.latency_s

    timed()  # load and warm up
    quiet, busy = [], []
    for _ in range(SHARED_ROUNDS):
        quiet.append(timed())
        with busy_cpu(seconds=300) as procs:
            busy.append(timed())
    q, b = statistics.median(quiet), statistics.median(busy)
    return {"model": name, "row": "shared CPU", "busy_processes": len(procs), "tokens": SHARED_TOKENS,
            "quiet_s": [round(x, 2) for x in quiet], "busy_s": [round(x, 2) for x in busy],
            "quiet_median_s": round(q, 2), "busy_median_s": round(b, 2), "busy_vs_quiet": round(b / q, 2),
            "target": "<= 3x", "loadavg_1min": float(open("/proc/loadavg").read().split()[0])}


def main(names: list[str]) -> None:
    from promptkit.catalog import catalog
    from promptkit.local_models import status

    names = names or list(catalog().local)
    base = None
    for name in names:
        st = status(catalog().local_model(name))
        if not st.ready:
            print(f"{name}: not measured, not installed ({', '.join(st.missing)})")
            continue
        out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True)
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or r["decode_tok_s"]
        if base and r["decode_tok_s"]:
            r["decode_speed_vs_first"] = round(r["decode_tok_s"] / base, 2)
        print(json.dumps(r))
        out = subprocess.run([sys.executable, __file__, "--shared", name], capture_output=True, text=True)
        if out.returncode:
            print(f"{name}: shared CPU row failed\n{out.stderr[-2000:]}")
            continue
        print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(measure(sys.argv[2])))
    elif sys.argv[1:2] == ["--shared"]:
        print(json.dumps(shared_cpu(sys.argv[2])))
    else:
        main(sys.argv[1:])
