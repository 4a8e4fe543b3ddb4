"""The runner: grid expansion, limits that hold, retries, timeouts, cache, budget, running inside a loop.

Fast tests use the in-package `echo:` provider and a scripted `fake:` provider
registered here (fault injection, in-flight counting); two tests run the real
local model with a few tokens.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

import pytest

import promptkit as pk
from promptkit.graders import label_match
from promptkit.cache import DiskCache, MemoryCache
from promptkit.errors import ExperimentError, MissingKeyError
from promptkit.experiment import Experiment
from promptkit.providers import Provider, clear_providers, register
from promptkit.runner import arun, run
from promptkit.templates import Template
from promptkit.types import Completion, Grade, Request, Row, Settings


class Recorder:
    """What the fake provider saw: calls in flight, start times, calls per prompt."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0
        self.starts: list[float] = []
        self.calls: Counter[str] = Counter()


async def _answer(provider: "FakeProvider", request: Request) -> Completion:
    await asyncio.sleep(0.01)
    return Completion(text="ok " + request.messages[-1].content, input_tokens=10, output_tokens=2)


class FakeProvider(Provider):
    """`fake:<model>`: runs FakeProvider.behaviour(provider, request) and counts concurrency."""

    name = "fake"
    behaviour = staticmethod(_answer)
    rec = Recorder()

    async def _complete(self, request: Request) -> Completion:
        rec = FakeProvider.rec
        rec.in_flight += 1
        rec.max_in_flight = max(rec.max_in_flight, rec.in_flight)
        rec.starts.append(time.perf_counter())
        rec.calls[request.messages[-1].content] += 1
        try:
            return await FakeProvider.behaviour(self, request)
        finally:
            rec.in_flight -= 1


class NoKeyProvider(Provider):
    name = "nokey"

    def __init__(self, spec):
        raise MissingKeyError("nokey needs an API key: set the environment variable NOKEY_API_KEY")

    async def _complete(self, request):  # pragma: no cover - never built
        raise AssertionError


@pytest.fixture(autouse=True)
def fake():
    register("fake", FakeProvider)  # for this test only: conftest removes providers a test registers
    register("nokey", NoKeyProvider)
    FakeProvider.behaviour = staticmethod(_answer)
    FakeProvider.rec = Recorder()
    clear_providers()
    yield FakeProvider.rec
    clear_providers()


T1 = Template(name="ask", turns=[{"role": "user", "content": "Tier for {{notes}}"}])
T2 = Template(name="ask_brief", system="Be brief.", turns=[{"role": "user", "content": "Tier? {{notes}}"}])


def rows(n: int) -> list[Row]:
    return [Row(id=f"r{i}", input={"notes": f"account {i}"}, target="Commit") for i in range(n)]


def exp(n=4, models=("fake:m",), variants=(T1,), **kw) -> Experiment:
    return Experiment(variants=list(variants), models=list(models), rows=rows(n), **kw)


def hanging(cancelled: list[float]):
    """A FakeProvider behaviour that never answers: each call waits until cancelled, noting when in `cancelled`."""
    async def hang(provider, request):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(time.perf_counter())
            raise
        return Completion(text="never")

    return hang


def go(e: Experiment, **kw):
    kw.setdefault("cache_backend", MemoryCache())
    kw.setdefault("progress", False)
    return run(e, **kw)


# ---- grid expansion -----------------------------------------------------------------------


def test_expand_counts_labels_and_order():
    e = Experiment(variants=[T1, T2], models=["echo:a", "echo:b"], rows=rows(3), repeats=2,
                   sweep={"temperature": [0, 0.7], "max_tokens": [5, 20]})
    cells = e.expand()
    assert len(cells) == e.n_cells == 2 * 2 * 4 * 3 * 2
    labels = [lab for lab, _ in e.settings_grid()]
    assert labels == ["temperature=0, max_tokens=5", "temperature=0, max_tokens=20",
                      "temperature=0.7, max_tokens=5", "temperature=0.7, max_tokens=20"]
    assert Counter(c.settings_label for c in cells) == {lab: 24 for lab in labels}
    assert {(c.model, c.variant) for c in cells} == {(m, v) for m in ("echo:a", "echo:b") for v in ("ask", "ask_brief")}
    c = next(c for c in cells if c.settings_label == "temperature=0.7, max_tokens=20")
    assert c.settings.temperature == 0.7 and c.settings.max_tokens == 20 and c.request.settings == c.settings
    assert c.target == "Commit" and c.request.messages[-1].content.startswith("Tier")
    assert len({c.key for c in cells}) == len(cells)  # repeat index and settings are in the key
    assert Experiment(variants=[T1], models=["echo:a"], rows=rows(1)).settings_grid()[0][0] == "default"


