"""How much the runner costs over the plainest fast alternative, and the other speed and memory targets.

1. A 1,000-call grid against a loopback OpenAI-compatible server (tests/fakeservers.py, run in a
   child process with a fixed latency) through the runner, and through a plain loop of the official
   `openai.AsyncOpenAI` client with an asyncio.Semaphore, at concurrency 16 and 64.
   Target: runner wall time <= 1.10x the plain loop.
2. The cached re-run of those 1,000 cells. Target: < 1 s.
3. The local provider (through the runner) against raw llama-cpp-python `Llama.create_completion`
   on the same prompt, settings and thread count, on local:smollm2. Target: >= 95% of raw tokens/s.
4. Peak memory (tracemalloc) of a 10,000-cell run held as Results. Target: < 200 MB.

Run: .venv/bin/python benchmarks/bench_runner.py [--latency 0.05] [--rounds 2] [--skip-local]
Measurements alternate between the two contenders and report the best round of each, so that
other processes on a shared machine disturb both alike.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import promptkit as pk  # noqa: E402
from promptkit.cache import DiskCache  # noqa: E402
from promptkit.experiment import Experiment  # noqa: E402
from promptkit.runner import arun  # noqa: E402
from promptkit.templates import Template  # noqa: E402
from promptkit.types import Row, Settings  # noqa: E402

N_CALLS = 1000
MAX_TOKENS = 16
NOTES = ("Renewal in 60 days. Champion promoted; new VP of ops has not joined a call yet. Usage of the "
         "reporting module fell 20% after the reorganisation; two support tickets about SSO are open. ")

SERVER = """
import sys
sys.path.insert(0, {tests!r})
from fakeservers import FakeServer
srv = FakeServer(latency={latency!r}).start()
print(srv.port, flush=True)
sys.stdin.read()
srv.stop()
"""


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    """The fake server in its own process, so its threads do not share the client's GIL."""
    code = SERVER.format(tests=str(ROOT / "tests"), latency=latency)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.strip():
        proc.kill()
        raise SystemExit("the fake server did not start (is tests/fakeservers.py there?)")
    return proc, f"http://127.0.0.1:{int(line)}/v1"


def grid(base_url: str, n: int = N_CALLS, tag: str = "") -> Experiment:
    template = Template(name="tier", system="You are a customer-success analyst.",
                        turns=[{"role": "user", "content": "Account notes:\n{{notes}}\nAnswer with one tier."}])
    rows = [Row(id=f"r{i}", input={"notes": f"{tag}#{i}. {NOTES}"}) for i in range(n)]
    return Experiment(variants=[template], models=[f"openai:gpt-4o-mini@{base_url}"], rows=rows,
                      settings=Settings(max_tokens=MAX_TOKENS), name="bench")


async def plain_loop(exp: Experiment, base_url: str, concurrency: int) -> float:
    """The baseline: the official async client, a semaphore, the same streamed requests."""
    import openai

    client = openai.AsyncOpenAI(api_key="not-needed", base_url=base_url, max_retries=0, timeout=120.0)
    sem = asyncio.Semaphore(concurrency)
    requests = [c.request for c in exp.expand()]
    t0 = time.perf_counter()

    async def one(req: pk.Request) -> tuple[str, object]:
        async with sem:
            s = req.settings
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": m.role, "content": m.content} for m in req.messages],
                temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed,
                stream=True, stream_options={"include_usage": True})
            parts, usage = [], None
            async for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                for ch in chunk.choices:
                    if ch.delta and ch.delta.content:
                        parts.append(ch.delta.content)
            return "".join(parts), usage

    out = await asyncio.gather(*(one(r) for r in requests))
    wall = time.perf_counter() - t0
    await client.close()
    assert len(out) == len(requests) and all(text for text, _ in out)
    return wall


async def runner_once(exp: Experiment, concurrency: int, cache_dir: str, cache: str = "use") -> tuple[float, object]:
    t0 = time.perf_counter()
    res = await arun(exp, concurrency=concurrency, cache=cache, cache_backend=DiskCache(cache_dir), progress=False)
    return time.perf_counter() - t0, res


def bench_api(latency: float, rounds: int) -> dict[str, float]:
    proc, base_url = start_server(latency)
    out: dict[str, float] = {}
    try:
        # warm up both paths (imports, first connections) outside the timings
        asyncio.run(plain_loop(grid(base_url, 32, "warm"), base_url, 8))
        asyncio.run(runner_once(grid(base_url, 32, "warm"), 8, tempfile.mkdtemp(), cache="off"))
        print(f"\n1. {N_CALLS} calls to a loopback OpenAI-compatible server ({latency * 1000:.0f} ms latency), "
              f"streamed, {MAX_TOKENS} max tokens; best of {rounds} alternating rounds")
        for conc in (16, 64):
            plain, mine = [], []
            for r in range(rounds):
                exp = grid(base_url, tag=f"c{conc}r{r}")  # fresh prompts: every runner call is a cache miss
                plain.append(asyncio.run(plain_loop(exp, base_url, conc)))
                cache_dir = tempfile.mkdtemp(prefix="pk-bench-")
                wall, res = asyncio.run(runner_once(exp, conc, cache_dir))
                assert res.meta["counts"]["ok"] == N_CALLS and res.meta["counts"]["calls"] == N_CALLS, res.meta["counts"]
                mine.append(wall)
            ratio = min(mine) / min(plain)
            out[f"ratio_{conc}"] = ratio
            print(f"   concurrency {conc:>2}: plain SDK loop {min(plain):6.2f} s   runner {min(mine):6.2f} s   "
                  f"ratio {ratio:.3f}  (target <= 1.10)  {'OK' if ratio <= 1.10 else 'MISSED'}")
            print(f"      all rounds: plain {', '.join(f'{x:.2f}' for x in plain)}; runner {', '.join(f'{x:.2f}' for x in mine)}")

        # 2. the cached re-run of the last grid (its answers are in cache_dir)
        times = []
        for _ in range(3):
            wall, res = asyncio.run(runner_once(exp, 64, cache_dir))
            assert res.meta["counts"]["cache_hits"] == N_CALLS and res.meta["counts"]["calls"] == 0
            times.append(wall)
        out["cached_s"] = min(times)
        print(f"\n2. cached re-run of {N_CALLS} cells (DiskCache): {min(times):.3f} s (best of 3: "
              f"{', '.join(f'{t:.3f}' for t in times)})  (target < 1 s)  {'OK' if min(times) < 1 else 'MISSED'}")
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=10)
    return out


