"""What the runner costs over the loop a user would write instead, measured whole-process and side by side.

1. 1,000 distinct chat calls to a loopback OpenAI-compatible server (benchmarks/fast_server.py: one
   asyncio process, fixed latency, cheap enough that it is not the bottleneck; its CPU share is
   printed), at concurrency 16 and 64. Every client runs in its own fresh process, timed from the
   outside: wall time, CPU time (its own and its children's) and peak RSS. Clients:
     startup     python + `import openai`, nothing else (the floor every client pays)
     plain       the baseline: `openai.AsyncOpenAI`, one non-streamed `create` per prompt, a semaphore
     streamed    the same loop, streamed with usage
     pk.run      promptkit's runner with its defaults (SQLite cache in a fresh home, progress bar)
     cache off   pk.run(cache="off")
     workers=2   pk.run(workers=2): a second process (forked) takes cells as its calls finish
     2 loops     no promptkit: the loop forked into two processes after `import openai`, each with half
                 the prompts at half the concurrency, on the SDK's cheapest path (`post`, the decoded JSON,
                 no model built): the floor for any two-process client of the SDK on this machine
   Rounds interleave the clients (the order rotates); each ratio is the median over rounds of
   client/plain from the same round. CPU per call (whole-process CPU / calls, and net of the
   startup floor) is printed beside: other load on the machine disturbs it far less than wall time. Targets: pk.run <= 1.10x plain at C=16 and C=64;
   workers=2 <= 0.70x plain at C=64; pk.run peak RSS <= 1.5x plain's. promptkit's bytecode is compiled
   first, as a wheel install has it (this machine sets PYTHONDONTWRITEBYTECODE, which would otherwise
   charge every pk client a fresh compile of promptkit, about 50 ms).
2. The cached re-run of 1,000 cells (a fresh process over a filled cache). Target: < 1 s.
3. The local provider (through the runner) against raw llama-cpp-python `Llama.create_completion`
   on the same prompt tokens, settings and thread counts (decoding and prompt), on local:smollm2, with
   CPU seconds per token beside. Target: >= 95% of raw tokens/s.
4. Peak memory (tracemalloc) of a 10,000-cell run held as Results. Target: < 200 MB.

Run: .venv/bin/python benchmarks/bench_runner.py [--latency 0.05] [--rounds 3] [--skip-local]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

N_CALLS = 1000
MAX_TOKENS = 16
SYSTEM = "You are a customer-success analyst."
NOTES = ("Renewal in 60 days. Champion promoted; new VP of ops has not joined a call yet. Usage of the "
         "reporting module fell 20% after the reorganisation; two support tickets about SSO are open. ")
CLIENTS = ("startup", "plain", "streamed", "pk.run", "cache off", "workers=2", "2 loops")


def prompt(tag: str, i: int) -> str:
    return f"Account notes:\n{tag}#{i}. {NOTES}\nAnswer with one tier."


# ---- the clients, each run as `bench_runner.py --client NAME ...` in a fresh process ----------------


async def plain_loop(url: str, n: int, conc: int, tag: str, stream: bool) -> int:
    """The baseline a user writes: the official async client, a semaphore, one create per prompt."""
    import openai

    client = openai.AsyncOpenAI(api_key="not-needed", base_url=url, max_retries=0, timeout=120.0)
    sem = asyncio.Semaphore(conc)

    async def one(i: int) -> str:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt(tag, i)}]
        async with sem:
            if not stream:
                r = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0.0,
                                                         top_p=1.0, max_tokens=MAX_TOKENS, seed=0)
                return r.choices[0].message.content or ""
            s = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, temperature=0.0,
                                                     top_p=1.0, max_tokens=MAX_TOKENS, seed=0, stream=True,
                                                     stream_options={"include_usage": True})
            parts = []
            async for chunk in s:
                for ch in chunk.choices:
                    if ch.delta and ch.delta.content:
                        parts.append(ch.delta.content)
            return "".join(parts)

    out = await asyncio.gather(*(one(i) for i in range(n)))
    await client.close()
    return sum(1 for t in out if t)


def two_loops(url: str, n: int, conc: int, tag: str) -> int:
    """The loop forked into two processes, each on half the prompts at half the concurrency, on the SDK's cheapest
    path: what a careful user could hand-write for two cores, with nothing of promptkit's (no cache, no results)."""
    import openai

    async def part(ids: range) -> int:
        client = openai.AsyncOpenAI(api_key="not-needed", base_url=url, max_retries=0, timeout=120.0)
        sem = asyncio.Semaphore(conc // 2)

        async def one(i: int) -> str:
            body = {"model": "gpt-4o-mini", "temperature": 0.0, "top_p": 1.0, "max_tokens": MAX_TOKENS, "seed": 0,
                    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt(tag, i)}]}
            async with sem:
                r = await client.post("/chat/completions", body=body, options={"security": {"bearer_auth": True}},
                                      cast_to=object)
                return r["choices"][0]["message"]["content"] or ""

        out = await asyncio.gather(*(one(i) for i in ids))
        await client.close()
        return sum(1 for t in out if t)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, str(asyncio.run(part(range(1, n, 2)))).encode())
        os._exit(0)
    os.close(w)
    ok = asyncio.run(part(range(0, n, 2)))
    theirs = int(os.read(r, 32) or 0)
    os.waitpid(pid, 0)
    return ok + theirs


