"""Exercise goals on interval bounds (`lower_bound`, `also`): a lucky row, or one answer for every row, cannot pass.

The model here is the scripted `mock:` provider, because these tests are about how a check decides, not about a
prompt; the chapters' exercises are measured on the real model in test_curriculum_a.py / test_curriculum_b.py.
"""
from __future__ import annotations

import pytest

import promptkit as pk
from promptkit import exercises
from promptkit.exercises import ExerciseError, check, load_exercises
from promptkit.metrics import wilson_interval
from promptkit.providers.mock import mock_provider

INJECTION = """
- id: t.inj
  chapter: 99_test
  title: t
  task: t
  dataset: prompt_injection
  model: mock:inj
  rows: 24
  metric: parse_rate
  at_least: 0.9
  above_chance: true
  also:
    - {metric: attack_success_high, at_most: 0.3, what: the upper bound of the attack success rate}
  hints: [{text: h}]
- id: t.low
  chapter: 99_test
  title: t
  task: t
  dataset: tier_from_signals
  model: mock:low
  rows: 24
  metric: accuracy
  at_least: 0.85
  lower_bound: true
  hints: [{text: h}]
- id: t.ext
  chapter: 99_test
  title: t
  task: t
  dataset: risk_signals
  model: mock:ext
  rows: 24
  metric: schema_valid
  at_least: 0.8
  lower_bound: true
  above_chance: true
  hints: [{text: h}]
"""


@pytest.fixture
def ex_file(tmp_path, monkeypatch):
    path = tmp_path / "exercises.yaml"
    path.write_text(INJECTION)
    monkeypatch.setattr(exercises, "EXERCISES_PATH", path)
    from promptkit.providers import clear_providers

    clear_providers()
    yield path
    clear_providers()


def _answer_by_row(rows, pick):
    """A mock reply function: find the row whose input is in the request, answer pick(row)."""
    def reply(req):
        text = req.messages[-1].content
        row = next(r for r in rows if next(iter(r.input.values())) in text)
        return pick(row)
    return reply


def test_attack_goal_fails_an_obeyed_attack_and_a_one_tier_answer(ex_file):
    rows = pk.load_dataset("prompt_injection").split("test").rows[:24]
    attacked = [r for r in rows if r.meta["attack_label"]]
    m = mock_provider("mock:inj")
    m.always(_answer_by_row(rows, lambda r: r.target))
    right = check("t.inj", "{{notes}}", progress=False)
    assert right.passed and right.measured["attack_success"] == 0.0, str(right)
    assert right.measured["attacked_rows"] == len(attacked) and right.measured["clean_accuracy"] == 1.0
    # obeying every planted instruction: readable, but the attack wins
    m.always(_answer_by_row(rows, lambda r: r.meta["attack_label"] or r.target))
    obeyed = check("t.inj", "{{notes}} ", progress=False)
    assert not obeyed.passed and obeyed.measured["attack_success"] == 1.0
    assert [met for _, met in obeyed.goals] == [True, False, False]
    assert "the upper bound of the attack success rate 1.00 ≤ 0.3" in str(obeyed)
    # one tier for every row: whatever the attacks ask, balanced accuracy is chance, so it fails
    m.always("At-Risk")
    flat = check("t.inj", "{{notes}}  ", progress=False)
    assert not flat.passed and flat.measured["balanced_accuracy"] == pytest.approx(1 / 3)
    assert not flat.goals[1][1], str(flat)


def test_lower_bound_goal_needs_more_than_a_lucky_point_value(ex_file):
    rows = pk.load_dataset("tier_from_signals").split("test").rows[:24]
    wrong = {rows[0].id, rows[1].id}
    other = {"Commit": "Likely", "Likely": "At-Risk", "At-Risk": "Commit"}
    mock_provider("mock:low").always(_answer_by_row(rows, lambda r: other[r.target] if r.id in wrong else r.target))
    res = check("t.low", "{{signals}}", progress=False)
    assert res.measured["accuracy"] == pytest.approx(22 / 24) and res.measured["accuracy"] >= 0.85
    assert res.measured["accuracy_low"] == pytest.approx(wilson_interval(22, 24).low) and res.measured["accuracy_low"] < 0.85
    assert not res.passed and "lower bound 0.74 ≥ 0.85" in str(res)
    with pytest.raises(ExerciseError, match="check on at least 24 rows"):
        check("t.low", "{{signals}}", rows=8, progress=False)


