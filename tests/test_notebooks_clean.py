"""Committed notebooks carry no outputs or execution counts: CI executes them, git keeps only the source."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def dirty_cells(path: Path) -> list[int]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [
        i for i, c in enumerate(cells)
        if c.get("cell_type") == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_committed_without_outputs(path):
    dirty = dirty_cells(path)
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs or execution counts; strip them before committing"


def test_the_check_catches_a_dirty_notebook(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "1", "outputs": [], "execution_count": 3, "metadata": {}}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    p = tmp_path / "x.ipynb"
    p.write_text(json.dumps(nb))
    assert dirty_cells(p) == [0]


def test_the_tour_exists():
    names = {p.name for p in NOTEBOOKS}
    assert "00_welcome.ipynb" in names


def test_notebooks_match_their_sources():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "tools" / "nbpack.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