def test_keys_are_stable_and_one_prompt_change_touches_only_its_cells():
    e1 = Experiment(variants=[T1, T2], models=["echo:a"], rows=rows(5))
    keys1 = {(c.variant, c.row_id): c.key for c in e1.expand()}
    assert keys1 == {(c.variant, c.row_id): c.key for c in e1.expand()}
    t2b = T2.replace(system="Be very brief.")
    keys2 = {(c.variant, c.row_id): c.key for c in Experiment(variants=[T1, t2b], models=["echo:a"], rows=rows(5)).expand()}
    changed = {k for k in keys1 if keys1[k] != keys2[k]}
    assert changed == {("ask_brief", f"r{i}") for i in range(5)}


def test_row_missing_a_variable_is_an_error_before_any_call(fake):
    bad = rows(3) + [Row(id="r-bad", input={"note": "typo in the field name"})]
    e = Experiment(variants=[T1], models=["fake:m"], rows=bad)
    with pytest.raises(ExperimentError) as info:
        go(e)
    msg = str(info.value)
    assert "row 'r-bad'" in msg and "prompt 'ask'" in msg and "'notes'" in msg and "nothing was run" in msg
    assert "did you mean 'note'" in msg
    assert sum(fake.calls.values()) == 0


@pytest.mark.parametrize("kwargs, needle", [
    (dict(variants=[T1, T1]), "prompt variant name 'ask' appears twice"),
    (dict(models=["fake:m", "fake:m"]), "model 'fake:m' appears twice"),
    (dict(models=["nosuch:m"]), "unknown provider 'nosuch'"),
    (dict(sweep={"temprature": [0]}), "sweep.temprature"),
    (dict(sweep={"temperature": [0, 5]}), "temperature must be between 0 and 2"),
    (dict(repeats=0), "repeats"),
])
def test_bad_grid_is_named(kwargs, needle):
    base = dict(variants=[T1], models=["fake:m"], rows=rows(2))
    with pytest.raises(ExperimentError, match=None) as info:
        Experiment(**{**base, **kwargs})
    assert needle in str(info.value)


# ---- execution: results, limits ----------------------------------------------------------


def test_every_cell_gets_exactly_one_result_in_grid_order():
    e = Experiment(variants=[T1, T2], models=["echo:a", "fake:m"], rows=rows(6), repeats=2)
    res = go(e)
    cells = e.expand()
    assert [r.cell.key for r in res.results] == [c.key for c in cells]
    assert all(r.completion.ok for r in res.results)
    assert res.meta["counts"]["cells"] == len(cells) == res.meta["counts"]["calls"]
    assert res.meta["experiment"]["variants"] == ["ask", "ask_brief"]
    assert res.meta["stopped_for_budget"] is False and res.meta["started_at"] <= res.meta["finished_at"]
    fake_cells = [r for r in res.results if r.cell.model == "fake:m"]
    assert fake_cells[0].completion.text == "ok " + fake_cells[0].cell.request.messages[-1].content


@pytest.mark.parametrize("concurrency", [1, 5])
def test_global_concurrency_holds(fake, concurrency):
    res = go(exp(n=20), concurrency=concurrency)
    assert fake.max_in_flight == concurrency  # reached, never passed
    assert res.meta["max_in_flight"] == concurrency


def test_per_provider_limit_holds_while_others_run_in_parallel(fake):
    async def slow(provider, request):
        await asyncio.sleep(0.02)
        return Completion(text="x", input_tokens=1, output_tokens=1)

    FakeProvider.behaviour = staticmethod(slow)
    e = Experiment(variants=[T1], models=["fake:a", "fake:b", "echo:e"], rows=rows(12))
    res = go(e, concurrency=10, provider_concurrency={"fake": 3})
    assert fake.max_in_flight == 3  # one limit for the provider, whatever its models
    assert res.meta["max_in_flight_by_provider"]["fake"] == 3
    assert res.meta["limits"]["provider_concurrency"] == {"fake": 3, "echo": 10}


