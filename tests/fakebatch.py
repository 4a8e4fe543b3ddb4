"""Loopback fakes of OpenAI Files + Batches and Anthropic Message Batches, for the real SDK clients.

`FakeBatchServer` is a `FakeServer` (so the same object also answers synchronous
chat/messages calls, with the same fake model) that also serves:

- OpenAI: ``POST /v1/files`` (multipart, purpose ``batch``), ``GET /v1/files/{id}/content``,
  ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``GET /v1/batches`` (list, with metadata),
  ``POST /v1/batches/{id}/cancel``. Statuses validating -> in_progress -> finalizing ->
  completed, or expired / cancelling -> cancelled; an output file (successes) and an
  error file (failed and expired lines).
- Anthropic: ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``,
  ``GET /v1/messages/batches/{id}/results`` (JSONL), ``POST .../cancel``;
  processing_status in_progress -> ended with request_counts; results typed
  succeeded / errored / expired / canceled.

Knobs: ``batch_delay`` seconds before a batch ends; ``hold()`` keeps every batch in
progress until ``release()``; ``expire={0}`` makes those batches (0-based creation
order) expire when they would end, with ``expire_done`` of their requests answered and
the rest expired; ``errored=predicate(call)`` fails single requests (400 invalid
request); ``max_requests`` / ``max_bytes`` per batch are enforced like the vendors do.
Results come back shuffled (seeded), never in request order.

Recorded for assertions: ``srv.batches`` (id -> FakeBatch), ``srv.billed`` (custom_id
-> times a succeeded result was delivered, which is what vendors bill),
``srv.batch_creates`` and ``srv.uploads``.
"""
from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Callable, Iterable

from fakeservers import Call, FakeServer, _answer, _Handler, _Server, _ANTHROPIC_FINISH, _OPENAI_FINISH

__all__ = ["FakeBatch", "FakeBatchServer"]


@dataclass
class FakeBatch:
    """One batch as the fake vendor holds it."""

    id: str
    vendor: str
    index: int
    requests: list[tuple[str, dict[str, Any]]]
    created: float
    endpoint: str = ""
    input_file_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    polls: int = 0
    ended: str | None = None  # "completed" | "expired" | "cancelled"
    cancel_asked: bool = False
    finalized: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)  # vendor-shaped lines, shuffled
    counts: Counter = field(default_factory=Counter)  # succeeded / errored / expired / canceled
    output_file_id: str | None = None
    error_file_id: str | None = None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


