"""Metrics against values worked out by hand on small confusion matrices."""
import math

import numpy as np
import pytest

from promptkit.errors import GraderError
from promptkit.metrics import (
    UNPARSEABLE, accuracy, balanced_accuracy, binomial_two_sided, bootstrap_interval, classification_summary,
    confusion_matrix, macro_f1, majority_baseline, mcnemar_test, paired_bootstrap_test, paired_permutation_test, paired_test,
    per_class, roc_auc,
    unparseable_count, wilson_interval,
)
from promptkit.types import Grade

LABELS = ["A", "B", "C"]
# gold A x4, B x3, C x3.  By hand:
#   gold A -> A, A, B, (none)      gold B -> B, B, A      gold C -> C, C, (none)
GOLD = ["A", "A", "A", "A", "B", "B", "B", "C", "C", "C"]
PRED = ["A", "A", "B", None, "B", "B", "A", "C", "C", None]


def test_accuracy_counts_unparseable_as_not_correct():
    assert accuracy(GOLD, PRED) == pytest.approx(6 / 10)
    assert unparseable_count(PRED) == 2


def test_per_class_precision_recall_f1_by_hand():
    s = per_class(GOLD, PRED, LABELS)
    # A: predicted on rows 0,1,6 (2 right) of 4 gold
    assert (s["A"].precision, s["A"].recall, s["A"].f1) == pytest.approx((2 / 3, 1 / 2, 4 / 7))
    assert (s["B"].precision, s["B"].recall, s["B"].f1) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert (s["C"].precision, s["C"].recall, s["C"].f1) == pytest.approx((1.0, 2 / 3, 4 / 5))
    assert [s[x].support for x in LABELS] == [4, 3, 3]
    assert [s[x].predicted for x in LABELS] == [3, 3, 2]


def test_balanced_accuracy_and_macro_f1_by_hand():
    assert balanced_accuracy(GOLD, PRED, LABELS) == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert macro_f1(GOLD, PRED, LABELS) == pytest.approx((4 / 7 + 2 / 3 + 4 / 5) / 3)


def test_label_never_predicted_has_zero_precision_and_f1():
    s = per_class(["A", "B"], ["A", "A"], ["A", "B"])
    assert s["B"].precision == 0.0 and s["B"].f1 == 0.0
    assert s["A"].precision == pytest.approx(0.5) and s["A"].recall == 1.0


def test_confusion_matrix_has_unparseable_column():
    cm = confusion_matrix(GOLD, PRED, LABELS)
    assert cm.columns == ["A", "B", "C", UNPARSEABLE]
    assert cm.counts == [[2, 1, 0, 1], [1, 2, 0, 0], [0, 0, 2, 1]]
    assert cm.count("A", None) == 1
    assert sum(map(sum, cm.counts)) == len(GOLD)
    df = cm.to_frame()
    assert df.loc["A", UNPARSEABLE] == 1 and df.loc["B", "A"] == 1


def test_confusion_matrix_keeps_out_of_set_answers_in_their_own_column():
    cm = confusion_matrix(["A", "B"], ["Maybe", None], ["A", "B"])
    assert cm.columns == ["A", "B", "Maybe", UNPARSEABLE]
    assert cm.counts == [[0, 0, 1, 0], [0, 0, 0, 1]]


def test_majority_baseline_label_rate_and_tie_order():
    assert majority_baseline(GOLD) == ("A", 0.4)
    assert majority_baseline(["x", "y", "y", "x"], ["y", "x"]) == ("y", 0.5)


def test_wilson_interval_by_hand():
    ci = wilson_interval(6, 10)
    assert (ci.low, ci.high) == pytest.approx((0.3127, 0.8318), abs=1e-4)
    zero = wilson_interval(0, 20)
    assert zero.low == 0.0 and 0.15 < zero.high < 0.17  # 0.161 by hand
    with pytest.raises(GraderError, match="successes"):
        wilson_interval(11, 10)


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    a = bootstrap_interval(lambda g, p: balanced_accuracy(g, p, LABELS), GOLD, PRED, n_boot=300, seed=3)
    b = bootstrap_interval(lambda g, p: balanced_accuracy(g, p, LABELS), GOLD, PRED, n_boot=300, seed=3)
    assert a == b
    assert a.low < balanced_accuracy(GOLD, PRED, LABELS) < a.high


