"""Exercises check themselves: each reference answer passes on the real model it names, and a weak answer gets a hint."""
from __future__ import annotations

import pytest

import promptkit as pk
from promptkit.exercises import ExerciseError, Hint, check, get_exercise, load_exercises, solution

pytestmark = pytest.mark.local_model

EXERCISES = sorted(load_exercises())


def test_every_exercise_is_well_formed_and_has_a_solution_apart():
    for ex_id in EXERCISES:
        ex = get_exercise(ex_id)
        assert ex.hints, f"{ex_id} gives no hint"
        sol = solution(ex_id)
        assert sol.variables, f"{ex_id}: the solution uses no row field"
        assert "solution" not in ex.task.lower()
    assert len({get_exercise(e).chapter for e in EXERCISES}) >= 4


@pytest.mark.parametrize("ex_id", EXERCISES)
def test_reference_answer_passes(ex_id):
    sol = solution(ex_id)
    meta = dict(sol.meta)
    result = check(ex_id, sol, settings=meta.get("settings"), model=meta.get("model"), progress=False)
    assert result.passed, str(result)
    assert "Passed" in result._repr_html_()


def test_a_weak_answer_fails_with_a_hint():
    vague = "What do you think about this account?\n{{notes}}"
    result = check("foundations.readable_tier", vague, progress=False)
    assert not result.passed
    assert result.hint and "prefill" in result.hint.lower()
    assert "Hint" in result._repr_html_()


def test_sampling_exercise_fails_at_high_temperature_and_names_the_fix():
    tier = pk.load_dataset("renewal_tier").template()
    result = check("foundations.same_every_time", tier, settings={"temperature": 1.0, "seed": None}, progress=False)
    assert not result.passed and result.measured["agreement"] < 1.0
    assert "temperature" in result.hint


def test_answers_that_cannot_work_are_refused_clearly():
    with pytest.raises(ExerciseError, match=r"your prompt uses none of the row fields \['notes'\]"):
        check("foundations.readable_tier", "Pick a tier.", progress=False)
    with pytest.raises(ExerciseError, match=r"settings \['max_tokens'\] are fixed in this exercise"):
        check("foundations.readable_tier", "{{notes}}", settings={"max_tokens": 500}, progress=False)
    with pytest.raises(ExerciseError, match=r"keep \[\"Let's think step by step.\"\] in your prompt"):
        check("phrases.measured_phrase", pk.load_dataset("competitor_mention").template(), progress=False)
    with pytest.raises(ExerciseError, match=r"unknown exercise 'nope'"):
        get_exercise("nope")


def test_hint_conditions():
    h = Hint(text="x", metric="parse_rate", below=0.5)
    assert h.applies({"parse_rate": 0.2}) and not h.applies({"parse_rate": 0.7}) and not h.applies({})
    assert Hint(text="always").applies({})
