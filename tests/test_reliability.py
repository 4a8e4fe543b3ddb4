"""Faults: a 500-cell grid through the real OpenAI and Anthropic SDKs against a loopback server that fails on purpose.

The server injects 429 with Retry-After, 500, 503, 529, malformed JSON, connections
dropped mid-stream and replies slower than the timeout. Every cell must come back
exactly once, as an answer or as an error of the right kind; a second run calls
again only for the cells that failed and answers the rest from the disk cache.
"""
from __future__ import annotations

from collections import Counter

import pytest

from fakeservers import FakeServer, Fault, Reply
from promptkit.cache import DiskCache, MemoryCache
from promptkit.complete import complete
from promptkit.experiment import Experiment
from promptkit.limits import RetryPolicy
from promptkit.providers import clear_providers
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Row, Settings

MODELS = {"openai:gpt-4o-mini": "openai", "anthropic:claude-haiku-4-5": "anthropic"}
VARIANTS = [
    Template(name=f"v{i}", turns=[{"role": "user", "content": f"variant {i} tier for {{{{notes}}}}"}])
    for i in range(5)
]
N_ROWS = 50
GRID = len(VARIANTS) * N_ROWS * len(MODELS)  # 500
TIMEOUT_S = 3.0  # generous: only the "slow" fault may time out, even on a busy machine
FAULTS = [  # each draws independently per request body and attempt; the first that fires answers
    Fault("rate_limit", rate=0.04, retry_after=0.05),
    Fault("server", rate=0.04),
    Fault("unavailable", rate=0.04),
    Fault("overloaded", rate=0.04),
    Fault("malformed", rate=0.04),
    Fault("drop", rate=0.04),
    Fault("slow", rate=0.02, delay=10.0),
]
EXPECTED_KIND = {f.kind: f.expected_kind for f in FAULTS}
RETRY = RetryPolicy(max_attempts=3, base_s=0.01, max_s=0.1)


@pytest.fixture
def server(monkeypatch):
    with FakeServer(latency=0.005, faults=FAULTS, seed=8) as srv:
        for vendor in ("openai", "anthropic"):
            for k, v in srv.env(vendor, key=f"sk-fake-{vendor}-key").items():
                monkeypatch.setenv(k, v)
        monkeypatch.delenv("PROMPTKIT_TIMEOUT_S", raising=False)
        clear_providers()
        srv.set_faults([])
        for model in MODELS:  # import each SDK once, so no first call spends its timeout on imports
            assert complete("warm up", model, max_tokens=4).ok
        srv.set_faults(FAULTS)
        srv.reset()
        yield srv
        clear_providers()


def grid() -> Experiment:
    rows = [Row(id=f"r{i:02d}", input={"notes": f"account {i} renews in {30 + i} days"}) for i in range(N_ROWS)]
    return Experiment(variants=VARIANTS, models=list(MODELS), rows=rows, settings=Settings(max_tokens=64),
                      name="faults")


def go(store, **kw):
    return run(grid(), cache_backend=store, concurrency=16, timeout_s=TIMEOUT_S, retry=RETRY, progress=False, **kw)


def cell_id(vendor: str, prompt: str) -> tuple[str, str]:
    return vendor, prompt


def check_every_cell_once(res, calls) -> set[tuple[str, str]]:
    """Every cell once, an answer that is its own or an error whose kind matches the fault on its last try."""
    assert len(res) == GRID
    keys = [r.cell.key for r in res.results]
    assert len(set(keys)) == GRID
    assert Counter((r.cell.model, r.cell.variant) for r in res.results) == {
        (m, v.name): N_ROWS for m in MODELS for v in VARIANTS}
    last_fault: dict[tuple[str, str], str | None] = {}
    for c in calls:  # arrival order: the last call for a prompt is its final attempt
        last_fault[cell_id(c.vendor, c.last_user)] = c.fault
    failed = set()
    for r in res.results:
        cid = cell_id(MODELS[r.cell.model], r.cell.request.messages[-1].content)
        comp = r.completion
        if comp.ok:
            assert comp.text == cid[1] and comp.error_kind is None  # its own answer, not a neighbour's
        else:
            failed.add(cid)
            assert comp.text == "" and comp.error
            assert cid in last_fault, f"an error cell that never reached the server: {comp.error}"
            assert comp.error_kind == EXPECTED_KIND[last_fault[cid]], (comp.error_kind, last_fault[cid], comp.error)
            if comp.error_kind in RETRY.retry_on:  # malformed replies are not retried within a run
                assert f"gave up after {RETRY.max_attempts} attempts" in comp.error
    return failed