def grid(url: str, n: int, tag: str) -> object:
    from promptkit.experiment import Experiment
    from promptkit.templates import Template
    from promptkit.types import Row, Settings

    template = Template(name="tier", system=SYSTEM, turns=[{"role": "user", "content": "{{text}}"}])
    rows = [Row(id=f"r{i}", input={"text": prompt(tag, i)}) for i in range(n)]
    return Experiment(variants=[template], models=[f"openai:gpt-4o-mini@{url}"], rows=rows,
                      settings=Settings(max_tokens=MAX_TOKENS), name="bench")


def client_main(args: argparse.Namespace) -> None:
    """One client in this process; prints what it did as one JSON line."""
    import resource

    t0 = time.perf_counter()
    info: dict[str, object] = {}
    if args.client == "startup":
        import openai  # noqa: F401
        ok = 0
    elif args.client == "2 loops":
        ok = two_loops(args.url, args.n, args.conc, args.tag)
        info["processes"] = 2
    elif args.client in ("plain", "streamed"):
        ok = asyncio.run(plain_loop(args.url, args.n, args.conc, args.tag, stream=args.client == "streamed"))
    else:
        import promptkit as pk

        exp = grid(args.url, args.n, args.tag)
        opts = {"cache off": {"cache": "off"}, "workers=2": {"workers": 2}}.get(args.client, {})
        t1 = time.perf_counter()
        res = pk.run(exp, concurrency=args.conc, **opts)
        info["run_s"] = time.perf_counter() - t1
        ok = res.meta["counts"]["ok"]
        info["calls"] = res.meta["counts"]["calls"]
        info["processes"] = res.meta.get("processes", 1)
        info["worker_cells"] = sum(w["cells"] for w in res.meta.get("workers", []))
        info["start"] = ",".join(w["start"] for w in res.meta.get("workers", []))
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # the peak RSS of the processes together: this one plus each worker (children's peak is a max, so x count)
    info["rss_mb"] = (self_kb + kids_kb * (int(info.get("processes", 1)) - 1)) / 1024
    print(json.dumps({"ok": ok, "inner_s": time.perf_counter() - t0, **info}), flush=True)


# ---- the harness -------------------------------------------------------------------------------


