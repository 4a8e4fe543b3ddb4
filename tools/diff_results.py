"""Compare two runs' results.jsonl: the cells, the answers and the grades, ignoring timings.

A refactor that claims to change no behaviour shows it here: `python tools/diff_results.py before/ after/`
prints every cell whose request, answer or grade differs, and exits 1 if any does (0 when identical).
Timings, token-per-second figures and cache flags differ between any two runs and are left out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TIMING = {"latency_s", "ttft_s", "cached", "retry_after_s"}


def load(path: Path) -> dict[str, dict]:
    """Cell key -> {cell, completion without timings, grades}, from a results.jsonl (or the folder holding it)."""
    if path.is_dir():
        path = path / "results.jsonl"
    out = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            rec = json.loads(line)
            if "cell" not in rec:
                continue
            if rec["cell"]["key"] in out:
                raise SystemExit(f"{path}, line {n}: cell {rec['cell']['key'][:12]} appears twice")
            completion = {k: v for k, v in rec["completion"].items() if k not in TIMING}
            out[rec["cell"]["key"]] = {"cell": rec["cell"], "completion": completion, "grades": rec["grades"]}
    return out


def differences(a: dict[str, dict], b: dict[str, dict]) -> list[str]:
    """One line per cell only one run has, and per field of a shared cell that differs."""
    lines = [f"only in the first run: {k[:12]} ({a[k]['cell']['variant']}, {a[k]['cell']['row_id']})" for k in a.keys() - b.keys()]
    lines += [f"only in the second run: {k[:12]} ({b[k]['cell']['variant']}, {b[k]['cell']['row_id']})" for k in b.keys() - a.keys()]
    for k in sorted(a.keys() & b.keys()):
        where = f"{a[k]['cell']['variant']} / {a[k]['cell']['row_id']}"
        for part in ("cell", "completion", "grades"):
            x, y = a[k][part], b[k][part]
            for field in sorted(set(x) | set(y)):
                if x.get(field) != y.get(field):
                    lines.append(f"{where}: {part}.{field}: {x.get(field)!r} != {y.get(field)!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first", type=Path, help="results.jsonl, or the --out folder of a run")
    ap.add_argument("second", type=Path)
    args = ap.parse_args(argv)
    a, b = load(args.first), load(args.second)
    diff = differences(a, b)
    for line in diff:
        print(line)
    print(f"{len(a)} and {len(b)} cells; {len(diff)} difference(s) in cells, answers and grades (timings left out)")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
