"""A loopback server that answers OpenAI and Anthropic tool-calling requests, for the real SDK clients.

`ToolServer(decide)` speaks the non-streamed wire format of both vendors on 127.0.0.1:

- OpenAI ``POST /v1/chat/completions`` -> a message with ``tool_calls`` (arguments as a JSON string);
- Anthropic ``POST /v1/messages`` -> content blocks ``[{"type": "tool_use", "name", "input"}]``.

`decide(body) -> (tool_name, arguments) | str` picks the reply from the request body (a str is a plain
text answer); every request body is kept in `bodies` so a test can check what the SDK sent.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class ToolServer:
    def __init__(self, decide: Callable[[dict[str, Any]], Any]) -> None:
        self.decide = decide
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                vendor = "anthropic" if self.path.endswith("/messages") else "openai"
                owner.bodies.append((vendor, body))
                out = owner.decide(body)
                resp = _anthropic(body, out) if vendor == "anthropic" else _openai(body, out)
                data = json.dumps(resp).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "ToolServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


def _openai(body: dict[str, Any], out: Any) -> dict[str, Any]:
    if isinstance(out, str):
        msg: dict[str, Any] = {"role": "assistant", "content": out}
        finish = "stop"
    else:
        name, args = out
        msg = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]}
        finish = "tool_calls"
    return {"id": "chatcmpl-tools", "object": "chat.completion", "created": 0, "model": body.get("model", "x"),
            "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62}}


def _anthropic(body: dict[str, Any], out: Any) -> dict[str, Any]:
    if isinstance(out, str):
        content: list[dict[str, Any]] = [{"type": "text", "text": out}]
        stop = "end_turn"
    else:
        name, args = out
        content = [{"type": "text", "text": "Let me look that up."},
                   {"type": "tool_use", "id": "toolu_1", "name": name, "input": args}]
        stop = "tool_use"
    return {"id": "msg_tools", "type": "message", "role": "assistant", "model": body.get("model", "x"),
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 50, "output_tokens": 12}}