def test_500_cell_grid_under_faults_then_a_rerun_calls_only_the_failed_cells(server, tmp_path):
    store = DiskCache(tmp_path / "cache")
    first = go(store)
    calls1 = server.calls
    failed1 = check_every_cell_once(first, calls1)
    fired = Counter(c.fault for c in calls1 if c.fault)
    assert set(fired) == set(EXPECTED_KIND), fired  # every kind of fault really happened
    m = first.meta["counts"]
    assert m["cells"] == GRID and m["ok"] + m["errors"] == GRID and m["errors"] == len(failed1) > 0
    assert m["calls"] == len(calls1) and m["retries"] == len(calls1) - GRID
    assert sum(m["errors_by_kind"].values()) == len(failed1)
    assert len(store) == GRID - len(failed1)  # answers are cached, errors are not

    server.reset()
    second = go(store)
    calls2 = server.calls
    failed2 = check_every_cell_once(second, calls2)
    asked = {cell_id(c.vendor, c.last_user) for c in calls2}
    assert asked == failed1  # only the failed cells were called again
    m2 = second.meta["counts"]
    assert m2["cache_hits"] == GRID - len(failed1)
    assert len(calls2) == m2["calls"] == len(failed1) + m2["retries"]
    assert failed2 <= failed1
    assert all(r.completion.cached for r in second.results
               if cell_id(MODELS[r.cell.model], r.cell.request.messages[-1].content) not in failed1)

    server.reset()
    server.set_faults([])  # the endpoint recovers: the last stragglers are answered, nothing else is asked
    third = go(store)
    assert len(server.calls) == len(failed2) and all(r.completion.ok for r in third.results)
    assert third.meta["counts"]["cache_hits"] == GRID - len(failed2)


# ---- budget under concurrency ------------------------------------------------------------------------------

PRICED = "openai:gpt-4o-mini"  # $0.15 / $0.60 per million tokens in models.yaml; OPENAI_BASE_URL points at the fake


def budget_grid(n_rows: int) -> Experiment:
    rows = [Row(id=f"r{i:03d}", input={"notes": f"account {i}"}) for i in range(n_rows)]
    return Experiment(variants=VARIANTS[:2], models=[PRICED], rows=rows, settings=Settings(max_tokens=16),
                      name="budget")


def check_budget_stop(res, n_cells: int, capsys) -> None:
    kinds = Counter(r.completion.error_kind for r in res.results)
    assert len(res) == n_cells and set(kinds) == {None, "budget"} and kinds[None] >= 1
    assert res.meta["stopped_for_budget"] is True and res.meta["counts"]["budget_skipped"] == kinds["budget"]
    assert res.meta["unpriced_calls"] == 0
    spent = sum(r.completion.cost_usd for r in res.results if r.completion.ok)
    assert abs(res.meta["spent_usd"] - spent) < 1e-9
    reason = res.meta["stop_reason"]
    assert reason == (f"stopped for budget: the next call could exceed the cap of ${res.meta['budget']['usd']:g} "
                      f"(spent ${spent:.4f}); {kinds['budget']} cell(s) were not run and are marked error_kind 'budget'")
    assert f"promptkit: {reason}\n" in capsys.readouterr().err
    cap = res.meta["budget"]["usd"]
    assert {r.completion.error for r in res.results if r.completion.error_kind == "budget"} == {
        f"not run: stopped for budget: the next call could exceed the cap of ${cap:g}"}  # one text, not a running count


@pytest.fixture
def priced_server(monkeypatch):
    def reply(call):  # the server bills far more tokens than the runner can estimate before the call
        return Reply(text="Commit", input_tokens=2000, output_tokens=500)

    with FakeServer(reply, latency=0.05) as srv:
        for k, v in srv.env("openai", key="sk-fake-budget-key").items():
            monkeypatch.setenv(k, v)
        clear_providers()
        yield srv
        clear_providers()


def test_budget_cap_is_exceeded_by_at_most_the_calls_in_flight_at_concurrency_16(priced_server, capsys):
    per_call = (2000 * 0.15 + 500 * 0.60) / 1e6  # $0.0006
    cap = 20 * per_call
    res = run(budget_grid(100), cache_backend=MemoryCache(), concurrency=16, budget_usd=cap, progress=False)
    check_budget_stop(res, 200, capsys)
    ok = [r for r in res.results if r.completion.ok]
    assert all(abs(r.completion.cost_usd - per_call) < 1e-12 for r in ok)
    assert res.meta["max_in_flight"] == 16  # the calls really overlapped
    # every call started while the spend so far was under the cap: at most 16 more were in flight when it was crossed
    assert len(ok) <= 20 + 16 and res.meta["spent_usd"] <= cap + 16 * per_call + 1e-12
    assert len(priced_server.calls) == len(ok)  # no call was made for a cell marked 'budget'


def test_budget_cap_holds_exactly_when_estimates_cover_the_bill(monkeypatch, capsys):
    with FakeServer(latency=0.02) as srv:  # echo replies: fewer tokens than the estimate of each call
        for k, v in srv.env("openai", key="sk-fake-budget-key").items():
            monkeypatch.setenv(k, v)
        clear_providers()
        cap = 0.0001
        res = run(budget_grid(60), cache_backend=MemoryCache(), concurrency=16, budget_usd=cap, progress=False)
        clear_providers()
        check_budget_stop(res, 120, capsys)
        assert res.meta["spent_usd"] <= cap and len(srv.calls) == res.meta["counts"]["ok"]
        assert res.meta["max_in_flight"] > 1