class FakeBatchServer(FakeServer):
    """A FakeServer that also speaks the two vendors' batch APIs."""

    def __init__(self, *args: Any, batch_delay: float = 0.0, expire: Iterable[int] = (), expire_done: float = 0.5,
                 errored: Callable[[Call], bool] | None = None, max_requests: int | None = None,
                 max_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_delay = batch_delay
        self.expire = set(expire)
        self.expire_done = expire_done
        self.errored = errored
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.batches: dict[str, FakeBatch] = {}
        self.files: dict[str, bytes] = {}
        self.billed: Counter[str] = Counter()
        self.batch_creates = 0
        self.uploads = 0
        self._held = threading.Event()
        self._block = threading.Lock()

    def _handler(self) -> type:
        return _BatchHandler

    def hold(self) -> None:
        """Keep every batch in progress until `release()`."""
        self._held.set()

    def release(self) -> None:
        self._held.clear()

    # -- the batch life cycle ---------------------------------------------
    def _new_batch(self, vendor: str, requests: list[tuple[str, dict[str, Any]]], **kw: Any) -> FakeBatch:
        with self._block:
            index = len(self.batches)
            prefix = "batch_" if vendor == "openai" else "msgbatch_"
            b = FakeBatch(id=f"{prefix}fake{index:04d}", vendor=vendor, index=index, requests=requests,
                          created=time.time(), **kw)
            self.batches[b.id] = b
            self.batch_creates += 1
            return b

    def _advance(self, b: FakeBatch) -> None:
        """End the batch when its time has come (results are made once, when it ends)."""
        with self._block:
            if b.ended is not None:
                return
            if b.cancel_asked:
                self._finish(b, "cancelled", done=0)
                return
            if self._held.is_set() or time.time() - b.created < self.batch_delay:
                return
            if b.index in self.expire:
                self._finish(b, "expired", done=int(len(b.requests) * self.expire_done))
            else:
                self._finish(b, "completed", done=len(b.requests))

    def _finish(self, b: FakeBatch, how: str, done: int) -> None:
        lines = []
        for i, (cid, body) in enumerate(b.requests):
            call = Call("POST", "", {}, body, vendor=b.vendor)
            if i >= done:
                kind = "expired" if how == "expired" else "canceled"
                lines.append(self._line(b, cid, body, kind, None))
            elif self.errored is not None and self.errored(call):
                lines.append(self._line(b, cid, body, "errored", None))
            else:
                lines.append(self._line(b, cid, body, "succeeded", _answer(self, call)))
                self.billed[cid] += 1
        random.Random(f"{self.seed}:{b.id}").shuffle(lines)
        b.results = lines
        b.ended = how
        if b.vendor == "openai":
            ok = [ln for ln in lines if ln.get("response") and ln["response"]["status_code"] == 200]
            bad = [ln for ln in lines if ln not in ok]
            if ok:
                b.output_file_id = self._store_file(ok)
            if bad:
                b.error_file_id = self._store_file(bad)

    def _store_file(self, lines: list[dict[str, Any]]) -> str:
        fid = f"file-out{len(self.files):04d}"
        self.files[fid] = b"".join(json.dumps(ln).encode() + b"\n" for ln in lines)
        return fid

    def _line(self, b: FakeBatch, cid: str, body: dict[str, Any], kind: str, a: Any) -> dict[str, Any]:
        b.counts[kind] += 1
        if b.vendor == "anthropic":
            if kind == "succeeded":
                msg = {"id": f"msg_{cid[:12]}", "type": "message", "role": "assistant", "model": body.get("model"),
                       "content": [{"type": "text", "text": "".join(a.pieces)}],
                       "stop_reason": _ANTHROPIC_FINISH.get(a.finish, a.finish), "stop_sequence": a.stop_sequence,
                       "usage": {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens}}
                return {"custom_id": cid, "result": {"type": "succeeded", "message": msg}}
            if kind == "errored":
                return {"custom_id": cid, "result": {"type": "errored", "error": {"type": "error", "error": {
                    "type": "invalid_request_error", "message": "fake: this request is invalid"}}}}
            return {"custom_id": cid, "result": {"type": kind}}
        rid = f"batch_req_{cid[:12]}"
        if kind == "succeeded":
            resp = {"id": f"chatcmpl-{cid[:12]}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model"), "system_fingerprint": "fp_fake",
                    "choices": [{"index": 0, "logprobs": None,
                                 "message": {"role": "assistant", "content": "".join(a.pieces), "refusal": None},
                                 "finish_reason": _OPENAI_FINISH.get(a.finish, a.finish)}],
                    "usage": {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                              "total_tokens": a.input_tokens + a.output_tokens}}
            return {"id": rid, "custom_id": cid, "response": {"status_code": 200, "request_id": rid, "body": resp},
                    "error": None}
        if kind == "errored":
            return {"id": rid, "custom_id": cid, "error": None, "response": {
                "status_code": 400, "request_id": rid, "body": {"error": {
                    "message": "fake: this request is invalid", "type": "invalid_request_error", "param": None,
                    "code": None}}}}
        code = "batch_expired" if kind == "expired" else "batch_cancelled"
        return {"id": rid, "custom_id": cid, "response": None,
                "error": {"code": code, "message": f"This request was not executed ({code})."}}

    # -- what the vendors show -------------------------------------------
    def openai_batch(self, b: FakeBatch) -> dict[str, Any]:
        self._advance(b)
        b.polls += 1
        total = len(b.requests)
        status = {"completed": "completed", "expired": "expired", "cancelled": "cancelled"}.get(b.ended or "")
        if status == "completed" and not b.finalized:  # one poll sees it finalizing first
            b.finalized, status = True, "finalizing"
        if status is None:
            status = "cancelling" if b.cancel_asked else ("validating" if b.polls == 1 else "in_progress")
        done = b.counts["succeeded"] if b.ended else 0
        return {
            "id": b.id, "object": "batch", "endpoint": b.endpoint, "input_file_id": b.input_file_id,
            "completion_window": "24h", "status": status, "created_at": int(b.created),
            "expires_at": int(b.created) + 86400, "metadata": b.metadata or None,
            "output_file_id": b.output_file_id if status != "finalizing" else None,
            "error_file_id": b.error_file_id if status != "finalizing" else None,
            "request_counts": {"total": total, "completed": done, "failed": b.counts["errored"] if b.ended else 0},
        }

    def anthropic_batch(self, b: FakeBatch, base: str) -> dict[str, Any]:
        self._advance(b)
        b.polls += 1
        ended = b.ended is not None
        counts = {"processing": 0 if ended else len(b.requests), "succeeded": b.counts["succeeded"],
                  "errored": b.counts["errored"], "expired": b.counts["expired"], "canceled": b.counts["canceled"]}
        return {
            "id": b.id, "type": "message_batch", "processing_status": "ended" if ended else (
                "canceling" if b.cancel_asked else "in_progress"),
            "request_counts": counts, "created_at": _iso(b.created), "expires_at": _iso(b.created + 86400),
            "ended_at": _iso(time.time()) if ended else None, "archived_at": None,
            "cancel_initiated_at": _iso(time.time()) if b.cancel_asked else None,
            "results_url": f"{base}/v1/messages/batches/{b.id}/results" if ended else None,
        }


