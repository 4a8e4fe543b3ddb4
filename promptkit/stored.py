"""The stored form of an answer, shared by every cache backend (cache.py, redis_cache.py).

Kept apart from cache.py so a backend in its own module can read and write the same
entries without importing the module that picks backends (no import cycle).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

from .types import Completion

KEY_RE = re.compile(r"[0-9a-f]{1,64}")  # a cell key: lowercase hex, at most a sha256 digest
_COMPLETION_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Completion))


def completion_dict(completion: Completion) -> dict[str, Any]:
    """A completion as stored: plain JSON values, `cached` False (dataclasses.asdict is 5x slower)."""
    d = {name: getattr(completion, name) for name in _COMPLETION_FIELDS}
    if completion.logprobs is not None:
        d["logprobs"] = [{"token": t.token, "logprob": t.logprob, "top": dict(t.top)} for t in completion.logprobs]
    d["cached"] = False
    return d
