"""Every sentence a chapter prints about a result is true to its run.

Chapters 01 and 02 are executed at their CI parameters (the session's one run of each, shared with
test_notebooks.py: conftest.py's execute_chapter); then the same evaluations are run again in this
process from the same answer cache (so on the very same answers), and each generated sentence is checked
against the numbers it summarises. Sentences are also checked for inner consistency (a change equals the
difference of the two scores it names; a null never "agrees"; a cut-off answer is never called finished).
"""
from __future__ import annotations

import re

import pytest

import promptkit as pk
from promptkit import lessons

from test_notebooks import ROOT  # rootdir-relative: tests/ is on sys.path

pytestmark = [pytest.mark.notebook, pytest.mark.local_model]

EFFECT = re.compile(
    r"(?P<variant>.+?) vs (?P<base>.+?) on the same (?P<n>\d+) rows: (?P<metric>[a-z ]+) (?P<b>[\d.]+) → (?P<a>[\d.]+) "
    r"\((?P<d>[+-][\d.]+)(?:, 95% interval of the change \[[+-][\d.]+, [+-][\d.]+\])?; [^,]*?, p = (?P<p>[\d.]+): "
    r"(?P<verdict>helps|hurts|no significant effect)\)\.(?P<rest>.*)")
DETECT = re.compile(r"smallest change that could reach significance is (?P<s>[\d.]+) \((?P<k>\d+) rows")


def _execute(stem: str, execute_chapter) -> tuple[str, dict]:
    """The chapter at its CI parameters (written to a temporary folder, not to the notebooks nbval runs again)."""
    run = execute_chapter(stem, timeout=1500)
    return run.printed(("stdout", "stderr"), sep="\n"), run.params


def _defaults(stem: str) -> dict:
    """The chapter's own parameter defaults, read from its source (so the test follows the chapter)."""
    src = (ROOT / "notebooks" / "src" / f"{stem}.py").read_text(encoding="utf-8")
    cell = src.split("# %% tags=[parameters]", 1)[1].split("# %%", 1)[0]
    scope: dict = {}
    exec(cell, scope)  # noqa: S102 - our own source: plain assignments
    return {k: v for k, v in scope.items() if k.isupper()}


def _check_effect_sentences(text: str) -> list[re.Match]:
    found = [m for line in text.splitlines() for m in [EFFECT.search(line)] if m]
    for m in found:
        a, b, d = float(m["a"]), float(m["b"]), float(m["d"])
        assert abs((a - b) - d) <= 0.011, m.group(0)
        if m["verdict"] == "no significant effect":
            assert float(m["p"]) >= 0.045 and "agrees" not in m["rest"], m.group(0)
        else:
            assert float(m["p"]) < 0.05, m.group(0)
        det = DETECT.search(m["rest"])
        if det:
            assert abs(float(det["s"]) - int(det["k"]) / int(m["n"])) < 0.006 and int(det["k"]) <= int(m["n"]), m.group(0)
        else:
            assert "no change could reach significance" in m["rest"], m.group(0)
    return found


def _no_stale_claims(text: str, source: str) -> None:
    for stale in ("shared/research", "/work/", "next chapters test it", "generous enough", "evidence file"):
        assert stale not in text and stale not in source, stale


