"""Local-model cells on a real Dask LocalCluster (2 worker processes, 1 thread each) with the real SmolLM2:
the same answers as in-process, each worker loads the model once, answers go to the driver's cache."""
from __future__ import annotations

import os

import distributed  # the dev extra pulls it through the cluster extra
import pytest

from promptkit.cache import SqliteCache
from promptkit.errors import ExperimentError
from promptkit.experiment import Experiment
from promptkit.graders import contains
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Row, Settings

pytestmark = pytest.mark.local_model


def grid(n_rows: int = 4) -> Experiment:
    variants = [Template(name="tier", turns=[{"role": "user", "content": "Renewal risk of {{notes}}? One word."}]),
                Template(name="why", system="Answer briefly.",
                         turns=[{"role": "user", "content": "Why might {{notes}} churn?"}])]
    rows = [Row(id=f"r{i}", input={"notes": f"an account whose usage fell {10 * (i + 1)}%"}, target="risk")
            for i in range(n_rows)]
    return Experiment(variants=variants, models=["local:smollm2"], rows=rows, settings=Settings(max_tokens=8),
                      graders=[contains()], name="clustergrid")


@pytest.fixture(scope="module")
def cluster():
    from promptkit.cluster import environ_kept

    # the workers inherit PROMPTKIT_THREADS=1 (one llama.cpp thread each); this process gets its environment back,
    # or every later test, chapter kernel and dashboard would run llama.cpp on one thread (they did: issue 15's time)
    with environ_kept():
        os.environ["PROMPTKIT_THREADS"] = "1"
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                                      processes=True) as lc, distributed.Client(lc) as client:
            yield client


def test_a_smollm2_grid_on_two_workers_matches_the_in_process_run(cluster, tmp_path):
    exp = grid()
    local = run(exp, cache="off", progress=False)
    res = run(exp, cache_backend=tmp_path / "c.sqlite3", progress=False, cluster=cluster.scheduler.address)
    assert [r.completion.text for r in res.results] == [r.completion.text for r in local.results]
    assert all(r.completion.ok and r.completion.output_tokens for r in res.results)
    assert [r.grades["contains"].passed for r in res.results] == [r.grades["contains"].passed for r in local.results]
    by_worker = res.meta["cluster"]["cells_by_worker"]
    assert len(by_worker) == 2 and sum(by_worker.values()) == exp.n_cells  # both workers answered cells
    from promptkit.cluster import model_builds

    builds = cluster.run(model_builds)
    assert all(b.get("local:smollm2", 0) <= 1 for b in builds.values())  # loaded once per worker, not per cell
    assert sum(b.get("local:smollm2", 0) for b in builds.values()) == 2
    assert len(SqliteCache(tmp_path / "c.sqlite3")) == exp.n_cells  # answers came back into the driver's cache
    again = run(exp, cache_backend=tmp_path / "c.sqlite3", progress=False, cluster=cluster)
    assert again.meta["counts"]["cache_hits"] == exp.n_cells and "cluster" not in again.meta


def test_a_cell_key_submitted_twice_runs_once(cluster):
    from promptkit.cluster import answer_cell

    cell = grid(1).expand()[0]
    a = cluster.submit(answer_cell, cell.model, cell.request, None, key=cell.key, pure=False)
    b = cluster.submit(answer_cell, cell.model, cell.request, None, key=cell.key, pure=False)
    assert a.key == b.key == cell.key
    (ca, wa), (cb, wb) = a.result(timeout=120), b.result(timeout=120)
    assert wa == wb and ca.latency_s == cb.latency_s  # one execution, one result object's measurements


def test_bad_cluster_values_and_an_unreachable_scheduler(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTKIT_CLUSTER_CONNECT_S", "2")
    with pytest.raises(ExperimentError, match="scheduler address"):
        run(grid(1), cluster="nowhere", progress=False)
    res = run(grid(1), cache_backend=tmp_path / "c.sqlite3", progress=False, cluster="tcp://127.0.0.1:1",
              timeout_s=None)
    assert {r.completion.error_kind for r in res.results} == {"connection"}
    assert "cannot reach the Dask scheduler" in res.results[0].completion.error


def _worker_threads() -> tuple[str | None, int]:
    from promptkit.cpu import thread_plan

    return os.environ.get("PROMPTKIT_THREADS"), thread_plan().threads


@pytest.mark.parametrize("user_threads", [None, "2"])
def test_the_own_local_cluster_runs_one_llama_thread_per_worker_per_core(user_threads, monkeypatch):
    """cluster="local": a worker per allowed CPU, each on one llama.cpp thread unless the user said otherwise (each
    worker used to take every core for its model: four threads on two cores)."""
    from promptkit.cluster import environ_kept, local_cluster_options
    from promptkit.cpu import allowed_cpus

    if user_threads is None:
        monkeypatch.delenv("PROMPTKIT_THREADS", raising=False)
    else:
        monkeypatch.setenv("PROMPTKIT_THREADS", user_threads)
    opts = local_cluster_options()
    assert opts["n_workers"] == allowed_cpus()[0] and opts["threads_per_worker"] == 1
    with environ_kept(), distributed.LocalCluster(**opts) as lc, distributed.Client(lc) as client:
        seen = client.run(_worker_threads)
    want = user_threads or "1"
    assert len(seen) == allowed_cpus()[0] and set(seen.values()) == {(want, int(want))}


def test_cli_scheduler_local_starts_and_stops_its_own_cluster(tmp_path, monkeypatch, capsys):
    from promptkit.cli import main

    monkeypatch.setenv("PROMPTKIT_THREADS", "1")
    before = dict(os.environ)
    yml = tmp_path / "exp.yaml"
    yml.write_text("name: clusteryaml\nprompts:\n  - template: {name: t, turns: [{role: user, content: 'Say {{x}}'}]}\n"
                   "models: [local:smollm2]\nrows:\n  - {id: a, input: {x: hello}}\n  - {id: b, input: {x: bye}}\n"
                   "settings: {max_tokens: 4}\n", encoding="utf-8")
    assert main(["run", str(yml), "--out", str(tmp_path / "out"), "--no-progress", "--scheduler", "local"]) == 0
    from promptkit.results import Results

    res = Results.from_jsonl(tmp_path / "out" / "results.jsonl")
    assert len(res.results) == 2 and all(r.completion.ok and r.completion.text for r in res.results)
    assert sum(res.meta["cluster"]["cells_by_worker"].values()) == 2
    # Dask's nanny writes OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_ and more into this process's environment
    # for the workers it spawns; the run's own cluster must not leave them to everything started afterwards
    assert dict(os.environ) == before
    assert main(["run", str(yml), "--out", str(tmp_path / "out2"), "--scheduler", "nowhere"]) == 2
    assert "scheduler address" in capsys.readouterr().err
