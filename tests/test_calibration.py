"""Contextual calibration on the real model; thresholds chosen on dev and refused on the rows they were chosen on."""
from __future__ import annotations

import math
import warnings

import pytest

from promptkit.calibration import (
    CONTENT_FREE, CalibrationCollapseWarning, ContextualCalibration, contextual_calibration, fit_label_offsets,
    fit_threshold, label_shares, split_rows,
)
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


# ---------------------------------------------------------------- any number of labels (issue 22)

TIERS = ["Commit", "Likely", "At-Risk"]


def ls3(rid: str, probs: dict, target: str, split: str, calibration: str | None = None) -> LabelScore:
    total = sum(probs.values())
    probs = {k: v / total for k, v in probs.items()}
    return LabelScore(rid, max(probs, key=probs.get), probs, {k: math.log(v) for k, v in probs.items()},
                      target=target, split=split, calibration=calibration)


def biased_rows(split: str, n_each: int, offset: int = 0) -> list[LabelScore]:
    """Scores that rank each row's gold label above its rank elsewhere, but whose argmax is always At-Risk."""
    rows = []
    for i in range(n_each):
        j = i + offset
        for gold in TIERS:
            p = {"Commit": 0.05, "Likely": 0.05, "At-Risk": 0.9}
            p[gold] *= 6 + (j % 3)  # the gold label gains, not enough to beat the bias
            rows.append(ls3(f"{split}-{gold}-{j}", p, gold, split))
    return rows


def test_offsets_fitted_on_dev_fix_a_three_label_bias_on_test():
    dev, test = biased_rows("dev", 6), biased_rows("test", 12, offset=1)
    assert {s.label for s in test} == {"At-Risk"}
    rule = fit_label_offsets(dev)
    out = rule.apply(test)
    assert balanced_accuracy([s.target for s in out], [s.label for s in out], TIERS) == 1.0
    assert rule.offsets["Commit"] == 0.0 and rule.offsets["At-Risk"] < rule.offsets["Likely"] + 1e-9
    assert rule.fitted_value == 1.0 and "offsets" in str(rule)
    assert all(s.calibration == "offsets" and sum(s.probs.values()) == pytest.approx(1) for s in out)


def test_offsets_refuse_the_rows_and_split_they_were_fitted_on():
    dev = biased_rows("dev", 3)
    rule = fit_label_offsets(dev)
    with pytest.raises(GraderError, match="used to choose this rule"):
        rule.apply(dev[:2])
    with pytest.raises(GraderError, match="come from the 'dev' split"):
        rule.apply([ls3("new", {"Commit": 1, "Likely": 1, "At-Risk": 1}, "Commit", "dev")])
    with pytest.raises(GraderError, match="from other splits"):
        fit_label_offsets(biased_rows("test", 2))
    with pytest.raises(GraderError, match=r"no dev row has gold label \['Likely'\]"):
        fit_label_offsets([s for s in dev if s.target != "Likely"])
    with pytest.raises(GraderError, match="fitted on raw scores"):
        rule.apply([ls3("t1", {"Commit": 1, "Likely": 1, "At-Risk": 1}, "Commit", "test", calibration="contextual")])


def test_calibration_that_sends_every_row_to_one_label_warns_and_offers_the_dev_rule():
    """Issue 22's case: p_cf(Likely) = 0.037, and dividing by it made 60 of 60 renewal rows Likely."""
    dev = biased_rows("dev", 6)
    cc = ContextualCalibration(labels=TIERS, p_cf={"Commit": 0.5, "Likely": 0.037, "At-Risk": 0.463},
                               reference=label_shares(dev, TIERS))
    test = [ls3(f"t{i}", {"Commit": 0.3, "Likely": 0.2, "At-Risk": 0.5}, TIERS[i % 3], "test") for i in range(12)]
    with pytest.warns(CalibrationCollapseWarning, match=r"12 of 12 rows \(100%\) are 'Likely'.*33% in the dev split"
                                                        r".*p_cf\(Likely\) = 0.037.*fit_label_offsets"):
        out = cc.apply(test)
    assert {s.label for s in out} == {"Likely"} and cc.last_collapse.label == "Likely"


def test_a_calibration_that_keeps_the_label_mix_does_not_warn():
    cc = ContextualCalibration(labels=TIERS, p_cf={"Commit": 0.1, "Likely": 0.1, "At-Risk": 0.8})
    test = biased_rows("test", 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cc.apply(test)
    assert cc.last_collapse is None
    assert balanced_accuracy([s.target for s in cc.apply(test)], [s.label for s in cc.apply(test)], TIERS) == 1.0


def test_a_calibration_that_fails_to_fix_a_pile_up_says_so_rather_than_blaming_itself():
    cc = ContextualCalibration(labels=TIERS, p_cf={"Commit": 0.3, "Likely": 0.3, "At-Risk": 0.4},
                               reference={"Commit": 0.3, "Likely": 0.4, "At-Risk": 0.3})
    test = biased_rows("test", 4)  # raw argmax: At-Risk on all 12
    with pytest.warns(CalibrationCollapseWarning, match=r"left 12 of 12 rows \(100%\) on 'At-Risk' \(before it: 12\)"):
        cc.apply(test)
