"""A reply is an answer only when it is whole: the real SDK clients against a loopback server that breaks replies.

Servers and proxies ignore `stream: true`, cut streams before their terminator, or send
bodies that are not JSON. Each must end as what it is: a JSON body is read as the answer;
a stream without `[DONE]` / `message_stop` is a `truncated` error cell; anything unreadable
is `malformed`. Error cells are retried and never cached, so a re-run asks again.
"""
from __future__ import annotations

import math

import pytest

import promptkit as pk
from fakeservers import FakeServer, Fault
from promptkit.cache import MemoryCache
from promptkit.catalog import catalog
from promptkit.experiment import Experiment
from promptkit.limits import RetryPolicy
from promptkit.providers import clear_providers
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Row

MODELS = {"openai": "openai:gpt-4o-mini", "anthropic": "anthropic:claude-haiku-4-5"}
PROMPT = "renewal looks at risk"


@pytest.fixture
def server(monkeypatch):
    with FakeServer(latency=0.01) as srv:
        for vendor in MODELS:
            for k, v in srv.env(vendor, key=f"sk-fake-{vendor}-replies").items():
                monkeypatch.setenv(k, v)
        clear_providers()
        yield srv
        clear_providers()


def priced(vendor: str, n_in: int, n_out: int) -> float:
    info = catalog().info(vendor, MODELS[vendor].split(":")[1])
    return (n_in * info.input_per_mtok + n_out * info.output_per_mtok) / 1e6


# (fault, streamed?) -> the error kind a correct client records (None: the whole answer)
CASES = [
    (None, False, None), (None, True, None),
    ("ignore_stream", True, None),  # JSON for a streamed request: read as the answer it is
    ("ignore_stream", False, None),
    ("no_terminator", True, "truncated"),  # every token arrived, the terminator did not
    ("no_terminator", False, "malformed"),  # a JSON body cut short
    ("broken_json", True, "malformed"),
    ("broken_json", False, "malformed"),
    ("forced_stream", False, "malformed"),  # a stream for a plain request: not a JSON answer
    ("forced_stream", True, None),
    ("malformed", True, "malformed"),
    ("drop", True, "connection"),
    ("stream_error", True, "overloaded"),
]


@pytest.mark.parametrize("vendor", list(MODELS))
@pytest.mark.parametrize("fault,stream,expected", CASES)
def test_each_broken_reply_is_what_it_is(server, vendor, fault, stream, expected):
    server.set_faults([Fault(fault)] if fault else [])
    c = pk.complete(PROMPT, MODELS[vendor], max_tokens=50, stream=stream)
    assert server.last.stream is stream
    assert c.error_kind == expected, (c.error_kind, c.error)
    if expected is None:
        assert c.text == PROMPT and c.finish_reason == "stop"
        assert c.input_tokens == 4 and c.output_tokens == 4 and c.cost_usd == pytest.approx(priced(vendor, 4, 4))
        assert c.latency_s > 0
        served_a_stream = (stream and fault != "ignore_stream") or fault == "forced_stream"
        assert (c.ttft_s is not None) is served_a_stream  # measured only from a stream
    else:
        assert c.text == "" and not c.ok and c.error
        if expected == "truncated":
            assert ("[DONE]" if vendor == "openai" else "message_stop") in c.error


def test_a_non_streamed_call_records_latency_tokens_and_cost_and_no_first_token_time(server):
    server.latency = 0.05
    res = run(grid(2), cache_backend=MemoryCache(), progress=False)
    assert not any(c.stream for c in server.calls) and res.meta["stream"] is False
    df = res.df
    assert (df["latency_s"] >= 0.05).all() and df["output_tokens"].notna().all() and df["cost_usd"].notna().all()
    assert df["ttft_s"].isna().all()
    assert all(math.isnan(v) for v in res.summary()["ttft_p50"])


def test_a_run_streams_only_when_asked(server):
    server.latency = 0.05
    res = run(grid(2), cache_backend=MemoryCache(), progress=False, stream=True)
    assert all(c.stream for c in server.calls) and res.meta["stream"] is True
    assert (res.df["ttft_s"] >= 0.05).all()


def grid(n_rows: int, models=tuple(MODELS.values())) -> Experiment:
    t = Template(name="t", turns=[{"role": "user", "content": "{{q}}"}])
    rows = [Row(id=f"r{i}", input={"q": f"q {i}"}) for i in range(n_rows)]
    return Experiment(variants=[t], models=list(models), rows=rows)


@pytest.mark.parametrize("stream", [False, True])
def test_broken_replies_are_retried_never_cached_and_asked_again_on_a_rerun(server, stream):
    """Rows 0-3 always get a broken reply of their own kind; rows 4-5 get JSON for a stream."""
    broken = {"q 0": "no_terminator", "q 1": "broken_json", "q 2": "malformed", "q 3": "drop"}
    server.set_faults([Fault(kind, when=lambda c, q=q: c.last_user == q) for q, kind in broken.items()]
                      + [Fault("ignore_stream", when=lambda c: c.last_user in ("q 4", "q 5"))])
    store = MemoryCache()
    policy = RetryPolicy(max_attempts=3, base_s=0.001, max_s=0.01)
    first = run(grid(6), cache_backend=store, progress=False, retry=policy, stream=stream)
    by = {(r.cell.model, r.cell.request.messages[-1].content): r.completion for r in first.results}
    expect = {"no_terminator": "truncated" if stream else "malformed", "broken_json": "malformed",
              "malformed": "malformed", "drop": "connection"}
    for model in MODELS.values():
        for q, kind in broken.items():
            c = by[model, q]
            assert c.error_kind == expect[kind] and "gave up after 3 attempts" in c.error, (model, q, c.error)
        for q in ("q 4", "q 5"):
            assert by[model, q].ok and by[model, q].text == q
    assert len(store) == 2 * 2  # only the whole answers (rows 4 and 5 of each model) were cached
    attempts = [c.last_user for c in server.calls]
    assert all(attempts.count(q) == 3 * 2 for q in broken)  # each broken cell tried max_attempts times per model

    server.reset()
    server.set_faults([])
    second = run(grid(6), cache_backend=store, progress=False, retry=policy, stream=stream)
    assert sorted(c.last_user for c in server.calls) == sorted(list(broken) * 2)  # exactly the broken cells again
    assert all(r.completion.ok for r in second.results) and second.meta["counts"]["cache_hits"] == 4


def test_the_cli_streams_only_when_asked_and_shows_no_first_token_time_it_did_not_measure(server, capsys):
    from promptkit.cli import main

    assert main(["complete", PROMPT, "-m", MODELS["openai"], "-n", "8"]) == 0
    plain = capsys.readouterr().err
    assert main(["complete", PROMPT, "-m", MODELS["openai"], "-n", "8", "--stream"]) == 0
    streamed = capsys.readouterr().err
    assert [c.stream for c in server.calls] == [False, True]
    assert "ttft=-" in plain and "ttft=-" not in streamed and "ttft=0." in streamed
