"""promptkit/yamlfile.py: every YAML reader names file, line, column and field the same way."""
from __future__ import annotations

import pytest

from promptkit import yamlfile
from promptkit.datasets import load_tasks
from promptkit.errors import DatasetError, PromptkitError
from promptkit.exercises import ExerciseError, load_exercises

DOC = """\
name: x
settings:
  temperature: 5
prompts:
  - template: a.yaml
  - template: b.yaml
    phrases: [only_label]
"""


@pytest.mark.parametrize("path, line", [
    ((), 1), (("settings",), 2), (("settings", "temperature"), 3), (("prompts", 1), 6),
    (("prompts", 1, "phrases"), 7), (("prompts", 1, "missing"), 6), (("prompts", 9), 4), (("nope",), None),
])
def test_line_of_a_field_path(path, line):
    assert yamlfile.line_of(yamlfile.compose(DOC), path) == line


def test_where_names_file_line_and_field():
    root = yamlfile.compose(DOC)
    assert yamlfile.where("exp.yaml", root, ("prompts", 1, "phrases")) == "exp.yaml, line 7, field 'prompts[1].phrases'"
    assert yamlfile.where("exp.yaml", root, ()) == "exp.yaml"
    assert yamlfile.compose("a: [") is None and yamlfile.line_of(None, ("a",)) is None


def test_parse_error_names_line_column_and_where_an_unclosed_bracket_opened():
    with pytest.raises(PromptkitError) as e:
        yamlfile.loads("a: 1\nb: [1, 2\nc: 3\n", "f.yaml")
    assert str(e.value).startswith("f.yaml, line 3, column 2: not valid YAML: expected ',' or ']'")
    assert "starts at line 2, column 4" in str(e.value)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(DatasetError, match=r"nothere.yaml: tasks file not found \(do this\)"):
        yamlfile.load(tmp_path / "nothere.yaml", DatasetError, "tasks file", " (do this)")
    bad = tmp_path / "latin.yaml"
    bad.write_bytes(b"a: \xe9\n")
    with pytest.raises(PromptkitError, match=r"latin.yaml: not UTF-8 text \(invalid continuation byte at byte 3\)"):
        yamlfile.load(bad)


def test_a_broken_tasks_yaml_names_its_line_and_column(tmp_path):
    (tmp_path / "tasks.yaml").write_text("renewal:\n  file: r.jsonl\n  labels: [a, b\n", encoding="utf-8")
    with pytest.raises(DatasetError) as e:
        load_tasks(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'tasks.yaml'}, line 4, column 1: not valid YAML: ")


def test_a_broken_exercises_file_names_its_line_and_column(tmp_path):
    p = tmp_path / "exercises.yaml"
    p.write_text("- id: e1\n  task: 'unclosed\n", encoding="utf-8")
    with pytest.raises(ExerciseError) as e:
        load_exercises(p)
    assert str(e.value).startswith(f"{p}, line 3, column 1: not valid YAML: found unexpected end of stream")
