"""The lesson helpers say only what a run supports: effect wording, Holm, detectable effects, verdicts, evidence."""
from __future__ import annotations

import re

import pytest

from promptkit import lessons
from promptkit.graders import label_match
from promptkit.results import Results
from promptkit.types import Cell, CellResult, Completion, Message, Request, Settings

TIERS = ["Commit", "Likely", "At-Risk"]


def cells(variant: str, golds: list[str], answers: list[str]) -> list[CellResult]:
    out = []
    for i, (g, a) in enumerate(zip(golds, answers)):
        req = Request((Message("user", f"row {i}"),), Settings(max_tokens=8))
        cell = Cell(key=f"{variant}|m|{i}", variant=variant, model="echo:x", settings=Settings(max_tokens=8),
                    row_id=str(i), repeat=0, request=req, target=g)
        out.append(CellResult(cell, Completion(text=a, provider="echo", model="x", latency_s=0.1)))
    return out


def run_of(**variants: list[str]) -> Results:
    golds = (["Commit", "Likely", "At-Risk"] * 8)[: len(next(iter(variants.values())))]
    all_cells = [c for v, answers in variants.items() for c in cells(v, golds, answers)]
    return Results(all_cells).regrade(label_match(TIERS, name="tier"))


GOLD12 = ["Commit", "Likely", "At-Risk"] * 4


def test_holm_matches_the_step_down_rule():
    assert lessons.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert lessons.holm([0.2]) == [0.2]
    assert lessons.holm([0.02, 0.02]) == pytest.approx([0.04, 0.04])


def test_smallest_detectable_is_six_rows_at_005_and_grows_with_holm():
    assert lessons.smallest_detectable(18) == pytest.approx(6 / 18)
    assert lessons.smallest_detectable(150) == pytest.approx(6 / 150)
    assert lessons.smallest_detectable(18, 0.05 / 12) == pytest.approx(9 / 18)
    # the bound is exact: k rows all flipping one way reach p < 0.05 only from k = 6
    from promptkit.metrics import binomial_two_sided
    assert binomial_two_sided(0, 6) < 0.05 <= binomial_two_sided(0, 5)


def test_a_non_significant_result_never_agrees_with_a_published_null():
    res = run_of(base=["Commit"] * 12, role=["Commit"] * 11 + ["At-Risk"])
    text = lessons.effect(res, "base", "role", paper="Zheng et al. 2024", paper_says="no effect")
    assert "agrees" not in text
    assert "neither confirms nor contradicts" in text
    assert "no significant effect" in text
    assert "on the same 12 rows" in text
    assert "smallest change that could reach significance is 0.50" in text


def test_effect_sentence_numbers_come_from_the_summary():
    right = list(GOLD12)
    res = run_of(base=["Commit"] * 12, fixed=right)
    text = lessons.effect(res, "base", "fixed")
    s = res.summary(by=["variant", "model"]).set_index("variant")
    b, a = s.loc["base", "balanced_accuracy"], s.loc["fixed", "balanced_accuracy"]
    assert f"balanced accuracy {b:.2f} → {a:.2f} ({a - b:+.2f}" in text
    assert ": helps)" in text
    assert "Warning: the baseline prompt (base) scores balanced accuracy 0.33, not above chance (0.33)" in text


def test_no_warning_when_the_baseline_clears_chance():
    res = run_of(base=list(GOLD12), other=list(GOLD12))
    assert lessons.below_chance_warning(res, "base") == ""
    assert "Warning" not in lessons.effect(res, "base", "other")


def test_ablation_counts_a_significant_rise_in_unreadable_answers_as_hurt_and_uses_holm():
    base = ["Commit"] * 12  # readable, one label: balanced accuracy at chance
    ramble = ["Let me think about the renewal."] * 12  # unreadable on every row
    same = ["Commit"] * 12
    res = run_of(base=base, **{"base+tip": ramble, "base+only_label": same})
    table = lessons.ablation_table(res, "base").set_index("variant")
    assert table.loc["base+tip", "Δ unparseable"] == 12
    assert table.loc["base+tip", "verdict"] == "hurt"
    assert table.loc["base+only_label", "verdict"] == "no significant effect"
    assert (table["p (Holm)"] >= table["p"] - 1e-12).all()
    assert table.loc["base+tip", "smallest detectable"] == pytest.approx(7 / 12)  # 2 tests: alpha 0.025
    lines = lessons.verdict_lines(table.reset_index())
    d = table.loc["base+tip", "Δ balanced_accuracy"]
    assert lines[1] == f"hurt: base+tip ({d:+.2f}, {table.loc['base+tip', 'why']})"
    assert table.loc["base+tip", "why"] in ("12 more unreadable answers", "balanced accuracy down")


def test_forest_plot_has_a_zero_line_and_one_interval_per_variant():
    res = run_of(base=["Commit"] * 12, fixed=list(GOLD12), half=GOLD12[:6] + ["Commit"] * 6)
    table = lessons.ablation_table(res, "base")
    fig = lessons.plot_effects(table)
    ax = fig.axes[0]
    assert any(list(line.get_xdata()) == [0, 0] for line in ax.get_lines())  # the zero line
    assert len(ax.get_yticklabels()) == len(table)


