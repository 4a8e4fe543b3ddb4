"""The Anthropic provider, driven through the real anthropic SDK against the loopback fake server."""
from __future__ import annotations

import asyncio

import pytest

import promptkit as pk
from fakeservers import FakeServer, Fault
from promptkit.catalog import catalog
from promptkit.errors import MissingKeyError, SettingsError
from promptkit.providers import clear_providers, get_provider, parse_spec
from promptkit.providers.anthropic import AnthropicProvider
from promptkit.types import Message, Request, Settings

CANARY = "sk-ant-canary-4b1d9e0c7a2f58"
MODEL = "anthropic:haiku"  # an alias from models.yaml
ENV_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_PROFILE",
            "ANTHROPIC_CUSTOM_HEADERS", "PROMPTKIT_TIMEOUT_S")


@pytest.fixture(autouse=True)
def _clean_env(vendor_env_cleared):
    vendor_env_cleared(ENV_VARS)


@pytest.fixture
def anthropic_env(point_sdk):
    """ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY point the SDK at the fake server: nothing else is configured."""
    return point_sdk("anthropic", CANARY)


def test_streamed_answer_with_tokens_latency_ttft_and_catalog_cost(monkeypatch):
    with FakeServer(latency=0.05, token_delay=0.01) as srv:
        for k, v in srv.env("anthropic", key=CANARY).items():
            monkeypatch.setenv(k, v)
        c = pk.complete("renewal looks at risk", MODEL, system="Be brief.", max_tokens=50, stream=True)
        body = srv.last.body
    assert c.ok, c.error
    assert c.text == "renewal looks at risk"
    assert (c.provider, c.model) == ("anthropic", "claude-haiku-4-5")
    assert body["model"] == "claude-haiku-4-5"  # the alias resolved from the catalog
    assert c.input_tokens == 4 + 2 and c.output_tokens == 4  # system prompt counted by the server
    assert c.finish_reason == "stop"
    assert c.ttft_s >= 0.05
    assert c.latency_s >= 0.05 + 3 * 0.01 and c.latency_s >= c.ttft_s  # three more tokens, 10 ms apart
    info = catalog().info("anthropic", "claude-haiku-4-5")
    assert c.cost_usd == pytest.approx((6 * info.input_per_mtok + 4 * info.output_per_mtok) / 1e6)


def test_system_prefill_stop_and_sampling_map_to_the_messages_api(anthropic_env):
    anthropic_env.reply = lambda call: " At-Risk"
    turns = [Message("system", "You are a CS analyst."), Message("user", "Notes: churn signals."),
             Message("assistant", "Tier: Likely"), Message("user", "Notes: usage fell 60%.")]
    c = pk.complete(turns, MODEL, prefill="Tier: ", temperature=0.4, top_p=0.9, seed=7, stop=["\n"], max_tokens=9)
    body = anthropic_env.last.body
    assert body["system"] == "You are a CS analyst."
    assert body["messages"] == [
        {"role": "user", "content": "Notes: churn signals."},
        {"role": "assistant", "content": "Tier: Likely"},
        {"role": "user", "content": "Notes: usage fell 60%."},
        {"role": "assistant", "content": "Tier:"},  # prefill, trailing whitespace stripped (the API rejects it)
    ]
    assert body["stop_sequences"] == ["\n"] and body["max_tokens"] == 9
    # API 2026-10-21 (anthropic SDK 2.x) takes no sampling parameters: models.yaml says sampling: omit
    assert "temperature" not in body and "top_p" not in body
    assert "seed" not in body  # the Messages API has no seed
    assert c.text == "Tier: At-Risk"  # prefill + continuation


def _models_file(tmp_path, monkeypatch, **anthropic_extra) -> None:
    """Use a copy of the catalog whose providers.anthropic section has `anthropic_extra` added."""
    import yaml

    from promptkit.catalog import CATALOG_PATH

    data = yaml.safe_load(CATALOG_PATH.read_text(encoding="utf-8"))
    data["providers"]["anthropic"].update(anthropic_extra)
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv("PROMPTKIT_MODELS_FILE", str(path))


def test_sampling_is_sent_when_the_catalog_opts_in(anthropic_env, tmp_path, monkeypatch):
    _models_file(tmp_path, monkeypatch, sampling="send", api_version="2023-06-01")
    pk.complete("q", MODEL, temperature=0.4)
    body, headers = anthropic_env.last.body, anthropic_env.last.headers
    assert body["temperature"] == 0.4 and "top_p" not in body  # top_p only when it is not 1.0
    assert headers["anthropic-version"] == "2023-06-01"
    clear_providers()
    pk.complete("q", MODEL, top_p=0.8)
    assert anthropic_env.last.body["top_p"] == 0.8


def test_default_api_version_is_the_sdks(anthropic_env):
    import anthropic

    pk.complete("q", MODEL)
    sent = anthropic_env.last.headers["anthropic-version"]
    client = anthropic.Anthropic(api_key="k", base_url=anthropic_env.anthropic_base_url)
    assert sent == client.default_headers["anthropic-version"]


def test_a_bad_sampling_policy_names_file_and_field(anthropic_env, tmp_path, monkeypatch):
    _models_file(tmp_path, monkeypatch, sampling="always")
    with pytest.raises(SettingsError) as err:
        get_provider(MODEL)
    assert "providers.anthropic.sampling" in str(err.value) and str(tmp_path / "models.yaml") in str(err.value)


