"""Exercises check themselves: each reference answer passes on the real model it names, and a weak answer gets a hint."""
from __future__ import annotations

import pytest

import promptkit as pk
from promptkit.exercises import ExerciseError, Hint, check, get_exercise, load_exercises, solution

pytestmark = pytest.mark.local_model

EXERCISES = sorted(load_exercises())
# Issue 14's bar (starter fails, reference passes, label tasks readable AND above chance on >= 24 rows) is held
# here for the first tour chapters; chapters 05+ are owned on other branches and are checked by their tests.
CORE = {"01_foundations", "02_power_phrases", "03_model_differences", "04_live_builder"}
CORE_EXERCISES = [e for e in EXERCISES if get_exercise(e).chapter in CORE]


def test_every_exercise_is_well_formed_and_has_a_solution_apart():
    for ex_id in EXERCISES:
        ex = get_exercise(ex_id)
        assert ex.hints, f"{ex_id} gives no hint"
        sol = solution(ex_id)
        assert sol.variables, f"{ex_id}: the solution uses no row field"
        assert "solution" not in ex.task.lower()
    assert len({get_exercise(e).chapter for e in EXERCISES}) >= 4


SLOW = pytest.mark.timeout(3600)  # 24 held-out rows on Qwen 0.5B: minutes on a loaded 2-core machine

# Exercises whose reference is not yet proven on the named model: a visible, strict expected failure in every run,
# not a pass, until a reference is found.
UNSOLVED: dict[str, str] = {}


@SLOW
@pytest.mark.parametrize("ex_id", CORE_EXERCISES)
def test_starter_fails_without_the_lesson(ex_id, exercise_bar):
    """Each exercise needs its lesson: the prompt the learner starts from does not pass on the named model."""
    ex = get_exercise(ex_id)
    result = exercise_bar.starter(ex_id)  # fails, with a hint and a goal not met (conftest.py)
    assert "Not yet" in result._repr_html_()
    if ex_id == "foundations.readable_tier":  # a vague request: unreadable, and the hint names the fix
        assert result.measured["parse_rate"] < ex.at_least and "name the three tiers" in result.hint.lower()


@SLOW
@pytest.mark.parametrize("ex_id", [pytest.param(e, marks=pytest.mark.xfail(reason=UNSOLVED[e], strict=True, run=False))
                                   if e in UNSOLVED else e for e in CORE_EXERCISES])
def test_reference_answer_passes(ex_id, exercise_bar):
    """...and the reference answer (kept apart in notebooks/solutions/) passes on that same model."""
    result = exercise_bar.reference(ex_id, allowed=get_exercise(ex_id).allow_models)
    assert result.passed, str(result)
    assert "Passed" in result._repr_html_()


@SLOW
def test_pick_a_model_needs_the_model_whose_probabilities_rank_the_rows():
    """Reading by likelihood alone is not the skill: on Qwen 0.5B the reference's own prompt, read the same way, stays
    at chance (its P(Yes) does not rank these rows); the text answers of another model are not accepted either."""
    ex, sol = get_exercise("models.pick_a_model"), solution("models.pick_a_model")
    small = "score:qwen2.5-0.5b[Yes|No]"
    assert small in ex.allow_models and sol.meta["model"] != small
    result = check(ex.id, sol, model=small, progress=False)
    assert not result.passed and result.measured["balanced_accuracy_low"] <= 0.5, str(result)
    assert result.measured["parse_rate"] == 1.0  # readable: what fails is the model, not the reading
    with pytest.raises(ExerciseError, match="would not show the prompting skill"):
        check(ex.id, sol, model="local:qwen2.5-1.5b", progress=False)


def test_label_exercises_require_readable_and_above_chance_on_enough_rows():
    for ex_id in CORE_EXERCISES:
        ex = get_exercise(ex_id)
        if pk.load_dataset(ex.dataset).task.type == "label" and ex.metric != "agreement":
            # above chance, or (where the technique costs accuracy at this size) close to a reference that is
            assert (ex.above_chance or (ex.compare_with and get_exercise(ex.compare_with).above_chance)) \
                and ex.rows >= 24, ex_id
            assert ex.metric == "parse_rate", ex_id
            assert not ex.compare_with or 0 < ex.max_loss <= 0.15, ex_id
    assert len(pk.load_dataset("renewal_tier").split("test")) >= 24


def test_an_above_chance_goal_on_too_few_rows_is_refused(tmp_path):
    bad = tmp_path / "ex.yaml"
    bad.write_text("- {id: x, chapter: c, title: t, task: t, dataset: renewal_tier, metric: parse_rate,"
                   " at_least: 0.9, above_chance: true, rows: 8, hints: [{text: h}]}\n")
    with pytest.raises(ExerciseError, match="needs at least 24 held-out rows"):
        load_exercises(bad)


