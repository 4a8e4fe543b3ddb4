"""Build the tour's .ipynb files from their percent-format sources in notebooks/src/.

Sources are plain Python with `# %%` (code) and `# %% [markdown]` cells, so diffs
review well; the built notebooks carry no outputs. `python tools/nbpack.py`
rebuilds all; `--check` exits 1 when a notebook is out of date.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"
OUT = ROOT / "notebooks"


def cells_from_source(text: str) -> list[dict]:
    cells: list[dict] = []
    kind, tags, buf = None, [], []

    def flush() -> None:
        if kind is None:
            return
        lines = buf[:]
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if kind == "markdown":
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines]
        source = "\n".join(lines)
        cell = {"cell_type": kind, "metadata": {"tags": tags} if tags else {}, "source": source}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            rest = line[4:].strip()
            kind = "markdown" if rest.startswith("[markdown]") else "code"
            tags = []
            if "tags=" in rest:
                tags = [t.strip() for t in rest.split("tags=", 1)[1].strip("[] ").split(",") if t.strip()]
            buf = []
        elif kind is not None:
            buf.append(line)
    flush()
    return cells


def build(src: Path) -> str:
    nb = {
        "cells": cells_from_source(src.read_text(encoding="utf-8")),
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"{src.stem[:20]}-{i:03d}"
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for src in sorted(SRC.glob("*.py")):
        target = OUT / f"{src.stem}.ipynb"
        text = build(src)
        if check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run python tools/nbpack.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
