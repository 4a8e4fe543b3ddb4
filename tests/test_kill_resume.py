"""Kill and resume: a run killed with SIGKILL part-way leaves a readable cache, and a re-run finishes the grid
without calling again for the cells that had finished."""
from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fakeservers import FakeServer
from procs import killed_when
from promptkit.cache import DiskCache
from promptkit.providers import clear_providers
from promptkit.runner import run
from promptkit.types import Completion

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")

SCRIPT = '''
"""A paid-looking run: 240 cells against an OpenAI-compatible endpoint, cached on disk."""
import sys

from promptkit.experiment import Experiment
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Row, Settings


def grid():
    variants = [Template(name=f"v{i}", turns=[{"role": "user", "content": f"v{i}: risk for {{{{notes}}}}"}])
                for i in range(3)]
    rows = [Row(id=f"r{i}", input={"notes": f"account {i}"}) for i in range(80)]
    return Experiment(variants=variants, models=["openai:gpt-4o-mini"], rows=rows, settings=Settings(max_tokens=16))


if __name__ == "__main__":
    run(grid(), cache_backend=sys.argv[1], concurrency=4, progress=False)
    print("finished")
'''


def cache_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(entries under their final names, temporary files) in a DiskCache folder."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return [p for p in files if not p.name.startswith(".")], [p for p in files if p.name.startswith(".")]


def test_sigkill_part_way_leaves_a_readable_cache_and_the_rerun_skips_finished_cells(tmp_path, monkeypatch):
    script = tmp_path / "run_grid.py"
    script.write_text(SCRIPT, encoding="utf-8")
    cache_root = tmp_path / "cache"
    grid = runpy.run_path(str(script))["grid"]
    n_cells = grid().n_cells
    with FakeServer(latency=0.04) as srv:
        env = {**os.environ, **srv.env("openai", key="sk-fake-kill-test")}
        code, out, _ = killed_when([sys.executable, str(script), str(cache_root)], env,
                                   lambda: cache_root.exists() and len(cache_files(cache_root)[0]) >= 30)
        assert code == -signal.SIGKILL and b"finished" not in out

        entries, temps = cache_files(cache_root)
        assert 30 <= len(entries) < n_cells
        finished = set()
        for p in entries:  # every entry under a final name is whole: no half-written file
            data = json.loads(p.read_text(encoding="utf-8"))
            assert p.name == f"{data['key']}.json" and p.parent.name == data["key"][:2]
            comp = Completion.from_dict(data["completion"])
            assert comp.ok and comp.text.startswith("v")  # the fake server echoes the prompt
            finished.add(comp.text)
        assert all(p.name.startswith(".tmp-") for p in temps)  # an abandoned write keeps its temporary name
        assert len(DiskCache(cache_root)) == len(entries)

        srv.reset()
        for k, v in srv.env("openai", key="sk-fake-kill-test").items():
            monkeypatch.setenv(k, v)
        clear_providers()
        res = run(grid(), cache_backend=cache_root, concurrency=8, progress=False)
        clear_providers()
        asked = [c.last_user for c in srv.calls]

    assert len(res) == n_cells and all(r.completion.ok for r in res.results)
    assert len({r.cell.key for r in res.results}) == n_cells
    assert not finished & set(asked)  # no second call for a cell that had finished
    assert len(asked) == len(set(asked)) == n_cells - len(finished)
    assert res.meta["counts"]["cache_hits"] == len(finished)
    assert len(DiskCache(cache_root)) == n_cells


MID_WRITE = '''
"""Store one answer, but die by SIGKILL half-way through writing it (as a killed kernel would)."""
import json, os, signal, sys

from promptkit.cache import DiskCache
from promptkit.types import Completion

real_dump = json.dump


def dump_half_then_die(obj, f, **kw):
    text = json.dumps(obj, **kw)
    f.write(text[: len(text) // 2])
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)


json.dump = dump_half_then_die
DiskCache(sys.argv[1]).put(sys.argv[2], Completion(text="half an answer", input_tokens=3, output_tokens=3))
'''


def test_a_kill_in_the_middle_of_a_cache_write_leaves_no_entry_under_its_final_name(tmp_path):
    script = tmp_path / "mid_write.py"
    script.write_text(MID_WRITE, encoding="utf-8")
    root, key = tmp_path / "cache", "ab" * 32
    r = subprocess.run([sys.executable, str(script), str(root), key], capture_output=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    entries, temps = cache_files(root)
    assert entries == [] and len(temps) == 1 and temps[0].name.startswith(".tmp-")
    assert temps[0].read_text(encoding="utf-8").startswith('{"key": "' + key[:8])  # it really was half written
    cache = DiskCache(root)
    assert cache.get(key) is None and key not in cache and len(cache) == 0  # a miss: the cell is simply run again
    cache.put(key, Completion(text="whole answer", input_tokens=3, output_tokens=2))
    assert cache.get(key).text == "whole answer" and len(cache) == 1
