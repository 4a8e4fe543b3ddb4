"""Time each tour chapter at its default parameters from an empty cache, and say what its base prompt scored.

Issue 14 asks that every chapter run in at most 5 minutes on 2 cores, measured and listed in the README.
This executes each chapter with papermill at its defaults (no parameters passed), in a fresh
PROMPTKIT_HOME and PROMPTKIT_CACHE_DIR (the models folder stays where it is), with notebooks/ as the
working directory, and records per chapter: wall seconds, the kernel's CPU seconds, the load average
before, during and after, the slowest cells, and every run the chapter made (each `runner.run`, with its
summary per variant and model), read by a probe cell added to a temporary copy of the notebook, so the
chapters themselves carry no timing code.

    python tools/time_chapters.py 01 03          # run chapters 01 and 03, update docs/chapter_times.json
    python tools/time_chapters.py --table        # print the README table from the JSON, run nothing

The machine may be shared, which inflates wall time: the kernel's CPU seconds are the work done. A quiet
2-core machine needs at least CPU/2 seconds (both llama.cpp threads busy the whole time) and at most about
CPU seconds (everything on one core); the table shows that range beside the wall time and its load.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_OUT = ROOT / "docs" / "chapter_times.json"
BUDGET_S = 300.0  # issue 14: each chapter in at most 5 minutes on 2 cores
PROBE_TAG = "timing-probe"

# Runs before the chapter: wraps promptkit.runner.run so every run the chapter makes is summarised.
RECORDER = '''\
import promptkit.runner as _pk_runner
_pk_timing_runs = []
_pk_run = _pk_runner.run

def _pk_timed_run(exp, *args, **kwargs):
    res = _pk_run(exp, *args, **kwargs)
    try:
        s = res.summary(by=["variant", "model"])
        keep = [c for c in ("variant", "model", "n", "errors", "score", "score_low", "score_high",
                            "balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high",
                            "chance", "unparseable") if c in s.columns]
        rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                for r in s[keep].to_dict("records")]
        _pk_timing_runs.append({"name": getattr(exp, "name", None), "grader": s.attrs.get("grader"),
                                "rows": len(getattr(exp, "rows", []) or []), "summary": rows})
    except Exception as e:  # a summary the probe cannot read must not break the chapter
        _pk_timing_runs.append({"name": getattr(exp, "name", None), "probe_error": repr(e)})
    return res

_pk_runner.run = _pk_timed_run
import promptkit as _pk
if getattr(_pk, "run", None) is _pk_run:
    _pk.run = _pk_timed_run
'''

DUMP = '''\
import json as _pk_json, math as _pk_math, threading as _pk_threading
import psutil as _pk_psutil
def _pk_clean(v):
    return None if isinstance(v, float) and not _pk_math.isfinite(v) else v
_pk_proc = _pk_psutil.Process()
_pk_python = {{t.native_id for t in _pk_threading.enumerate()}}
_pk_cpu = _pk_proc.cpu_times()
with open({path!r}, "w", encoding="utf-8") as _f:
    _pk_json.dump({{
        "runs": [{{**r, "summary": [{{k: _pk_clean(v) for k, v in row.items()}} for row in r.get("summary", [])]}}
                 for r in _pk_timing_runs],
        "kernel_cpu_s": _pk_cpu.user + _pk_cpu.system,
        # threads Python did not start: llama.cpp's OpenMP workers (and ZeroMQ's, which use almost nothing)
        "native_threads_cpu_s": sum(t.user_time + t.system_time for t in _pk_proc.threads() if t.id not in _pk_python),
    }}, _f, indent=1)
'''


def probed(nb: dict, dump_path: Path) -> dict:
    """A copy of the notebook with the recorder cell first and the dump cell last, both tagged."""
    def cell(src: str) -> dict:
        return {"cell_type": "code", "metadata": {"tags": [PROBE_TAG]}, "source": src,
                "execution_count": None, "outputs": []}

    out = json.loads(json.dumps(nb))
    out["cells"] = [cell(RECORDER), *out["cells"], cell(DUMP.format(path=str(dump_path)))]
    for i, c in enumerate(out["cells"]):
        c["id"] = f"timed-{i:03d}"
    return out


def parameters_source(nb: dict) -> str:
    """The chapter's parameters cell: the defaults this run used."""
    for c in nb["cells"]:
        if "parameters" in c.get("metadata", {}).get("tags", []):
            return "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
    return ""