def _cpu_of(pid: int) -> float:
    """CPU seconds a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "fast_server.py"), "--latency", str(latency)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.strip():
        proc.kill()
        raise SystemExit("the loopback server did not start")
    return proc, f"http://127.0.0.1:{int(line)}/v1"


def run_client(name: str, url: str, conc: int, tag: str, home: str, n: int = N_CALLS,
               server_pid: int | None = None) -> dict[str, float]:
    """Run one client in a fresh process; wall, CPU and peak RSS measured from outside."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--client", name, "--url", url, "--conc", str(conc),
           "--tag", tag, "--n", str(n)]
    env = {**os.environ, "PROMPTKIT_HOME": home, "PYTHONPATH": str(ROOT)}
    s0 = _cpu_of(server_pid) if server_pid else 0.0
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0 or not out.strip():
            err.seek(0)
            raise SystemExit(f"client {name} failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
    got = json.loads(out)
    expected = 0 if name == "startup" else n
    assert got["ok"] == expected, (name, got)
    got.update(wall=wall, cpu=usage.ru_utime + usage.ru_stime, load=os.getloadavg()[0])
    got.setdefault("rss_mb", usage.ru_maxrss / 1024)
    if server_pid:
        got["server_cpu"] = _cpu_of(server_pid) - s0
    return got


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench_api(latency: float, rounds: int, n: int) -> dict[str, float]:
    proc, url = start_server(latency)
    out: dict[str, float] = {}
    try:
        warm_home = tempfile.mkdtemp(prefix="pk-bench-home-")
        import compileall

        compileall.compile_dir(str(ROOT / "promptkit"), quiet=1)  # as a wheel install compiles it
        for name in ("plain", "pk.run"):  # first imports outside the timings
            run_client(name, url, 8, "warm", warm_home, n=16)
        print(f"\n1. {n} calls to a loopback OpenAI-compatible server ({latency * 1000:.0f} ms latency, "
              f"{MAX_TOKENS} max tokens), each client a fresh process; medians of {rounds} interleaved rounds")
        got: dict[tuple[str, int], list[dict[str, float]]] = {}
        for r in range(rounds):
            for conc in (16, 64):
                order = CLIENTS[r % len(CLIENTS):] + CLIENTS[:r % len(CLIENTS)]  # rotate who goes first
                for name in order:
                    home = tempfile.mkdtemp(prefix="pk-bench-home-")  # an empty cache: every call a miss
                    got.setdefault((name, conc), []).append(
                        run_client(name, url, conc, f"{name}-c{conc}-r{r}", home, n, proc.pid))
        print(f"   {'client':<10} {'C':>3} {'wall s':>7} {'x plain':>8} {'CPU s':>6} {'x plain':>8} {'ms/call':>8} "
              f"{'peak RSS':>9} {'server CPU':>11}   all rounds (wall s)")
        for conc in (16, 64):
            ideal = math.ceil(n / conc) * latency
            plain = got["plain", conc]
            for name in CLIENTS:
                rows = got[name, conc]
                ratio = _med([x["wall"] / p["wall"] for x, p in zip(rows, plain)])
                wall = _med([x["wall"] for x in rows])
                out[f"{name}@{conc}"] = ratio
                out[f"{name}@{conc}:cpu"] = _med([x["cpu"] / p["cpu"] for x, p in zip(rows, plain)])
                out[f"{name}@{conc}:rss"] = _med([x["rss_mb"] for x in rows])
                share = _med([x.get("server_cpu", 0) / x["wall"] for x in rows])
                cpu = _med([x["cpu"] for x in rows])
                out[f"{name}@{conc}:ms"] = cpu / n * 1000
                print(f"   {name:<10} {conc:>3} {wall:7.2f} {ratio:7.2f}x {cpu:6.2f} "
                      f"{out[f'{name}@{conc}:cpu']:7.2f}x {cpu / n * 1000 if name != 'startup' else float('nan'):8.2f} "
                      f"{out[f'{name}@{conc}:rss']:6.0f} MB {share * 100:9.0f} %   "
                      + ", ".join(f"{x['wall']:.2f}" for x in rows))
            floor = _med([x["wall"] for x in got["startup", conc]])
            pw = _med([x["wall"] for x in plain])
            pcpu = _med([x["cpu"] for x in plain])
            two = got["workers=2", conc]
            print(f"   workers=2: the second process ({', '.join(sorted({x['start'] for x in two}))}) answered "
                  + ", ".join(str(x["worker_cells"]) for x in two) + f" of the {n} cells")
            floor_cpu = _med([x["cpu"] for x in got["startup", conc]])
            print(f"   CPU per call net of the startup floor ({floor_cpu:.2f} s): " + ", ".join(
                f"{name} {(_med([x['cpu'] for x in got[name, conc]]) - floor_cpu) / n * 1000:.2f} ms"
                for name in CLIENTS if name != "startup") + f"; load average {_med([x['load'] for x in got['plain', conc]]):.1f}")
            print(f"   latency-bound ideal at C={conc}: {ideal:.2f} s of calls + {floor:.2f} s startup = {ideal + floor:.2f} s; "
                  f"the plain loop takes {pw:.2f} s ({pw - floor - ideal:+.2f} s over it) on {pcpu:.2f} s of its own CPU, "
                  f"while the server is busy {_med([x['server_cpu'] / x['wall'] for x in plain]) * 100:.0f}% of one core: "
                  f"the limit is the client's CPU{' and its wait for a free core' if pw > 1.3 * max(pcpu, ideal + floor) else ''}, "
                  f"not the server")
        rss = out["pk.run@64:rss"] / out["plain@64:rss"]
        print("\n   targets (median of paired ratios of whole-process wall time; CPU time beside, which a busy"
              "\n   machine disturbs less; workers=2 can only beat the plain loop's wall time with a second free core):")
        for label, key, target in (
            ("pk.run / plain, C=16", "pk.run@16", 1.10), ("pk.run / plain, C=64", "pk.run@64", 1.10),
            ("pk.run(workers=2) / plain, C=64", "workers=2@64", 0.70),
            ("  the floor: 2 loops / plain, C=64", "2 loops@64", 0.70),
        ):
            value = out[key]
            print(f"   {label:<40} {value:5.2f}x  (target <= {target:.2f})  {'OK' if value <= target else 'MISSED'}"
                  f"   CPU {out[key + ':cpu']:.2f}x")
        over = _med([x["wall"] / f["wall"] for x, f in zip(got["workers=2", 64], got["2 loops", 64])])
        print(f"   {'pk.run(workers=2) / 2 loops, C=64':<40} {over:5.2f}x  (what promptkit's own work adds to the floor:"
              f" import, grid, cache, results)")
        print(f"   {f'pk.run peak RSS / plain, {n:,} cells':<40} {rss:5.2f}x  (target <= 1.50)  "
              f"{'OK' if rss <= 1.5 else 'MISSED'}")

        # 2. the cached re-run: a fresh process over the cache a previous run filled
        home = tempfile.mkdtemp(prefix="pk-bench-home-")
        run_client("pk.run", url, 64, "cached", home, n)
        again = [run_client("pk.run", url, 64, "cached", home, n) for _ in range(3)]
        assert all(x["calls"] == 0 for x in again), again
        run_s = _med([x["run_s"] for x in again])
        out["cached"] = run_s
        print(f"\n2. cached re-run of {n} cells: pk.run {run_s:.3f} s, whole process {_med([x['wall'] for x in again]):.2f} s "
              f"(median of 3)  (target < 1 s for the run)  {'OK' if run_s < 1 else 'MISSED'}")
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=10)
    return out


