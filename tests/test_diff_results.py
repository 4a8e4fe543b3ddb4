"""tools/diff_results.py: the before/after check of a refactor sees a changed answer or grade, not a timing."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "diff_results.py"


def _tool():
    spec = importlib.util.spec_from_file_location("diff_results", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(path: Path, cells: list[dict]) -> Path:
    lines = [{"format": "promptkit.results/1", "meta": {}}] + cells
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def _cell(key: str, text: str, passed: bool, latency: float) -> dict:
    return {"cell": {"key": key, "variant": "v", "row_id": f"r{key}"},
            "completion": {"text": text, "latency_s": latency, "cached": False},
            "grades": {"label_match": {"score": float(passed), "passed": passed}}}


def test_timings_alone_are_no_difference(tmp_path, capsys):
    a = _write(tmp_path / "a.jsonl", [_cell("1", "Commit", True, 0.5), _cell("2", "Likely", False, 0.7)])
    b = _write(tmp_path / "b.jsonl", [_cell("2", "Likely", False, 2.0), _cell("1", "Commit", True, 0.1)])
    assert _tool().main([str(a), str(b)]) == 0
    assert "0 difference(s)" in capsys.readouterr().out


def test_a_changed_answer_grade_or_missing_cell_is_reported(tmp_path, capsys):
    a = _write(tmp_path / "a.jsonl", [_cell("1", "Commit", True, 0.5), _cell("2", "Likely", False, 0.7)])
    b = _write(tmp_path / "b.jsonl", [_cell("1", "Likely", False, 0.5), _cell("3", "Commit", True, 0.7)])
    assert _tool().main([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "v / r1: completion.text: 'Commit' != 'Likely'" in out
    assert "v / r1: grades.label_match" in out
    assert "only in the first run: 2" in out and "only in the second run: 3" in out
