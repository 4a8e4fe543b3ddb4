"""Chapter 07 of the tour, grounding and hallucination: its data, grader, tables, exercise, and the sentences the
executed chapter prints, checked against the numbers of that same run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import promptkit as pk
from promptkit import grounding
from promptkit.exercises import ExerciseError, get_exercise, load_exercises
from promptkit.results import Results
from promptkit.types import Cell, CellResult, Completion, Message, Request, Row, Settings

ROOT = Path(__file__).resolve().parents[1]
STATED = {"status": "stated", "answer": "30 June 2026", "accept": ["30 June 2026", "June 30, 2026"]}
NOT_STATED = {"status": "not stated", "answer": "Not stated", "accept": []}


# --------------------------------------------------------------------------- data


def test_account_questions_rows_are_valid_and_balanced():
    ds = pk.load_dataset("account_questions")
    assert len(ds) >= 60 and len(ds.split("test")) >= 24
    for split in ("train", "dev", "test"):
        rows = ds.split(split).rows
        share = sum(r.target["status"] == "not stated" for r in rows) / len(rows)
        assert 0.35 <= share <= 0.55, (split, share)
    for r in ds:
        notes = r.input["notes"]
        if r.target["status"] == "stated":
            assert r.meta["evidence"] in notes, r.id  # the quote that gives the answer is in the notes
            assert any(grounding.mentions(a, notes) for a in r.target["accept"]), r.id
        else:
            assert r.target["answer"] == "Not stated" and r.target["accept"] == [] and r.meta["mentioned"], r.id
        assert r.input["question"].endswith("?"), r.id


@pytest.mark.parametrize("target, message", [
    ({"status": "stated", "answer": "x", "accept": []}, "should be non-empty"),
    ({"status": "not stated", "answer": "14 March", "accept": []}, "'Not stated' was expected"),
    ({"status": "maybe", "answer": "x", "accept": ["x"]}, "is not one of"),
    ({"status": "stated", "answer": "x"}, "'accept' is a required property"),
])
def test_bad_grounding_targets_name_file_line_and_field(tmp_path, monkeypatch, target, message):
    import shutil

    from promptkit.datasets import datasets_dir
    from promptkit.errors import DatasetError

    for f in ("tasks.yaml", "account_questions.template.yaml"):
        shutil.copy(datasets_dir() / f, tmp_path / f)
    good = (datasets_dir() / "account_questions.jsonl").read_text(encoding="utf-8").splitlines()[:2]
    bad = {"id": "bad-1", "split": "dev", "input": {"notes": "n", "question": "q?"}, "target": target}
    (tmp_path / "account_questions.jsonl").write_text("\n".join(good + [json.dumps(bad)]) + "\n", encoding="utf-8")
    monkeypatch.setenv("PROMPTKIT_DATASETS_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"account_questions\.jsonl line 3: field 'target") as exc:
        pk.load_dataset("account_questions")
    assert message in str(exc.value)


# --------------------------------------------------------------------------- grader


@pytest.mark.parametrize("answer", [
    "Not stated.", "The notes do not state the discount.", "The notes don't mention a renewal date.",
    "It isn\u2019t specified in the notes.", "There is no information about the competitor's name.",
    "I don't know - the notes never say.", "Unknown.", "This cannot be determined from the notes.",
    "The notes do not explicitly state the CMO's name.",
])
def test_not_stated_phrasings_pass_on_not_stated_rows(answer):
    g = grounding.grounded_answer()(answer, NOT_STATED)
    assert g.passed and g.label == "not stated" and not g.details["invented"], (answer, g)


@pytest.mark.parametrize("answer", [
    "The renewal date is 31 March 2026.", "They asked for a 10% discount.", "Salesforce.",
    "The notes do not say exactly, but it is probably around 10%.",  # a hedge that still guesses
    "Not stated; I would guess it is Salesforce.",
    "Not stated</quote><answer>12 March</answer>",  # the answer tag decides, not the text before it
])
def test_invented_values_and_hedged_guesses_fail_on_not_stated_rows(answer):
    g = grounding.grounded_answer()(answer, NOT_STATED)
    assert not g.passed and g.parsed and g.details["invented"], (answer, g)


def test_answerable_rows_need_the_gold_fact_and_count_refusals_apart():
    grade = grounding.grounded_answer()
    right = grade("Brightwell renews on June 30, 2026.", STATED)
    assert right.passed and right.details["matched"] == ["June 30, 2026"] and not right.details["refused"]
    wrong = grade("It renews on 30 June 2025.", STATED)  # a near miss is wrong, not right
    assert not wrong.passed and not wrong.details["refused"] and "lacks the gold" in wrong.reason
    refused = grade("The notes do not state the renewal date.", STATED)
    assert not refused.passed and refused.details["refused"] and "the notes do state it" in refused.reason
    pct = {"status": "stated", "answer": "8%", "accept": ["8%"]}
    assert not grade("It fell to 18%.", pct).passed and grade("Now 8%.", pct).passed  # whole numbers only
    money = {"status": "stated", "answer": "$48,000", "accept": ["48,000"]}
    assert grade("ARR is $48000 a year.", money).passed


def test_quotes_are_evidence_not_the_answer():
    grade = grounding.grounded_answer()
    quoted = "<quote>renewal 30 June 2026, 2-year term</quote><answer>Not stated</answer>"
    g = grade(quoted, STATED)  # the gold is in the quote, but the answer refuses
    assert not g.passed and g.details["refused"]
    assert grade("<quote>- renewal 30 June 2026</quote>\n<answer>30 June 2026</answer>", STATED).passed
    only_quote = grade(Completion(text="<quote>renewal 30 June 2026, 2-year", finish_reason="length"), STATED)
    assert not only_quote.parsed and "only a quote" in only_quote.reason
    assert grounding.answer_part("<quote>none</quote> <answer>Not stated</answer>") == "Not stated"


def test_a_target_without_status_is_refused_clearly():
    with pytest.raises(pk.errors.GraderError, match="must hold 'status'"):
        grounding.grounded_answer()("x", {"answer": "x", "accept": ["x"]})


def test_the_grader_is_the_tasks_default_through_the_registry():
    ds = pk.load_dataset("account_questions")
    g = pk.graders.default_grader(ds.task)
    assert g.name == "grounded_answer" and pk.graders.grounded_answer is grounding.grounded_answer
    from promptkit.experiment import grader_from_spec

    assert grader_from_spec("default", ds).name == "grounded_answer"


# --------------------------------------------------------------------------- tables


def results_of(answers) -> Results:
    """Results from (variant, row_id, target, text) tuples, graded by the real grader."""
    grader = grounding.grounded_answer()
    out = []
    s = Settings(max_tokens=8)
    for i, (variant, row_id, target, text) in enumerate(answers):
        req = Request((Message("user", f"row {row_id}"),), s)
        cell = Cell(f"k{i}", variant, "m", s, row_id, 0, req, target=target)
        comp = Completion(text=text, output_tokens=3, latency_s=0.1)
        out.append(CellResult(cell, comp, {grader.name: grader(comp, target)}))
    return Results(out)


def _run():
    ans = []
    for i in range(8):  # 8 not-stated rows: plain invents on all, "out" on 1
        ans.append(("plain", f"n{i}", NOT_STATED, "It is 12 May."))
        ans.append(("out", f"n{i}", NOT_STATED, "Not stated." if i else "Probably 12 May."))
    for i in range(6):  # 6 answerable rows: plain right on all, "out" refuses 2
        ans.append(("plain", f"s{i}", STATED, "30 June 2026"))
        ans.append(("out", f"s{i}", STATED, "Not stated." if i < 2 else "June 30, 2026"))
    return results_of(ans)


def test_grounding_table_counts_invented_and_refused_with_intervals():
    from promptkit.metrics import wilson_interval

    t = grounding.grounding_table(_run()).set_index("variant")
    assert (t.loc["plain", "invented"], t.loc["out", "invented"]) == (8, 1)
    assert t.loc["out", "invented rate"] == pytest.approx(1 / 8)
    assert (t.loc["out", "invented low"], t.loc["out", "invented high"]) == pytest.approx(
        (wilson_interval(1, 8).low, wilson_interval(1, 8).high))
    assert t.loc["out", "accuracy"] == pytest.approx(4 / 6) and t.loc["out", "refused answerable"] == pytest.approx(2 / 6)
    assert t.loc["plain", "accuracy"] == 1.0 and t.loc["plain", "refused answerable"] == 0.0
    (line,) = grounding.tradeoff_sentences(t.reset_index(), "plain")
    assert line == "out [m]: invented answers 100% → 12%; accuracy on answerable rows 100% → 67%; answerable rows refused 0% → 33%."


def test_paired_table_tests_each_row_kind_apart_with_holm():
    p = grounding.paired_table(_run(), "plain").set_index("metric")
    inv, acc = p.loc["invented rate"], p.loc["accuracy"]
    assert (inv["baseline value"], inv["variant value"], inv["better"], inv["worse"]) == (1.0, 1 / 8, 7, 0)
    assert inv["change"] == pytest.approx(-7 / 8) and inv["p"] == pytest.approx(2 * 0.5 ** 7)
    assert (acc["better"], acc["worse"], acc["p"]) == (0, 2, 0.5)
    assert inv["p (Holm)"] == pytest.approx(2 * inv["p"]) and acc["p (Holm)"] == 0.5
    assert inv["verdict"] == "significant" and acc["verdict"] == "not significant"
    lines = grounding.table_sentences(grounding.grounding_table(_run()))
    assert "out [m]: invented an answer on 1 of 8 not-stated rows (12%" in lines[1]
    lines = grounding.paired_sentences(grounding.paired_table(_run(), "plain"), "plain")
    assert any("invented rate on 8 not-stated rows: 1.00 → 0.12 (7 rows better, 0 worse" in x for x in lines)
    assert any("no change could reach significance on 6 rows" in x for x in lines)


def test_exercise_measures_grounding_and_caps_the_invented_rate(tmp_path):
    from promptkit.exercises import measure

    m = measure(_run().filter(variant="out"))
    assert m["invented_rate"] == pytest.approx(1 / 8) and m["answer_accuracy"] == pytest.approx(4 / 6)
    assert m["refusal_rate"] == pytest.approx(2 / 6) and 1 / 8 < m["invented_high"] < 1
    ex = get_exercise("grounding.cut_invented")
    assert ex.rows >= 24 and "invented_high" in ex.at_most and ex.metric == "answer_accuracy"
    bad = tmp_path / "ex.yaml"
    bad.write_text("- {id: x, chapter: c, title: t, task: t, dataset: account_questions, metric: answer_accuracy,"
                   " at_least: 0.5, at_most: {invented: 0.2}}\n")
    with pytest.raises(ExerciseError, match="field 'at_most' maps metrics of"):
        load_exercises(bad)


# --------------------------------------------------------------------------- the exercise on the real model


@pytest.mark.local_model
@pytest.mark.timeout(3600)
def test_cut_invented_starter_fails_and_reference_passes(exercise_bar):
    ex = get_exercise("grounding.cut_invented")
    start = exercise_bar.starter(ex.id)
    assert start.measured["invented_high"] > ex.at_most["invented_high"], str(start)
    ref = exercise_bar.reference(ex.id)
    assert ref.passed, str(ref)
    assert ref.measured["invented_rate"] < start.measured["invented_rate"]


def test_saying_not_stated_to_everything_fails_the_exercise():
    """The accuracy floor is what stops a blanket "Not stated" from passing: graded on the exercise's rows."""
    from promptkit.exercises import measure

    ex = get_exercise("grounding.cut_invented")
    rows = pk.load_dataset(ex.dataset).split(ex.split).rows[:ex.rows]
    m = measure(results_of([("blanket", r.id, r.target, "Not stated.") for r in rows]))
    assert m["invented_high"] <= ex.at_most["invented_high"]  # it would clear the cap...
    assert m["answer_accuracy"] < ex.at_least and m["refusal_rate"] == 1.0  # ...and fail the floor