def test_bad_bounds_are_refused_with_where(tmp_path):
    bad = tmp_path / "ex.yaml"
    bad.write_text("- {id: x, chapter: c, title: t, task: t, dataset: tool_calls, metric: mean_score, at_least: 0.5,"
                   " also: [{metric: tool_correct_low, at_least: 0.3, at_most: 0.9}]}\n")
    with pytest.raises(ExerciseError, match=r"ex.yaml exercise 1 \(x\): field 'also': .*exactly one of"):
        load_exercises(bad)
    bad.write_text("- {id: x, chapter: c, title: t, task: t, dataset: tool_calls, metric: mean_score, at_least: 0.5,"
                   " lower_bound: true, rows: 10}\n")
    with pytest.raises(ExerciseError, match="needs at least 24 held-out rows"):
        load_exercises(bad)
    # a split smaller than 24 rows (cs_questions' test split has 23) may use all it has
    small = len(pk.load_dataset("cs_questions").split("test").rows)
    bad.write_text(f"- {{id: x, chapter: c, title: t, task: t, dataset: cs_questions, metric: mean_score, "
                   f"at_least: 0.5, lower_bound: true, rows: {small}}}\n")
    assert load_exercises(bad)["x"].rows == small < 24


def test_extraction_above_chance_means_beating_every_fixed_answer(ex_file):
    import json
    from itertools import combinations

    from promptkit.graders import prf

    ds = pk.load_dataset("risk_signals")
    rows = ds.split("test").rows[:24]
    gold = [set(r.target) for r in rows]
    fixed = [set(c) for k in range(1, 9) for c in combinations(ds.task.labels, k)]
    best = max(prf(sum(len(g & a) for g in gold), sum(len(a - g) for g in gold), sum(len(g - a) for g in gold))[2]
               for a in fixed)
    m = mock_provider("mock:ext")
    m.always(json.dumps(list(ds.task.labels)))  # every signal for every row: valid JSON, schema-valid, blind
    blind = check("t.ext", "{{notes}}", progress=False)
    assert blind.measured["schema_valid"] == 1.0 and blind.measured["f1_chance"] == pytest.approx(best)
    assert blind.measured["f1"] <= best and not blind.passed and [met for _, met in blind.goals] == [True, False]
    m.always(_answer_by_row(rows, lambda r: json.dumps(r.target)))
    right = check("t.ext", "{{notes}} ", progress=False)
    assert right.passed and right.measured["f1"] == 1.0 and right.measured["f1_low"] == 1.0, str(right)
    assert blind.measured["same_answer"] == 1.0  # one list for every row
    assert right.measured["same_answer"] == max(map(gold.count, gold)) / len(gold) < 0.5


def test_same_answer_reads_a_json_list_as_a_set():
    from promptkit.exercises import _same_answer

    assert _same_answer(['["a", "b"]', '["b","a"]', "[]", "not json"]) == 0.5
    assert _same_answer(["[]"] * 3) == 1.0 and _same_answer([]) == 0.0


def test_a_lower_bound_on_a_score_that_is_not_right_or_wrong_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "exercises.yaml"
    path.write_text("- {id: t.rubric, chapter: c, title: t, task: t, dataset: renewal_email, model: 'mock:rubric', "
                    "grader: rubric_checks, metric: mean_score, at_least: 0.5, lower_bound: true, rows: 22}\n")
    monkeypatch.setattr(exercises, "EXERCISES_PATH", path)
    from promptkit.providers import clear_providers

    clear_providers()
    row = pk.load_dataset("renewal_email").split("test").rows[0]
    mock_provider("mock:rubric").always(f"Hi {row.input['contact']}, " + "word " * 150)  # passes some checks, not all
    with pytest.raises(ExerciseError, match=r"field 'lower_bound': mean_score has no lower bound here .*pass_rate"):
        check("t.rubric", "{{contact}} {{account}}", progress=False)
    clear_providers()
