"""The stored run chapter 01 shows beside its live run: the committed answers are the experiment file's
(same rows, prompts, models and settings), the prompts are the chapter's own, and every number shown from
it is recomputed from the file by the kit's grader (nothing is copied in by hand)."""
from __future__ import annotations

import functools
import gzip
import re
from pathlib import Path

import pytest

from promptkit import lessons, stored_run
from promptkit.datasets import load_dataset
from promptkit.experiment import load_experiment
from promptkit.results import Results
from promptkit.types import Completion

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "examples" / "tour_stored_run.yaml"
STORED = stored_run.STORED_DIR / "tour_stored_run.csv.gz"


@pytest.fixture(scope="module")
def stored():
    return stored_run.load("tour_stored_run")


def _chapter_prompts():
    """Chapter 01's techniques exactly as its cells build them (sections 3, 5, 6 and 8; the stored run has
    a subset, see the experiment file)."""
    tier = load_dataset("renewal_tier")
    base = tier.template()
    return [
        base,
        base.replace(name="vague", system="", turns=[{"role": "user", "content": "What do you think about this account?\n\n{{notes}}"}]),
        base.replace(name="senior CSM role", system="You are a senior customer-success manager with ten years of renewal forecasting experience."),
        base.with_examples(tier.split("train").rows[:3], name="3-shot"),
        base.replace(name="prefill 'Tier:'", prefill="Tier:"),
    ]


def test_the_experiment_runs_the_chapters_techniques_on_every_test_row():
    exp = load_experiment(EXPERIMENT)
    chapter = {t.name: t for t in _chapter_prompts()}
    names = [v.name for v in exp.variants]
    assert names[0] == "renewal_tier" and len(names) >= 4
    assert names == [n for n in chapter if n in names], "the chapter's prompts, in the chapter's order"
    test_rows = load_dataset("renewal_tier").split("test").rows
    assert [r.id for r in exp.rows] == [r.id for r in test_rows] and len(test_rows) >= 120
    for v in exp.variants:
        for row in test_rows[:5]:
            assert v.render(row) == chapter[v.name].render(row), v.name
    assert exp.models == ["local:qwen2.5-0.5b", "local:smollm2"]


def test_the_committed_answers_are_the_experiment_files():
    lines = stored_run.read(STORED)
    exp = load_experiment(EXPERIMENT)
    assert stored_run.mismatches(lines, exp) == []
    assert len(lines) == exp.n_cells
    assert all(ln["error_kind"] == "" for ln in lines), "a stored run keeps no failed calls"


def test_the_file_rewrites_byte_for_byte(tmp_path):
    """Written with a fixed gzip timestamp: the same answers give the same bytes (a re-run diffs cleanly)."""
    out = stored_run.write(stored_run.read(STORED), tmp_path / "again.csv.gz")
    assert out.read_bytes() == STORED.read_bytes()


def test_the_file_is_small_and_carries_no_paths_or_keys():
    text = gzip.decompress(STORED.read_bytes()).decode("utf-8")
    assert STORED.stat().st_size < 200_000
    for bad in ("/work/", "/home/", "/tmp/", "sk-", "api_key"):
        assert bad not in text


@functools.cache
def _grader():
    from promptkit.experiment import grader_from_spec

    return grader_from_spec("label_match", load_dataset("renewal_tier"))


def _by_hand(lines, variant, model):
    """Balanced accuracy recomputed from the raw lines with the dataset's grader: mean recall over the labels."""
    grader = _grader()
    rows = [ln for ln in lines if ln["variant"] == variant and ln["model"] == model]
    labels = sorted({ln["target"] for ln in rows})
    recall = []
    for label in labels:
        mine = [ln for ln in rows if ln["target"] == label]
        right = sum(grader(Completion(text=ln["text"], prefill=ln["prefill"]), label).passed for ln in mine)
        recall.append(right / len(mine))
    return sum(recall) / len(recall), len(rows)


def _by_hand_right(ln):
    return _grader()(Completion(text=ln["text"], prefill=ln["prefill"]), ln["target"]).passed