def test_rpm_spaces_starts(fake):
    go(exp(n=6), rpm={"fake": 600})  # one start every 0.1 s
    gaps = [b - a for a, b in zip(fake.starts, fake.starts[1:])]
    assert len(gaps) == 5 and min(gaps) >= 0.095


# ---- retries and timeouts -------------------------------------------------------------------


def test_retry_after_is_honoured_then_succeeds(fake):
    async def limited_once(provider, request):
        if fake.calls[request.messages[-1].content] == 1:
            return Completion(error_kind="rate_limit", error="429 slow down", retry_after_s=0.3)
        return Completion(text="fine", input_tokens=1, output_tokens=1)

    FakeProvider.behaviour = staticmethod(limited_once)
    res = go(exp(n=1))
    r = res.results[0]
    assert r.completion.ok and r.completion.text == "fine"
    assert res.meta["counts"]["retries"] == 1 and res.meta["counts"]["calls"] == 2
    assert fake.starts[1] - fake.starts[0] >= 0.3


def test_retry_after_pauses_the_whole_provider(fake):
    said_429_at = []

    async def first_call_limited(provider, request):
        if len(fake.starts) == 1:
            said_429_at.append(time.perf_counter())
            return Completion(error_kind="rate_limit", error="429", retry_after_s=0.4)
        await asyncio.sleep(0.05)
        return Completion(text="fine", input_tokens=1, output_tokens=1)

    FakeProvider.behaviour = staticmethod(first_call_limited)
    res = go(exp(n=6), concurrency=2)
    assert all(r.completion.ok for r in res.results)
    # once the 429 is in, no call to that provider starts (on any worker) before Retry-After has passed;
    # only a call the other worker began at the same moment is let through
    t429 = said_429_at[0]
    assert sum(1 for t in fake.starts if t > t429 + 0.03) >= 4
    assert all(t - t429 >= 0.39 for t in fake.starts if t > t429 + 0.03)


def test_gives_up_after_max_attempts_and_keeps_an_error_cell(fake):
    async def always_500(provider, request):
        return Completion(error_kind="server", error="500 internal error")

    FakeProvider.behaviour = staticmethod(always_500)
    res = go(exp(n=2), max_attempts=3, retry=pk_retry(base_s=0.01))
    assert len(res) == 2
    for r in res.results:
        assert r.completion.error_kind == "server" and "gave up after 3 attempts" in r.completion.error
        assert r.grades == {}
    assert res.meta["counts"]["calls"] == 6 and res.meta["counts"]["errors_by_kind"] == {"server": 2}


def pk_retry(**kw):
    from promptkit.limits import RetryPolicy

    return RetryPolicy(max_attempts=3, **kw)


def test_non_retryable_errors_are_tried_once(fake):
    async def auth(provider, request):
        return Completion(error_kind="auth", error="401 bad key")

    FakeProvider.behaviour = staticmethod(auth)
    res = go(exp(n=2), max_attempts=5)
    assert res.meta["counts"]["calls"] == 2 and all(r.completion.error_kind == "auth" for r in res.results)


def test_timeout_cancels_the_call_and_records_it(fake):
    cancelled = []
    FakeProvider.behaviour = staticmethod(hanging(cancelled))
    t0 = time.perf_counter()
    res = go(exp(n=2), timeout_s=0.2, max_attempts=2, retry=None)
    assert time.perf_counter() - t0 < 10  # nowhere near the 30 s the fake would take
    assert all(r.completion.error_kind == "timeout" for r in res.results)
    assert "within 0.2 s" in res.results[0].completion.error and len(cancelled) == 4


def test_random_faults_never_lose_or_double_a_cell(fake):
    rnd = random.Random(7)

    async def flaky(provider, request):
        await asyncio.sleep(rnd.random() * 0.005)
        kind = rnd.choice([None, None, None, "server", "rate_limit", "bad_request", "connection"])
        if kind:
            return Completion(error_kind=kind, error=f"injected {kind}", retry_after_s=0.0 if kind == "rate_limit" else None)
        return Completion(text="ok", input_tokens=1, output_tokens=1)

    FakeProvider.behaviour = staticmethod(flaky)
    e = exp(n=100, models=["fake:a", "fake:b"])
    res = go(e, concurrency=16, retry=pk_retry(base_s=0.001))
    assert [r.cell.key for r in res.results] == [c.key for c in e.expand()]
    assert all(r.completion.ok or r.completion.error_kind for r in res.results)
    assert res.meta["counts"]["ok"] + res.meta["counts"]["errors"] == 200


