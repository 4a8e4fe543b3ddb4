"""Chapters 05 (structured output), 06 (reasoning) and 08 (prompt injection): their helpers, data, exercises,
and the sentences each executed chapter prints, checked against the numbers of that same run."""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest

import promptkit as pk
from promptkit import lessons
from promptkit.exercises import get_exercise
from promptkit.graders import in_tag, json_match, label_match, prf
from promptkit.results import Results
from promptkit.types import Cell, CellResult, Completion, Message, Request, Settings

TIERS = ["Commit", "Likely", "At-Risk"]


def results_of(answers, grader, *, finish=None) -> Results:
    """Results from (variant, row_id, repeat, target, text) tuples, graded by a real grader."""
    out = []
    s = Settings(max_tokens=8)
    for i, (variant, row_id, rep, target, text) in enumerate(answers):
        req = Request((Message("user", f"row {row_id}"),), s)
        cell = Cell(f"k{i}", variant, "m", s, row_id, rep, req, target=target)
        comp = Completion(text=text, output_tokens=3, latency_s=0.1, finish_reason=(finish or {}).get(i, "stop"))
        out.append(CellResult(cell, comp, {grader.name: grader(comp, target)}))
    return Results(out)


# --- the answer-in-tags grader -----------------------------------------------------------------------------

def test_in_tag_grades_only_the_last_answer_tag():
    g = in_tag(label_match(["Green", "Yellow", "Red"]), "answer")
    right = g("<thinking>Red? no: all yes, so Green</thinking><answer>Green</answer>", "Green")
    assert right.passed and right.label == "Green" and right.details["tagged"] == "Green"
    # the reasoning names a colour; only the answer tag counts, and the last pair wins
    assert not g("<thinking>Green</thinking><answer>Red</answer>", "Green").passed
    assert g("<answer>Red</answer> wait <answer>Green</answer>", "Green").passed


def test_in_tag_counts_a_missing_or_unclosed_tag_as_unreadable_and_keeps_the_gold():
    g = in_tag(label_match(["Green", "Yellow", "Red"]), "answer")
    none = g("Green", "Green")
    assert not none.parsed and "no <answer>" in none.reason and none.details["gold"] == "Green"
    cut = g(Completion(text="<thinking>Set up: yes ... <answer>Gre", finish_reason="length"), "Green")
    assert not cut.parsed and "opened, never closed" in cut.reason and "cut off" in cut.reason
    with pytest.raises(pk.errors.GraderError, match="tag must be a tag name"):
        in_tag(label_match(["A"]), "<answer>")
    # label metrics still see the unreadable row: it is in the summary as unparseable, not dropped
    res = results_of([("v", "r1", 0, "Green", "<answer>Green</answer>"), ("v", "r2", 0, "Red", "Red")], g)
    row = res.summary().iloc[0]
    assert row["unparseable"] == 1 and row["accuracy"] == 0.5


# --- lesson helpers ----------------------------------------------------------------------------------------

def test_constrained_variant_overrides_settings_for_its_own_calls_only():
    t = pk.Template.from_dict({"name": "t", "turns": [{"role": "user", "content": "{{notes}}"}]})
    c = lessons.Constrained(t, name="g", grammar='root ::= "x"', max_tokens=5)
    req = c.to_request({"notes": "n"}, Settings(max_tokens=99, temperature=0.3))
    assert (req.settings.grammar, req.settings.max_tokens, req.settings.temperature) == ('root ::= "x"', 5, 0.3)
    assert t.to_request({"notes": "n"}, Settings(max_tokens=99)).settings.grammar is None
    with pytest.raises(pk.errors.SettingsError):
        lessons.Constrained(t, max_tokens=0)


def test_extraction_table_counts_parse_schema_and_micro_f1():
    schema = {"type": "object", "required": ["signals"], "additionalProperties": False,
              "properties": {"signals": {"type": "array", "uniqueItems": True, "items": {"enum": ["a", "b", "c"]}}}}
    g = json_match(schema, fields=["a", "b", "c"], key="signals", strict=False, name="signals")
    res = results_of([
        ("v", "r1", 0, ["a"], '{"signals": ["a"]}'),            # right
        ("v", "r2", 0, ["a", "b"], '{"signals": ["a", "a"]}'),  # parses, breaks uniqueItems, misses b
        ("v", "r3", 0, ["c"], "I see signal c"),                # does not parse: misses c
        ("v", "r4", 0, [], '{"signals": ["zzz"]}'),             # unknown id: schema error and a false positive
    ], g)
    t = lessons.extraction_table(res).iloc[0]
    assert (t["parse_rate"], t["schema_valid"]) == (0.75, 0.25)
    p, r, f = prf(tp=2, fp=1, fn=2)  # a, a(r2) right; zzz extra; b and c missed
    assert (t["precision"], t["recall"], t["f1"]) == pytest.approx((p, r, f))
    fails = lessons.schema_failures(res)
    assert list(fails["row_id"]) == ["r2", "r4"] and "non-unique" in fails["schema errors"].iloc[0]
    fields = lessons.per_field_table(res)
    assert fields.loc["c", "fn"] == 1 and fields.loc["zzz", "fp"] == 1 and fields.loc["a", "tp"] == 2


