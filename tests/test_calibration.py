"""Contextual calibration on the real model; thresholds chosen on dev and refused on the rows they were chosen on."""
from __future__ import annotations

import math

import pytest

from promptkit.calibration import CONTENT_FREE, ContextualCalibration, contextual_calibration, fit_threshold, split_rows
from promptkit.errors import GraderError
from promptkit.metrics import balanced_accuracy
from promptkit.scoring import LabelScore, score_labels, score_request
from promptkit.templates import Template
from promptkit.types import Row, Settings

TPL = Template(name="competitor", turns="Notes: {{notes}}\nDo the notes mention a competing vendor? Answer Yes or No.")
YN = ["Yes", "No"]


def ls(rid: str, p_yes: float, target: str, split: str) -> LabelScore:
    probs = {"Yes": p_yes, "No": 1 - p_yes}
    return LabelScore(rid, max(probs, key=probs.get), probs, {k: math.log(v) for k, v in probs.items()},
                      target=target, split=split)


@pytest.mark.local_model
def test_content_free_probabilities_are_measured_with_the_same_prompt():
    cc = contextual_calibration("local:smollm2", TPL, YN)
    assert cc.fields == ("notes",)
    assert set(cc.per_input) == set(CONTENT_FREE)
    assert sum(cc.p_cf.values()) == pytest.approx(1.0)
    na = score_request("local:smollm2", TPL.to_request({"notes": "N/A"}, Settings()), YN)
    assert cc.per_input["N/A"] == pytest.approx(na.probs, abs=1e-6)
    assert cc.p_cf["Yes"] == pytest.approx(sum(p["Yes"] for p in cc.per_input.values()) / 3)


@pytest.mark.local_model
def test_calibrating_the_content_free_input_itself_gives_uniform_probabilities():
    cc = contextual_calibration("local:smollm2", TPL, YN, content_free=["N/A"])
    na = score_request("local:smollm2", TPL.to_request({"notes": "N/A"}, Settings()), YN)
    assert cc.apply(na).probs == pytest.approx({"Yes": 0.5, "No": 0.5})
    rows = [Row("r1", {"notes": "They are trialling Zendesk as a replacement."}, "Yes", "test")]
    raw = score_labels("local:smollm2", TPL, rows, YN, progress=False)[0]
    cal = cc.apply(raw)
    expected_yes = (raw.probs["Yes"] / cc.p_cf["Yes"]) / sum(raw.probs[k] / cc.p_cf[k] for k in YN)
    assert cal.probs["Yes"] == pytest.approx(expected_yes)
    assert cal.calibration == "contextual" and cal.logprobs == raw.logprobs


def test_apply_divides_out_the_bias_by_hand():
    cc = ContextualCalibration(labels=YN, p_cf={"Yes": 0.8, "No": 0.2})
    s = ls("a", 0.7, "No", "test")  # argmax Yes, but less Yes than the content-free 0.8
    out = cc(s)
    # (0.7/0.8) / (0.7/0.8 + 0.3/0.2) = 0.875 / 2.375
    assert out.probs["Yes"] == pytest.approx(0.875 / 2.375)
    assert out.label == "No" and s.label == "Yes"
    with pytest.raises(GraderError, match="same label set"):
        ContextualCalibration(labels=["Yes", "Maybe"], p_cf={"Yes": 0.5, "Maybe": 0.5}).apply(s)


DEV = [ls("d1", 0.45, "Yes", "dev"), ls("d2", 0.40, "Yes", "dev"), ls("d3", 0.20, "No", "dev"), ls("d4", 0.10, "No", "dev")]
TEST = [ls("t1", 0.35, "Yes", "test"), ls("t2", 0.42, "Yes", "test"), ls("t3", 0.15, "No", "test"), ls("t4", 0.05, "No", "test")]


def test_threshold_chosen_on_dev_fixes_a_constant_argmax_on_test():
    assert {s.label for s in TEST} == {"No"}  # argmax says No for every row
    th = fit_threshold(DEV, "Yes")
    assert th.threshold == pytest.approx(0.30)  # midpoint of 0.20 and 0.40, the only perfect cut on dev
    assert th.fitted_value == 1.0 and th.fitted_ids == {"d1", "d2", "d3", "d4"}
    out = th.apply(TEST)
    assert [s.label for s in out] == ["Yes", "Yes", "No", "No"]
    assert balanced_accuracy([s.target for s in out], [s.label for s in out]) == 1.0


def test_threshold_refuses_the_rows_it_was_chosen_on():
    th = fit_threshold(DEV, "Yes")
    with pytest.raises(GraderError, match="used to choose this threshold"):
        th.apply(DEV)
    leaked = TEST + [ls("d2", 0.4, "Yes", "test")]  # a dev row relabelled as test is still caught by its id
    with pytest.raises(GraderError, match=r"1 row\(s\) were used.*'d2'"):
        th.apply(leaked)
    with pytest.raises(GraderError, match="from the 'dev' split"):
        th.apply([ls("d9", 0.3, "Yes", "dev")])
    with pytest.raises(GraderError, match="needs a row_id"):
        th.apply([ls(None, 0.3, "Yes", "test")])


def test_threshold_must_be_fitted_on_the_named_split():
    with pytest.raises(GraderError, match=r"got 4 row\(s\) from other splits"):
        fit_threshold(TEST, "Yes")
    th = fit_threshold(TEST, "Yes", split="test")  # explicit: these rows are the calibration split
    with pytest.raises(GraderError, match="used to choose"):
        th.apply(TEST)
    with pytest.raises(GraderError, match="two labels"):
        fit_threshold(DEV, "Maybe")


def test_split_rows_names_an_empty_split():
    rows = [Row("a", {}, "Yes", "dev")]
    assert split_rows(rows, "dev") == rows
    with pytest.raises(GraderError, match="no rows in split 'test'"):
        split_rows(rows, "test")


@pytest.mark.local_model
def test_contextual_then_threshold_on_held_out_rows_of_the_real_model():
    rows = [
        Row("d1", {"notes": "They said Freshdesk quoted 30% less."}, "Yes", "dev"),
        Row("d2", {"notes": "Renewal signed, happy with onboarding."}, "No", "dev"),
        Row("t1", {"notes": "Evaluating HubSpot Service Hub next quarter."}, "Yes", "test"),
        Row("t2", {"notes": "Usage steady, QBR went well."}, "No", "test"),
    ]
    cc = contextual_calibration("local:smollm2", TPL, YN)
    dev = cc(score_labels("local:smollm2", TPL, split_rows(rows, "dev"), YN, progress=False))
    test = cc(score_labels("local:smollm2", TPL, split_rows(rows, "test"), YN, progress=False))
    th = fit_threshold(dev, "Yes")
    out = th.apply(test)
    assert [s.row_id for s in out] == ["t1", "t2"] and all(s.label in YN for s in out)
    with pytest.raises(GraderError):
        th.apply(dev)