def test_evidence_ships_in_the_package_with_ids_sizes_and_numbers():
    ev = lessons.evidence()
    assert {"kojima2022", "zheng2024", "zhao2021", "min2022"} <= set(ev.index)
    assert ev.loc["kojima2022", "arxiv"] == "2205.11916"
    assert "17.7" in ev.loc["kojima2022", "reported"]
    assert ev["paper"].str.len().gt(0).all() and ev["sizes"].str.len().gt(0).all()
    assert not any("/work/" in str(v) or "shared/research" in str(v) for v in ev.to_numpy().ravel())
    with pytest.raises(Exception, match="no evidence entry"):
        lessons.evidence(["nope"])


def test_token_budget_says_when_answers_were_cut_off():
    res = run_of(base=["Commit"] * 12, cot=["Let me think step by step about"] * 12)
    for r in res.results:
        if r.cell.variant == "cot":
            r.completion.finish_reason, r.completion.output_tokens = "length", 40
        else:
            r.completion.finish_reason, r.completion.output_tokens = "stop", 2
    res = Results(res.results)
    table = lessons.token_budget(res, 40).set_index("variant")
    assert table.loc["cot", "stopped at the limit"] == 12 and table.loc["base", "stopped at the limit"] == 0
    text = lessons.budget_sentence(table.reset_index(), 40)
    assert "cot [x]: 40.0 of 40 tokens on average; 12 of 12 answers stopped at the limit, 12 unreadable" \
           " (most were cut off: this budget does not let them finish)." in text
    assert "base [x]: 2.0 of 40 tokens on average; 0 of 12 answers stopped at the limit, 0 unreadable." in text


def test_verdict_never_contradicts_the_smallest_detectable_change():
    """On 6 rows a bootstrap of balanced accuracy can call +0.50 significant; the exact test that decides cannot
    (3 rows changed, 6 are needed), so the sentence says 'no significant effect' beside 'smallest ... 1.00'."""
    gold6 = ["Commit", "Likely", "At-Risk"] * 2
    res = run_of(base=["Commit"] * 6, better=gold6[:5] + ["Commit"])
    text = lessons.effect(res, "base", "better")
    assert "no significant effect" in text and "the smallest change that could reach significance is 1.00" in text
    boot = res.compare("better", "base", metric="balanced_accuracy")
    assert boot.difference >= 0.5  # the size is still reported, with its interval
    table = lessons.ablation_table(res, "base")
    assert table.loc[0, "verdict"] == "no significant effect"


def test_detectable_sentence_says_when_no_change_could_show():
    assert lessons.detectable_sentence(18) == ("With 18 rows, the smallest change that could reach significance is "
                                               "0.33 (6 rows all moving one way).")
    assert lessons.detectable_sentence(6, 5) == ("With 6 rows and 5 comparisons, no change could reach significance "
                                                 "after correction: it takes 8 rows all moving one way.")


def test_chapter_rows_prints_the_dataset_and_takes_the_first_rows_of_the_split(capsys):
    import pandas as pd

    from promptkit.datasets import load_dataset

    ds, rows = lessons.chapter_rows("account_questions", 5, colwidth=77)
    assert capsys.readouterr().out.strip() == repr(load_dataset("account_questions"))
    assert [r.id for r in rows] == [r.id for r in ds.split("dev").rows[:5]]
    assert pd.get_option("display.max_colwidth") == 77
    pd.reset_option("display.max_colwidth")


def test_row_counts_counts_each_pair_of_features_and_fills_absent_pairs_with_zero():
    from collections import Counter

    from promptkit.datasets import load_dataset

    inj = load_dataset("prompt_injection")
    table = lessons.row_counts(inj, "split", attack=lambda ex: ex.meta["attack_label"] or "(clean)")
    want = Counter((ex.split, ex.meta["attack_label"] or "(clean)") for ex in inj.rows)
    assert {(s, a): int(table.loc[s, a]) for s in table.index for a in table.columns if table.loc[s, a]} == dict(want)
    assert int(table.values.sum()) == len(inj.rows)
    with pytest.raises(ValueError, match="two features"):
        lessons.row_counts(inj, "split")


def test_experiment_is_the_grid_evaluate_runs():
    from promptkit.datasets import load_dataset

    ds = load_dataset("renewal_tier")
    exp = lessons.experiment(ds.template(), ds, n=3, models=["echo:a", "echo:b"], repeats=2, max_tokens=2)
    assert exp.n_cells == 3 * 2 * 2 and exp.name == "renewal_tier (dev)" and exp.settings.max_tokens == 2
    res = lessons.evaluate(ds.template(), ds, n=3, models=["echo:a", "echo:b"], repeats=2, max_tokens=2, progress=False)
    assert sorted(r.cell.key for r in res) == sorted(c.key for c in exp.expand())
