"""Loopback fake vendor servers: the real OpenAI and Anthropic SDKs talk to them, no network needed.

One `FakeServer` speaks both wire protocols on 127.0.0.1 (a random free port),
served from a background thread by a ThreadingHTTPServer (one thread per
connection, listen backlog 512, so 64+ concurrent clients are fine):

- OpenAI: ``POST /v1/chat/completions`` (SSE stream and plain JSON; usage,
  ``stream_options.include_usage``; ``logprobs`` / ``top_logprobs``), ``GET /v1/models``.
- Anthropic: ``POST /v1/messages`` (SSE events message_start, content_block_start,
  ping, content_block_delta, content_block_stop, message_delta, message_stop; and plain JSON).

Usage::

    from fakeservers import FakeServer, Fault, Reply, scripted

    with FakeServer(latency=0.05) as srv:          # or: srv = FakeServer().start(); ...; srv.stop()
        env = srv.env("openai", key="sk-test")      # {"OPENAI_BASE_URL": srv.openai_base_url, "OPENAI_API_KEY": ...}
        ...                                         # point a client at srv.openai_base_url / srv.anthropic_base_url
        srv.calls[-1].body["messages"]              # every completion request is recorded
        srv.requests                                # every request (including GET /v1/models)

Replies come from ``reply(call) -> str | Reply``; the default echoes the last
user message. ``scripted("a", "b")`` answers in turn (cycling). The server
then applies the request's stop sequences (cut at the first one, finish
"stop" / stop_reason "stop_sequence") and max_tokens (finish "length" /
"max_tokens"). A token is a whitespace-led word (``re.findall(r"\\s*\\S+")``), so
"Hi there" is 2 tokens; input tokens are counted the same way over the system
prompt and all message contents, so counts are deterministic and checkable.

Timing: ``latency`` seconds pass before the response headers (so it is the
time to first token), ``token_delay`` between streamed tokens. ``latency`` may
be a function of the `Call`, and a `Reply(latency=...)` overrides it per reply.

Faults (issue 8 and the runner tests): ``FakeServer(faults=[...])`` or
``srv.set_faults([...])``. The first fault that matches a completion call wins::

    Fault("rate_limit", at={0, 3}, retry_after=2)   # 429 + Retry-After: 2 on calls 0 and 3
    Fault("server", rate=0.1)                       # 500 on ~10% of calls
    Fault("overloaded", when=lambda c: "boom" in c.last_user)   # 529 when the predicate holds
    Fault("slow", at={1}, delay=5.0)                # headers only after 5 s (client times out)

Kinds and the error_kind a client should record (``Fault.expected_kind``):

    rate_limit   429 + Retry-After (``retry_after`` seconds; None sends no header)   -> rate_limit
    server       500                                                                  -> server
    unavailable  503                                                                  -> overloaded
    overloaded   529 (Anthropic's "overloaded_error")                                 -> overloaded
    malformed    200 with a body (or SSE event data) that is not valid JSON           -> malformed
    drop         the connection is closed mid-body / mid-stream                       -> connection
    slow         the reply waits ``delay`` seconds before its headers                 -> timeout
    stream_error an error event (type overloaded_error) after the first streamed token;
                 a non-streamed call gets a 529 instead                               -> overloaded
    ignore_stream  a plain JSON reply whatever was asked (servers and proxies that ignore
                 `stream: true` do this); a correct client reads it as the answer     -> None (an answer)
    no_terminator  a stream that ends cleanly without `data: [DONE]` / `message_stop`
                 (a non-streamed call gets a JSON body cut short)                     -> truncated (malformed)
    broken_json  a 200 `application/json` body that is not JSON, whatever was asked   -> malformed
    forced_stream  a stream (with its terminator) even for a non-streamed call        -> malformed when not
                 asked for (the client cannot read it as JSON), an answer when it was

Selection: ``at`` is a set of 0-based completion-call indices (arrival order,
counted over POSTs to the two completion paths); ``when`` is a predicate on the
`Call`; ``rate`` is a fraction decided by a RNG seeded with
(server seed, sha256 of the request body, how many times that same body was
seen before), so the decision does not depend on arrival order under
concurrency, and a retry of the same request draws again. ``times`` caps how
often a fault fires. Conditions combine with AND; a fault with none fires
always. ``srv.calls[i].fault`` records which fault kind (if any) answered call i.

A server may demand a key: ``FakeServer(api_key="sk-...")`` answers 401 to an
OpenAI call without ``Authorization: Bearer <key>`` or an Anthropic call
with neither ``x-api-key: <key>`` nor that Bearer header (SDK 2.x sends Bearer).
``usage=False`` omits usage everywhere (some OpenAI-compatible servers send none). ``models`` lists ids for GET /v1/models.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

__all__ = ["Call", "Fault", "FakeServer", "Reply", "echo_reply", "scripted", "tokens_of"]

FAULT_KINDS: dict[str, str | None] = {
    "rate_limit": "rate_limit",
    "server": "server",
    "unavailable": "overloaded",
    "overloaded": "overloaded",
    "malformed": "malformed",
    "drop": "connection",
    "slow": "timeout",
    "stream_error": "overloaded",
    "ignore_stream": None,
    "no_terminator": "truncated",
    "broken_json": "malformed",
    "forced_stream": "malformed",
}
_STATUS = {"rate_limit": 429, "server": 500, "unavailable": 503, "overloaded": 529}
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
# Every variable each vendor's SDK (or promptkit for it) reads: tests unset them so a developer's own keys never leak in.
SDK_ENV_VARS = {
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS",
               "OLLAMA_BASE_URL", "VLLM_BASE_URL", "VLLM_API_KEY", "LMSTUDIO_BASE_URL", "PROMPTKIT_TIMEOUT_S"),
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_PROFILE",
                  "ANTHROPIC_CUSTOM_HEADERS", "PROMPTKIT_TIMEOUT_S"),
}


@dataclass(frozen=True)
class Vendor:
    """One vendor as the provider tests drive it: the spec they call, what the server must see, the key never shown."""

    name: str
    model: str  # the spec the tests call
    model_id: str  # the id the server must receive
    canary: str  # a key that must never show in any output
    key_var: str
    base_url_var: str
    path: str

    def base_url(self, server: "FakeServer") -> str:
        return getattr(server, f"{self.name}_base_url")


VENDORS = {
    "openai": Vendor("openai", "openai:gpt-4o-mini", "gpt-4o-mini", "sk-canary-openai-7f3a9c21d4e8b6",
                     "OPENAI_API_KEY", "OPENAI_BASE_URL", OPENAI_PATH),
    "anthropic": Vendor("anthropic", "anthropic:haiku", "claude-haiku-4-5", "sk-ant-canary-4b1d9e0c7a2f58",
                        "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", ANTHROPIC_PATH),
}


def only_vendor(name: str) -> Any:
    """The `vendor` fixture of a module that tests one vendor (`vendor = only_vendor("openai")`): used by every
    test, it unsets that SDK's variables and stands for conftest's, which runs each vendor in turn."""
    import pytest

    @pytest.fixture(autouse=True)
    def vendor(vendor_env_cleared: Any) -> Vendor:
        vendor_env_cleared(SDK_ENV_VARS[name])
        return VENDORS[name]

    return vendor
_TOKEN_RE = re.compile(r"\s*\S+")


def tokens_of(text: str) -> list[str]:
    """The fake tokenizer: whitespace-led words ("Hi there" -> ["Hi", " there"])."""
    return _TOKEN_RE.findall(text or "")


def _text_of(content: Any) -> str:
    """Message content as plain text (a string, or a list of content blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


@dataclass
class Call:
    """One recorded HTTP request (completion calls have an `index` and a `vendor`)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    vendor: str | None = None  # "openai" | "anthropic" for completion calls
    index: int | None = None  # 0-based arrival order among completion calls
    fault: str | None = None  # fault kind that answered this call, if any
    t: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, str]]:
        """The turns as {"role", "content": text}; OpenAI system messages included as sent."""
        msgs = (self.body or {}).get("messages") or [] if isinstance(self.body, dict) else []
        return [{"role": m.get("role", ""), "content": _text_of(m.get("content"))} for m in msgs]

    @property
    def system(self) -> str:
        if not isinstance(self.body, dict):
            return ""
        if self.vendor == "anthropic":
            return _text_of(self.body.get("system"))
        return "\n\n".join(m["content"] for m in self.messages if m["role"] in ("system", "developer"))

    @property
    def last_user(self) -> str:
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else ""

    @property
    def stream(self) -> bool:
        return bool(isinstance(self.body, dict) and self.body.get("stream"))

    @property
    def model(self) -> str:
        return str((self.body or {}).get("model", "")) if isinstance(self.body, dict) else ""


@dataclass
class Reply:
    """What the fake model answers; counts default to the fake tokenizer's."""

    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish: str | None = None  # force a finish ("stop"/"length"); default: computed from stop/max_tokens
    latency: float | None = None  # seconds before this reply's headers; default: the server's latency


@dataclass
class Fault:
    """A scheduled failure; see the module docstring for kinds and selection."""

    kind: str
    at: Iterable[int] | None = None
    rate: float | None = None
    when: Callable[[Call], bool] | None = None
    times: int | None = None
    retry_after: float | None = 1.0  # rate_limit only; None sends no Retry-After header
    delay: float = 30.0  # slow only
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Fault.kind must be one of {sorted(FAULT_KINDS)}, got {self.kind!r}")
        if self.at is not None:
            self.at = frozenset(self.at)

    @property
    def expected_kind(self) -> str | None:
        """The Completion.error_kind a correct client records for this fault (None: an answer)."""
        return FAULT_KINDS[self.kind]


def echo_reply(call: Call) -> str:
    """Default reply: the last user message, unchanged."""
    return call.last_user


def scripted(*texts: str) -> Callable[[Call], str]:
    """A reply function answering `texts` in turn, cycling (thread-safe)."""
    if not texts:
        raise ValueError("scripted() needs at least one reply text")
    lock = threading.Lock()
    state = {"i": 0}

    def reply(call: Call) -> str:
        with lock:
            i = state["i"]
            state["i"] += 1
        return texts[i % len(texts)]

    return reply


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True
    owner: "FakeServer"

    def handle_error(self, request: Any, client_address: Any) -> None:  # clients hang up on purpose
        pass


class FakeServer:
    """A loopback server speaking the OpenAI and Anthropic HTTP APIs, with scripted faults."""

    def __init__(
        self,
        reply: Callable[[Call], str | Reply] | None = None,
        *,
        latency: float | Callable[[Call], float] = 0.0,
        token_delay: float = 0.0,
        faults: Iterable[Fault] = (),
        seed: int = 0,
        api_key: str | None = None,
        usage: bool = True,
        models: Iterable[str] = ("gpt-4o-mini", "claude-haiku-4-5"),
        host: str = "127.0.0.1",
    ) -> None:
        self.reply = reply or echo_reply
        self.latency = latency
        self.token_delay = token_delay
        self.seed = seed
        self.api_key = api_key
        self.usage = usage
        self.models = list(models)
        self.host = host
        self._faults: list[Fault] = list(faults)
        self._lock = threading.Lock()
        self._requests: list[Call] = []
        self._n_calls = 0
        self._seen: dict[str, int] = {}
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "FakeServer":
        """Bind a free port on the loopback interface and serve from a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server((self.host, 0), self._handler())
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{type(self).__name__.lower()}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _handler(self) -> type:
        """The request handler class; a subclass that speaks more APIs (fakebatch) returns its own."""
        return _Handler

    def stop(self) -> None:
        """Stop serving; replies still sleeping (slow faults, latency) wake up and end."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeServer is not started (use it as a context manager or call start())")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for the OpenAI SDK (it appends /chat/completions)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for the Anthropic SDK (it appends /v1/messages)."""
        return self.url

    def env(self, vendor: str, key: str = "sk-fake-test-key") -> dict[str, str]:
        """Environment variables that point `vendor`'s SDK at this server."""
        if vendor == "openai":
            return {"OPENAI_BASE_URL": self.openai_base_url, "OPENAI_API_KEY": key}
        if vendor == "anthropic":
            return {"ANTHROPIC_BASE_URL": self.anthropic_base_url, "ANTHROPIC_API_KEY": key}
        raise ValueError(f"vendor must be 'openai' or 'anthropic', got {vendor!r}")

    # -- recording and faults --------------------------------------------
    @property
    def requests(self) -> list[Call]:
        """Every request received, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def calls(self) -> list[Call]:
        """Completion requests only (POST chat/completions or messages), in arrival order."""
        return [c for c in self.requests if c.index is not None]

    @property
    def last(self) -> Call:
        calls = self.calls
        if not calls:
            raise AssertionError("the fake server has received no completion call")
        return calls[-1]

    def reset(self) -> None:
        """Forget recorded requests and call counts (faults keep their schedule, `fired` resets)."""
        with self._lock:
            self._requests.clear()
            self._n_calls = 0
            self._seen.clear()
            for f in self._faults:
                f.fired = 0

    def set_faults(self, faults: Iterable[Fault]) -> None:
        with self._lock:
            self._faults = list(faults)

    def fault_counts(self) -> dict[str, int]:
        """How many completion calls each fault kind answered (and "ok" for the rest)."""
        out: dict[str, int] = {}
        for c in self.calls:
            k = c.fault or "ok"
            out[k] = out.get(k, 0) + 1
        return out

    def _record(self, call: Call, raw_body: bytes) -> Fault | None:
        """Store the call, give completion calls an index, and pick the fault that answers it."""
        with self._lock:
            if call.vendor is not None:
                call.index = self._n_calls
                self._n_calls += 1
                digest = hashlib.sha256(raw_body).hexdigest()
                nth = self._seen.get(digest, 0)
                self._seen[digest] = nth + 1
                fault = self._pick(call, digest, nth)
                if fault is not None:
                    fault.fired += 1
                    call.fault = fault.kind
            else:
                fault = None
            self._requests.append(call)
            return fault

    def _pick(self, call: Call, digest: str, nth: int) -> Fault | None:
        for f in self._faults:
            if f.times is not None and f.fired >= f.times:
                continue
            if f.at is not None and call.index not in f.at:
                continue
            if f.when is not None:
                try:
                    if not f.when(call):
                        continue
                except Exception:
                    continue
            if f.rate is not None:
                rng = random.Random(f"{self.seed}:{f.kind}:{digest}:{nth}")
                if rng.random() >= f.rate:
                    continue
            return f
        return None

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True if it should go on."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)


# -- the fake model ----------------------------------------------------------

@dataclass
class _Answer:
    pieces: list[str]
    finish: str  # neutral: "stop" | "length" | "stop_sequence"
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int
    latency: float | None = None


def _answer(server: FakeServer, call: Call) -> _Answer:
    """Run the reply function, then apply the request's stop sequences and max_tokens."""
    out = server.reply(call)
    rep = out if isinstance(out, Reply) else Reply(text=str(out))
    body = call.body if isinstance(call.body, dict) else {}
    text = rep.text
    finish, stop_seq = "stop", None
    stops = body.get("stop_sequences") if call.vendor == "anthropic" else body.get("stop")
    if isinstance(stops, str):
        stops = [stops]
    cut = None
    for s in stops or []:
        i = text.find(s) if s else -1
        if i >= 0 and (cut is None or i < cut):
            cut, stop_seq = i, s
    if cut is not None:
        text, finish = text[:cut], "stop_sequence"
    pieces = tokens_of(text)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit >= 0 and len(pieces) > limit:
        pieces, finish, stop_seq = pieces[:limit], "length", None
    if rep.finish:
        finish = rep.finish
    n_in = len(tokens_of(call.system)) + sum(
        len(tokens_of(m["content"])) for m in call.messages if call.vendor == "anthropic" or m["role"] not in ("system", "developer")
    )
    return _Answer(
        pieces=pieces, finish=finish, stop_sequence=stop_seq,
        input_tokens=rep.input_tokens if rep.input_tokens is not None else n_in,
        output_tokens=rep.output_tokens if rep.output_tokens is not None else len(pieces),
        latency=rep.latency,
    )


