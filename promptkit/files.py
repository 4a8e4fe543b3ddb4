"""Writing files so that a crash or an error never leaves a half-written one under the final name."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import DatasetError


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Any], Any], *, newline: str = "", durable: bool = True,
    binary: bool = False,
) -> Path:
    """Write through a temporary `.tmp-` file in the same folder, then rename it into place.

    `durable` fsyncs before the rename, so an export survives a power cut; the
    answer cache passes False (a lost entry is only asked again, and an fsync
    per answer is slow). The folder is made when missing, also if it vanished
    since the last write. A killed write leaves only its `.tmp-` file behind. `binary` hands `write` a
    bytes file.
    """
    path = Path(path)
    try:
        fd, tmp = _temp_beside(path)
    except FileNotFoundError:  # no folder (yet, or any more): make it, once
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_beside(path)
    try:
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _temp_beside(path: Path) -> tuple[int, str]:
    """A new file beside `path` whose name no other writer (process or thread) can take."""
    return tempfile.mkstemp(prefix=f".tmp-{path.name[:24]}-", suffix=".tmp", dir=path.parent)


def jsonl_values(lines: Iterable[str], at: Callable[[int], str]) -> Iterator[tuple[int, str, Any]]:
    """(line number, line, parsed value) for each non-blank JSONL line; a line that is not JSON raises
    DatasetError starting with `at(line number)` (the file and line, in the caller's words)."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, line, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{at(n)}: not valid JSON: {exc.msg} (column {exc.colno})") from None