def test_a_comparison_goal_names_an_exercise_and_enough_rows(tmp_path):
    base = ("{id: %s, chapter: c, title: t, task: t, dataset: renewal_tier, metric: parse_rate, at_least: 0.9, "
            "rows: %d, hints: [{text: h}]%s}\n")
    bad = tmp_path / "ex.yaml"
    bad.write_text("- " + base % ("x", 24, ", compare_with: nope, max_loss: 0.1"))
    with pytest.raises(ExerciseError, match=r"field 'compare_with' names no exercise of this file: 'nope'"):
        load_exercises(bad)
    bad.write_text("- " + base % ("a", 24, ", above_chance: true") + "- " + base % ("x", 8, ", compare_with: a"))
    with pytest.raises(ExerciseError, match="comparison goal needs at least 24 held-out rows"):
        load_exercises(bad)
    ex = get_exercise("phrases.measured_phrase")
    assert ex.compare_with == "foundations.readable_tier" and "0.15 below" in ex._repr_html_()


def test_check_refuses_a_missing_file_and_another_model():
    ex = get_exercise("builder.prompt_worth_saving")
    with pytest.raises(ExerciseError, match=r"there is no file 'no_such_prompt.yaml'.*save your prompt first"):
        check(ex.id, "no_such_prompt.yaml", progress=False)
    with pytest.raises(ExerciseError, match=r"is checked on local:.*would not show the prompting skill"):
        check(ex.id, ex.starter(), model="local:qwen2.5-1.5b", progress=False)


def test_builder_opens_on_its_exercise_and_shows_no_result_before_an_attempt(tmp_path, monkeypatch):
    """The live builder's defaults are its exercise's: dataset, blank page (the exercise's starter), model, budget,
    and the file name the chapter's check cell reads."""
    from promptkit.exercises import as_template
    from promptkit.widgets import BLANK, prompt_builder

    ex = get_exercise("builder.prompt_worth_saving")
    b = prompt_builder(exercise=ex.id)
    assert b.dataset.value == ex.dataset and b.start.value == BLANK
    assert b.user.value.strip() == ex.starter().user.strip() == "Notes:\n{{notes}}"  # only the data slot
    assert not b.system.value and not b.prefill.value and not any(box.value for box in b.phrase_boxes.values())
    assert b.save_name.value == ex.save_as and list(b.models.value) == [ex.model]
    assert b.max_tokens.value == ex.settings["max_tokens"] and b.temperature.value == ex.settings["temperature"]
    assert b.check_html.value == "" and b.results is None
    monkeypatch.chdir(tmp_path)  # Save writes the file the chapter's check cell (check(id, exercise.save_as)) reads
    b.user.value = "Notes:\n{{notes}}\n\nWhich tier: Commit, Likely or At-Risk?"
    saved = b.save(b.save_name.value)
    assert saved.resolve() == (tmp_path / ex.save_as).resolve()
    assert as_template(ex.save_as, ex).user == b.user.value


def test_no_check_result_shows_on_the_dashboard_before_the_learner_attempts():
    """Voilà runs every cell at page load: a cell that checks an exercise must be left off the dashboard. Checked on
    the built chapters 01-04 through the dashboard's own prelaunch hook, so no result shows before an attempt."""
    from pathlib import Path

    import nbformat

    from promptkit import dashboard

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    checked = 0
    for chapter in sorted(CORE):
        nb = nbformat.read(notebooks / f"{chapter}.ipynb", as_version=4)
        checked += sum("exercises.check(" in c.source for c in nb.cells if c.cell_type == "code")
        for c in dashboard.prepare_notebook(None, nb, ".").cells:
            if c.cell_type == "code":
                assert "exercises.check(" not in c.source and "check_exercise(" not in c.source, \
                    f"{chapter}: a cell checks an exercise when the page loads"
    assert checked >= 5  # 1.1, 1.2, 2.1, 3.1 and 4: each checked by a cell the notebook runs and the page leaves out


@SLOW
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
        check("phrases.measured_phrase", get_exercise("phrases.measured_phrase").starter().replace(
            turns=[{"role": "user", "content": "{{notes}}"}]), progress=False)
    with pytest.raises(ExerciseError, match=r"unknown exercise 'nope'"):
        get_exercise("nope")


def test_hint_conditions():
    h = Hint(text="x", metric="parse_rate", below=0.5)
    assert h.applies({"parse_rate": 0.2}) and not h.applies({"parse_rate": 0.7}) and not h.applies({})
    assert Hint(text="always").applies({})