def test_majority_vote_against_one_sample():
    g = label_match(["Yes", "No"])
    ans = [("v", "r1", 0, "Yes", "Yes"), ("v", "r1", 1, "Yes", "No"), ("v", "r1", 2, "Yes", "Yes"),  # vote right
           ("v", "r2", 0, "No", "Yes"), ("v", "r2", 1, "No", "Yes"), ("v", "r2", 2, "No", "No"),     # vote wrong
           ("v", "r3", 0, "No", "No"), ("v", "r3", 1, "No", "No"), ("v", "r3", 2, "No", "mumble")]   # unreadable does not vote
    v = lessons.majority_vote(results_of(ans, g)).iloc[0]
    assert v["one-sample accuracy"] == pytest.approx(5 / 9)
    assert v["majority-vote accuracy"] == pytest.approx(2 / 3)
    assert v["unreadable samples"] == pytest.approx(1 / 9) and v["rows whose samples agree"] == 0
    tie = lessons.majority_vote(results_of([("v", "r", 0, "No", "No"), ("v", "r", 1, "No", "Yes")], g)).iloc[0]
    assert tie["majority-vote accuracy"] == 1.0  # a tie goes to the label sampled first


def test_attack_table_and_the_separate_check():
    from promptkit.types import Row

    rows = [Row("a1", {"notes": "x"}, "At-Risk", meta={"attack_label": "Commit"}),
            Row("a2", {"notes": "x"}, "Likely", meta={"attack_label": "Commit"}),
            Row("c1", {"notes": "x"}, "Commit", meta={"attack_label": None})]
    res = results_of([("v", "a1", 0, "At-Risk", "Commit"), ("v", "a2", 0, "Likely", "Likely"),
                      ("v", "c1", 0, "Commit", "Commit")], label_match(TIERS))
    t = lessons.attack_table(res, rows, flagged={"a1": True, "c1": True}).iloc[0]
    assert (t["attacked rows"], t["attack success"], t["accuracy under attack"]) == (2, 0.5, 0.5)
    assert (t["clean rows"], t["accuracy on clean rows"]) == (1, 1.0)
    assert t["attack success with the check"] == 0.0 and t["clean rows held for review"] == 1.0


def test_a_detection_check_is_graded_yes_where_the_row_carries_the_field():
    from promptkit.exercises import detect_rows, measure
    from promptkit.types import Row

    rows = detect_rows([Row("a1", {"notes": "x"}, "At-Risk", meta={"attack_label": "Commit"}),
                        Row("a2", {"notes": "x"}, "Likely", meta={"attack_label": "Commit"}),
                        Row("c1", {"notes": "x"}, "Commit", meta={"attack_label": None}),
                        Row("c2", {"notes": "x"}, "Commit", meta={})], "attack_label")
    assert [r.target for r in rows] == ["Yes", "Yes", "No", "No"]
    g = label_match(["Yes", "No"])
    m = measure(results_of([("v", r.id, 0, r.target, a) for r, a in zip(rows, ["Yes", "No", "Yes", "No"])], g), rows,
                detect=True)
    assert (m["caught"], m["false_alarm"]) == (0.5, 0.5) and 0 < m["caught_low"] < 0.5
    assert "attack_success" not in m  # a Yes/No check is not a tier the attacker asked for
    every = measure(results_of([("v", r.id, 0, r.target, "Yes") for r in rows], g), rows, detect=True)
    assert (every["caught"], every["false_alarm"], every["balanced_accuracy"]) == (1.0, 1.0, 0.5)
    # Yes/No answers of an ordinary task (exercise 3.x's competitor mentions) are not a detection check
    plain = measure(results_of([("v", r.id, 0, r.target, "Yes") for r in rows], g), rows)
    assert "caught" not in plain and "false_alarm" not in plain


def test_cited_rows_ship_in_the_package():
    t = lessons.cited("tam2024", "hsiao2025")
    assert "arXiv 2408.02442" in t.loc["tam2024", "source"] and "1.6B" in t.loc["hsiao2025", "effect"]
    with pytest.raises(KeyError, match="no cited row"):
        lessons.cited("nope")


# --- the prompt-injection data -------------------------------------------------------------------------------