def test_stop_reasons_map_to_neutral_finish_reasons(anthropic_env):
    anthropic_env.reply = lambda call: "Commit since renewal signed. STOP trailing"
    c = pk.complete("q", MODEL)
    assert c.finish_reason == "stop"  # end_turn
    c = pk.complete("q", MODEL, stop=["STOP"])
    assert c.text == "Commit since renewal signed." and c.finish_reason == "stop"  # stop_sequence
    c = pk.complete("q", MODEL, max_tokens=2)
    assert c.text == "Commit since" and c.finish_reason == "length" and c.output_tokens == 2  # max_tokens


def test_temperature_above_one_is_an_error_completion_and_no_call(anthropic_env):
    c = pk.complete("q", MODEL, temperature=1.5)
    assert c.error_kind == "bad_request"
    assert "Settings.temperature" in c.error and "0 to 1" in c.error
    assert anthropic_env.calls == []


def test_logprobs_are_not_available(anthropic_env):
    c = pk.complete("q", MODEL, logprobs=True, top_logprobs=3)
    assert c.ok and c.logprobs is None
    assert "logprobs" not in anthropic_env.last.body and "top_logprobs" not in anthropic_env.last.body
    assert AnthropicProvider.supports_logprobs is False


def test_endpoint_is_selected_only_by_sdk_env_vars(monkeypatch):
    with FakeServer(api_key=CANARY) as a, FakeServer(api_key=CANARY) as b:
        monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", a.anthropic_base_url)
        assert pk.complete("to a", MODEL).text == "to a"
        monkeypatch.setenv("ANTHROPIC_BASE_URL", b.anthropic_base_url)
        clear_providers()
        assert pk.complete("to b", MODEL).text == "to b"
        assert [c.last_user for c in a.calls] == ["to a"] and [c.last_user for c in b.calls] == ["to b"]
        assert b.last.path == "/v1/messages"


def test_spec_url_overrides_the_endpoint(server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
    c = pk.complete("via url", f"anthropic:claude-haiku-4-5@{server.anthropic_base_url}")
    assert c.ok and c.text == "via url" and server.last.body["model"] == "claude-haiku-4-5"


FAULTS = ["rate_limit", "server", "unavailable", "overloaded", "malformed", "drop", "stream_error"]


@pytest.mark.parametrize("kind", FAULTS)
def test_each_fault_is_recorded_with_its_kind_and_the_next_call_works(anthropic_env, kind):
    fault = Fault(kind, times=1, retry_after=4)
    anthropic_env.set_faults([fault])
    c = pk.complete("one two three four", MODEL)
    assert not c.ok and c.text == ""
    assert c.error_kind == fault.expected_kind, c.error
    assert c.retry_after_s == (4.0 if kind == "rate_limit" else None)
    assert CANARY not in c.error
    again = pk.complete("one two three four", MODEL)
    assert again.ok and again.text == "one two three four"


def test_529_is_overloaded(anthropic_env):
    anthropic_env.set_faults([Fault("overloaded")])
    c = pk.complete("q", MODEL)
    assert c.error_kind == "overloaded" and "529" in c.error


def test_reply_slower_than_the_timeout_is_a_timeout(anthropic_env, monkeypatch):
    monkeypatch.setenv("PROMPTKIT_TIMEOUT_S", "0.3")
    anthropic_env.set_faults([Fault("slow", delay=5.0)])
    c = pk.complete("q", MODEL)
    assert c.error_kind == "timeout", c.error
    assert c.latency_s < 3


def test_missing_key_names_the_variable(server, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    with pytest.raises(MissingKeyError) as err:
        get_provider(MODEL)
    assert "ANTHROPIC_API_KEY" in str(err.value)
    ready, why = AnthropicProvider.status(parse_spec(MODEL))
    assert not ready and "ANTHROPIC_API_KEY" in why


def test_canary_key_never_appears_in_errors_or_reprs(monkeypatch):
    with FakeServer(api_key="sk-ant-the-right-key-000") as srv:  # it quotes the wrong key it was given
        for k, v in srv.env("anthropic", key=CANARY).items():
            monkeypatch.setenv(k, v)
        c = pk.complete("q", MODEL)
        sent = srv.last.headers
        assert CANARY in (sent.get("x-api-key"), sent.get("authorization", "").removeprefix("Bearer "))
    assert c.error_kind == "auth" and "Incorrect API key provided" in c.error
    ready, why = AnthropicProvider.status(parse_spec(MODEL))
    for text in (c.error, repr(c), str(c.to_dict()), repr(get_provider(MODEL)), why):
        assert CANARY not in text


def test_status_with_key_is_ready_without_showing_it(anthropic_env):
    ready, why = AnthropicProvider.status(parse_spec(MODEL))
    assert ready and "ANTHROPIC_API_KEY" in why and CANARY not in why
    assert anthropic_env.anthropic_base_url in why


@pytest.mark.anyio
async def test_sync_complete_works_inside_a_running_event_loop(anthropic_env):
    asyncio.get_running_loop()
    c = pk.complete("from a notebook", MODEL)
    assert c.ok and c.text == "from a notebook"


def test_concurrent_calls_do_not_mix_answers(anthropic_env):
    async def main():
        prov = get_provider(MODEL)
        reqs = [Request((Message("user", f"account {i} notes"),), Settings(max_tokens=10)) for i in range(40)]
        return await asyncio.gather(*(prov.complete(r) for r in reqs))

    out = asyncio.run(main())
    assert [c.text for c in out] == [f"account {i} notes" for i in range(40)]