class LoadSampler(threading.Thread):
    """The 1-minute load average every few seconds while a chapter runs."""

    def __init__(self, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self._halt = every, [], threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> list[float]:
        self._halt.set()
        self.join()
        return self.samples


def slowest_cells(nb: dict, k: int = 4) -> list[dict]:
    """The chapter's slowest cells (papermill records each cell's duration), probe cells left out."""
    timed = []
    for i, c in enumerate(nb["cells"]):
        d = c.get("metadata", {}).get("papermill", {}).get("duration")
        if d is None or PROBE_TAG in c.get("metadata", {}).get("tags", []):
            continue
        src = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        first = next((ln for ln in src.splitlines() if ln.strip() and not ln.startswith(("#", "%"))), "")
        timed.append({"cell": i - 1, "seconds": round(d, 1), "code": first[:90]})
    return sorted(timed, key=lambda t: -t["seconds"])[:k]


def time_chapter(path: Path, keep: Path | None = None, timeout: int = 3600) -> dict:
    """Execute one chapter at its defaults from an empty cache; what it cost and what it measured."""
    import papermill as pm

    nb = json.loads(path.read_text(encoding="utf-8"))
    models_dir = os.environ.get("PROMPTKIT_MODELS_DIR") or str(Path.home() / ".cache" / "promptkit" / "models")
    with tempfile.TemporaryDirectory(prefix="pk-timing-") as tmp:
        tmp = Path(tmp)
        dump = tmp / "runs.json"
        src, out = tmp / path.name, (keep or tmp) / path.name
        src.write_text(json.dumps(probed(nb, dump)), encoding="utf-8")
        env = {"PROMPTKIT_HOME": str(tmp / "home"), "PROMPTKIT_CACHE_DIR": str(tmp / "cache"),
               "PROMPTKIT_MODELS_DIR": models_dir}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        sampler = LoadSampler()
        load_before = os.getloadavg()
        cpu0, self0 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        sampler.start()
        error = None
        try:
            pm.execute_notebook(str(src), str(out), cwd=str(path.parent), kernel_name="python3",
                                progress_bar=False, execution_timeout=timeout)
        except Exception as e:  # the time up to the failure is still worth recording, with the failure
            error = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:300]
        wall = time.monotonic() - t0
        samples = sampler.stop()
        cpu1, self1 = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        load_after = os.getloadavg()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        probe = json.loads(dump.read_text(encoding="utf-8")) if dump.exists() else {}
        executed = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {"cells": []}
    kernel_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    # On a quiet machine each OpenMP region runs its two halves at once, so the wall time is about the CPU
    # time less the workers' share: the calling thread's CPU. Floor CPU/2, ceiling CPU (one core).
    workers = probe.get("native_threads_cpu_s")
    central = kernel_cpu - workers if workers is not None else None
    return {
        "chapter": path.stem,
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "parameters": parameters_source(nb),
        "ok": error is None,
        "error": error,
        "wall_s": round(wall, 1),
        "kernel_cpu_s": round(kernel_cpu, 1),
        "papermill_cpu_s": round((self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime), 1),
        "quiet_estimate_s": [round(kernel_cpu / 2, 1), round(kernel_cpu, 1)],
        "openmp_workers_cpu_s": round(workers, 1) if workers is not None else None,
        "quiet_central_s": round(central, 1) if central is not None else None,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "load_during": ([round(min(samples), 2), round(sum(samples) / len(samples), 2), round(max(samples), 2)]
                        if samples else None),
        "slowest_cells": slowest_cells(executed),
        "runs": probe.get("runs", []),
    }


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except Exception:
        commit = None
    return {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "platform": platform.platform(), "commit": commit}


def base_rows(entry: dict) -> list[dict]:
    """The chapter's base measurement: every model of the first run it made (its base prompt, or first variant)."""
    for r in entry.get("runs", []):
        if r.get("summary"):
            first = r["summary"][0]["variant"]
            return [dict(s, run=r.get("name"), grader=r.get("grader")) for s in r["summary"] if s["variant"] == first]
    return []


