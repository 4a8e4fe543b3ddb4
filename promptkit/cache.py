"""The cell key and the on-disk cache of answers.

The key is the one identity of a cell everywhere: cache entry, results row id,
`custom_id` of a vendor batch request, task key on a cluster. It hashes what
changes the answer (provider and base URL, model, rendered messages, prefill,
settings, repeat index) and nothing that does not (timeouts, retries,
concurrency). The cache is a small get/put interface keyed by it, so the
storage can change (SQLite, Redis, object store) without touching the runner.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from .config import cache_dir
from .types import Completion, Request

KEY_VERSION = 1


def cell_key(model: str, request: Request, repeat: int = 0) -> str:
    """sha256 hex (64 lowercase characters) of everything that changes a cell's answer."""
    from .providers import parse_spec
    from .catalog import catalog

    spec = parse_spec(model)
    req = request.to_dict()
    for name in ("temperature", "top_p"):  # 0 and 0.0 ask the same thing: one key
        req["settings"][name] = float(req["settings"][name])
    payload = {
        "v": KEY_VERSION,
        "provider": spec.provider,
        "base_url": spec.base_url,
        "model": catalog().resolve(spec.provider, spec.model),
        "request": req,
        "repeat": int(repeat),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache(Protocol):
    """What the runner needs from a cache: answers by cell key."""

    def get(self, key: str) -> Completion | None: ...

    def put(self, key: str, completion: Completion) -> None: ...


class DiskCache:
    """One JSON file per key, written to a temporary name and renamed into place.

    A killed process leaves either a whole entry or none; several processes (or
    machines on a shared filesystem) can read and write the same folder.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    def _path(self, key: str) -> Path:
        if len(key) > 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"cache key must be at most 64 lowercase hex characters, got {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        c = Completion.from_dict(data["completion"])
        c.cached = True
        return c

    def put(self, key: str, completion: Completion) -> None:
        """Store a successful answer; errors are never cached, so a re-run retries them."""
        if not completion.ok:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {"key": key, "completion": {**completion.to_dict(), "cached": False}}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def __contains__(self, key: str) -> bool:
        return self._path(key).exists()

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.exists() else 0


class MemoryCache:
    """A dict-backed cache for tests and throwaway runs."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> Completion | None:
        d = self.data.get(key)
        if d is None:
            return None
        c = Completion.from_dict(d)
        c.cached = True
        return c

    def put(self, key: str, completion: Completion) -> None:
        if completion.ok:
            self.data[key] = {**completion.to_dict(), "cached": False}

    def __len__(self) -> int:
        return len(self.data)
