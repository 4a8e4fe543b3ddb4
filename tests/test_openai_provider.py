"""The OpenAI provider, driven through the real openai SDK against the loopback fake server.

What only it does; what both vendors do alike is in test_vendor_providers.py.
"""
from __future__ import annotations

import gc
import logging

import pytest

import promptkit as pk
from fakeservers import VENDORS, FakeServer, Fault, Reply, only_vendor, tokens_of
from promptkit.catalog import catalog
from promptkit.providers import parse_spec
from promptkit.providers.openai import OpenAIProvider
from promptkit.types import Completion

CANARY, MODEL = VENDORS["openai"].canary, VENDORS["openai"].model
vendor = only_vendor("openai")  # conftest's `pointed` points this SDK at the fake server


def test_settings_system_and_prefill_reach_the_request_body(pointed):
    pointed.reply = lambda call: " Commit"
    c = pk.complete("Notes: renewed early.", MODEL, system="You are a CS analyst.", prefill="Tier:",
                    temperature=0.3, top_p=0.9, seed=7, stop=["END"], max_tokens=12)
    body = pointed.last.body
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [
        {"role": "system", "content": "You are a CS analyst."},
        {"role": "user", "content": "Notes: renewed early."},
        {"role": "assistant", "content": "Tier:"},  # no native prefill: a trailing assistant message
    ]
    assert (body["temperature"], body["top_p"], body["seed"], body["stop"], body["max_tokens"]) == (
        0.3, 0.9, 7, ["END"], 12)
    assert "stream" not in body and "stream_options" not in body  # not streamed unless asked
    assert "logprobs" not in body
    assert c.text == "Tier: Commit"  # the prefill plus the continuation


def test_stop_sequence_and_max_tokens_set_finish_reason(pointed):
    pointed.reply = lambda call: "At-Risk because usage fell END ignored tail"
    c = pk.complete("q", MODEL, stop=["END"])
    assert c.text == "At-Risk because usage fell" and c.finish_reason == "stop"
    c = pk.complete("q", MODEL, max_tokens=2)
    assert c.text == "At-Risk because" and c.finish_reason == "length" and c.output_tokens == 2


def test_seed_none_is_not_sent(pointed):
    pk.complete("q", MODEL, seed=None)
    assert "seed" not in pointed.last.body


def test_logprobs_are_parsed_into_token_logprobs(pointed):
    pointed.reply = lambda call: "Likely to renew"
    c = pk.complete("q", MODEL, logprobs=True, top_logprobs=3)
    body = pointed.last.body
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    assert [t.token for t in c.logprobs] == tokens_of("Likely to renew")
    # the fake server gives token i the logprob -0.1*(i+1) and alternatives 1, 2 nats lower
    assert [t.logprob for t in c.logprobs] == pytest.approx([-0.1, -0.2, -0.3])
    first = c.logprobs[0]
    assert list(first.top) == ["Likely", "alt1", "alt2"]
    assert first.top["alt2"] == pytest.approx(-2.1)
    assert pk.complete("q", MODEL).logprobs is None


def test_a_plain_call_sends_what_the_sdks_create_sends(pointed):
    """The provider posts its arguments through the SDK's client without `create()` (which walks them against its
    TypedDicts on every call): the request on the wire must be the one `create()` would have sent."""
    import asyncio

    from promptkit.providers import get_provider
    from promptkit.types import Message, Request, Settings

    prov = get_provider(MODEL)
    req = Request(messages=(Message("system", "Be brief."), Message("user", "Notes: renewed early.")), prefill="Tier:",
                  settings=Settings(temperature=0.3, top_p=0.9, seed=7, stop=("END", "\n\n"), max_tokens=12,
                                    logprobs=True, top_logprobs=2))

    async def both():
        client = await prov._clients.get()
        await client.chat.completions.create(**prov.params(req))
        return await prov.complete(req)

    c = asyncio.run(both())
    assert c.ok, c.error
    sdk, ours = pointed.calls[-2:]
    assert ours.body == sdk.body and ours.path == sdk.path
    for header in ("authorization", "content-type", "accept", "user-agent"):
        assert ours.headers.get(header) == sdk.headers.get(header), header
    assert ours.headers["authorization"] == f"Bearer {CANARY}"


def test_ollama_shorthand_uses_its_base_url_env_and_placeholder_key(server, monkeypatch):
    monkeypatch.setenv("OLLAMA_BASE_URL", server.openai_base_url)
    c = pk.complete("hello ollama", "ollama:llama3.2")
    assert c.ok, c.error
    assert (c.text, c.provider, c.model) == ("hello ollama", "ollama", "llama3.2")
    assert server.last.body["model"] == "llama3.2"
    assert server.last.headers["authorization"] == "Bearer ollama"  # default_key from models.yaml
    assert c.cost_usd is None  # no price for a self-hosted model


