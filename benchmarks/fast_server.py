"""A loopback OpenAI-compatible server cheap enough never to be the bottleneck of a client benchmark.

tests/fakeservers.py answers with a thread per connection and full fault injection; at 64
connections its own CPU hides the client's. This one is a single asyncio Protocol: it reads
each HTTP/1.1 request (keep-alive), waits `latency` seconds on a timer and answers
POST /v1/chat/completions with a short fixed reply, plain JSON or SSE with usage, exactly as
the client asked. Run it in its own process:

    python benchmarks/fast_server.py --latency 0.05   # prints the port, serves until stdin closes
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading

REPLY = ["Likely", " to", " renew", ";", " champion", " engaged", "."]
TEXT = "".join(REPLY)


def _usage(body: dict) -> dict:
    n_in = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", ()))
    return {"prompt_tokens": n_in, "completion_tokens": len(REPLY), "total_tokens": n_in + len(REPLY)}


def _json_reply(body: dict, n: int) -> bytes:
    out = json.dumps({
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop",
                     "logprobs": None}],
        "usage": _usage(body),
    }).encode()
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(out)) + out


def _sse_reply(body: dict, n: int) -> bytes:
    base = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 0, "model": body.get("model", "m")}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in REPLY]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "choices": [], "usage": _usage(body)})
    payload = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    # one chunk of the chunked encoding carries the whole stream, then the terminating chunk
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            + b"%x\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n")


class _Conn(asyncio.Protocol):
    served = 0

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buf) < end + 4 + length:
                return
            raw, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
            method, path = head.split(" ", 2)[:2]
            if method == "POST" and path.endswith("/chat/completions"):
                body = json.loads(raw)
                _Conn.served += 1
                reply = (_sse_reply if body.get("stream") else _json_reply)(body, _Conn.served)
            else:
                data = b'{"object": "list", "data": [{"id": "m", "object": "model"}]}'
                reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(data) + data
            asyncio.get_running_loop().call_later(self.latency, self._send, reply)

    def _send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(latency: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Conn(latency), "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    done = asyncio.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(done.set)), daemon=True).start()
    await done.wait()
    server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05)
    asyncio.run(serve(ap.parse_args().latency))