def _logprob_entry(piece: str, i: int, k: int) -> dict[str, Any]:
    """Deterministic logprobs: token i has logprob -0.1*(i+1); alternatives "alt1".."altk-1" lower."""
    lp = round(-0.1 * (i + 1), 6)
    top = [{"token": piece, "logprob": lp, "bytes": list(piece.encode())}]
    top += [{"token": f"alt{j}", "logprob": round(lp - j, 6), "bytes": list(f"alt{j}".encode())} for j in range(1, k)]
    return {"token": piece, "logprob": lp, "bytes": list(piece.encode()), "top_logprobs": top[:k]}


_STREAM_ERROR = {"type": "overloaded_error", "message": "Overloaded (fake server, mid-stream)"}
_OPENAI_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length"}
_ANTHROPIC_FINISH = {"stop": "end_turn", "stop_sequence": "stop_sequence", "length": "max_tokens"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # Send each SSE event at once: Nagle + delayed ACK would hold small writes ~40 ms and blur TTFT.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- plumbing --------------------------------------------------------
    def _read_body(self) -> bytes:
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self._send_bytes(status, data, "application/json", headers)

    def _send_bytes(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop(self) -> None:
        """Hang up abruptly, as a crashed proxy would."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- routes ----------------------------------------------------------
    def do_GET(self) -> None:
        owner = self.server.owner
        self._read_body()
        call = Call("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, None)
        owner._record(call, b"")
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in owner.models
            ]})
        else:
            self._send_json(404, {"error": {"message": f"no route GET {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        owner = self.server.owner
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path.split("?", 1)[0].rstrip("/")
        vendor = {OPENAI_PATH: "openai", ANTHROPIC_PATH: "anthropic"}.get(path)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        call = Call("POST", self.path, headers, body, vendor=vendor)
        fault = owner._record(call, raw)
        try:
            if vendor is None:
                self._send_json(404, {"error": {"message": f"no route POST {self.path}", "type": "not_found"}})
            elif not isinstance(body, dict):
                self._error(vendor, 400, "invalid_request_error", "request body is not a JSON object")
            elif owner.api_key is not None and not self._authorised(vendor, headers, owner.api_key):
                presented = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
                # like the real APIs, quote the key that was presented: clients must redact it
                self._error(vendor, 401, "authentication_error", f"Incorrect API key provided: {presented}")
            else:
                self._serve_call(owner, call, fault)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (timeout) or we dropped it on purpose

    @staticmethod
    def _authorised(vendor: str, headers: dict[str, str], key: str) -> bool:
        bearer = headers.get("authorization") == f"Bearer {key}"
        if vendor == "openai":
            return bearer
        return bearer or headers.get("x-api-key") == key  # anthropic SDK 2.x sends a Bearer token

    def _error(self, vendor: str, status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> None:
        if vendor == "anthropic":
            self._send_json(status, {"type": "error", "error": {"type": etype, "message": message}}, headers)
        else:
            self._send_json(status, {"error": {"message": message, "type": etype, "param": None, "code": None}}, headers)

    def _serve_call(self, owner: FakeServer, call: Call, fault: Fault | None) -> None:
        vendor = call.vendor or "openai"
        if fault is not None and fault.kind == "stream_error" and not call.stream:
            fault = Fault("overloaded")
        answer = _answer(owner, call) if fault is None or fault.kind not in _STATUS else None
        if fault is not None and fault.kind == "slow":
            delay = fault.delay
        elif answer is not None and answer.latency is not None:
            delay = answer.latency
        else:
            delay = owner.latency(call) if callable(owner.latency) else owner.latency
        if not owner._sleep(delay):
            self._drop()
            return
        if fault is not None and fault.kind in _STATUS:
            status = _STATUS[fault.kind]
            hdrs = {}
            if fault.kind == "rate_limit" and fault.retry_after is not None:
                ra = fault.retry_after
                hdrs["retry-after"] = str(int(ra)) if float(ra).is_integer() else str(ra)
            etype = {
                "rate_limit": "rate_limit_error", "server": "api_error",
                "unavailable": "api_error", "overloaded": "overloaded_error",
            }[fault.kind]
            msg = {
                "rate_limit": "Rate limit reached (fake server)", "server": "Internal server error (fake server)",
                "unavailable": "Service unavailable (fake server)", "overloaded": "Overloaded (fake server)",
            }[fault.kind]
            self._error(vendor, status, etype, msg, hdrs)
            return
        assert answer is not None
        fault_kind = fault.kind if fault is not None else None
        if fault_kind == "broken_json":
            self._send_bytes(200, b'{"id": "broken", "choices": [{"message": <<not json', "application/json")
            return
        if fault_kind in ("ignore_stream", "forced_stream"):
            json_reply = fault_kind == "ignore_stream"
            if vendor == "openai":
                (self._openai_json if json_reply else self._openai_stream)(owner, call, answer, None)
            else:
                (self._anthropic_json if json_reply else self._anthropic_stream)(owner, call, answer, None)
            return
        if fault_kind == "no_terminator" and not call.stream:
            fault_kind = "malformed"
        if vendor == "openai":
            (self._openai_stream if call.stream else self._openai_json)(owner, call, answer, fault_kind)
        else:
            (self._anthropic_stream if call.stream else self._anthropic_json)(owner, call, answer, fault_kind)

    # -- OpenAI ----------------------------------------------------------
    def _openai_json(self, owner: FakeServer, call: Call, a: _Answer, fault: str | None) -> None:
        body = call.body
        k = int(body.get("top_logprobs") or 0)
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": "".join(a.pieces), "refusal": None},
            "finish_reason": _OPENAI_FINISH.get(a.finish, a.finish),
            "logprobs": ({"content": [_logprob_entry(p, i, k) for i, p in enumerate(a.pieces)], "refusal": None}
                         if body.get("logprobs") else None),
        }
        resp: dict[str, Any] = {
            "id": f"chatcmpl-fake{call.index}", "object": "chat.completion", "created": int(time.time()),
            "model": call.model, "choices": [choice], "system_fingerprint": "fp_fake",
        }
        if owner.usage:
            resp["usage"] = {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                             "total_tokens": a.input_tokens + a.output_tokens}
        self._send_json_reply(json.dumps(resp).encode(), fault)

    def _stream_pieces(self, owner: FakeServer, pieces: list[str], fault: str | None,
                       piece_event: Callable[[int, str], bytes], *, broken: bytes, error: bytes,
                       broken_end: bytes) -> bool:
        """Stream each piece's event, failing part-way as `fault` asks (the same faults for every vendor, in
        its own words: `broken` JSON, an `error` event); True when the vendor's closing events should follow."""
        for i, piece in enumerate(pieces):
            if i > 0 and not owner._sleep(owner.token_delay):
                self._drop()
                return False
            if fault == "drop" and i >= max(1, len(pieces) // 2):
                self._drop()
                return False
            if fault == "malformed" and i >= len(pieces) // 2:
                self._chunk(broken)
                self._end_stream()
                return False
            if fault == "stream_error" and i >= 1:
                self._chunk(error)
                self._end_stream()
                return False
            self._chunk(piece_event(i, piece))
        if fault in ("drop", "stream_error"):  # a reply too short to fail part-way fails at its end
            if fault == "stream_error":
                self._chunk(error)
                self._end_stream()
            else:
                self._drop()
            return False
        if fault == "malformed":
            self._chunk(broken_end)
            self._end_stream()
            return False
        return True

    def _send_json_reply(self, data: bytes, fault: str | None) -> None:
        """A whole (not streamed) JSON reply, or the fault asked for: cut off mid-JSON, or the connection dropped."""
        if fault == "malformed":
            self._send_bytes(200, data[: len(data) // 2] + b"<<not json", "application/json")
        elif fault == "drop":
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._drop()
        else:
            self._send_bytes(200, data, "application/json")

    def _openai_stream(self, owner: FakeServer, call: Call, a: _Answer, fault: str | None) -> None:
        body = call.body
        k = int(body.get("top_logprobs") or 0)
        want_lp = bool(body.get("logprobs"))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) and owner.usage
        base = {"id": f"chatcmpl-fake{call.index}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": call.model, "system_fingerprint": "fp_fake"}

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

        self._start_stream()
        self._chunk(event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                            "logprobs": None}]))
        def piece_event(i: int, piece: str) -> bytes:
            lp = {"content": [_logprob_entry(piece, i, k)], "refusal": None} if want_lp else None
            return event([{"index": 0, "delta": {"content": piece}, "finish_reason": None, "logprobs": lp}])

        if not self._stream_pieces(owner, a.pieces, fault, piece_event,
                                   broken=b'data: {"id": "chatcmpl-broken", "choices": [{"delta": <<not json\n\n',
                                   error=b"data: " + json.dumps({"error": _STREAM_ERROR}).encode() + b"\n\n",
                                   broken_end=b"data: <<not json\n\n"):
            return
        self._chunk(event([{"index": 0, "delta": {}, "finish_reason": _OPENAI_FINISH.get(a.finish, a.finish),
                            "logprobs": None}]))
        if include_usage:
            self._chunk(event([], usage={"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                                         "total_tokens": a.input_tokens + a.output_tokens}))
        if fault != "no_terminator":
            self._chunk(b"data: [DONE]\n\n")
        self._end_stream()

    # -- Anthropic -------------------------------------------------------
    def _anthropic_message(self, call: Call, a: _Answer, text: str | None, output_tokens: int) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "id": f"msg_fake{call.index}", "type": "message", "role": "assistant", "model": call.model,
            "content": [] if text is None else [{"type": "text", "text": text}],
            "stop_reason": None if text is None else _ANTHROPIC_FINISH.get(a.finish, a.finish),
            "stop_sequence": None if text is None else a.stop_sequence,
        }
        msg["usage"] = {"input_tokens": a.input_tokens, "output_tokens": output_tokens}
        return msg

    def _anthropic_json(self, owner: FakeServer, call: Call, a: _Answer, fault: str | None) -> None:
        msg = self._anthropic_message(call, a, "".join(a.pieces), a.output_tokens)
        if not owner.usage:
            msg["usage"] = {"input_tokens": 0, "output_tokens": 0}
        self._send_json_reply(json.dumps(msg).encode(), fault)

    def _anthropic_stream(self, owner: FakeServer, call: Call, a: _Answer, fault: str | None) -> None:
        def event(name: str, obj: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode()

        self._start_stream()
        start = self._anthropic_message(call, a, None, 1)
        if not owner.usage:
            start["usage"] = {"input_tokens": 0, "output_tokens": 0}
        self._chunk(event("message_start", {"type": "message_start", "message": start}))
        self._chunk(event("content_block_start", {"type": "content_block_start", "index": 0,
                                                  "content_block": {"type": "text", "text": ""}}))
        self._chunk(event("ping", {"type": "ping"}))
        def piece_event(i: int, piece: str) -> bytes:
            return event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": piece}})

        if not self._stream_pieces(
                owner, a.pieces, fault, piece_event,
                broken=b'event: content_block_delta\ndata: {"type": "content_block_delta", <<not json\n\n',
                error=event("error", {"type": "error", "error": _STREAM_ERROR}),
                broken_end=b"event: message_delta\ndata: <<not json\n\n"):
            return
        self._chunk(event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        usage = {"output_tokens": a.output_tokens if owner.usage else 0}
        self._chunk(event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": _ANTHROPIC_FINISH.get(a.finish, a.finish), "stop_sequence": a.stop_sequence},
            "usage": usage,
        }))
        if fault != "no_terminator":
            self._chunk(event("message_stop", {"type": "message_stop"}))
        self._end_stream()