def test_summary_intervals_match_the_generic_bootstrap():
    # the summary's vectorised bootstrap must resample and score exactly like bootstrap_interval
    s = classification_summary(GOLD, PRED, LABELS, n_boot=300, seed=5)
    bal = bootstrap_interval(lambda g, p: balanced_accuracy(g, p, LABELS), GOLD, PRED, n_boot=300, seed=5)
    mf1 = bootstrap_interval(lambda g, p: macro_f1(g, p, LABELS), GOLD, PRED, n_boot=300, seed=5)
    assert (s.balanced_accuracy_ci.low, s.balanced_accuracy_ci.high) == pytest.approx((bal.low, bal.high))
    assert (s.macro_f1_ci.low, s.macro_f1_ci.high) == pytest.approx((mf1.low, mf1.high))


def test_summary_of_hand_matrix():
    s = classification_summary(GOLD, PRED, LABELS, n_boot=200)
    assert s.accuracy == pytest.approx(0.6)
    assert (s.majority_label, s.majority_rate) == ("A", 0.4)
    assert (s.correct, s.wrong, s.unparseable) == (6, 2, 2)
    assert s.chance == pytest.approx(1 / 3)
    assert s.balanced_accuracy == pytest.approx(balanced_accuracy(GOLD, PRED, LABELS))
    assert s.macro_f1 == pytest.approx(macro_f1(GOLD, PRED, LABELS))
    assert s.beats_baseline is False  # 0.6 with n=10: Wilson low 0.31 is below 0.4
    assert "does not beat" in s.verdict
    assert s.to_dict()["unparseable"] == 2
    assert "unparseable 2" in str(s)


def test_constant_answer_scores_the_base_rate_and_is_flagged():
    gold = ["Commit"] * 18 + ["Likely"] * 6 + ["At-Risk"] * 6
    pred = ["Commit"] * 30
    s = classification_summary(gold, pred, ["Commit", "Likely", "At-Risk"], n_boot=200)
    assert s.accuracy == pytest.approx(0.6) == pytest.approx(s.majority_rate)
    assert s.beats_baseline is False
    assert s.balanced_accuracy == pytest.approx(1 / 3)
    assert s.macro_f1 == pytest.approx((2 * 0.6 / 1.6) / 3)  # only Commit has F1 > 0: p=0.6, r=1


def test_a_clearly_good_classifier_beats_the_baseline():
    gold = ["yes"] * 15 + ["no"] * 15
    pred = ["yes"] * 14 + ["no"] + ["no"] * 13 + ["yes"] * 2
    s = classification_summary(gold, pred, ["yes", "no"], n_boot=200)
    assert s.accuracy == pytest.approx(27 / 30)
    assert s.beats_baseline is True


def test_grades_are_read_through_their_label():
    grades = [Grade(1, True, label="A"), Grade(0, False, label=None, parsed=False)]
    assert accuracy(["A", "A"], grades) == 0.5
    assert unparseable_count(grades) == 1


def test_bad_inputs_name_the_problem():
    with pytest.raises(GraderError, match="gold has 2 rows but pred has 1"):
        accuracy(["A", "B"], ["A"])
    with pytest.raises(GraderError, match="row 1 is not in labels"):
        classification_summary(["A", "Z"], ["A", "A"], ["A", "B"])


def test_binomial_two_sided_by_hand():
    assert binomial_two_sided(1, 4) == pytest.approx(10 / 16)  # 2 * (1 + 4) / 16
    assert binomial_two_sided(0, 10) == pytest.approx(2 / 1024)
    assert binomial_two_sided(5, 10) == 1.0
    assert binomial_two_sided(0, 0) == 1.0


def test_mcnemar_identical_predictions_p_is_one():
    t = mcnemar_test(GOLD, PRED, list(PRED))
    assert t.p_value == 1.0 and not t.significant
    assert t.verdict.startswith("not significant at 0.05")


def test_mcnemar_strongly_different_pair():
    gold = ["y"] * 12
    a = ["y"] * 12
    b = ["n"] * 10 + ["y"] * 2
    t = mcnemar_test(gold, a, b, name_a="few-shot", name_b="zero-shot")
    assert t.details["a_right_b_wrong"] == 10 and t.details["a_wrong_b_right"] == 0
    assert t.p_value == pytest.approx(2 / 1024)
    assert t.significant and t.verdict.startswith("few-shot beats zero-shot")


def test_mcnemar_small_discordance_is_not_significant():
    gold = ["y"] * 6
    t = mcnemar_test(gold, ["y", "y", "y", "n", "y", "y"], ["n", "n", "n", "y", "y", "y"])
    assert t.p_value == pytest.approx(10 / 16)
    assert "not significant" in t.verdict


