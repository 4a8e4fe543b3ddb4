"""Sharding one run across worker processes (promptkit/shard.py), against the loopback OpenAI server.

A run with workers=2 must be indistinguishable from the one-process run in what it returns:
the same cells in the same order with the same answers, grades and error cells; the shared
SQLite cache gets exactly one write per answered cell, whichever process made the call. Cells
are handed out as workers ask: a worker that is slow to start or stalls holds at most its
window, and a worker that dies hands its cells back to the parent.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time

import pytest

import promptkit as pk
from promptkit.errors import ExperimentError
from fakeservers import FakeServer, Fault
from promptkit import shard
from promptkit.experiment import Experiment
from promptkit.providers import clear_providers
from promptkit.templates import Template
from promptkit.types import Completion, Row, Settings


@pytest.fixture(autouse=True)
def _fresh_providers():
    clear_providers()
    yield
    clear_providers()


@pytest.fixture(params=["fork", "spawn"])
def start(request, monkeypatch):
    """Both ways a worker starts: fork (scripts, the CLI) and a fresh interpreter (notebooks, threads)."""
    monkeypatch.setattr(shard, "START", request.param)
    return request.param


@pytest.fixture(scope="module")
def server():
    with FakeServer(latency=0.005) as srv:
        yield srv


def grid(base_url: str, n: int = 40) -> Experiment:
    """Two prompts x n rows; rows 0 and 1 are identical (one call, two cells), targets differ."""
    t1 = Template(name="plain", turns=[{"role": "user", "content": "tier of account {{acct}}"}])
    t2 = Template(name="terse", system="Answer in one word.", turns=[{"role": "user", "content": "account {{acct}}?"}])
    rows = [Row(id=f"r{i}", input={"acct": "a0" if i == 1 else f"a{i}"}, target="account" if i % 2 else "tier")
            for i in range(n)]
    return Experiment(variants=[t1, t2], models=[f"openai:gpt-4o-mini@{base_url}"], rows=rows,
                      settings=Settings(max_tokens=8), graders=[pk.graders.contains()], name="shard")


def view(res):
    """What a user reads from a run: cells in order, answers, token counts, errors and grades."""
    return [(r.cell.key, r.cell.variant, r.cell.row_id, r.completion.text, r.completion.input_tokens,
             r.completion.output_tokens, r.completion.finish_reason, r.completion.error_kind,
             {k: (g.score, g.passed) for k, g in r.grades.items()}) for r in res.results]


def count_puts(path) -> None:
    """Log every insert into the cache table, from any process, so double writes show."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, completion TEXT NOT NULL, stored_at REAL NOT NULL);
        CREATE TABLE puts (key TEXT);
        CREATE TRIGGER log_put AFTER INSERT ON answers BEGIN INSERT INTO puts VALUES (new.key); END;
    """)
    con.close()


def puts(path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [k for (k,) in con.execute("SELECT key FROM puts")]
    finally:
        con.close()


def test_two_workers_return_what_one_process_returns(start, tmp_path):
    with FakeServer(latency=0.05) as srv:  # slow enough that the parent alone needs ~2 s: the worker must help
        exp = grid(srv.openai_base_url)
        one = pk.run(exp, cache_backend=tmp_path / "one.sqlite3", concurrency=2, progress=False)
        clear_providers()
        srv.reset()
        two = pk.run(exp, cache_backend=tmp_path / "two.sqlite3", concurrency=2, workers=2, progress=False)
        calls = len(srv.calls)
    assert view(two) == view(one)
    assert len(two) == 80 and all(r.completion.ok for r in two.results)
    assert two.meta["processes"] == 2 and one.meta["processes"] == 1
    unique = len({r.cell.key for r in two.results})
    assert unique == 78  # rows 0 and 1 share one call per prompt
    assert two.meta["counts"]["calls"] == unique == calls  # each cell answered exactly once
    (worker,) = two.meta["workers"]
    assert worker["start"] == start
    assert 0 < worker["cells"] < unique  # both processes answered cells


def test_the_shared_cache_is_written_once_per_answer_and_answers_the_rerun(server, tmp_path, start):
    path = tmp_path / "cache.sqlite3"
    count_puts(path)
    exp = grid(server.openai_base_url)
    first = pk.run(exp, cache_backend=path, workers=2, progress=False)
    keys = {r.cell.key for r in first.results}
    written = puts(path)
    assert sorted(written) == sorted(keys)  # every key once, from whichever process called
    clear_providers()
    server.reset()
    again = pk.run(exp, cache_backend=path, workers=2, progress=False)
    assert len(server.calls) == 0 and again.meta["counts"]["cache_hits"] == 80
    assert again.meta["processes"] == (1 if start == "fork" else 2)  # nothing to call: no fork (a spawn starts first)
    assert [r.completion.text for r in again.results] == [r.completion.text for r in first.results]
    assert len(puts(path)) == len(written)


def test_an_error_in_a_worker_comes_back_as_an_error_cell(tmp_path, start):
    with FakeServer(latency=0.02) as srv:
        exp = grid(srv.openai_base_url)
        failing = {c.request.messages[-1].content for c in exp.expand()[::7]}  # spread over both processes
        srv.set_faults([Fault("server", when=lambda call: call.last_user in failing)])
        one = pk.run(exp, cache="off", max_attempts=1, progress=False)
        clear_providers()
        two = pk.run(exp, cache_backend=tmp_path / "c.sqlite3", max_attempts=1, concurrency=4, workers=2,
                     progress=False)
    assert view(two) == view(one)
    assert two.meta["workers"][0]["cells"] > 0
    errors = [r for r in two.results if not r.completion.ok]
    assert {r.request.messages[-1].content for r in (e.cell for e in errors)} == failing
    assert {r.completion.error_kind for r in errors} == {"server"} and not any(r.grades for r in errors)
    assert two.meta["counts"]["errors_by_kind"] == {"server": len(errors)}


def test_a_worker_that_never_starts_holds_no_cells(server, tmp_path, monkeypatch):
    monkeypatch.setattr(shard, "START", "spawn")
    monkeypatch.setattr(shard, "_BOOT", "import sys; sys.exit(3)  # {path!r}")
    res = pk.run(grid(server.openai_base_url), cache_backend=tmp_path / "c.sqlite3", workers=2, progress=False)
    assert len(res) == 80 and all(r.completion.ok for r in res.results)
    assert res.meta["workers"][0]["cells"] == 0 and res.meta["counts"]["calls"] == 78


def run_with_fake_worker(monkeypatch, server, tmp_path, name: str, fake):
    """80 cells at concurrency 4 with workers=2, the forked worker's `shard.<name>` replaced by `fake`: every cell
    must still come back answered."""
    monkeypatch.setattr(shard, "START", "fork")
    monkeypatch.setattr(shard, name, fake)
    server.reset()
    res = pk.run(grid(server.openai_base_url), cache_backend=tmp_path / "c.sqlite3", concurrency=4, workers=2,
                 progress=False)
    assert len(res) == 80 and all(r.completion.ok for r in res.results)
    return res


def test_a_worker_that_dies_holding_cells_hands_them_back(server, tmp_path, monkeypatch, capfd):
    async def dies(job, cells, reader, write):  # forked: receives its first window of cells, dies before calling
        await shard._read_frame(reader)
        os._exit(3)

    res = run_with_fake_worker(monkeypatch, server, tmp_path, "_serve", dies)
    assert res.meta["workers"][0]["cells"] == 0
    assert res.meta["counts"]["calls"] == 78 == len(server.calls)  # the handed-back cells were called once
    assert "ended with code 3 holding 4 unanswered cell(s)" in capfd.readouterr().err  # its window: 2 x 2


def test_a_stalled_worker_holds_back_only_its_window(server, tmp_path, monkeypatch):
    """Cells are handed out on demand: while one worker stalls, the other process takes every cell left."""
    real = shard._serve
    stall_s = 2.0

    async def stalls(job, cells, reader, write):
        first = []

        def slow_write(data):
            if not first and shard.pickle.loads(data[shard._HEAD.size:])[0] == "got":
                first.append(1)
                time.sleep(stall_s)  # the whole worker stops, holding what it was given
            write(data)

        await real(job, cells, reader, slow_write)

    monkeypatch.setattr(shard, "START", "fork")
    monkeypatch.setattr(shard, "_serve", stalls)
    server.reset()
    t0 = time.perf_counter()
    res = pk.run(grid(server.openai_base_url, 100), cache_backend=tmp_path / "c.sqlite3", concurrency=8, workers=2,
                 progress=False)
    wall = time.perf_counter() - t0
    assert len(res) == 200 and all(r.completion.ok for r in res.results)
    assert res.meta["counts"]["calls"] == 198 == len(server.calls)  # every cell answered exactly once
    (worker,) = res.meta["workers"]
    assert 0 < worker["cells"] <= 8  # its window (2 x its 4 slots); the parent answered the other 190+
    assert wall >= stall_s  # the run waited for the stalled worker's cells, and only for those


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_workers_must_be_a_whole_number(bad):
    with pytest.raises(ExperimentError, match="workers"):
        pk.run(grid("http://127.0.0.1:9/v1", 2), workers=bad, progress=False)


def test_yaml_run_section_and_cli_accept_workers(server, tmp_path, capsys):
    from promptkit.cli import main
    from promptkit.experiment import experiment_from_dict

    spec = {"prompts": [{"template": {"name": "t", "turns": [{"role": "user", "content": "account {{acct}}"}]}}],
            "models": [f"openai:gpt-4o-mini@{server.openai_base_url}"],
            "rows": [{"id": f"r{i}", "input": {"acct": f"a{i}"}} for i in range(12)], "run": {"workers": 2}}
    assert experiment_from_dict(spec).run_options == {"workers": 2}
    res = pk.run(experiment_from_dict(spec), cache="off", progress=False)
    assert res.meta["processes"] == 2 and res.meta["counts"]["ok"] == 12
    path = tmp_path / "exp.yaml"
    import yaml

    path.write_text(yaml.safe_dump({**spec, "run": {}}), encoding="utf-8")
    assert main(["run", str(path), "--workers", "2", "--cache", "off", "--no-progress",
                 "--out", str(tmp_path / "out")]) == 0
    first = json.loads((tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["meta"]["processes"] == 2


def test_workers_share_a_sqlite_cache_whatever_its_file_is_called(server, tmp_path):
    from promptkit.cache import SqliteCache

    store = SqliteCache(tmp_path / "answers")  # no .sqlite3 suffix: opened by path alone it would be a folder cache
    res = pk.run(grid(server.openai_base_url, 10), cache_backend=store, workers=2, progress=False)
    assert res.meta["processes"] == 2
    assert len(store) == 18 and not (tmp_path / "answers").is_dir()


def test_answers_sent_before_a_worker_stops_reading_are_all_used(server, tmp_path, monkeypatch, capfd):
    """A worker that closes its end of the parent's pipe, then sends its answers: the parent's next hand-out fails
    (broken pipe), and it must still read every answer that worker sent instead of calling those cells again."""
    def read_exactly(fd, n):
        data = b""
        while len(data) < n:
            data += os.read(fd, n - len(data))
        return data

    def worker(job, cells, down, up):  # forked: its first window is sent before it asks
        size = shard._HEAD.unpack(read_exactly(down, shard._HEAD.size))[0]
        kind, handed = shard.pickle.loads(read_exactly(down, size))
        os.close(down)  # it reads no more: the parent's next write breaks the pipe
        for _, i in handed:  # then it answers each cell in a frame of its own, asking for one more each time
            os.write(up, shard._frame("got", ([(cells[i].key, Completion(text="from the worker"))], 1)))
        os.write(up, shard._frame("done", {"calls": len(handed)}))
        return 0

    res = run_with_fake_worker(monkeypatch, server, tmp_path, "_forked_main", worker)
    (w,) = res.meta["workers"]
    assert w["cells"] == 4  # its window (2 x its 2 slots), every one of them answered by it
    assert sum(r.completion.text == "from the worker" for r in res.results) >= 4
    assert res.meta["counts"]["calls"] == 78 == len(server.calls) + 4  # none of its cells was called again here
    err = capfd.readouterr().err  # only the cell whose hand-out broke the pipe is answered here
    assert "holding 1 unanswered cell(s)" in err