def test_a_model_that_cannot_be_set_up_fails_only_its_cells(fake):
    res = go(exp(n=3, models=["nokey:x", "fake:m"]))
    by_model = {m: [r.completion for r in res.results if r.cell.model == m] for m in ("nokey:x", "fake:m")}
    assert all(c.error_kind == "config" and "NOKEY_API_KEY" in c.error for c in by_model["nokey:x"])
    assert all(c.ok for c in by_model["fake:m"])


def test_identical_rows_share_one_call(fake):
    twins = [Row(id="a", input={"notes": "same"}), Row(id="b", input={"notes": "same"})]
    res = go(Experiment(variants=[T1], models=["fake:m"], rows=twins))
    assert sum(fake.calls.values()) == 1
    assert [r.completion.text for r in res.results] == ["ok Tier for same"] * 2
    assert [r.cell.row_id for r in res.results] == ["a", "b"]


# ---- graders ---------------------------------------------------------------------------------


class Starts:
    name = "starts_ok"

    def __call__(self, completion, target):
        return Grade(score=float(completion.text.startswith("ok")), passed=completion.text.startswith("ok"))


class AsyncJudge:
    name = "judge"

    def __init__(self):
        self.seen = 0

    def __call__(self, completion, target):  # pragma: no cover - the runner must await agrade
        raise AssertionError("sync path used for an async grader")

    async def agrade(self, completion, target):
        await asyncio.sleep(0.001)
        self.seen += 1
        return Grade(score=1.0, passed=True, reason="judged")


class Broken:
    name = "broken"

    def __call__(self, completion, target):
        raise KeyError("oops")


def test_graders_sync_async_and_broken():
    judge = AsyncJudge()
    res = go(exp(n=3, graders=[Starts(), judge, Broken()]))
    for r in res.results:
        assert r.grades["starts_ok"].passed and r.grades["judge"].reason == "judged"
        assert r.grades["broken"].passed is False and "grader 'broken' failed: KeyError" in r.grades["broken"].reason
    assert judge.seen == 3
    # cached cells are graded too (grades are not cached, answers are)
    store = MemoryCache()
    go(exp(n=3), cache_backend=store)
    again = go(exp(n=3, graders=[judge]), cache_backend=store)
    assert again.meta["counts"]["cache_hits"] == 3 and judge.seen == 6


# ---- cache ----------------------------------------------------------------------------------


def test_cache_use_refresh_off(fake, tmp_path):
    store = DiskCache(tmp_path / "c")
    first = go(exp(n=5), cache_backend=store)
    assert first.meta["counts"]["calls"] == 5 and len(store) == 5
    assert not any(r.completion.cached for r in first.results)
    second = go(exp(n=5), cache_backend=store)
    assert second.meta["counts"]["calls"] == 0 and second.meta["counts"]["cache_hits"] == 5
    assert all(r.completion.cached for r in second.results)
    assert [r.completion.text for r in second.results] == [r.completion.text for r in first.results]
    refreshed = go(exp(n=5), cache_backend=store, cache="refresh")
    assert refreshed.meta["counts"]["calls"] == 5 and not any(r.completion.cached for r in refreshed.results)
    empty = DiskCache(tmp_path / "off")
    off = go(exp(n=5), cache_backend=empty, cache="off")
    assert off.meta["counts"]["calls"] == 5 and len(empty) == 0
    assert sum(fake.calls.values()) == 15


def test_default_cache_is_one_sqlite_file_under_promptkit_home(fake):
    from promptkit.cache import SqliteCache
    from promptkit.config import cache_dir

    assert not cache_dir().exists() or not list(cache_dir().iterdir())
    run(exp(n=2), progress=False)
    again = run(exp(n=2), progress=False)
    assert again.meta["counts"]["cache_hits"] == 2 and len(SqliteCache()) == 2
    assert (cache_dir() / "cache.sqlite3").is_file()


@pytest.mark.parametrize("where", ["answers.sqlite3", "folder"])
def test_cache_backend_by_path(fake, tmp_path, where):
    from promptkit.cache import SqliteCache

    go(exp(n=3), cache_backend=tmp_path / where)
    again = go(exp(n=3), cache_backend=tmp_path / where)
    assert again.meta["counts"]["cache_hits"] == 3
    store = SqliteCache(tmp_path / where) if where.endswith(".sqlite3") else DiskCache(tmp_path / where)
    assert len(store) == 3 and (tmp_path / where).is_file() == where.endswith(".sqlite3")