def test_paired_bootstrap_identical_and_strongly_different():
    same = paired_bootstrap_test(GOLD, PRED, list(PRED), n_boot=200)
    assert same.p_value == 1.0 and same.difference == 0.0
    gold = ["y", "n"] * 20
    good = list(gold)
    bad = ["n", "y"] * 20
    t = paired_bootstrap_test(gold, good, bad, n_boot=200, metric="balanced_accuracy")
    assert t.difference == pytest.approx(1.0)
    assert t.p_value == pytest.approx(1 / 201) and t.significant
    assert t.details["ci_low"] > 0.5


def test_paired_bootstrap_is_seeded_and_rejects_unknown_metric():
    a = paired_bootstrap_test(GOLD, PRED, ["A"] * 10, n_boot=200, seed=1)
    b = paired_bootstrap_test(GOLD, PRED, ["A"] * 10, n_boot=200, seed=1)
    assert a.p_value == b.p_value
    with pytest.raises(GraderError, match="metric must be one of"):
        paired_bootstrap_test(GOLD, PRED, PRED, metric="f2")


def test_roc_auc_known_rankings():
    gold = [1, 1, 0, 0]
    assert roc_auc(gold, [0.9, 0.8, 0.2, 0.1], positive=1) == 1.0
    assert roc_auc(gold, [0.1, 0.2, 0.8, 0.9], positive=1) == 0.0
    assert roc_auc(gold, [0.9, 0.4, 0.5, 0.1], positive=1) == pytest.approx(3 / 4)
    assert roc_auc(gold, [0.5, 0.5, 0.5, 0.5], positive=1) == pytest.approx(0.5)
    # tie between the positive 0.5 and a negative 0.5 counts one half: (0.5 + 1) / 2
    assert roc_auc(["Yes", "No", "No"], [0.5, 0.5, 0.2], positive="Yes") == pytest.approx(0.75)


def test_roc_auc_needs_both_classes():
    with pytest.raises(GraderError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3], positive=1)
    assert not math.isnan(roc_auc([True, False], [0.3, 0.2]))


def _null_rejection_rate(n: int, sims: int, seed: int) -> float:
    """Share of simulated nulls (two prompts whose answers are exchangeable per row) rejected at alpha 0.05."""
    rng = np.random.default_rng(seed)
    labels = ["Commit", "Likely", "At-Risk"]
    rejected = 0
    for i in range(sims):
        gold = rng.choice(labels, n)
        # each prompt is right about half the time, otherwise guesses: the same process for A and B
        a = np.where(rng.random(n) < 0.5, gold, rng.choice(labels, n))
        b = np.where(rng.random(n) < 0.5, gold, rng.choice(labels, n))
        t = paired_permutation_test(list(gold), list(a), list(b), labels=labels, n_perm=1000, n_boot=0, seed=i)
        rejected += t.p_value < 0.05
    return rejected / sims


@pytest.mark.parametrize("n", [18, 60])
def test_balanced_accuracy_test_false_positive_rate_is_near_5_percent(n):
    """The paired bootstrap's p-value rejected 8.2% of these nulls at n = 18 (6.2% at 60): too eager on few rows."""
    rate = _null_rejection_rate(n, sims=500, seed=n)
    assert 0.015 <= rate <= 0.075, f"n={n}: {rate:.3f} of true nulls rejected at alpha 0.05"


def test_each_metric_gets_its_own_test_and_the_verdict_names_it():
    gold = ["y", "n"] * 15
    good, bad = list(gold), ["n", "y"] * 15
    acc = paired_test(gold, good, bad, metric="accuracy")
    bal = paired_test(gold, good, bad, metric="balanced_accuracy")
    assert acc.test == "exact McNemar" and "exact McNemar" in acc.verdict
    assert bal.test == "paired permutation (balanced_accuracy)" and "paired permutation test" in bal.verdict
    assert bal.significant and bal.difference == pytest.approx(1.0) and bal.details["ci_low"] > 0.5
    same = paired_test(gold, good, list(good), metric="balanced_accuracy")
    assert same.p_value == 1.0 and "not significant" in same.verdict
    with pytest.raises(GraderError, match="metric must be one of"):
        paired_test(gold, good, bad, metric="f2")


def test_the_bootstrap_test_refuses_the_permutation_tests_n_perm():
    with pytest.raises(TypeError, match="n_perm"):
        paired_bootstrap_test(GOLD, PRED, PRED, n_perm=100)
    with pytest.raises(TypeError):
        paired_permutation_test(GOLD, PRED, PRED, n_bootstrap=100)