def test_any_compatible_server_by_spec_url_needs_no_key(server):
    c = pk.complete("via url", f"openai:qwen2.5@{server.openai_base_url}")
    assert c.ok, c.error
    assert c.text == "via url" and server.last.body["model"] == "qwen2.5"
    assert c.cost_usd is None


def test_server_without_usage_leaves_tokens_and_cost_unknown(monkeypatch):
    with FakeServer(usage=False) as srv:
        for k, v in srv.env("openai").items():
            monkeypatch.setenv(k, v)
        c = pk.complete("no usage here", MODEL, stream=True)
        plain = pk.complete("no usage here", MODEL)
    assert c.ok and c.text == "no usage here" and plain.ok and plain.text == "no usage here"
    for got in (c, plain):
        assert got.input_tokens is None and got.output_tokens is None and got.cost_usd is None
    assert c.ttft_s is not None and plain.ttft_s is None


def test_retry_after_fraction_is_kept(pointed):
    pointed.set_faults([Fault("rate_limit", retry_after=0.25)])
    assert pk.complete("q", MODEL).retry_after_s == pytest.approx(0.25)


def test_status_of_self_hosted_servers_probes_them(server, monkeypatch):
    monkeypatch.setenv("OLLAMA_BASE_URL", server.openai_base_url)
    ready, why = OpenAIProvider.status(parse_spec("ollama:llama3.2"))
    assert ready and server.openai_base_url in why
    with FakeServer() as gone:
        closed = gone.openai_base_url
    monkeypatch.setenv("OLLAMA_BASE_URL", closed)
    ready, why = OpenAIProvider.status(parse_spec("ollama:llama3.2"))
    assert not ready and "OLLAMA_BASE_URL" in why and closed in why


def test_fresh_loops_get_fresh_clients_without_closed_loop_errors(pointed, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    for i in range(3):
        assert pk.complete(f"call {i}", MODEL).text == f"call {i}"
    gc.collect()
    assert pk.complete("after gc", MODEL).ok
    gc.collect()
    assert not [r for r in caplog.records if "Event loop is closed" in r.getMessage() or r.exc_info], caplog.text


def test_reply_with_explicit_counts_is_priced_from_them(pointed):
    pointed.reply = lambda call: Reply("ok", input_tokens=1000, output_tokens=500)
    c = pk.complete("q", MODEL)
    info = catalog().info("openai", "gpt-4o-mini")
    assert (c.input_tokens, c.output_tokens) == (1000, 500)
    assert c.cost_usd == pytest.approx((1000 * info.input_per_mtok + 500 * info.output_per_mtok) / 1e6)


def test_a_dotenv_file_supplies_key_and_base_url(server, monkeypatch, tmp_path):
    import promptkit.config as config

    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={CANARY}\nOPENAI_BASE_URL={server.openai_base_url}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config, "_ENV_LOADED", False)
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):  # restored (to unset) after the test
        monkeypatch.setenv(var, "placeholder")
        monkeypatch.delenv(var)
    c = pk.complete("from dotenv", MODEL)
    assert c.ok and c.text == "from dotenv"
    assert server.last.headers["authorization"] == f"Bearer {CANARY}"



def _complete_against(reply: object) -> Completion:
    """pk.complete against a loopback server whose every answer is the JSON `reply` (200, application/json)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = json.dumps(reply).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        return pk.complete("q", f"openai:gpt-4o-mini@http://127.0.0.1:{srv.server_address[1]}/v1")
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("reply, why", [
    ({"object": "list", "data": []}, "KeyError"),  # JSON, but not a chat completion
    ({"choices": []}, "StopIteration"),
    ({"choices": [{"index": 0, "finish_reason": "stop"}]}, "KeyError"),  # no message
    ({"choices": [{"index": 0, "message": {"content": ["a", "b"]}}]}, "TypeError"),
    ([1, 2], "TypeError"),
])
def test_a_json_reply_that_is_not_a_chat_completion_is_malformed(reply, why):
    """A plain call reads the decoded JSON itself (no SDK model is built), so it must say what is wrong."""
    c = _complete_against(reply)
    assert c.error_kind == "malformed" and f"the reply is not a chat completion ({why})" in c.error


def test_a_reply_with_unreadable_usage_keeps_its_answer():
    c = _complete_against({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Commit"},
                                        "finish_reason": "stop"}], "usage": "many"})
    assert c.ok and (c.text, c.finish_reason, c.input_tokens, c.output_tokens) == ("Commit", "stop", None, None)
