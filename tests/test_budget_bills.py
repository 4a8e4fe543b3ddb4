"""The budget when a server bills far more tokens than the runner can estimate before the call.

The estimate is ~3 characters a token in and max_tokens out; a proxy that adds a hidden system
prompt, or a model that counts differently, bills 50x that. The first call of a model runs alone,
and later calls reserve their estimate times the largest billed/estimated ratio seen, so a burst
of 16 calls cannot each spend 50x what they reserved (measured before: 3.2x the cap).
"""
from __future__ import annotations

import pytest

from fakeservers import FakeServer, Reply
from promptkit.cache import MemoryCache
from promptkit.catalog import catalog
from promptkit.experiment import Experiment
from promptkit.providers import clear_providers
from promptkit.runner import run
from promptkit.templates import Template
from promptkit.types import Row, Settings

MODEL = "openai:gpt-4o-mini"
CONCURRENCY = 16


def cost(n_in: int, n_out: int) -> float:
    info = catalog().info("openai", "gpt-4o-mini")
    return (n_in * info.input_per_mtok + n_out * info.output_per_mtok) / 1e6


def grid(n: int) -> Experiment:
    t = Template(name="t", turns=[{"role": "user", "content": "tier for {{notes}}"}])
    # equal lengths, so equal estimates
    rows = [Row(id=f"r{i:03d}", input={"notes": f"account {i:03d}"}) for i in range(n)]
    return Experiment(variants=[t], models=[MODEL], rows=rows, settings=Settings(max_tokens=16), name="bills")


@pytest.fixture
def billing(monkeypatch):
    """A server billing `bill(call) -> (input, output)` tokens; yields a function to set it."""
    state = {"bill": lambda call: (2000, 500)}

    def reply(call):
        n_in, n_out = state["bill"](call)
        return Reply(text="Commit", input_tokens=n_in, output_tokens=n_out)

    with FakeServer(reply, latency=0.05) as srv:
        for k, v in srv.env("openai", key="sk-fake-bills-key").items():
            monkeypatch.setenv(k, v)
        clear_providers()
        yield srv, state
        clear_providers()


def test_a_server_billing_50x_the_estimate_stays_within_the_cap(billing):
    srv, _ = billing
    per_call = cost(2000, 500)
    cap = 20 * per_call
    res = run(grid(200), cache_backend=MemoryCache(), concurrency=CONCURRENCY, budget_usd=cap, progress=False)
    ok = [r for r in res.results if r.completion.ok]
    assert res.meta["stopped_for_budget"] is True
    assert res.meta["spent_usd"] <= cap + 1e-12  # the cap holds: every bill matched its scaled estimate
    assert len(ok) == len(srv.calls) == 20  # and it is used up, not stopped early
    assert res.meta["max_in_flight"] > 1  # after the first bill the calls ran concurrently again


def test_bills_that_grow_past_what_was_learnt_overshoot_by_at_most_the_growth_of_the_calls_in_flight(billing):
    srv, state = billing
    state["bill"] = lambda call: (2000 + 40 * int(call.last_user[-3:]), 500)  # row i bills 2% more per row
    first_bill = cost(2000, 500)
    cap = 30 * first_bill
    res = run(grid(200), cache_backend=MemoryCache(), concurrency=CONCURRENCY, budget_usd=cap, progress=False)
    billed = sorted(r.completion.cost_usd for r in res.results if r.completion.ok)
    assert res.meta["stopped_for_budget"] is True and res.meta["max_in_flight"] > 1
    # the README's promise: beyond the cap, at most what the calls in flight billed above their reservations,
    # each at most (largest bill - the bill that was learnt)
    assert res.meta["spent_usd"] <= cap + CONCURRENCY * (billed[-1] - first_bill) + 1e-12
    assert res.meta["spent_usd"] <= 1.2 * cap
