"""The live builder driven programmatically: set values, click, read.

One test runs end to end on the real local model; the rest are about the builder's own logic (variables,
preview, errors, saving, what the results pane shows), so they answer from the scripted `mock:` provider.
"""
from __future__ import annotations

import pytest

from promptkit.providers import clear_providers
from promptkit.providers.mock import mock_provider
from promptkit.templates import load_template
from promptkit.widgets import NO_DATASET, prompt_builder


@pytest.fixture
def mock():
    """A scripted model the builder can choose (it lists only ready models, so add it to the list)."""
    clear_providers()
    yield mock_provider("mock:builder")
    clear_providers()


def choose(b, spec):
    b.models.options = (*b.models.options, spec)
    b.models.value = (spec,)


@pytest.mark.local_model
def test_build_toggle_run_and_read_results():
    b = prompt_builder(dataset="renewal_tier", n_rows=1, max_tokens=8)
    b.start.value = "renewal_tier"
    assert "{{notes}}" in b.user.value
    assert "<b>user</b>" in b.preview.value and "{{notes}}" not in b.preview.value  # preview shows a real row
    phrase = "only_label" if "only_label" in b.phrase_boxes else next(iter(b.phrase_boxes))
    b.phrase_boxes[phrase].value = True
    b.run_button.click()
    assert b.error.value == "", b.error.value
    res = b.results
    assert res is not None and len(res) == 2  # with and without the phrase, one row, one model
    assert set(res.df["variant"]) == {"without phrases", "with phrases"}
    assert res.df["latency_s"].gt(0).all() and res.df["output_tokens"].ge(1).all()
    html = b.result_html.value
    assert "Side by side" in html and "Summary" in html and "latency" in html.lower()
    assert "Done: 2 calls" in b.status.value
    # a second click answers from the cache
    b.run_button.click()
    assert b.results.meta["counts"]["cache_hits"] == 2


def test_errors_in_callbacks_are_shown_not_swallowed():
    b = prompt_builder(dataset="renewal_tier", n_rows=1)
    b.models.value = ()
    b.run_button.click()
    assert "choose at least one model" in b.error.value
    assert isinstance(b.last_error, ValueError)
    b.save_name.value = "prompt.txt"
    b.save_button.click()
    assert "must end in .yaml" in b.error.value


def test_blank_prompt_with_variables_and_save(tmp_path, mock):
    mock.enqueue("Yes")
    b = prompt_builder(dataset=None, n_rows=1, max_tokens=6)
    choose(b, "mock:builder")
    assert b.dataset.value == NO_DATASET
    b.start.value = "(blank prompt)"
    b.user.value = "Customer said: {{quote}}\nIs the customer upset? Answer Yes or No."
    assert [c.description for c in b.variables.children] == ["quote"]
    assert "do not fill yet" in b.preview.value  # the empty field is named, not silently rendered
    b.variables.children[0].value = "This is the third outage this month and nobody called us back."
    assert "third outage" in b.preview.value
    b.system.value = "You are a support lead."
    b.run_button.click()
    assert b.error.value == "", b.error.value
    assert len(b.results) == 1 and b.results.df["output"].iloc[0] == "Yes"
    sent = mock.requests[0].messages
    assert sent[0].content == "You are a support lead." and "third outage" in sent[-1].content
    b.phrase_boxes[next(iter(b.phrase_boxes))].value = True
    b.save_name.value = str(tmp_path / "upset.yaml")
    b.save_button.click()
    assert b.error.value == ""
    t = load_template(tmp_path / "upset.yaml")
    assert t.name == "upset" and "You are a support lead." in t.system
    assert "{{quote}}" in t.user


def test_results_show_the_score_interval(mock):
    """The summary's score_low/score_high reach the results pane (it once asked for score_lo/score_hi)."""
    mock.always(lambda req: "Commit")
    b = prompt_builder(dataset="renewal_tier", n_rows=4, max_tokens=8)
    choose(b, "mock:builder")
    b.start.value = "renewal_tier"
    b.run_button.click()
    assert b.error.value == "", b.error.value
    assert len(mock.requests) == 4
    summary = b.results.summary()
    html = b.result_html.value
    assert "score_low" in html and "score_high" in html
    assert f"{summary['score_low'].iloc[0]:.3g}" in html