def test_changing_one_prompt_reruns_only_its_cells(fake):
    store = MemoryCache()
    go(exp(n=4, variants=[T1, T2]), cache_backend=store)
    res = go(exp(n=4, variants=[T1, T2.replace(system="Answer in one word.")]), cache_backend=store)
    assert res.meta["counts"]["calls"] == 4 and res.meta["counts"]["cache_hits"] == 4
    assert {r.cell.variant for r in res.results if not r.completion.cached} == {"ask_brief"}


def test_failed_cells_are_retried_on_rerun_and_finished_ones_come_from_cache(fake):
    broken = {"Tier for account 1", "Tier for account 3"}

    async def some_fail(provider, request):
        if request.messages[-1].content in broken:
            return Completion(error_kind="server", error="500")
        return Completion(text="ok", input_tokens=1, output_tokens=1)

    FakeProvider.behaviour = staticmethod(some_fail)
    store = MemoryCache()
    first = go(exp(n=5), cache_backend=store, max_attempts=1)
    assert first.meta["counts"]["errors"] == 2 and len(store) == 3
    broken.clear()  # the endpoint recovers
    second = go(exp(n=5), cache_backend=store, max_attempts=1)
    assert second.meta["counts"]["cache_hits"] == 3 and second.meta["counts"]["calls"] == 2
    assert all(r.completion.ok for r in second.results)
    assert {r.cell.row_id for r in second.results if not r.completion.cached} == {"r1", "r3"}


def test_unknown_cache_mode_is_rejected():
    with pytest.raises(ExperimentError, match="cache must be one of"):
        go(exp(n=1), cache="sometimes")


# ---- budget -----------------------------------------------------------------------------------


@pytest.fixture
def priced(tmp_path, monkeypatch):
    """A catalog where fake:m costs $1 per million input and output tokens."""
    from promptkit.catalog import CATALOG_PATH

    text = CATALOG_PATH.read_text(encoding="utf-8").replace(
        "models:\n", "models:\n  fake:\n    m: {input_per_mtok: 1000.0, output_per_mtok: 1000.0}\n", 1)
    path = tmp_path / "models.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("PROMPTKIT_MODELS_FILE", str(path))


@pytest.mark.parametrize("concurrency", [1, 8])
def test_budget_usd_stops_before_the_cap(fake, priced, concurrency):
    async def costly(provider, request):
        await asyncio.sleep(0.005)
        return Completion(text="ok", input_tokens=6, output_tokens=4)  # 10 tokens x $0.001 = $0.01

    FakeProvider.behaviour = staticmethod(costly)
    e = exp(n=40, settings=Settings(max_tokens=4))
    res = go(e, concurrency=concurrency, budget_usd=0.105)
    kinds = Counter(r.completion.error_kind for r in res.results)
    spent = sum(r.completion.cost_usd or 0 for r in res.results)
    assert res.meta["stopped_for_budget"] is True and "stopped for budget" in res.meta["stop_reason"]
    assert spent <= 0.105 and abs(res.meta["spent_usd"] - spent) < 1e-9
    assert kinds[None] >= 1 and kinds[None] + kinds["budget"] == 40
    assert res.meta["counts"]["budget_skipped"] == kinds["budget"]
    assert all("budget" in r.completion.error for r in res.results if r.completion.error_kind == "budget")


def test_budget_tokens_and_cache_hits_cost_nothing(fake):
    store = MemoryCache()
    go(exp(n=3, settings=Settings(max_tokens=2)), cache_backend=store)
    # the 3 cached cells are free; the 5 new ones each need ~<=20 tokens of estimate
    res = go(exp(n=8, settings=Settings(max_tokens=2)), cache_backend=store, budget_tokens=40, concurrency=4)
    assert res.meta["counts"]["cache_hits"] == 3
    assert res.meta["spent_tokens"] <= 40 and res.meta["stopped_for_budget"] is True
    assert Counter(r.completion.error_kind for r in res.results)["budget"] >= 1


def test_budget_that_fits_does_not_stop(fake, priced):
    res = go(exp(n=3), budget_usd=100.0)
    assert res.meta["stopped_for_budget"] is False and res.meta["counts"]["ok"] == 3


# ---- event loops ------------------------------------------------------------------------------