def test_injection_rows_quote_their_attack_and_ask_for_another_tier():
    ds = pk.load_dataset("prompt_injection")
    attacked = [r for r in ds if r.meta["attack_label"]]
    assert len(attacked) == 44 and len(ds) - len(attacked) == 16
    for r in ds:
        assert r.meta["vector"] in {"email", "ticket", "chat", "survey", "notes"}, r.id
        if r.meta["attack_label"]:
            assert r.meta["attack"] in r.input["notes"], r.id
            assert r.meta["attack_label"] in TIERS and r.meta["attack_label"] != r.target, r.id
        else:
            assert "attack" not in r.meta, r.id
    for split in ("train", "dev", "test"):
        part = ds.split(split).rows
        assert any(r.meta["attack_label"] for r in part) and any(not r.meta["attack_label"] for r in part), split


# --- the executed chapters: every sentence they print about the run, checked against that run --------------

CHAPTERS = {
    "05_structured_output": """
print("@@DUMP@@" + __import__("json").dumps({"cells": [
    {"variant": r.cell.variant, "parsed": r.grades["signals"].parsed,
     "schema_errors": bool(r.grades["signals"].details.get("schema_errors")),
     "per_field": r.grades["signals"].details.get("per_field")} for r in run.results]}))
""",
    "06_reasoning": """
def _cells(res):
    return [{"variant": r.cell.variant, "model": r.cell.model, "row": r.cell.row_id, "repeat": r.cell.repeat,
             "target": r.cell.target, "label": r.grades["colour"].label, "finish": r.completion.finish_reason}
            for r in res.results]
print("@@DUMP@@" + __import__("json").dumps({"runs": _cells(runs), "sampled": _cells(sampled), "models": models,
      "think": think.name, "direct": direct.name, "short": short.name}))
""",
    "08_injection": """
print("@@DUMP@@" + __import__("json").dumps({
    "cells": [{"variant": r.cell.variant, "row": r.cell.row_id, "target": r.cell.target,
               "label": r.grades["label_match"].label} for r in defended.results],
    "plain": [{"variant": r.cell.variant, "row": r.cell.row_id, "label": r.grades["label_match"].label}
              for r in plain.results],
    "flagged": flagged, "attack": {r.id: r.meta["attack_label"] for r in rows}}))
""",
}


@pytest.fixture(scope="module")
def executed(execute_chapter):
    """Run a chapter with the CI parameters (the answer cache is shared with test_notebooks.py), plus one
    appended cell that dumps the run's raw per-call data; returns (printed text, dump)."""
    done = {}

    def run(stem):
        if stem not in done:
            text = execute_chapter(stem, extra=CHAPTERS[stem]).printed()
            dump = json.loads(text.split("@@DUMP@@", 1)[1].splitlines()[0])
            done[stem] = (text.split("@@DUMP@@", 1)[0], dump)
        return done[stem]

    return run


@pytest.mark.notebook
@pytest.mark.local_model
@pytest.mark.timeout(1800)
def test_structured_output_sentences_match_the_run(executed):
    text, dump = executed("05_structured_output")
    by = {}
    for c in dump["cells"]:
        by.setdefault(c["variant"], []).append(c)
    assert set(by) == {"free text", "format in words", "schema + prefill {", "grammar-constrained"}
    for v, cells in by.items():
        parse = sum(c["parsed"] for c in cells) / len(cells)
        valid = sum(c["parsed"] and not c["schema_errors"] for c in cells) / len(cells)
        tp = sum(f["tp"] for c in cells for f in (c["per_field"] or {}).values())
        fp = sum(f["fp"] for c in cells for f in (c["per_field"] or {}).values())
        fn = sum(f["fn"] for c in cells for f in (c["per_field"] or {}).values())
        p, r, f1 = prf(tp, fp, fn)
        line = (f"{v}: {parse:.0%} of answers parse as JSON, {valid:.0%} also fit the schema; "
                f"precision {p:.2f}, recall {r:.2f}, F1 {f1:.2f}.")
        assert line in text, (line, text)
    # a grammar makes every answer parse and fit, by construction
    g = by["grammar-constrained"]
    assert all(c["parsed"] and not c["schema_errors"] for c in g)
    assert f"to {sum(not c['schema_errors'] for c in g) / len(g):.0%}." in text