def test_the_shown_scores_are_recomputed_from_the_file(stored):
    lines = stored_run.read(STORED)
    table = stored_run.scores(stored)
    assert len(table) == len({(ln["variant"], ln["model"]) for ln in lines})
    for _, r in table.iterrows():
        ba, n = _by_hand(lines, r["variant"], r["model"])
        assert r["n"] == n and abs(r["balanced_accuracy"] - ba) < 1e-9, (r["variant"], r["model"])
        assert r["balanced_accuracy_low"] <= r["balanced_accuracy"] <= r["balanced_accuracy_high"]


def test_changing_the_stored_answers_changes_what_is_shown(tmp_path, stored):
    """Nothing is hard-coded: make every answer of one technique on one model right and the summary follows."""
    lines = stored_run.read(STORED)
    base, model = stored.variants[0], lines[0]["model"]
    tech = stored.variants[1]
    fixed = [dict(ln, text=ln["target"], prefill="") if (ln["variant"], ln["model"]) == (tech, model) else ln
             for ln in lines]
    changed = stored_run.load(stored_run.write(fixed, tmp_path / "fixed.csv.gz"))
    s = stored_run.scores(changed).set_index(["variant", "model"])
    assert s.loc[(tech, model), "balanced_accuracy"] == 1.0 and s.loc[(tech, model), "unparseable"] == 0
    eff = stored_run.effects(changed, base)
    row = eff[(eff["variant"] == tech) & (eff["model"] == model)].iloc[0]
    assert row["Δ balanced_accuracy"] == pytest.approx(1.0 - s.loc[(base, model), "balanced_accuracy"])
    assert row["verdict"] == "helped" or s.loc[(base, model), "balanced_accuracy"] > 0.9
    assert stored_run.headline(changed, base) != stored_run.headline(stored, base)


def test_detectable_at_power_is_mcnemars_normal_approximation():
    # (z[1 - 0.05 / 8] + z[0.8]) * sqrt(0.2 / 139) = (2.4977 + 0.8416) * 0.03793
    assert stored_run.detectable_at_power(139, 0.2, 4) == pytest.approx(0.1267, abs=5e-4)
    assert stored_run.detectable_at_power(18, 0.2, 4) > 2.5 * stored_run.detectable_at_power(139, 0.2, 4)
    assert stored_run.detectable_at_power(139, 0.0, 1) > 0  # no disagreement seen is not "detects anything"


def test_effects_are_holm_corrected_within_each_model(stored):
    base = stored.variants[0]
    eff = stored_run.effects(stored, base)
    for m in stored.models:
        part = eff[eff["model"] == m]
        assert len(part) == len(stored.variants) - 1
        assert list(part["p (Holm)"]) == pytest.approx(lessons.holm(list(part["p"])))
        n = int(part["rows"].iloc[0])
        k = lessons.rows_needed(lessons.ALPHA / len(part))
        assert part["smallest detectable"].iloc[0] == pytest.approx(k / n)
        lines = stored_run.read(STORED)
        right = {(ln["variant"], ln["row_id"]): _by_hand_right(ln) for ln in lines if ln["model"] == m}
        for _, r in part.iterrows():
            ids = [i for (v, i) in right if v == base]
            share = sum(right[(r["variant"], i)] != right[(base, i)] for i in ids) / len(ids)
            expect = max(stored_run.detectable_at_power(len(ids), share, len(part)), r["smallest detectable"])
            assert r["detectable at 80% power"] == pytest.approx(expect)


def test_the_headline_states_the_files_numbers(stored):
    base = stored.variants[0]
    text = stored_run.headline(stored, base)
    s = stored_run.scores(stored).set_index(["variant", "model"])
    eff = stored_run.effects(stored, base)
    for m in stored.models:
        r = s.loc[(base, m)]
        assert (f"{m}: base prompt balanced accuracy {r['balanced_accuracy']:.2f} [{r['balanced_accuracy_low']:.2f}, "
                f"{r['balanced_accuracy_high']:.2f}] on {int(r['n'])} rows") in text
        for _, e in eff[eff["model"] == m].iterrows():
            shown = f"{e['variant']} {e['Δ balanced_accuracy']:+.2f} [{e['Δ low']:+.2f}, {e['Δ high']:+.2f}]"
            assert (shown in text) == (e["verdict"] in ("helped", "hurt")), shown


