"""A network answer store: the cache's get/put interface on Redis, for machines that share no filesystem.

Any object with `get(key) -> Completion | None` and `put(key, completion)` is a
cache (`promptkit.cache.Cache`); the key is the cell's sha256 hex, so the store
needs nothing but a string-keyed blob store. This one keeps one Redis string per
cell (`promptkit:<key>`, JSON of the completion), written in one SET (atomic: a
reader sees a whole entry or none), successful answers only. A store that cannot
be reached is a miss on read and a noted write error on put, never a failed run.

    pk.run(exp, cache_backend="redis://cache-host:6379/0")        # or RedisCache(client=redis.Redis(...))

Needs the `redis` package (`pip install 'promptkit[cluster]'`); tests use `fakeredis`.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import redact, require
from .stored import KEY_RE, completion_dict
from .types import Completion

PREFIX = "promptkit:"


def _blob(completion: Completion) -> str:
    return json.dumps(completion_dict(completion), ensure_ascii=False)


class RedisCache:
    """Answers by cell key in Redis (last writer wins, as in SqliteCache; entries never expire unless ttl_s)."""

    threaded_puts = True  # network round trips overlap the calls

    def __init__(self, client: Any = None, *, url: str | None = None, prefix: str = PREFIX,
                 ttl_s: int | None = None) -> None:
        if client is None:
            redis = require("redis", "a redis:// cache needs the redis package: "
                                     "pip install 'promptkit[cluster]' (or pip install redis)")
            client = redis.Redis.from_url(url or "redis://localhost:6379/0")
        self.client = client
        self.url = url
        self.prefix = prefix
        self.ttl_s = ttl_s

    def __repr__(self) -> str:  # a URL may carry a password: show the host part only
        where = redact(self.url.rsplit("@", 1)[-1]) if self.url else type(self.client).__name__
        return f"RedisCache({where!r})"

    def _name(self, key: str) -> str:
        if not isinstance(key, str) or not KEY_RE.fullmatch(key):
            raise ValueError(f"cache key must be at most 64 lowercase hex characters, got {key!r}")
        return self.prefix + key

    def get(self, key: str) -> Completion | None:
        name = self._name(key)
        try:
            blob = self.client.get(name)
            if blob is None:
                return None
            c = Completion.from_dict(json.loads(blob))
        except Exception:  # unreachable store or unreadable entry: a miss, the cell is simply run again
            return None
        c.cached = True
        return c

    def put(self, key: str, completion: Completion) -> None:
        """Store a successful answer; errors are never cached, so a re-run retries them."""
        name = self._name(key)
        if not completion.ok:
            return
        blob = _blob(completion)
        try:
            self.client.set(name, blob, ex=self.ttl_s)
        except Exception as exc:  # the runner notes it and keeps the answer in the results
            raise OSError(redact(f"{self!r} refused a write: {type(exc).__name__}: {exc}")) from None

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        """The stored answers among `keys`, one MGET per 500 keys (the runner's cache check)."""
        names = [self._name(k) for k in keys]
        found: dict[str, Completion] = {}
        for i in range(0, len(names), 500):
            try:
                blobs = self.client.mget(names[i:i + 500])
            except Exception:
                return found  # unreachable: the rest are misses
            for key, blob in zip(keys[i:i + 500], blobs):
                if blob is None:
                    continue
                try:
                    c = Completion.from_dict(json.loads(blob))
                except Exception:
                    continue
                c.cached = True
                found[key] = c
        return found

    def put_many(self, items: list[tuple[str, Completion]]) -> None:
        """Several answers in one pipelined round trip (a burst of answers from the runner's writer thread)."""
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for key, completion in items:
            name = self._name(key)
            if completion.ok:
                pipe.set(name, _blob(completion), ex=self.ttl_s)
                n += 1
        if not n:
            return
        try:
            pipe.execute()
        except Exception as exc:
            raise OSError(redact(f"{self!r} refused {n} write(s): {type(exc).__name__}: {exc}")) from None

    def check(self) -> list[str]:
        """A store that cannot be reached means paying again: said before the first call."""
        try:
            self.client.ping()
        except Exception as exc:
            return [redact(f"cannot reach the answer cache {self!r} ({type(exc).__name__}: {exc}); this run's answers "
                           f"will not be kept, so running again pays for them again")]
        return []

    def __contains__(self, key: str) -> bool:
        return bool(self.client.exists(self._name(key)))

    def __len__(self) -> int:
        return sum(1 for _ in self.client.scan_iter(match=self.prefix + "*", count=1000))