class _BatchHandler(_Handler):
    server: _Server

    def _owner(self) -> FakeBatchServer:
        return self.server.owner  # type: ignore[return-value]

    def _auth_ok(self, vendor: str) -> bool:
        key = self._owner().api_key
        headers = {k.lower(): v for k, v in self.headers.items()}
        if key is None or self._authorised(vendor, headers, key):
            return True
        self._error(vendor, 401, "authentication_error", "Incorrect API key provided")
        return False

    def _record_plain(self, method: str, body: Any) -> None:
        owner = self._owner()
        with owner._lock:
            owner._requests.append(Call(method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        parts = path.strip("/").split("/")
        owner = self._owner()
        if path.startswith("/v1/files/") or path.startswith("/v1/batches") or path.startswith("/v1/messages/batches"):
            self._read_body()
            self._record_plain("GET", None)
            vendor = "anthropic" if path.startswith("/v1/messages/") else "openai"
            if not self._auth_ok(vendor):
                return
            if path == "/v1/batches":
                data = [owner.openai_batch(b) for b in owner.batches.values() if b.vendor == "openai"]
                self._send_json(200, {"object": "list", "data": data[::-1], "has_more": False,
                                      "first_id": data[-1]["id"] if data else None,
                                      "last_id": data[0]["id"] if data else None})
                return
            if len(parts) == 4 and parts[1] == "files" and parts[3] == "content":
                blob = owner.files.get(parts[2])
                if blob is None:
                    self._error("openai", 404, "invalid_request_error", f"no file {parts[2]}")
                else:
                    self._send_bytes(200, blob, "application/octet-stream")
                return
            bid = parts[2] if vendor == "openai" else (parts[3] if len(parts) > 3 else "")
            b = owner.batches.get(bid)
            if b is None or b.vendor != vendor:
                self._error(vendor, 404, "not_found_error", f"no batch {bid}")
                return
            if vendor == "openai":
                self._send_json(200, owner.openai_batch(b))
            elif parts[-1] == "results":
                owner._advance(b)
                if not b.ended:
                    self._error(vendor, 400, "invalid_request_error", "batch has not ended")
                    return
                blob = b"".join(json.dumps(ln).encode() + b"\n" for ln in b.results)
                self._send_bytes(200, blob, "application/binary")
            else:
                self._send_json(200, owner.anthropic_batch(b, f"http://{self.headers.get('host')}"))
            return
        super().do_GET()

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        owner = self._owner()
        if path == "/v1/files":
            raw = self._read_body()
            self._record_plain("POST", None)
            if not self._auth_ok("openai"):
                return
            fields = _multipart(self.headers.get("content-type", ""), raw)
            if fields.get("purpose", b"").decode() != "batch" or "file" not in fields:
                self._error("openai", 400, "invalid_request_error", "need purpose=batch and a file")
                return
            blob = fields["file"]
            if owner.max_bytes is not None and len(blob) > owner.max_bytes:
                self._error("openai", 400, "invalid_request_error", f"file larger than {owner.max_bytes} bytes")
                return
            with owner._block:
                fid = f"file-in{len(owner.files):04d}"
                owner.files[fid] = blob
                owner.uploads += 1
            self._send_json(200, {"id": fid, "object": "file", "bytes": len(blob), "created_at": int(time.time()),
                                  "filename": "batch.jsonl", "purpose": "batch", "status": "processed"})
            return
        if path.startswith("/v1/batches") or path.startswith("/v1/messages/batches"):
            raw = self._read_body()
            body = json.loads(raw) if raw else None
            self._record_plain("POST", body)
            vendor = "anthropic" if path.startswith("/v1/messages/") else "openai"
            if not self._auth_ok(vendor):
                return
            if path.endswith("/cancel"):
                bid = path.split("/")[-2]
                b = owner.batches.get(bid)
                if b is None:
                    self._error(vendor, 404, "not_found_error", f"no batch {bid}")
                    return
                b.cancel_asked = b.ended is None
                self._send_json(200, owner.openai_batch(b) if vendor == "openai" else owner.anthropic_batch(
                    b, f"http://{self.headers.get('host')}"))
                return
            if vendor == "openai":
                self._create_openai(owner, body)
            else:
                self._create_anthropic(owner, body, raw)
            return
        super().do_POST()

    def _create_openai(self, owner: FakeBatchServer, body: dict[str, Any]) -> None:
        blob = owner.files.get(body.get("input_file_id", ""))
        if blob is None:
            self._error("openai", 400, "invalid_request_error", "unknown input_file_id")
            return
        reqs: list[tuple[str, dict[str, Any]]] = []
        models, urls, ids = set(), set(), set()
        for line in blob.splitlines():
            if not line.strip():
                continue
            d = json.loads(line)
            reqs.append((d["custom_id"], d["body"]))
            models.add(d["body"].get("model"))
            urls.add(d["url"])
            ids.add(d["custom_id"])
        problem = None
        if len(models) != 1 or urls != {body.get("endpoint")}:
            problem = "a batch takes one model and the batch's endpoint on every line"
        elif len(ids) != len(reqs):
            problem = "custom_id values must be unique within a batch"
        elif owner.max_requests is not None and len(reqs) > owner.max_requests:
            problem = f"more than {owner.max_requests} requests in one batch"
        if problem:
            self._error("openai", 400, "invalid_request_error", problem)
            return
        b = owner._new_batch("openai", reqs, endpoint=body["endpoint"], input_file_id=body["input_file_id"],
                             metadata=body.get("metadata") or {})
        self._send_json(200, owner.openai_batch(b))

    def _create_anthropic(self, owner: FakeBatchServer, body: dict[str, Any], raw: bytes) -> None:
        reqs = [(r["custom_id"], {**r["params"]}) for r in body.get("requests") or []]
        ids = [c for c, _ in reqs]
        problem = None
        if not reqs or len(set(ids)) != len(ids):
            problem = "requests must be a non-empty list with unique custom_id values"
        elif owner.max_requests is not None and len(reqs) > owner.max_requests:
            problem = f"more than {owner.max_requests} requests in one batch"
        elif owner.max_bytes is not None and len(raw) > owner.max_bytes:
            problem = f"request body larger than {owner.max_bytes} bytes"
        if problem:
            self._error("anthropic", 400, "invalid_request_error", problem)
            return
        b = owner._new_batch("anthropic", reqs)
        self._send_json(200, owner.anthropic_batch(b, f"http://{self.headers.get('host')}"))


def _multipart(ctype: str, raw: bytes) -> dict[str, bytes]:
    """Fields of a multipart/form-data body (what the OpenAI SDK sends to POST /v1/files)."""
    msg = BytesParser(policy=HTTP).parsebytes(b"content-type: " + ctype.encode() + b"\r\n\r\n" + raw)
    out: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            out[str(name)] = part.get_payload(decode=True) or b""
    return out