def test_the_readme_quotes_the_headline_generated_from_the_file(stored):
    """README's numbers are the file's: regenerate them with `python -m promptkit.stored_run` if this fails."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for line in stored_run.headline(stored, stored.variants[0]).splitlines():
        assert line in readme, line


CONTRAST = re.compile(
    r"scores balanced accuracy (?P<la>[\d.]+) \[(?P<ll>[\d.]+), (?P<lh>[\d.]+)\] on your (?P<ln>\d+) live rows and "
    r"(?P<sa>[\d.]+) \[(?P<sl>[\d.]+), (?P<sh>[\d.]+)\] on the stored run's (?P<sn>\d+) rows: your interval is "
    r"(?P<lw>[\d.]+) wide, (?P<ratio>[\d.]+) times as wide as the stored run's \((?P<sw>[\d.]+)\)")


def check_contrast(text: str) -> None:
    """The contrast sentence agrees with itself: each width is its interval's, the ratio is theirs."""
    m = CONTRAST.search(text)
    assert m, text
    f = {k: float(v) for k, v in m.groupdict().items()}
    assert f["ll"] <= f["la"] <= f["lh"] and f["sl"] <= f["sa"] <= f["sh"], text
    assert abs(f["lw"] - (f["lh"] - f["ll"])) <= 0.011 and abs(f["sw"] - (f["sh"] - f["sl"])) <= 0.011, text
    assert abs(f["ratio"] - f["lw"] / f["sw"]) <= 0.1 + 0.05 * f["ratio"], text


def test_contrast_sentence_compares_interval_widths_from_both_runs(stored):
    base = stored.variants[0]
    model = stored.models[0]
    live = stored.filter(model=model)  # a stand-in live run: the first 12 rows of the stored answers
    ids = list(dict.fromkeys(r.cell.row_id for r in live.results))[:12]
    live = Results([r for r in live.results if r.cell.row_id in ids], {})
    text = stored_run.contrast_sentence(live, stored, base, model)
    lv = stored_run.scores(live).set_index("variant").loc[base]
    st = stored_run.scores(stored).set_index(["variant", "model"]).loc[(base, model)]
    lw = lv["balanced_accuracy_high"] - lv["balanced_accuracy_low"]
    sw = st["balanced_accuracy_high"] - st["balanced_accuracy_low"]
    assert "on your 12 live rows" in text and f"the stored run's {int(st['n'])} rows" in text
    assert f"your interval is {lw:.2f} wide" in text and f"({sw:.2f})" in text
    assert f"{lw / sw:.1f} times as wide" in text
    check_contrast(text)
    other = stored_run.contrast_sentence(live, stored, base, "local:not-in-either")
    assert "is not in both" in other


def test_bad_stored_files_say_what_and_where(tmp_path):
    with pytest.raises(stored_run.StoredRunError, match=r"does not exist; the kit ships \['tour_stored_run'"):
        stored_run.read("no_such_run")
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(b"variant,model\nx,y\n"))
    with pytest.raises(stored_run.StoredRunError, match=r"bad.csv.gz, line 1: missing column"):
        stored_run.read(bad)
    lines = stored_run.read(STORED)[:3]
    lines[1] = dict(lines[1], output_tokens="many")
    stored_run.write(lines, bad)
    with pytest.raises(stored_run.StoredRunError, match=r"bad.csv.gz, line 3, field 'output_tokens': expected a whole number"):
        stored_run.read(bad)
    bad.write_bytes(b"not gzip")
    with pytest.raises(stored_run.StoredRunError, match="not a gzip'd UTF-8 CSV"):
        stored_run.read(bad)


def test_a_stale_file_is_caught_against_the_experiment():
    lines = stored_run.read(STORED)
    exp = load_experiment(EXPERIMENT)
    changed = [dict(lines[0], prompt_sha="0" * 16), *lines[1:-1]]
    problems = stored_run.mismatches(changed, exp)
    assert any("reads differently now" in p for p in problems)
    assert any(p.startswith("missing answer") for p in problems)
