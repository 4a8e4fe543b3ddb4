"""Core types, specs, keys and the disk cache: the contracts every other layer relies on."""
from __future__ import annotations

import asyncio
import json

import pytest

import promptkit as pk
from promptkit.complete import build_request
from promptkit.errors import ModelSpecError, PromptkitError, SettingsError
from promptkit.types import Completion, Message, Request
from promptkit.aio import run_sync
from promptkit.cache import DiskCache, MemoryCache, cell_key
from promptkit.errors import redact
from promptkit.providers import known_prefixes, parse_spec


def test_settings_out_of_range_messages_name_the_field():
    with pytest.raises(SettingsError, match=r"^Settings.temperature must be between 0 and 2, got 5$"):
        pk.Settings(temperature=5)
    with pytest.raises(SettingsError, match=r"^Settings.max_tokens must be a whole number of at least 1, got 0$"):
        pk.Settings(max_tokens=0)
    with pytest.raises(SettingsError, match=r"unknown setting\(s\) \['temprature'\]"):
        pk.Settings.from_dict({"temprature": 0.2})


def test_settings_round_trip_and_stop_normalised():
    s = pk.Settings(temperature=0.7, stop="\n", max_tokens=12)
    assert s.stop == ("\n",)
    assert pk.Settings.from_dict(s.to_dict()) == s


def test_request_needs_a_user_turn_and_joins_system():
    with pytest.raises(SettingsError, match="at least one user message"):
        Request(messages=(Message("system", "x"),))
    r = build_request("hello", system="be brief", prefill="Answer:", max_tokens=5)
    assert r.system == "be brief" and r.prefill == "Answer:" and r.settings.max_tokens == 5
    assert Request.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_parse_spec_forms():
    assert parse_spec("local:smollm2").provider == "local"
    s = parse_spec("openai:llama3.1:8b@http://127.0.0.1:8000/v1")
    assert (s.provider, s.model, s.base_url) == ("openai", "llama3.1:8b", "http://127.0.0.1:8000/v1")
    assert parse_spec("ollama:llama3.2:1b").model == "llama3.2:1b"


def test_unknown_provider_lists_known_ones():
    with pytest.raises(ModelSpecError) as e:
        parse_spec("gemini:pro")
    msg = str(e.value)
    assert "unknown provider 'gemini'" in msg
    for prefix in ("local", "anthropic", "openai", "ollama"):
        assert prefix in msg
    assert set(known_prefixes()) >= {"local", "anthropic", "openai", "ollama", "vllm", "lmstudio"}
    with pytest.raises(ModelSpecError, match="needs the form provider:model"):
        parse_spec("smollm2")


def test_cell_key_is_stable_and_covers_what_changes_the_answer():
    r = build_request("Classify this account.", system="s", temperature=0)
    k = cell_key("local:smollm2", r, 0)
    assert len(k) == 64 and all(c in "0123456789abcdef" for c in k)
    assert k == cell_key("local:smollm2", build_request("Classify this account.", system="s", temperature=0), 0)
    others = {
        cell_key("local:smollm2", r, 1),
        cell_key("openai:gpt-4o-mini", r, 0),
        cell_key("openai:gpt-4o-mini@http://127.0.0.1:9/v1", r, 0),
        cell_key("local:smollm2", build_request("Classify this account!", system="s"), 0),
        cell_key("local:smollm2", build_request("Classify this account.", system="s", temperature=0.5), 0),
        cell_key("local:smollm2", build_request("Classify this account.", system="s", prefill="{"), 0),
    }
    assert k not in others and len(others) == 6
    # an alias and its canonical id are the same model, so the same cell
    assert cell_key("anthropic:haiku", r) == cell_key("anthropic:claude-haiku-4-5", r)


def test_disk_cache_put_get_and_errors_not_cached(tmp_path):
    cache = DiskCache(tmp_path)
    ok = Completion(text="Likely", provider="local", model="smollm2", output_tokens=2)
    cache.put("ab" * 32, ok)
    got = cache.get("ab" * 32)
    assert got.text == "Likely" and got.cached is True
    cache.put("cd" * 32, Completion(error_kind="server", error="HTTP 500"))
    assert cache.get("cd" * 32) is None and len(cache) == 1
    assert not list(tmp_path.rglob(".tmp-*")), "no temporary file may remain"
    with pytest.raises(ValueError, match="64 lowercase hex"):
        cache.get("../../etc/passwd")
    mem = MemoryCache()
    mem.put("k", ok)
    assert mem.get("k").cached and mem.get("x") is None


def test_redact_removes_keys_and_auth_headers(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-1234567890abcdef")
    text = "failed: Authorization: Bearer sk-canary-1234567890abcdef; x-api-key: abc123secret"
    out = redact(text)
    assert "canary" not in out and "abc123secret" not in out and "[REDACTED]" in out
    err = PromptkitError("key was sk-canary-1234567890abcdef")
    assert "canary" not in str(err)


def test_run_sync_works_inside_a_running_loop():
    async def inner():
        return run_sync(asyncio.sleep(0, result=42))

    assert asyncio.run(inner()) == 42


def test_echo_provider_through_public_api():
    c = pk.complete("renewal at risk", "echo:test", max_tokens=2)
    assert c.ok and c.text == "renewal at" and c.finish_reason == "length" and c.provider == "echo"
