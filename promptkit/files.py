"""Writing files so that a crash or an error never leaves a half-written one under the final name."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, TextIO


def atomic_write(path: str | os.PathLike[str], write: Callable[[TextIO], Any], *, newline: str = "") -> Path:
    """Write through a temporary file in the same folder, fsync it, and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as f:
            write(f)
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
