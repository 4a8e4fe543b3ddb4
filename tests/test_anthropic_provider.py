"""The Anthropic provider, driven through the real anthropic SDK against the loopback fake server.

What only it does; what both vendors do alike is in test_vendor_providers.py.
"""
from __future__ import annotations

import pytest

import promptkit as pk
from fakeservers import VENDORS, Fault, only_vendor
from promptkit.errors import SettingsError
from promptkit.providers import clear_providers, get_provider
from promptkit.providers.anthropic import AnthropicProvider
from promptkit.types import Message

CANARY, MODEL = VENDORS["anthropic"].canary, VENDORS["anthropic"].model
vendor = only_vendor("anthropic")  # conftest's `pointed` points this SDK at the fake server


def test_system_prefill_stop_and_sampling_map_to_the_messages_api(pointed):
    pointed.reply = lambda call: " At-Risk"
    turns = [Message("system", "You are a CS analyst."), Message("user", "Notes: churn signals."),
             Message("assistant", "Tier: Likely"), Message("user", "Notes: usage fell 60%.")]
    c = pk.complete(turns, MODEL, prefill="Tier: ", temperature=0.4, top_p=0.9, seed=7, stop=["\n"], max_tokens=9)
    body = pointed.last.body
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


def test_sampling_is_sent_when_the_catalog_opts_in(pointed, tmp_path, monkeypatch):
    _models_file(tmp_path, monkeypatch, sampling="send", api_version="2023-06-01")
    pk.complete("q", MODEL, temperature=0.4)
    body, headers = pointed.last.body, pointed.last.headers
    assert body["temperature"] == 0.4 and "top_p" not in body  # top_p only when it is not 1.0
    assert headers["anthropic-version"] == "2023-06-01"
    clear_providers()
    pk.complete("q", MODEL, top_p=0.8)
    assert pointed.last.body["top_p"] == 0.8


def test_default_api_version_is_the_sdks(pointed):
    import anthropic

    pk.complete("q", MODEL)
    sent = pointed.last.headers["anthropic-version"]
    client = anthropic.Anthropic(api_key="k", base_url=pointed.anthropic_base_url)
    assert sent == client.default_headers["anthropic-version"]


def test_a_bad_sampling_policy_names_file_and_field(pointed, tmp_path, monkeypatch):
    _models_file(tmp_path, monkeypatch, sampling="always")
    with pytest.raises(SettingsError) as err:
        get_provider(MODEL)
    assert "providers.anthropic.sampling" in str(err.value) and str(tmp_path / "models.yaml") in str(err.value)


def test_stop_reasons_map_to_neutral_finish_reasons(pointed):
    pointed.reply = lambda call: "Commit since renewal signed. STOP trailing"
    c = pk.complete("q", MODEL)
    assert c.finish_reason == "stop"  # end_turn
    c = pk.complete("q", MODEL, stop=["STOP"])
    assert c.text == "Commit since renewal signed." and c.finish_reason == "stop"  # stop_sequence
    c = pk.complete("q", MODEL, max_tokens=2)
    assert c.text == "Commit since" and c.finish_reason == "length" and c.output_tokens == 2  # max_tokens


def test_temperature_above_one_is_an_error_completion_and_no_call(pointed):
    c = pk.complete("q", MODEL, temperature=1.5)
    assert c.error_kind == "bad_request"
    assert "Settings.temperature" in c.error and "0 to 1" in c.error
    assert pointed.calls == []


def test_logprobs_are_not_available(pointed):
    c = pk.complete("q", MODEL, logprobs=True, top_logprobs=3)
    assert c.ok and c.logprobs is None
    assert "logprobs" not in pointed.last.body and "top_logprobs" not in pointed.last.body
    assert AnthropicProvider.supports_logprobs is False


def test_spec_url_overrides_the_endpoint(server, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
    c = pk.complete("via url", f"anthropic:claude-haiku-4-5@{server.anthropic_base_url}")
    assert c.ok and c.text == "via url" and server.last.body["model"] == "claude-haiku-4-5"


def test_529_is_overloaded(pointed):
    pointed.set_faults([Fault("overloaded")])
    c = pk.complete("q", MODEL)
    assert c.error_kind == "overloaded" and "529" in c.error
