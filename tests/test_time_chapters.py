"""tools/time_chapters.py: a chapter executed at its defaults reports its time and the base score it computed.

Runs a two-cell notebook on the in-process echo provider through papermill, so the probe, the clock and
the CPU count are exercised for real without a model.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("time_chapters", ROOT / "tools" / "time_chapters.py")
tc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tc)


def _notebook(path: Path, n: int) -> Path:
    cells = [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": f"N = {n}", "outputs": [],
         "execution_count": None},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": (
            "import promptkit as pk\n"
            "t = pk.load_dataset('renewal_tier').template().replace(name='always Commit', prefill='Commit')\n"
            "r = pk.lessons.evaluate([t, t.replace(name='second')], 'renewal_tier', n=N, models=['echo:x'], "
            "max_tokens=1, progress=False)\n"
            "x = sum(i * i for i in range(3_000_000))  # some CPU the kernel must be charged for")},
    ]
    nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                       "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


@pytest.mark.notebook
def test_a_chapter_is_timed_and_its_base_run_recorded(tmp_path, monkeypatch):
    import promptkit as pk

    monkeypatch.setenv("PROMPTKIT_CACHE_DIR", str(tmp_path / "outer-cache"))
    entry = tc.time_chapter(_notebook(tmp_path / "99_probe.ipynb", 9), timeout=300)
    assert entry["ok"], entry["error"]
    assert entry["wall_s"] > 0 and entry["kernel_cpu_s"] > 0.5  # the kernel's own CPU, counted once it exits
    lo, hi = entry["quiet_estimate_s"]
    assert lo == pytest.approx(entry["kernel_cpu_s"] / 2, abs=0.1) and hi == pytest.approx(entry["kernel_cpu_s"], abs=0.1)
    # no model ran, so the threads Python did not start (OpenMP workers, ZeroMQ) did almost nothing
    assert 0 <= entry["openmp_workers_cpu_s"] < 0.25 * entry["kernel_cpu_s"]
    assert entry["quiet_central_s"] == pytest.approx(entry["kernel_cpu_s"] - entry["openmp_workers_cpu_s"], abs=0.15)  # three roundings
    assert entry["parameters"] == "N = 9"
    assert not (tmp_path / "outer-cache").exists()  # ran in its own empty cache, not the caller's

    base = tc.base_rows(entry)
    assert [b["variant"] for b in base] == ["always Commit"]  # the first variant of the first run only
    t = pk.load_dataset("renewal_tier").template().replace(name="always Commit", prefill="Commit")
    want = pk.lessons.evaluate(t, "renewal_tier", n=9, models=["echo:x"], max_tokens=1,
                               progress=False).summary(by=["variant", "model"]).iloc[0]
    assert base[0]["n"] == 9
    assert base[0]["balanced_accuracy"] == pytest.approx(float(want["balanced_accuracy"]))
    assert base[0]["balanced_accuracy_low"] <= base[0]["balanced_accuracy"] <= base[0]["balanced_accuracy_high"]
    assert entry["slowest_cells"][0]["cell"] == 1  # the chapter's own cell numbers, probe cells not counted

    line = tc.table({"chapters": {"99_probe": entry}}).splitlines()[-1]
    assert f"x {base[0]['balanced_accuracy']:.2f} [" in line and "'always Commit' (9) |" in line and line.endswith("| yes |")


def test_the_table_says_when_a_chapter_is_over_budget():
    entry = {"ok": True, "error": None, "wall_s": 900.0, "kernel_cpu_s": 700.0, "quiet_estimate_s": [350.0, 700.0],
             "load_during": [3.0, 4.0, 5.0], "runs": []}
    line = tc.table({"chapters": {"42_slow": entry}}).splitlines()[-1]
    assert line.endswith("| no |") and "no graded run" in line and "900 (4.0)" in line


def test_an_unknown_chapter_is_named():
    with pytest.raises(SystemExit, match="no chapter '77'"):
        tc.resolve(["77"])


def test_a_chapter_never_measured_is_listed_as_such():
    lines = tc.table({"chapters": {}}, ["05_structured_output"]).splitlines()
    assert lines[-1].startswith("| `05_structured_output` | not measured at default parameters |")
