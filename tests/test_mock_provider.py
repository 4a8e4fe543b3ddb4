"""The scripted `mock:` provider: queued replies in order, every request recorded, through the real runner."""
from __future__ import annotations

import pytest

import promptkit as pk
from promptkit.errors import PromptkitError
from promptkit.graders import label_match
from promptkit.experiment import Experiment
from promptkit.providers import clear_providers, known_prefixes, register
from promptkit.providers.echo import EchoProvider
from promptkit.providers.mock import MockProvider, mock_provider
from promptkit.templates import Template
from promptkit.types import Completion, Row


@pytest.fixture(autouse=True)
def _fresh():
    clear_providers()
    yield
    clear_providers()


def test_replies_come_in_queue_order_and_requests_are_recorded():
    m = mock_provider("mock:tiers").enqueue("Commit", "At-Risk")
    assert pk.complete("first", "mock:tiers").text == "Commit"
    c = pk.complete("second", "mock:tiers", system="Be brief.")
    assert c.ok and c.text == "At-Risk" and c.provider == "mock"
    assert [r.messages[-1].content for r in m.requests] == ["first", "second"]
    assert m.requests[1].messages[0].role == "system"


def test_an_empty_queue_is_an_error_completion_naming_what_to_do():
    c = pk.complete("hello", "mock:empty")
    assert not c.ok and "no reply queued for call 1" in c.error and "enqueue" in c.error


def test_a_reply_may_be_a_completion_or_a_function_of_the_request():
    m = mock_provider("mock:x")
    m.enqueue(Completion(error_kind="rate_limit", error="slow down"), lambda req: req.messages[-1].content.upper())
    assert pk.complete("a", "mock:x").error_kind == "rate_limit"
    assert pk.complete("shout", "mock:x").text == "SHOUT"


def test_the_runner_calls_the_same_mock_once_per_cell():
    m = mock_provider("mock:run").always(lambda req: "Commit" if "renew" in req.messages[-1].content else "At-Risk")
    rows = [Row("r1", {"notes": "will renew"}, "Commit"), Row("r2", {"notes": "churning"}, "Commit")]
    exp = Experiment([Template("t", turns="{{notes}}")], ["mock:run"], rows, graders=[label_match(["Commit", "At-Risk"])])
    res = pk.run(exp, cache="off", progress=False)
    assert sorted(r.completion.text for r in res) == ["At-Risk", "Commit"]
    assert len(m.requests) == 2
    assert res.summary()["accuracy"].iloc[0] == 0.5


def test_mock_provider_refuses_another_provider():
    with pytest.raises(PromptkitError, match="not a mock"):
        mock_provider("echo:x")
    assert isinstance(mock_provider(), MockProvider)


def test_a_provider_registered_in_a_test_is_registered_during_it():
    register("tmpreg", EchoProvider)
    assert "tmpreg" in known_prefixes()


def test_and_gone_after_it():
    """Runs after the test above (file order): conftest put the registry back."""
    assert "tmpreg" not in known_prefixes()
    assert {"score", "tools", "mock", "echo"} <= set(known_prefixes())


def test_lessons_evaluate_sends_each_dev_row_once_with_the_settings_asked():
    """lessons.evaluate's own logic (split, n, settings, default grader), with the model's answers scripted."""
    ds = pk.load_dataset("renewal_tier")
    dev = ds.split("dev").rows[:3]

    def gold(req):  # the right label for whichever row this request is about (cells may run in any order)
        text = "\n".join(msg.content for msg in req.messages)
        return next(r.target for r in dev if all(str(v) in text for v in r.input.values()))

    m = mock_provider("mock:lesson").always(gold)
    res = pk.lessons.evaluate(ds.template(), "renewal_tier", n=3, models="mock:lesson", max_tokens=7, temperature=0.3,
                              progress=False)
    assert len(m.requests) == 3 and {r.settings.max_tokens for r in m.requests} == {7}
    assert {r.settings.temperature for r in m.requests} == {0.3}
    assert sorted(res.df["row_id"]) == sorted(r.id for r in dev)
    s = res.summary()
    assert float(s["accuracy"].iloc[0]) == 1.0 and int(s["unparseable"].iloc[0]) == 0
