"""The fake vendor server itself: fault selection is deterministic, and it serves both APIs unstreamed too."""
from __future__ import annotations

import asyncio
import json
import urllib.request

import anthropic
import openai
import pytest

from fakeservers import FakeServer, Fault, Reply, scripted


async def _ask_all(srv: FakeServer, prompts: list[str], concurrency: int = 32) -> dict[str, str | None]:
    """prompt -> None if answered, else the exception class name (each prompt asked once)."""
    client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="sk-test", max_retries=0, timeout=10)
    sem = asyncio.Semaphore(concurrency)

    async def one(p: str) -> tuple[str, str | None]:
        async with sem:
            try:
                r = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": p}],
                                                         stream=False)
                assert r.choices[0].message.content == p
                return p, None
            except openai.APIStatusError as exc:
                return p, type(exc).__name__

    try:
        return dict(await asyncio.gather(*(one(p) for p in prompts)))
    finally:
        await client.close()


def test_rate_faults_depend_on_seed_and_body_not_on_arrival_order():
    prompts = [f"row {i}" for i in range(120)]
    with FakeServer(faults=[Fault("server", rate=0.25)], seed=1) as srv:
        first = asyncio.run(_ask_all(srv, prompts))
    with FakeServer(faults=[Fault("server", rate=0.25)], seed=1) as srv:
        again = asyncio.run(_ask_all(srv, list(reversed(prompts)), concurrency=64))
    with FakeServer(faults=[Fault("server", rate=0.25)], seed=2) as srv:
        other_seed = asyncio.run(_ask_all(srv, prompts))
    failed = {p for p, e in first.items() if e}
    assert 0.15 < len(failed) / len(prompts) < 0.35
    assert {p for p, e in again.items() if e} == failed
    assert {p for p, e in other_seed.items() if e} != failed
    assert set(first.values()) == {None, "InternalServerError"}


def test_a_retried_request_draws_again():
    async def ask_same(srv: FakeServer, n: int) -> list[str | None]:
        client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)
        out: list[str | None] = []
        for _ in range(n):
            try:
                await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "same"}],
                                                     stream=False)
                out.append(None)
            except openai.InternalServerError:
                out.append("server")
        await client.close()
        return out

    with FakeServer(faults=[Fault("server", rate=0.5)], seed=3) as srv:
        seen = asyncio.run(ask_same(srv, 24))
        assert seen == [c.fault for c in srv.calls]
    assert set(seen) == {None, "server"}  # the same body fails on some attempts and not on others


def test_faults_by_index_predicate_and_times():
    faults = [Fault("rate_limit", at={1}), Fault("unavailable", when=lambda c: "boom" in c.last_user, times=2)]
    with FakeServer(faults=faults) as srv:
        for p in ["a", "b", "boom 1", "boom 2", "boom 3"]:
            asyncio.run(_ask_all(srv, [p]))
        assert [c.fault for c in srv.calls] == [None, "rate_limit", "unavailable", "unavailable", None]
        assert srv.fault_counts() == {"ok": 2, "rate_limit": 1, "unavailable": 2}
        srv.reset()
        assert srv.calls == [] and faults[1].fired == 0


def test_unknown_fault_kind_is_refused():
    with pytest.raises(ValueError, match="Fault.kind must be one of"):
        Fault("teapot")


def test_many_concurrent_connections_are_all_served():
    prompts = [f"q{i}" for i in range(200)]
    with FakeServer(latency=0.02) as srv:
        out = asyncio.run(_ask_all(srv, prompts, concurrency=96))
        assert len(srv.calls) == 200
    assert all(e is None for e in out.values())


def test_unstreamed_replies_and_models_list():
    async def main(srv: FakeServer):
        oc = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)
        ac = anthropic.AsyncAnthropic(base_url=srv.anthropic_base_url, api_key="k", max_retries=0)
        r = await oc.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=False,
                                             logprobs=True, top_logprobs=2, max_tokens=3, stop=["never"])
        m = await ac.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "x"}],
                                     stream=False)
        ids = [x.id async for x in oc.models.list()]
        await oc.close()
        await ac.close()
        return r, m, ids

    with FakeServer(reply=scripted("Commit at renewal", "At-Risk now"), models=["a", "b"]) as srv:
        r, m, ids = asyncio.run(main(srv))
        with urllib.request.urlopen(srv.url + "/v1/models") as resp:
            assert [d["id"] for d in json.load(resp)["data"]] == ["a", "b"]
    assert r.choices[0].message.content == "Commit at renewal" and r.choices[0].finish_reason == "stop"
    assert [t.token for t in r.choices[0].logprobs.content] == ["Commit", " at", " renewal"]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (1, 3)
    assert m.content[0].text == "At-Risk" and m.stop_reason == "max_tokens" and m.usage.output_tokens == 1
    assert ids == ["a", "b"]


def test_latency_per_reply_and_per_call():
    import time

    def reply(call):
        return Reply(call.last_user, latency=0.3) if call.last_user == "slow" else call.last_user

    async def timed(srv: FakeServer, prompt: str) -> float:
        client = openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0)
        t0 = time.perf_counter()
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}], stream=False)
        dt = time.perf_counter() - t0
        await client.close()
        return dt

    with FakeServer(reply=reply) as srv:
        assert asyncio.run(timed(srv, "slow")) >= 0.3
    with FakeServer(latency=lambda call: 0.2 if "wait" in call.last_user else 0.0) as srv:
        assert asyncio.run(timed(srv, "please wait")) >= 0.2
