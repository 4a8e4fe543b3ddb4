"""The chapter-3 ladder's table and sentences, on constructed scores: every claim matches its numbers."""
from __future__ import annotations

import math

import pytest

from promptkit.decisions import Ladder, auc_table, balanced_rows, ladder_sentences, ladder_table, ovr_auc, plot_confusions
from promptkit.scoring import LabelScore
from promptkit.types import Row

TIERS = ["Commit", "Likely", "At-Risk"]


def test_balanced_rows_keeps_every_label_in_a_small_sample_in_dataset_order():
    rows = [Row(id=f"r{i}", input={}, target=t, split="test") for i, t in enumerate(["Commit"] * 6 + ["Likely"] * 3 + ["At-Risk"] * 3)]
    six = balanced_rows(rows, 6)
    assert [r.target for r in six].count("At-Risk") == 2 and {r.target for r in six} == set(TIERS)
    assert [r.id for r in six] == sorted((r.id for r in six), key=lambda x: int(x[1:]))
    assert balanced_rows(rows, None) == rows


def _ladder() -> Ladder:
    gold = TIERS * 8  # 24 rows
    lad = Ladder("local:x", TIERS, [f"t{i}" for i in range(24)], gold)
    lad.steps["text answer"] = ["At-Risk"] * 24  # one label for every row: chance
    lad.steps["dev-fitted offsets"] = list(gold[:21]) + ["At-Risk"] * 3  # right on 22 of 24
    return lad


def test_table_scores_each_step_on_the_same_rows_with_the_named_test():
    t = ladder_table(_ladder())
    assert list(t["n"]) == [24, 24]
    assert t.loc[0, "balanced accuracy"] == pytest.approx(1 / 3)
    assert t.loc[1, "balanced accuracy"] == pytest.approx((1 + 1 + 6 / 8) / 3)
    assert t.loc[1, "test"] == "paired permutation" and t.loc[1, "p"] < 0.05
    assert t.loc[1, "Δ vs text answer"] == pytest.approx(t.loc[1, "balanced accuracy"] - 1 / 3)


def test_sentences_state_the_numbers_of_the_table():
    lad = _ladder()
    t = ladder_table(lad)
    text = ladder_sentences(lad, t)
    assert "On the same 24 held-out test rows" in text
    assert f"balanced accuracy {t.loc[1, 'balanced accuracy']:.2f} [{t.loc[1, 'low']:.2f}, {t.loc[1, 'high']:.2f}]" in text
    assert f"{t.loc[1, 'Δ vs text answer']:+.2f} vs text answer (paired permutation test, p = {t.loc[1, 'p']:.2f}: a real difference" in text
    assert "answers At-Risk 24" in text
    assert "Above chance beyond its interval: dev-fitted offsets." in text


def _score(rid, p, target):
    p = dict(zip(TIERS, p))
    return LabelScore(rid, max(p, key=p.get), p, {k: math.log(v) for k, v in p.items()}, target=target, split="test")


def test_one_vs_rest_auc_and_plots():
    scores = [_score("a", (0.7, 0.2, 0.1), "Commit"), _score("b", (0.6, 0.3, 0.1), "Likely"),
              _score("c", (0.5, 0.1, 0.4), "At-Risk"), _score("d", (0.8, 0.1, 0.1), "Commit")]
    assert ovr_auc(scores, "Commit") == 1.0
    assert ovr_auc(scores, "Likely") == 1.0
    assert ovr_auc(scores[:1], "Commit") is None
    assert list(auc_table({"m": scores}, TIERS).columns) == ["model", "AUC Commit", "AUC Likely", "AUC At-Risk"]
    fig = plot_confusions({"m": (["Commit", "Likely"], ["Commit", None])}, TIERS)
    assert len(fig.axes) == 1