# --------------------------------------------------------------------------- the executed chapter

DUMP = """
def _cells(res):
    return [{"variant": r.cell.variant, "model": r.cell.model, "row": r.cell.row_id,
             **{k: r.grades["grounded_answer"].details.get(k) for k in ("status", "invented", "correct", "refused")}}
            for r in res.results]
print("@@DUMP@@" + __import__("json").dumps({"cells": _cells(runs), "plain": plain.name}))
"""


@pytest.fixture(scope="module")
def executed(execute_chapter):
    """Chapter 07 run with the CI parameters (answer cache shared with test_notebooks.py), plus a cell that
    dumps each call's grade; returns (printed text, dump)."""
    text = execute_chapter("07_grounding", extra=DUMP).printed()
    return text.split("@@DUMP@@", 1)[0], json.loads(text.split("@@DUMP@@", 1)[1].splitlines()[0])


@pytest.mark.notebook
@pytest.mark.local_model
@pytest.mark.timeout(1800)
def test_grounding_sentences_match_the_run(executed):
    from promptkit.lessons import holm
    from promptkit.metrics import wilson_interval

    text, dump = executed
    cells, plain = dump["cells"], dump["plain"]
    variants = list(dict.fromkeys(c["variant"] for c in cells))
    assert variants == [plain, "give an out", "notes only", "notes only + out", "quote first"]
    stats = {}
    for v in variants:
        mine = [c for c in cells if c["variant"] == v]
        ns = [c for c in mine if c["status"] == "not stated"]
        st = [c for c in mine if c["status"] == "stated"]
        k, right = sum(c["invented"] for c in ns), sum(c["correct"] for c in st)
        lo, hi = wilson_interval(k, len(ns)), wilson_interval(right, len(st))
        model = mine[0]["model"].split(":")[-1]
        line = (f"{v} [{model}]: invented an answer on {k} of {len(ns)} not-stated rows ({k / len(ns):.0%}, 95% "
                f"interval {lo.low:.0%}-{lo.high:.0%}); right on {right / len(st):.0%} of {len(st)} answerable rows "
                f"({hi.low:.0%}-{hi.high:.0%}), refusing {sum(c['refused'] for c in st) / len(st):.0%} of them.")
        assert line in text, (line, text)
        stats[v] = (k / len(ns), right / len(st), sum(c["refused"] for c in st) / len(st))
    for v in variants[1:]:
        (bi, ba, br), (vi, va, vr) = stats[plain], stats[v]
        line = (f"{v} [{model}]: invented answers {bi:.0%} → {vi:.0%}; accuracy on answerable rows {ba:.0%} → "
                f"{va:.0%}; answerable rows refused {br:.0%} → {vr:.0%}.")
        assert line in text, (line, text)
    # the paired tests: discordant rows per kind, exact McNemar, Holm over all of them
    by = {(c["variant"], c["row"]): c for c in cells}
    ps, counts = [], []
    for v in variants[1:]:
        for status, good in (("not stated", lambda c: not c["invented"]), ("stated", lambda c: c["correct"])):
            ids = [c["row"] for c in cells if c["variant"] == v and c["status"] == status]
            better = sum(good(by[(v, i)]) and not good(by[(plain, i)]) for i in ids)
            worse = sum(good(by[(plain, i)]) and not good(by[(v, i)]) for i in ids)
            ps.append(pk.metrics.binomial_two_sided(min(better, worse), better + worse))
            counts.append((v, status, len(ids), better, worse))
    for (v, status, n, better, worse), p, ph in zip(counts, ps, holm(ps)):
        head = f"{v} vs {plain} [{model}], {'invented rate' if status == 'not stated' else 'accuracy'} on {n} {'not-stated' if status == 'not stated' else 'answerable'} rows:"
        tail = f"({better} row{'' if better == 1 else 's'} better, {worse} worse; exact McNemar p = {p:.2f}, Holm {ph:.2f} over {len(ps)} tests:"
        assert any(head in ln and tail in ln for ln in text.splitlines()), (head, tail, text)


def test_chapter_cites_only_shipped_evidence_and_keeps_its_check_off_the_dashboard():
    import re

    from promptkit import evidence

    src = (ROOT / "notebooks" / "src" / "07_grounding.py").read_text(encoding="utf-8")
    for call in re.findall(r"evidence\.cited\(([^)]*)\)", src):
        for ident in re.findall(r'"([^"]+)"', call):
            assert ident in evidence.evidence_rows(), ident
    blocks = [b.partition("\n") for b in src.split("# %%")[1:]]
    checks = [head for head, _, body in blocks if "exercises.check(" in body]
    assert checks and all("no-dashboard" in head for head in checks)
    assert "/work/shared" not in src