def test_run_works_inside_a_running_event_loop():
    async def notebook_cell():
        return run(exp(n=3, models=["echo:a"]), cache_backend=MemoryCache(), progress=False)

    res = asyncio.run(notebook_cell())
    assert len(res) == 3 and all(r.completion.ok for r in res.results)


def test_arun_is_awaitable_in_a_loop():
    async def main():
        return await arun(exp(n=3, models=["echo:a"]), cache_backend=MemoryCache(), progress=False)

    assert len(asyncio.run(main())) == 3


def test_public_names():
    assert pk.run is run and pk.Experiment is Experiment


# ---- the real local model ------------------------------------------------------------------------


@pytest.mark.local_model
def test_local_model_runs_one_at_a_time_while_api_calls_go_on(fake):
    async def slowish(provider, request):
        await asyncio.sleep(0.05)
        return Completion(text="api", input_tokens=1, output_tokens=1)

    FakeProvider.behaviour = staticmethod(slowish)
    e = Experiment(variants=[T1], models=["local:smollm2", "fake:m"], rows=rows(3), settings=Settings(max_tokens=3))
    res = go(e, concurrency=8)
    assert all(r.completion.ok for r in res.results)
    assert res.meta["max_in_flight_by_provider"] == {"local": 1, "fake": 3}
    local = [r.completion for r in res.results if r.cell.model == "local:smollm2"]
    assert all(c.provider == "local" and c.output_tokens and c.output_tokens <= 3 for c in local)


@pytest.mark.local_model
def test_local_model_timeout_frees_the_model_for_the_next_call():
    pk.complete("Hi", "local:smollm2", max_tokens=1)  # load the model outside the timed call
    long = Template(name="long", turns=[{"role": "user", "content": "Write a very long story about {{notes}}."}])
    e = Experiment(variants=[long], models=["local:smollm2"], rows=rows(1), settings=Settings(max_tokens=4000))
    res = go(e, timeout_s=0.5, max_attempts=1)
    assert res.results[0].completion.error_kind == "timeout"
    t0 = time.perf_counter()
    c = pk.complete("Say hi.", "local:smollm2", max_tokens=2)
    assert c.ok and c.output_tokens <= 2
    assert time.perf_counter() - t0 < 30  # not stuck behind 4,000 tokens of the cancelled story


def test_progress_bar_shows_errors_cache_hits_and_cost(fake, capsys):
    async def one_fails(provider, request):
        if request.messages[-1].content.endswith("account 3"):
            return Completion(error_kind="bad_request", error="400")
        return Completion(text="ok", input_tokens=1, output_tokens=1, cost_usd=0.25)

    FakeProvider.behaviour = staticmethod(one_fails)
    store = MemoryCache()
    go(exp(n=2), cache_backend=store)
    capsys.readouterr()
    run(exp(n=4), cache_backend=store, progress=True)
    err = capsys.readouterr().err
    assert "4/4" in err and "errors=1 cached=2 cost=$0.2500" in err


def test_interrupting_run_inside_a_loop_cancels_calls_in_flight(fake):
    import os
    import signal
    import threading

    cancelled = []
    hang = hanging(cancelled)

    FakeProvider.behaviour = staticmethod(hang)

    async def notebook_cell():
        return run(exp(n=20), cache_backend=MemoryCache(), progress=False, concurrency=4)

    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))  # what Jupyter's stop button sends
    timer.start()
    t0 = time.perf_counter()
    loop = asyncio.new_event_loop()  # like ipykernel's loop: no SIGINT handler of asyncio.run
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(notebook_cell())
    finally:
        loop.close()
    assert time.perf_counter() - t0 < 20  # not the 30 s the calls would hang
    assert len(cancelled) == 4 and sum(fake.calls.values()) == 4  # the 4 in flight stopped, no new one began


def test_usd_budget_warns_about_models_without_a_price(fake, capsys):
    res = go(exp(n=2), budget_usd=1.0)
    assert res.meta["unpriced_models"] == ["fake:m"] and res.meta["unpriced_calls"] == 2
    assert "no price is known for fake:m" in capsys.readouterr().err


# ---- the SQLite store ------------------------------------------------------------------------------