def bench_local(rounds: int, max_tokens: int = 64) -> float:
    """Tokens per second: the local provider through the runner vs raw llama-cpp-python, same model file."""
    import llama_cpp

    from promptkit.providers import get_provider

    prov = get_provider("local:smollm2")
    lm = prov.loaded()
    prompt_t = Template(name="story", turns=[{"role": "user", "content": "Write a long, detailed story about {{notes}}"}])
    exp = Experiment(variants=[prompt_t], models=["local:smollm2"],
                     rows=[Row(id="a", input={"notes": "a customer-success manager saving a renewal."})],
                     settings=Settings(max_tokens=max_tokens, temperature=0.0, seed=0), name="local")
    req = exp.expand()[0].request
    tokens = lm.tokenize(lm.render(req))
    raw = llama_cpp.Llama(model_path=str(lm.path), n_ctx=lm.n_ctx, n_threads=lm.llm.n_threads,
                          seed=0, verbose=False)
    kwargs = dict(max_tokens=max_tokens, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=1.0, seed=0)

    def raw_once() -> tuple[int, float]:
        t0 = time.perf_counter()
        out = raw.create_completion(tokens, **kwargs)
        return out["usage"]["completion_tokens"], time.perf_counter() - t0

    def provider_once() -> tuple[int, float]:
        t0 = time.perf_counter()
        res = asyncio.run(arun(exp, cache="off", progress=False))
        wall = time.perf_counter() - t0
        c = res.results[0].completion
        assert c.ok, c.error
        return c.output_tokens or 0, wall

    kwargs_full, kwargs["max_tokens"] = dict(kwargs), 4
    exp_full, exp = exp, Experiment(variants=exp.variants, models=exp.models, rows=exp.rows,
                                    settings=exp.settings.replace(max_tokens=4), name="warm")
    raw_once(), provider_once()  # warm both (short)
    kwargs, exp = kwargs_full, exp_full
    raw_rates, prov_rates, counts = [], [], set()
    for _ in range(rounds):
        n, t = raw_once()
        raw_rates.append(n / t)
        n2, t2 = provider_once()
        prov_rates.append(n2 / t2)
        counts |= {n, n2}
    ratio = max(prov_rates) / max(raw_rates)
    print(f"\n3. local:smollm2, {max_tokens} tokens, {lm.llm.n_threads} threads, best of {rounds}: "
          f"raw llama-cpp-python {max(raw_rates):.1f} tok/s, promptkit runner {max(prov_rates):.1f} tok/s, "
          f"ratio {ratio:.3f}  (target >= 0.95)  {'OK' if ratio >= 0.95 else 'MISSED'}")
    print(f"   all rounds: raw {', '.join(f'{x:.1f}' for x in raw_rates)}; runner {', '.join(f'{x:.1f}' for x in prov_rates)}"
          f"; tokens generated per call: {sorted(counts)}")
    del raw
    return ratio


def bench_memory(n: int = 10_000) -> float:
    """Peak traced memory of running and holding 10,000 distinct cells (echo provider, ~330-character prompts and ~60-word answers)."""
    template = Template(name="tier", system="You are a customer-success analyst.",
                        turns=[{"role": "user", "content": "Account notes:\n{{notes}}\nAnswer with one tier."}])
    rows = [Row(id=f"r{i}", input={"notes": f"#{i}. {NOTES}"}, target="Likely") for i in range(n)]
    exp = Experiment(variants=[template], models=["echo:mem"], rows=rows,
                     settings=Settings(max_tokens=64), name="memory")
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    res = asyncio.run(arun(exp, cache="off", progress=False))
    wall = time.perf_counter() - t0
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(res) == n
    print(f"\n4. {n:,} results: held {held / 1e6:.1f} MB, peak {peak / 1e6:.1f} MB while running "
          f"(target < 200 MB)  {'OK' if peak < 200e6 else 'MISSED'}  [{wall:.1f} s under tracemalloc]")
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05, help="fake server latency in seconds (default 0.05)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds per measurement (local: one more)")
    ap.add_argument("--skip-local", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    os.environ.setdefault("PROMPTKIT_HOME", tempfile.mkdtemp(prefix="pk-bench-home-"))
    print(f"promptkit runner benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f})")
    bench_api(args.latency, args.rounds)
    if not args.skip_local:
        bench_local(args.rounds + 1)
    bench_memory()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s (target < 180 s)")


if __name__ == "__main__":
    main()
