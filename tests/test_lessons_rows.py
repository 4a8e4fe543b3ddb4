"""lessons.evaluate on rows from anywhere: a dataset name, a Dataset, or a plain list of Rows (issue 22)."""
from __future__ import annotations

import pytest

import promptkit as pk
from promptkit.errors import ExperimentError
from promptkit.templates import Template
from promptkit.types import Row

# echo answers with the prompt's first words, so the note's first word is the answer
TPL = Template(name="first-word", turns="{{notes}}")


def new_rows() -> list[Row]:
    notes = ["Yes a competitor came up", "No competitor named", "Yes they trial Acme", "No", "Yes", "No thanks"]
    return [Row(id=f"new-{i}", input={"notes": n}, target=n.split()[0], split="test") for i, n in enumerate(notes)]


def test_a_list_of_rows_is_evaluated_as_given_with_label_grading():
    rows = new_rows()
    res = pk.lessons.evaluate(TPL, rows, models="echo:x", max_tokens=1, progress=False)
    assert sorted(res.df["row_id"]) == sorted(r.id for r in rows)
    s = res.summary()
    assert float(s["accuracy"].iloc[0]) == 1.0 and float(s["balanced_accuracy"].iloc[0]) == 1.0
    assert res.labels() == ["Yes", "No"]


def test_a_dataset_object_is_accepted_like_its_name():
    ds = pk.load_dataset("competitor_mention")
    by_obj = pk.lessons.evaluate(ds.template(), ds, models="echo:x", n=3, max_tokens=2, progress=False)
    by_name = pk.lessons.evaluate(ds.template(), "competitor_mention", models="echo:x", n=3, max_tokens=2,
                                  progress=False)
    assert list(by_obj.df["row_id"]) == list(by_name.df["row_id"]) == [r.id for r in ds.split("dev").rows[:3]]


def test_rows_that_cannot_be_graded_say_what_to_pass():
    with pytest.raises(ExperimentError, match="list of Rows; item 1 is a dict"):
        pk.lessons.evaluate(TPL, [new_rows()[0], {"notes": "x"}], models="echo:x", progress=False)
    rows = [Row(id="r", input={"notes": "a"}, target=["x"], split="test")]
    with pytest.raises(ExperimentError, match="pass graders="):
        pk.lessons.evaluate(TPL, rows, models="echo:x", progress=False)