def test_sqlite_cache_round_trip_and_errors_not_cached(tmp_path):
    from promptkit.cache import SqliteCache
    from promptkit.types import TokenLogprob

    path = tmp_path / "c.sqlite3"
    store = SqliteCache(path)
    assert store.get("ab" * 32) is None and len(store) == 0 and not path.exists()  # reading creates nothing
    ok = Completion(text="Likely", provider="openai", model="m", input_tokens=5, output_tokens=1, cost_usd=0.001,
                    logprobs=[TokenLogprob("Likely", -0.2, {"Likely": -0.2, "Commit": -1.9})])
    store.put("ab" * 32, ok)
    store.put("cd" * 32, Completion(error_kind="server", error="500"))
    again = SqliteCache(path).get("ab" * 32)  # another connection sees it
    assert again.cached and again.text == "Likely" and again.logprobs[0].top["Commit"] == -1.9
    assert again.cost_usd == 0.001 and ("cd" * 32) not in store and len(store) == 1
    with pytest.raises(ValueError, match="lowercase hex"):
        store.get("../etc/passwd")


def test_sqlite_cache_shared_by_processes(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\nfrom promptkit.cache import SqliteCache\nfrom promptkit.types import Completion\n"
        "s = SqliteCache(sys.argv[1])\n"
        "for i in range(150):\n"
        "    s.put(f'{int(sys.argv[2]) * 1000 + i:064x}', Completion(text=str(i), output_tokens=1))\n"
    )
    path = tmp_path / "shared.sqlite3"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(n)]) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    from promptkit.cache import SqliteCache

    store = SqliteCache(path)
    assert len(store) == 450 and store.get(f"{2 * 1000 + 149:064x}").text == "149"


def test_unreadable_sqlite_cache_is_moved_aside_and_the_run_goes_on(fake, tmp_path):
    path = tmp_path / "broken.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    res = go(exp(n=2), cache_backend=path)
    assert all(r.completion.ok for r in res.results) and res.meta["counts"]["calls"] == 2
    assert "damaged" in res.meta["cache_problems"][0] and "cache_write_errors" not in res.meta
    assert len(list(tmp_path.glob("broken.sqlite3.damaged-*"))) == 1  # kept for inspection; a new one holds the answers


def test_identical_prompts_are_called_once_but_graded_against_each_rows_own_target():
    """Two rows with the same text share one call; each keeps its own gold label (a grading bug once copied the first)."""
    import promptkit as pk
    from promptkit.cache import MemoryCache
    from promptkit.experiment import Experiment
    from promptkit.runner import run

    t = pk.Template(name="t", turns=[{"role": "user", "content": "{{notes}}"}])
    rows = [Row(id="a", input={"notes": "Commit"}, target="Commit"),
            Row(id="b", input={"notes": "Commit"}, target="Likely")]
    exp = Experiment(variants=[t], models=["echo:x"], rows=rows, graders=[label_match(["Commit", "Likely", "At-Risk"])])
    res = run(exp, cache_backend=MemoryCache(), progress=False)
    by_row = {r.cell.row_id: r for r in res.results}
    assert res.meta["counts"]["calls"] == 1
    assert by_row["a"].grades["label_match"].passed is True
    assert by_row["b"].grades["label_match"].passed is False


def test_a_run_does_not_load_numpy_until_a_summary_is_asked_for(server, tmp_path):
    """numpy costs ~0.1 s of CPU to import: a plain run (real OpenAI SDK, default SQLite cache, a label grader)
    builds its Results without it; the first summary loads it, which shows the check sees an import."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import sys
import promptkit as pk
from promptkit.experiment import Experiment
from promptkit.graders import label_match
from promptkit.templates import Template
from promptkit.types import Row
t = Template(name="ask", turns=[{{"role": "user", "content": "Tier for {{{{notes}}}}"}}])
rows = [Row(id=f"r{{i}}", input={{"notes": f"account {{i}}"}}, target="Commit") for i in range(6)]
exp = Experiment(variants=[t], models=["openai:gpt-4o-mini@{server.openai_base_url}"], rows=rows,
                 graders=[label_match(["Commit", "Churn"])])
res = pk.run(exp, progress=False)
heavy = [m for m in ("numpy", "pandas", "scipy", "statsmodels") if m in sys.modules]
res.summary()
print(res.meta["counts"]["ok"], res.meta["counts"]["calls"], ",".join(heavy) or "-", "numpy" in sys.modules)
"""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root,
                         env={**os.environ, "PYTHONPATH": str(root), "PROMPTKIT_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["6", "6", "-", "True"], (out.stdout, out.stderr[-2000:])
