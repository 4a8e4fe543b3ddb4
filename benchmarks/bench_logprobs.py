"""What token log-probabilities cost on a local model: speed and memory with and without logits_all.

llama-cpp-python returns log-probabilities only from a model loaded with
logits_all=True, which keeps n_ctx x vocabulary floats (SmolLM2: 49,152 tokens
x 4 bytes per position) and computes the output layer for every prompt token.
The local provider therefore loads that copy only when Settings(logprobs=True)
asks for it, with a smaller context (n_ctx_logits, default 1024).

Run: .venv/bin/python benchmarks/bench_logprobs.py [model]   (default smollm2)
Each mode runs in a fresh process with the same prompt; prints one JSON line
per mode, then the ratios against the plain model.
"""
from __future__ import annotations

import json
import subprocess
import sys

from local_models import rss_mb  # run as a script: this folder is on sys.path

PROMPT = ("Account notes: usage down 30% since March, the champion left in May, two escalated tickets, "
          "renewal in 60 days and procurement asked for a competitor quote. Write a short renewal-risk "
          "summary for the account team, then say which tier it is: Commit, Likely or At-Risk.")
MAX_TOKENS = 64
REPEATS = 3
MODES = ("plain", "logprobs", "logits_all_full_ctx")


def measure(name: str, mode: str) -> dict:
    """Inside the child: load one variant, generate REPEATS times, report speed and memory."""
    import resource
    import threading
    import time

    from promptkit.complete import build_request
    from promptkit.providers import get_provider
    from promptkit.providers.local import load_model

    prov = get_provider(f"local:{name}")
    rss0 = rss_mb()
    logprobs = mode != "plain"
    if mode == "logits_all_full_ctx":
        lm = load_model(prov.path, prov.n_ctx, logits_all=True)
    else:
        lm = prov.loaded(logits=logprobs)
    rss_loaded = rss_mb()
    req = build_request(PROMPT, max_tokens=MAX_TOKENS, temperature=0, logprobs=logprobs,
                        top_logprobs=5 if logprobs else 0)
    prov._generate(lm, build_request("Hi", max_tokens=1, logprobs=logprobs), threading.Event())  # warm-up
    runs = []
    for _ in range(REPEATS):
        lm.llm.reset()  # no prompt cache between repeats: measure prompt processing every time
        t = time.perf_counter()
        c = prov._generate(lm, req, threading.Event())
        runs.append((time.perf_counter() - t, c))
    wall, c = min(runs, key=lambda r: r[0])
    decode_s = wall - (c.ttft_s or 0)
    return {
        "model": name, "mode": mode, "n_ctx": lm.n_ctx, "logits_all": lm.logits_all,
        "prompt_tokens": c.input_tokens, "output_tokens": c.output_tokens,
        "has_logprobs": bool(c.logprobs), "top_k_returned": len(c.logprobs[0].top) if c.logprobs else 0,
        "ttft_s": round(c.ttft_s or 0, 3),
        "prompt_tok_s": round(c.input_tokens / c.ttft_s, 1) if c.ttft_s else None,
        "decode_tok_s": round((c.output_tokens - 1) / decode_s, 1) if decode_s > 0 and c.output_tokens > 1 else None,
        "overall_tok_s": round(c.output_tokens / wall, 1),
        "load_s": round(lm.load_s, 2),
        "rss_model_mb": round(rss_loaded - rss0), "rss_after_mb": round(rss_mb() - rss0),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "loadavg_1min": float(open("/proc/loadavg").read().split()[0]),  # a busy machine skews speed
    }


def main(name: str) -> None:
    results = {}
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, "--child", name, mode], capture_output=True, text=True)
        if out.returncode:
            print(f"{mode}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[mode] = r
        print(json.dumps(r))
    base = results.get("plain")
    if not base:
        return
    for mode, r in results.items():
        if mode == "plain":
            continue
        print(
            f"{mode} vs plain: decode speed x{r['decode_tok_s'] / base['decode_tok_s']:.2f}, "
            f"prompt speed x{r['prompt_tok_s'] / base['prompt_tok_s']:.2f}, "
            f"overall x{r['overall_tok_s'] / base['overall_tok_s']:.2f}, "
            f"peak RSS {r['peak_rss_mb']} MB vs {base['peak_rss_mb']} MB ({r['peak_rss_mb'] - base['peak_rss_mb']:+d} MB), "
            f"n_ctx {r['n_ctx']} vs {base['n_ctx']}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
    else:
        main(sys.argv[1] if len(sys.argv) > 1 else "smollm2")