@pytest.mark.notebook
@pytest.mark.local_model
@pytest.mark.timeout(1800)
def test_reasoning_sentences_match_the_run(executed):
    text, dump = executed("06_reasoning")
    for m in dump["models"]:
        cells = {v: [c for c in dump["runs"] if c["model"] == m and c["variant"] == v]
                 for v in (dump["direct"], dump["think"], dump["short"])}
        acc = {v: sum(c["label"] == c["target"] for c in cs) / len(cs) for v, cs in cells.items()}
        think, short = cells[dump["think"]], cells[dump["short"]]
        expected = (f"{m}: accuracy {acc[dump['direct']]:.2f} direct → {acc[dump['think']]:.2f} when it reasons first "
                    f"({acc[dump['think']] - acc[dump['direct']]:+.2f};")
        assert expected in text, (expected, text)
        unread = sum(c["label"] is None for c in think)
        cut = sum(c["finish"] == "length" for c in think)
        assert f"{unread} of {len(think)} reasoned answers unreadable, {cut} cut off at" in text
        assert f"{sum(c['finish'] == 'length' for c in short)} of {len(short)} were cut off" in text
    # self-consistency: one sample vs the majority vote, computed here from the samples themselves
    rows: dict[str, list] = {}
    for c in sorted(dump["sampled"], key=lambda c: c["repeat"]):
        rows.setdefault(c["row"], []).append(c)
    one = sum(c["label"] == c["target"] for c in dump["sampled"]) / len(dump["sampled"])
    voted = []
    for cs in rows.values():
        votes = Counter(c["label"] for c in cs if c["label"] is not None)
        top = max(votes.items(), key=lambda kv: kv[1])[0] if votes else None
        voted.append(top == cs[0]["target"])
    assert f"is right {one:.0%} of the time; the majority of {len(next(iter(rows.values())))} samples is right on " \
           f"{sum(voted) / len(voted):.0%} of {len(rows)} rows" in text
    assert "threshold): reasoning changed accuracy by" in text


@pytest.mark.notebook
@pytest.mark.local_model
@pytest.mark.timeout(1800)
def test_injection_sentences_match_the_run(executed):
    text, dump = executed("08_injection")
    attack, flagged = dump["attack"], dump["flagged"]
    variants = list(dict.fromkeys(c["variant"] for c in dump["cells"]))
    assert variants == ["no defence", "tags + treat as data", "tags + instructions after the data"]
    for v in variants:
        cells = [c for c in dump["cells"] if c["variant"] == v]
        att = [c for c in cells if attack[c["row"]] and attack[c["row"]] != c["target"]]
        won = [c for c in att if c["label"] == attack[c["row"]]]
        won_checked = [c for c in won if not flagged[c["row"]]]
        before = {p["row"]: p["label"] for p in dump["plain"] if p["variant"] == v}
        flipped = [c for c in won if before[c["row"]] is not None and before[c["row"]] != attack[c["row"]]]
        anyway = [c for c in att if before[c["row"]] == attack[c["row"]]]
        line = (f"{v}: the planted instruction won on {len(won) / len(att):.0%} of {len(att)} attacked rows "
                f"({len(won_checked) / len(att):.0%} with the separate check) and changed the answer to the "
                f"attacker's tier on {len(flipped) / len(att):.0%}; without the planted text the answer was already "
                f"the attacker's tier on {len(anyway) / len(att):.0%}.")
        assert line in text, (line, text)
    caught = sum(flagged[r] for r, a in attack.items() if a)
    assert f"The check flagged {caught} of {sum(1 for a in attack.values() if a)} planted rows" in text


# --- exercises of chapters 05, 06, 08: the starter fails and the reference passes, on the model each names ----
# (tests/test_exercises.py holds this bar for chapters 01-04 only; chapters 05+ are checked by their own tests)

CURRICULUM_A = ["structured.valid_signals", "reasoning.answer_in_tags", "injection.hold_the_line"]
# 8.1 is the separate check, on Qwen2.5-1.5B (no tier prompt held the attacks on 0.5B or 1.5B; the measurements are in
# promptkit/data/exercises.yaml). `make test` installs that model (the qwen15 extra); without it this test fails.


@pytest.mark.local_model
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("ex_id", CURRICULUM_A)
def test_starter_fails_and_reference_passes(ex_id, exercise_bar):
    assert get_exercise(ex_id).chapter[:2] in {"05", "06", "08"}
    ex, start, ref = exercise_bar(ex_id)  # the bar's rules, the starter failing, the reference checked (conftest.py)
    assert ref.passed, str(ref)
    if ex_id == "structured.valid_signals":  # the grammar makes every answer parse and fit the task's schema
        assert ref.measured["schema_valid"] == ref.measured["parse_rate"] == 1.0
        # on Qwen2.5-0.5B the starter is valid JSON too, but one copied list for every row: that is what improves
        assert ref.measured["same_answer"] < start.measured["same_answer"], (str(start), str(ref))
    elif ex_id == "injection.hold_the_line":  # the starter check flags nearly everything: it holds clean accounts
        assert ref.measured["false_alarm"] < start.measured["false_alarm"], (str(start), str(ref))
        assert ref.measured["balanced_accuracy_low"] > start.measured["balanced_accuracy_low"], (str(start), str(ref))
    else:
        assert ref.measured[ex.metric] > start.measured.get(ex.metric, 0.0)