def bench_local(rounds: int, max_tokens: int = 48) -> float:
    """Tokens per second: the local provider through the runner vs raw llama-cpp-python, same model file.

    Like for like: promptkit is imported before llama_cpp (so its OpenMP threads wait passively and
    the provider is not cut to one thread), and the raw model gets the provider's thread counts for
    both decoding and the prompt (llama-cpp-python's own n_threads_batch default is every core, which
    made raw evaluate the 46-token prompt on two threads against the provider's one: a 20% gap that was
    the bench's, not the runner's). CPU seconds per token are printed beside wall time: a shared
    machine disturbs them less.
    """
    import promptkit  # noqa: F401  first: it asks OpenMP to wait passively before llama_cpp loads it
    import llama_cpp

    from promptkit.providers import get_provider
    from promptkit.experiment import Experiment
    from promptkit.runner import arun
    from promptkit.templates import Template
    from promptkit.types import Row, Settings

    prov = get_provider("local:smollm2")
    lm = prov.loaded()
    prompt_t = Template(name="story", turns=[{"role": "user", "content": "Write a long, detailed story about {{notes}}"}])
    exp = Experiment(variants=[prompt_t], models=["local:smollm2"],
                     rows=[Row(id="a", input={"notes": "a customer-success manager saving a renewal."})],
                     settings=Settings(max_tokens=max_tokens, temperature=0.0, seed=0), name="local")
    req = exp.expand()[0].request
    tokens = lm.tokenize(lm.render(req))
    threads = (lm.llm.n_threads, lm.llm.n_threads_batch)
    raw = llama_cpp.Llama(model_path=str(lm.path), n_ctx=lm.n_ctx, n_threads=threads[0], n_threads_batch=threads[1],
                          seed=0, verbose=False)
    kwargs = dict(max_tokens=max_tokens, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=1.0, seed=0)

    def raw_once() -> tuple[int, float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        raw.reset()  # the provider evaluates every prompt from position 0 (answers must not depend on call order)
        out = raw.create_completion(tokens, **kwargs)
        return out["usage"]["completion_tokens"], time.perf_counter() - t0, time.process_time() - c0

    def provider_once() -> tuple[int, float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        res = asyncio.run(arun(exp, cache="off", progress=False))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        c = res.results[0].completion
        assert c.ok, c.error
        return c.output_tokens or 0, wall, cpu

    kwargs_full, kwargs["max_tokens"] = dict(kwargs), 4
    exp_full, exp = exp, Experiment(variants=exp.variants, models=exp.models, rows=exp.rows,
                                    settings=exp.settings.replace(max_tokens=4), name="warm")
    raw_once(), provider_once()  # warm both (short)
    kwargs, exp = kwargs_full, exp_full
    rates: dict[str, list[float]] = {"raw": [], "runner": []}
    cpu_rates: dict[str, list[float]] = {"raw": [], "runner": []}
    counts = set()
    for r in range(rounds):
        for who in (("raw", "runner") if r % 2 == 0 else ("runner", "raw")):  # alternate who goes first
            n, t, c = raw_once() if who == "raw" else provider_once()
            rates[who].append(n / t)
            cpu_rates[who].append(n / c)
            counts.add(n)
    ratio = statistics.median(p / r for p, r in zip(rates["runner"], rates["raw"]))
    cpu_ratio = statistics.median(p / r for p, r in zip(cpu_rates["runner"], cpu_rates["raw"]))
    print(f"\n3. local:smollm2, {len(tokens)}-token prompt, {max_tokens} tokens, {threads[0]} thread(s) decoding and "
          f"{threads[1]} for the prompt in both (OpenMP spin count {lm.threads.spin_count if lm.threads else '?'}), "
          f"{rounds} alternating rounds:\n"
          f"   raw llama-cpp-python {max(rates['raw']):.1f} tok/s, promptkit runner {max(rates['runner']):.1f} tok/s (best); "
          f"ratio {ratio:.3f} (median of paired rounds)  (target >= 0.95)  {'OK' if ratio >= 0.95 else 'MISSED'}\n"
          f"   per CPU second: raw {statistics.median(cpu_rates['raw']):.1f}, runner {statistics.median(cpu_rates['runner']):.1f} "
          f"tokens (medians); ratio {cpu_ratio:.3f}")
    print(f"   all rounds (wall tok/s): raw {', '.join(f'{x:.1f}' for x in rates['raw'])}; "
          f"runner {', '.join(f'{x:.1f}' for x in rates['runner'])}; tokens generated per call: {sorted(counts)}")
    del raw
    return ratio


def bench_memory(n: int = 10_000) -> float:
    """Peak traced memory of running and holding 10,000 distinct cells (echo provider, ~330-character prompts and ~60-word answers)."""
    from promptkit.experiment import Experiment
    from promptkit.runner import arun
    from promptkit.templates import Template
    from promptkit.types import Row, Settings

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
    ap.add_argument("--latency", type=float, default=0.05, help="server latency in seconds (default 0.05)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per API measurement (default 3)")
    ap.add_argument("--n", type=int, default=N_CALLS, help=argparse.SUPPRESS)
    ap.add_argument("--skip-local", action="store_true")
    ap.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--conc", type=int, default=16, help=argparse.SUPPRESS)
    ap.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return client_main(args)
    t0 = time.perf_counter()
    os.environ.setdefault("PROMPTKIT_HOME", tempfile.mkdtemp(prefix="pk-bench-home-"))
    print(f"promptkit runner benchmark (python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} before it starts)")
    bench_api(args.latency, args.rounds, args.n)
    if not args.skip_local:
        bench_local(args.rounds + 2)
    bench_memory()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