def test_chapter_01_sentences_match_its_run(execute_chapter, chapter_cache):
    stem = "01_foundations"
    text, params = _execute(stem, execute_chapter)
    p = {**_defaults(stem), **params}
    _no_stale_claims(text, (ROOT / "notebooks" / "src" / f"{stem}.py").read_text(encoding="utf-8"))
    effects = _check_effect_sentences(text)
    assert len(effects) >= 5

    # the same evaluations, from the same cache: the sentences must state these numbers
    tier = pk.load_dataset("renewal_tier")
    base = tier.template()
    chance = lessons.clears_chance("renewal_tier", [p["MODEL"], p["CONTRAST"]], n=p["N_ROWS"],
                                   max_tokens=p["MAX_TOKENS"], progress=False)
    assert lessons.chance_sentence(chance) in text
    assert chance.attrs["results"].meta["counts"]["cache_hits"] == len(chance.attrs["results"])

    vague = base.replace(name="vague", system="", turns=[{"role": "user", "content": "What do you think about this account?\n\n{{notes}}"}])
    clarity = lessons.evaluate([vague, base.replace(name="clear")], "renewal_tier", n=p["N_ROWS"],
                               models=[p["MODEL"], p["CONTRAST"]], max_tokens=p["MAX_TOKENS"], progress=False)
    assert clarity.meta["counts"]["cache_hits"] == len(clarity), "the test must read the chapter's own answers"
    s = clarity.summary(by=["variant", "model"])
    for m in (p["MODEL"], p["CONTRAST"]):
        sm = s[s["model"] == m].set_index("variant")
        b, a = sm.loc["vague", "balanced_accuracy"], sm.loc["clear", "balanced_accuracy"]
        line = next(e for e in effects if e["variant"] == "clear" and f"{b:.2f} → {a:.2f}" in e.group(0))
        assert f"Unreadable answers: {int(sm.loc['vague', 'unparseable'])} → {int(sm.loc['clear', 'unparseable'])}" in line.group(0)
        warned = "Warning: the baseline prompt (vague)" in line.group(0)
        assert warned == (sm.loc["vague", "balanced_accuracy"] <= sm.loc["vague", "chance"]), line.group(0)

    # section 4: an answer at the token limit is never described as finished
    for m in re.finditer(r"\((\d+) tokens, (cut off at the 120-token limit|finished on its own)\)", text):
        assert (int(m.group(1)) >= 120) == (m.group(2).startswith("cut off")), m.group(0)

    # the summary lines and the forest plot's table come from the same run of every technique
    role = base.replace(name="senior CSM role", system="You are a senior customer-success manager with ten years of renewal forecasting experience.")
    shots = base.with_examples(tier.split("train").rows[:3], name="3-shot")
    tagged = pk.apply_phrases(base, ["xml_input"])
    prefilled = base.replace(name="prefill 'Tier:'", prefill="Tier:")
    together = lessons.evaluate([vague, base, role, shots, tagged, prefilled], "renewal_tier", n=p["N_ROWS"],
                                models=[p["MODEL"]], max_tokens=p["MAX_TOKENS"], progress=False)
    assert together.meta["counts"]["cache_hits"] == len(together)
    table = lessons.ablation_table(together, base.name)
    for line in lessons.verdict_lines(table):
        assert line in text
    assert lessons.what_moved(together, base.name) in text
    assert lessons.detectable_sentence(int(table["rows"].iloc[0]), len(table)) in text

    # the stored run beside it: generated from the committed answers and from this run's own table
    from promptkit import stored_run
    from test_stored_run import check_contrast

    stored = stored_run.load("tour_stored_run")
    stored_table = stored_run.effects(stored, base.name)
    assert stored_run.headline(stored, base.name, stored_table) in text
    contrast = stored_run.contrast_sentence(together, stored, base.name, p["MODEL"], live_table=table,
                                            stored_table=stored_table)
    assert contrast in text
    check_contrast(contrast)


def test_chapter_02_sentences_match_its_run(execute_chapter, chapter_cache):
    stem = "02_power_phrases"
    text, params = _execute(stem, execute_chapter)
    p = {**_defaults(stem), **params}
    _no_stale_claims(text, (ROOT / "notebooks" / "src" / f"{stem}.py").read_text(encoding="utf-8"))
    for name in p["DATASETS"]:
        ds = pk.load_dataset(name)
        run = lessons.evaluate(pk.ablation(ds.template(), p["PHRASES"]), name, n=p["N_ROWS"], models=p["MODELS"],
                               max_tokens=p["MAX_TOKENS"], progress=False, name=f"ablation: {name}")
        assert run.meta["counts"]["cache_hits"] == len(run), "the test must read the chapter's own answers"
        budget = lessons.token_budget(run, p["MAX_TOKENS"])
        assert lessons.budget_sentence(budget, p["MAX_TOKENS"]) in text
        table = lessons.ablation_table(run, ds.template().name)
        for line in lessons.verdict_lines(table):
            assert "  " + line in text
        assert lessons.detectable_sentence(int(table["rows"].iloc[0]), len(table)) in text
        # "hurt" covers answers made unreadable: no variant with a significant rise is left out of it
        hurt_line = next(ln for ln in lessons.verdict_lines(table) if ln.startswith("hurt:"))
        for _, r in table.iterrows():
            if r["verdict"] == "hurt":
                assert r["variant"] in hurt_line
