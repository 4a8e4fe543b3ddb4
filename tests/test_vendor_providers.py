"""What the OpenAI and Anthropic providers promise alike, each through its real SDK against the loopback fake server.

Each test runs once per vendor (conftest's `vendor` and `pointed` fixtures, the table fakeservers.VENDORS); what
only one vendor does is tested in test_openai_provider.py or test_anthropic_provider.py.
"""
from __future__ import annotations

import asyncio

import pytest

import promptkit as pk
from fakeservers import FakeServer, Fault
from promptkit.catalog import catalog
from promptkit.errors import MissingKeyError
from promptkit.providers import clear_providers, get_provider, parse_spec
from promptkit.providers.anthropic import AnthropicProvider
from promptkit.providers.openai import OpenAIProvider
from promptkit.types import Message, Request, Settings

PROVIDERS = {"openai": OpenAIProvider, "anthropic": AnthropicProvider}
FAULTS = ["rate_limit", "server", "unavailable", "overloaded", "malformed", "drop", "stream_error"]


def sent_key(call) -> str | None:
    """The key a call carried (OpenAI: Bearer; Anthropic: x-api-key or Bearer)."""
    return call.headers.get("x-api-key") or call.headers.get("authorization", "").removeprefix("Bearer ") or None


def test_streamed_answer_with_tokens_latency_ttft_and_catalog_cost(vendor, monkeypatch):
    with FakeServer(latency=0.05, token_delay=0.01) as srv:
        for k, v in srv.env(vendor.name, key=vendor.canary).items():
            monkeypatch.setenv(k, v)
        c = pk.complete("renewal looks at risk", vendor.model, system="Be brief.", max_tokens=50, stream=True)
        body = srv.last.body
    assert c.ok, c.error
    assert c.text == "renewal looks at risk"
    assert (c.provider, c.model) == (vendor.name, vendor.model_id)
    assert body["model"] == vendor.model_id  # an alias (anthropic:haiku) resolved from the catalog
    assert c.input_tokens == 4 + 2 and c.output_tokens == 4  # the system prompt counted by the server
    assert c.finish_reason == "stop"
    assert c.ttft_s >= 0.05  # the server waits 50 ms before its first byte
    assert c.latency_s >= 0.05 + 3 * 0.01 and c.latency_s >= c.ttft_s  # three more tokens, 10 ms apart
    info = catalog().info(vendor.name, vendor.model_id)
    assert c.cost_usd == pytest.approx((6 * info.input_per_mtok + 4 * info.output_per_mtok) / 1e6)


def test_endpoint_is_selected_only_by_sdk_env_vars(vendor, monkeypatch):
    with FakeServer(api_key=vendor.canary) as a, FakeServer(api_key=vendor.canary) as b:
        monkeypatch.setenv(vendor.key_var, vendor.canary)
        monkeypatch.setenv(vendor.base_url_var, vendor.base_url(a))
        assert pk.complete("to a", vendor.model).text == "to a"
        monkeypatch.setenv(vendor.base_url_var, vendor.base_url(b))
        clear_providers()
        assert pk.complete("to b", vendor.model).text == "to b"
        assert [c.last_user for c in a.calls] == ["to a"] and [c.last_user for c in b.calls] == ["to b"]
        assert b.last.path == vendor.path and sent_key(b.last) == vendor.canary


@pytest.mark.parametrize("kind", FAULTS)
def test_each_fault_is_recorded_with_its_kind_and_the_next_call_works(vendor, pointed, kind):
    fault = Fault(kind, times=1, retry_after=3)
    pointed.set_faults([fault])
    c = pk.complete("one two three four", vendor.model)
    assert not c.ok and c.text == ""
    assert c.error_kind == fault.expected_kind, c.error
    assert c.retry_after_s == (3.0 if kind == "rate_limit" else None)
    assert vendor.canary not in c.error
    again = pk.complete("one two three four", vendor.model)
    assert again.ok and again.text == "one two three four"


def test_reply_slower_than_the_timeout_is_a_timeout(vendor, pointed, monkeypatch):
    monkeypatch.setenv("PROMPTKIT_TIMEOUT_S", "0.3")
    pointed.set_faults([Fault("slow", delay=5.0)])
    c = pk.complete("q", vendor.model)
    assert c.error_kind == "timeout", c.error
    assert c.latency_s < 3


def test_missing_key_names_the_variable(vendor, server, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env file to find
    monkeypatch.setenv(vendor.base_url_var, vendor.base_url(server))
    with pytest.raises(MissingKeyError) as err:
        get_provider(vendor.model)
    assert vendor.key_var in str(err.value)
    ready, why = PROVIDERS[vendor.name].status(parse_spec(vendor.model))
    assert not ready and vendor.key_var in why


def test_canary_key_never_appears_in_errors_or_reprs(vendor, monkeypatch):
    with FakeServer(api_key="sk-the-right-key-000") as srv:  # it quotes the wrong key it was given
        for k, v in srv.env(vendor.name, key=vendor.canary).items():
            monkeypatch.setenv(k, v)
        c = pk.complete("q", vendor.model)
        assert sent_key(srv.last) == vendor.canary  # the key was really sent
    assert c.error_kind == "auth" and "Incorrect API key provided" in c.error
    prov = get_provider(vendor.model)
    ready, why = PROVIDERS[vendor.name].status(parse_spec(vendor.model))
    for text in (c.error, repr(c), str(c.to_dict()), repr(prov), repr(getattr(prov, "endpoint", None)), why):
        assert vendor.canary not in text


def test_status_with_key_is_ready_without_showing_it(vendor, pointed):
    ready, why = PROVIDERS[vendor.name].status(parse_spec(vendor.model))
    assert ready and vendor.key_var in why and vendor.canary not in why
    assert vendor.base_url(pointed) in why


@pytest.mark.anyio
async def test_sync_complete_works_inside_a_running_event_loop(vendor, pointed):
    asyncio.get_running_loop()  # as in a Jupyter cell
    c = pk.complete("from a notebook", vendor.model)
    assert c.ok and c.text == "from a notebook"


def test_concurrent_calls_share_one_client_and_do_not_mix_answers(vendor, pointed):
    async def main():
        prov = get_provider(vendor.model)
        reqs = [Request((Message("user", f"account {i} notes"),), Settings(max_tokens=10)) for i in range(40)]
        out = await asyncio.gather(*(prov.complete(r) for r in reqs))
        return out, len(prov._clients)

    out, n_clients = asyncio.run(main())
    assert [c.text for c in out] == [f"account {i} notes" for i in range(40)]
    assert n_clients == 1
    assert len(pointed.calls) == 40