def _short(model: str) -> str:
    return model.split(":", 1)[-1]


def _score(s: dict) -> str:
    if s.get("balanced_accuracy") is not None:
        lo, hi = s.get("balanced_accuracy_low"), s.get("balanced_accuracy_high")
        iv = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        return f"{s['balanced_accuracy']:.2f}{iv}"
    if s.get("score") is not None:
        lo, hi = s.get("score_low"), s.get("score_high")
        iv = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        return f"{s['grader'] or 'score'} {s['score']:.2f}{iv}"
    return "–"


def table(data: dict, every: list[str] = ()) -> str:
    """The README table, every cell read from the JSON; chapters in `every` without a measurement say so."""
    lines = ["| chapter | first run, its first variant (rows) | each model's base prompt: balanced accuracy [95% interval] | "
             "wall s (mean load) | kernel CPU s | quiet 2-core estimate (floor-ceiling) | ≤ 5 min |",
             "|---|---|---|---|---|---|---|"]
    for name in sorted(set(data.get("chapters", {})) | set(every)):
        if name not in data.get("chapters", {}):
            lines.append(f"| `{name}` | not measured at default parameters | | | | | |")
            continue
        e = data["chapters"][name]
        base = base_rows(e)
        scores = "; ".join(f"{_short(s['model'])} {_score(s)}" for s in base) or "no graded run"
        rows = "/".join(sorted({str(s["n"]) for s in base}))
        run = f"{base[0].get('run') or 'run'}, '{base[0]['variant']}' ({rows})" if base else "–"
        load = f"{e['load_during'][1]:.1f}" if e.get("load_during") else f"{e['load_before'][0]:.1f}"
        lo, hi = e["quiet_estimate_s"]
        mid = e.get("quiet_central_s")
        verdict = ("yes" if hi <= BUDGET_S else "no" if lo > BUDGET_S else
                   "likely" if mid is not None and mid <= BUDGET_S else "doubtful" if mid is not None else "unsure")
        if not e["ok"]:
            verdict = f"failed: {e['error'][:60]}"
        lines.append(f"| `{name}` | {run} | {scores} | {e['wall_s']:.0f} ({load}) | "
                     f"{e['kernel_cpu_s']:.0f} | {f'{mid:.0f} s ' if mid is not None else ''}({lo:.0f}-{hi:.0f}) | {verdict} |")
    return "\n".join(lines)


def resolve(names: list[str]) -> list[Path]:
    """Chapter notebooks named by number or stem ('01', '03_model_differences'); all when none named."""
    every = sorted(NOTEBOOKS.glob("*.ipynb"))
    if not names:
        return every
    out = []
    for n in names:
        hit = [p for p in every if p.stem == n or p.stem.split("_")[0] == n]
        if not hit:
            raise SystemExit(f"no chapter {n!r} in {NOTEBOOKS} (have: {', '.join(p.stem for p in every)})")
        out.extend(hit)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("chapters", nargs="*", help="chapter numbers or names (default: every chapter)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to update (default docs/chapter_times.json)")
    ap.add_argument("--keep", type=Path, help="folder to keep the executed notebooks in")
    ap.add_argument("--table", action="store_true", help="print the README table from --out and run nothing")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds one cell may take")
    args = ap.parse_args(argv)
    data = json.loads(args.out.read_text(encoding="utf-8")) if args.out.exists() else {"chapters": {}}
    if not args.table:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
        for path in resolve(args.chapters):
            print(f"{path.stem}: running at default parameters ...", flush=True)
            entry = time_chapter(path, args.keep, args.timeout)
            entry["machine"] = machine()
            if args.out.exists():  # another run may have written meanwhile: keep its chapters
                data = json.loads(args.out.read_text(encoding="utf-8"))
            data["chapters"][path.stem] = entry
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{path.stem}: {'ok' if entry['ok'] else entry['error']}; wall {entry['wall_s']:.0f} s, kernel CPU "
                  f"{entry['kernel_cpu_s']:.0f} s, load {entry['load_during']}", flush=True)
    print(table(data, [p.stem for p in sorted(NOTEBOOKS.glob("*.ipynb"))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
