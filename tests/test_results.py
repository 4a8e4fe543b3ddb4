"""Results: the DataFrame, summaries on hand-computed cases, confusion, paired compare, side-by-side, exports, regrade."""
from __future__ import annotations

import json
import math
import os

import pandas as pd
import pytest

import promptkit as pk
from promptkit.complete import build_request
from promptkit.graders import label_match
from promptkit.types import Row
from promptkit.cache import cell_key
from promptkit.errors import DatasetError, ExperimentError, GraderError
from promptkit.results import Results, atomic_write
from promptkit.types import Cell, CellResult, Completion, Grade, Message, Request, Settings, TokenLogprob

CANARY = "sk-canary0123456789abcdefXYZ"


def label_grade(text: str, target: str) -> Grade:
    """Read a tier label the way a classification grader does: None when no label is found."""
    found = [lab for lab in ("A", "B", "C") if lab == text.strip()]
    if not found:
        return Grade(0.0, False, reason="no label", label=None, parsed=False)
    ok = found[0] == target
    return Grade(1.0 if ok else 0.0, ok, label=found[0])


class LabelGrader:
    name = "tier"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, completion: Completion, target: str) -> Grade:
        self.calls += 1
        return label_grade(completion.text, target)


def cell_result(row: str, target, answer: str | None, *, variant="v1", model="echo:x", repeat=0,
                latency=0.5, tokens=(10, 2), cost=0.001, error=None, graders=("tier",), settings=None,
                settings_label="") -> CellResult:
    settings = settings or Settings(max_tokens=8)
    req = Request((Message("system", "classify"), Message("user", f"row {row}")), settings)
    cell = Cell(key=f"{variant}|{model}|{row}|{repeat}|{settings_label}", variant=variant, model=model,
                settings=settings, row_id=row, repeat=repeat, request=req, target=target,
                settings_label=settings_label)
    if error is not None:
        return CellResult(cell, Completion(provider="echo", model="x", error_kind="server", error=error, latency_s=0.1))
    comp = Completion(text=answer, provider="echo", model="x", input_tokens=tokens[0], output_tokens=tokens[1],
                      latency_s=latency, ttft_s=latency / 2, finish_reason="stop", cost_usd=cost)
    grades = {name: label_grade(answer, target) for name in graders}
    return CellResult(cell, comp, grades)


GOLD = ["A", "A", "A", "B", "B", "A"]
ALWAYS_A = ["A"] * 6
MIXED = ["A", "B", "??", "B", "B", "A"]  # rows 0,3,4,5 right; row 1 wrong; row 2 unparseable


def two_variants() -> Results:
    cells = [cell_result(str(i), g, p, variant="always_a", latency=0.1 * (i + 1)) for i, (g, p) in enumerate(zip(GOLD, ALWAYS_A))]
    cells += [cell_result(str(i), g, p, variant="mixed", latency=1.0) for i, (g, p) in enumerate(zip(GOLD, MIXED))]
    cells.append(cell_result("6", "A", None, variant="always_a", error="HTTP 500: upstream failed"))
    return Results(cells, {"name": "tiers", "labels": ["A", "B"]})


# ---------------------------------------------------------------------- DataFrame


def test_df_one_row_per_call_with_all_columns_and_values():
    res = two_variants()
    df = res.df
    assert len(df) == 13
    for col in ("key", "variant", "model", "settings_label", "temperature", "top_p", "max_tokens", "stop", "seed",
                "row_id", "repeat", "output", "target", "tier_score", "tier_passed", "tier_label", "tier_parsed",
                "tier_reason", "score", "passed", "latency_s", "ttft_s", "input_tokens", "output_tokens", "cost_usd",
                "finish_reason", "error_kind", "error", "cached"):
        assert col in df.columns, col
    row = df[(df["variant"] == "mixed") & (df["row_id"] == "2")].iloc[0]
    assert row["output"] == "??" and row["target"] == "A"
    assert row["tier_label"] is None or pd.isna(row["tier_label"])
    assert not row["tier_parsed"] and row["tier_score"] == 0.0
    assert row["max_tokens"] == 8 and row["input_tokens"] == 10 and row["latency_s"] == 1.0
    err = df[df["error_kind"].notna()].iloc[0]
    assert err["error_kind"] == "server" and err["error"] == "HTTP 500: upstream failed"
    assert pd.isna(err["score"]) and pd.isna(err["input_tokens"])
    assert df["input_tokens"].dtype == "Int64" and df["latency_s"].dtype == "float64"


def test_df_has_prefixed_columns_for_each_of_several_graders_and_primary_alias():
    cells = [cell_result("1", "A", "A", graders=("first", "second"))]
    cells[0].grades["second"] = Grade(0.25, False, reason="partial")
    df = Results(cells).df
    assert df.loc[0, "first_score"] == 1.0 and df.loc[0, "second_score"] == 0.25
    assert df.loc[0, "score"] == 1.0  # the first grader is the primary one
    assert df.loc[0, "second_reason"] == "partial"


def test_cells_by_groups_cell_results_in_run_order():
    res = two_variants()
    groups = res.cells_by()
    assert list(groups) == [("always_a", "echo:x"), ("mixed", "echo:x")]
    assert [r.cell.row_id for r in groups[("always_a", "echo:x")]] == ["0", "1", "2", "3", "4", "5", "6"]
    by_row = res.cells_by("row_id")
    assert len(by_row) == 7 and [r.cell.variant for r in by_row[("2",)]] == ["always_a", "mixed"]


def test_filter_selects_cells_and_rejects_unknown_fields():
    res = two_variants()
    assert len(res.filter(variant="mixed")) == 6
    assert len(res.filter(row_id=["0", "1"])) == 4
    with pytest.raises(ExperimentError, match=r"cannot filter results by \['colour'\]"):
        res.filter(colour="red")


# ---------------------------------------------------------------------- summary


def test_summary_measurements_by_hand():
    res = two_variants()
    s = res.summary().set_index("variant")
    a = s.loc["always_a"]
    assert a["n"] == 7 and a["errors"] == 1 and a["scored"] == 6
    assert a["score"] == pytest.approx(4 / 6)
    # latencies 0.1..0.6 (the failed call is left out): p50 = 0.35, p95 = 0.575 (linear interpolation)
    assert a["latency_p50"] == pytest.approx(0.35)
    assert a["latency_p95"] == pytest.approx(0.575)
    assert a["input_tokens_mean"] == 10 and a["output_tokens_mean"] == 2
    assert a["tokens_per_100"] == pytest.approx(1200)
    assert a["cost_per_100"] == pytest.approx(0.1)
    assert a["cost_usd"] == pytest.approx(0.006)
    assert a["score_low"] <= a["score"] <= a["score_high"]
    assert s.attrs["score_ci"].startswith("95% percentile bootstrap over dataset rows")


def test_summary_classification_beside_baseline_with_flag():
    s = two_variants().summary().set_index("variant")
    a, m = s.loc["always_a"], s.loc["mixed"]
    # always "A": accuracy equals the majority baseline 4/6, so it is flagged
    assert a["accuracy"] == pytest.approx(4 / 6) and a["baseline"] == pytest.approx(4 / 6)
    assert a["majority_label"] == "A"
    assert a["balanced_accuracy"] == pytest.approx(0.5) and a["chance"] == pytest.approx(0.5)
    assert a["macro_f1"] == pytest.approx(0.4)  # A: P=4/6 R=1 F1=0.8; B: 0
    assert not a["beats_baseline"] and a["flag"] == "not above majority baseline"
    assert a["unparseable"] == 0 and a["wrong"] == 2
    # mixed: right on 4, wrong on 1, unparseable on 1
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["unparseable"] == 1 and m["wrong"] == 1 and m["correct"] == 4
    assert m["balanced_accuracy"] == pytest.approx((2 / 4 + 2 / 2) / 2)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # A: P=1 R=.5; B: P=2/3 R=1


def test_summary_label_numbers_match_metrics_module():
    """The summary's vectorised bootstrap agrees with metrics.classification_summary on the same cells."""
    import random

    from promptkit import metrics

    rnd = random.Random(1)
    gold = [rnd.choice("AAABBC") for _ in range(120)]
    pred = [g if rnd.random() < 0.6 else rnd.choice(["A", "B", "C", "??"]) for g in gold]
    res = Results([cell_result(str(i), g, p) for i, (g, p) in enumerate(zip(gold, pred))])
    row = res.summary().iloc[0]
    ref = metrics.classification_summary(gold, [None if p == "??" else p for p in pred], res.labels(), n_boot=2000)
    for ours, theirs in [("accuracy", ref.accuracy), ("accuracy_low", ref.accuracy_ci.low),
                         ("baseline", ref.majority_rate), ("balanced_accuracy", ref.balanced_accuracy),
                         ("macro_f1", ref.macro_f1), ("chance", ref.chance)]:
        assert row[ours] == pytest.approx(theirs), ours
    assert row["beats_baseline"] == ref.beats_baseline and row["unparseable"] == ref.unparseable
    for ours, theirs in [("balanced_accuracy_low", ref.balanced_accuracy_ci.low),
                         ("balanced_accuracy_high", ref.balanced_accuracy_ci.high),
                         ("macro_f1_low", ref.macro_f1_ci.low), ("macro_f1_high", ref.macro_f1_ci.high)]:
        assert row[ours] == pytest.approx(theirs, abs=0.03), ours  # same bootstrap, other random draws


def test_summary_does_not_flag_a_score_clearly_above_baseline():
    gold = ["A"] * 15 + ["B"] * 15
    res = Results([cell_result(str(i), g, g) for i, g in enumerate(gold)])
    s = res.summary().iloc[0]
    assert s["accuracy"] == 1.0 and s["baseline"] == 0.5
    assert s["accuracy_low"] > 0.5 and s["beats_baseline"] and s["flag"] == ""


def test_score_ci_resamples_rows_so_repeats_add_no_false_confidence():
    scores = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]

    def res(repeats: int) -> Results:
        cells = []
        for i, sc in enumerate(scores):
            for rep in range(repeats):
                c = cell_result(str(i), None, "x", repeat=rep, graders=())
                c.grades["q"] = Grade(float(sc), bool(sc))
                cells.append(c)
        return Results(cells)

    one = res(1).summary().iloc[0]
    five = res(5).summary().iloc[0]
    assert one["score"] == five["score"] == pytest.approx(0.7)
    assert (five["score_low"], five["score_high"]) == pytest.approx((one["score_low"], one["score_high"]))
    assert one["score_high"] - one["score_low"] > 0.3  # ten rows cannot pin a rate down


def test_summary_by_other_columns_and_bad_column():
    res = two_variants()
    s = res.summary(by="row_id")
    assert len(s) == 7 and set(s["n"]) == {2, 1}
    with pytest.raises(ExperimentError, match=r"cannot group results by \['colour'\]"):
        res.summary(by=("variant", "colour"))


def test_cells_sharing_a_key_keep_their_own_targets():
    """Two rows with the same rendered prompt share a cell key; each is still scored on its own gold."""
    a, b = cell_result("1", "A", "A"), cell_result("2", "B", "A")
    b.cell.key = a.cell.key
    s = Results([a, b]).summary().iloc[0]
    assert s["accuracy"] == 0.5 and s["baseline"] == 0.5 and s["balanced_accuracy"] == 0.5


def test_summary_keeps_a_settings_sweep_apart_by_default():
    cells = [cell_result(str(i), "A", ans, settings_label=lab)
             for lab, ans in (("temperature=0", "A"), ("temperature=0.7", "B")) for i in range(4)]
    s = Results(cells).summary()
    assert list(s["settings_label"]) == ["temperature=0", "temperature=0.7"]
    assert list(s["score"]) == [1.0, 0.0]
    assert len(Results(cells).summary(by=("variant", "model"))) == 1


def test_summary_of_ungraded_results_has_measurements_only():
    c = cell_result("1", "A", "A", graders=())
    s = Results([c]).summary().iloc[0]
    assert s["n"] == 1 and "score" not in s and s["latency_p50"] == 0.5


# ---------------------------------------------------------------------- confusion and compare


def test_confusion_counts_with_unparseable_column_and_errors_left_out():
    res = two_variants()
    cm = res.confusion(variant="mixed")
    assert list(cm.index) == ["A", "B"]
    assert cm.loc["A", "A"] == 2 and cm.loc["A", "B"] == 1 and cm.loc["A", "(unparseable)"] == 1
    assert cm.loc["B", "B"] == 2 and cm.loc["B", "A"] == 0
    always = res.confusion(variant="always_a")
    assert int(always.to_numpy().sum()) == 6  # the failed call is not an answer
    assert always.loc["B", "A"] == 2


def test_confusion_needs_a_label_grader():
    c = cell_result("1", "A", "A", graders=())
    c.grades["len"] = Grade(1.0, True)
    with pytest.raises(GraderError, match="sets no labels"):
        Results([c]).confusion()


def test_compare_mcnemar_significant_and_not():
    gold = ["A"] * 12
    cells = [cell_result(str(i), g, "A", variant="good") for i, g in enumerate(gold)]
    cells += [cell_result(str(i), g, "B", variant="bad") for i, g in enumerate(gold)]
    res = Results(cells)
    t = res.compare("good", "bad")
    assert t.test == "exact McNemar"
    assert t.p_value == pytest.approx(2 * 0.5 ** 12)
    assert t.significant and t.difference == pytest.approx(1.0)
    assert t.details["pairs"] == 12 and t.details["across"] == "variant"
    same = two_variants().compare("always_a", "mixed")
    assert not same.significant and "not significant" in same.verdict
    with pytest.raises(ExperimentError, match="both must be variants"):
        res.compare("good", "echo:x")


def test_compare_models_pairs_on_rows_and_uses_bootstrap_for_continuous_scores():
    cells = []
    for i in range(20):
        for model, sc in (("m1", 0.9), ("m2", 0.3 + 0.01 * i)):
            c = cell_result(str(i), None, "x", model=model, graders=())
            c.grades["sim"] = Grade(sc, sc > 0.5)
            cells.append(c)
    t = Results(cells).compare("m1", "m2")
    assert t.test == "paired bootstrap (mean score)"
    assert t.details["across"] == "model" and t.details["pairs"] == 20
    assert t.difference == pytest.approx(0.9 - (0.3 + 0.095))
    assert t.significant


# ---------------------------------------------------------------------- side by side


def test_side_by_side_rows_down_variants_across_with_grades():
    res = two_variants()
    frame = res.side_by_side(style=False)
    assert list(frame.columns) == ["target", "always_a", "mixed"]
    assert frame.shape == (7, 3)
    assert frame.loc["1", "mixed"].startswith("B\n— ✗ 0.00 B")
    assert frame.loc["0", "mixed"].endswith("✓ 1.00 A")
    assert "unparseable" in frame.loc["2", "mixed"]
    assert frame.loc["6", "always_a"].startswith("[server]")
    assert frame.loc["6", "mixed"] == ""


def test_side_by_side_models_across_escapes_and_truncates():
    long = "<script>alert(1)</script>" + "x" * 500
    cells = [cell_result("1", "A", long, model="m1"), cell_result("1", "A", "A", model="m2")]
    res = Results(cells)
    frame = res.side_by_side(across="model", style=False, max_chars=50)
    assert list(frame.columns) == ["target", "m1", "m2"]
    assert frame.loc["1", "m1"].split("\n")[0].endswith("…") and len(frame.loc["1", "m1"].split("\n")[0]) == 50
    html = res.side_by_side(across="model", max_chars=50).to_html()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "#fff4d6" in html and "#e3f4e1" in html  # unparseable and pass colours


def test_side_by_side_names_other_dimension_when_it_varies():
    cells = [cell_result("1", "A", "A", variant=v, model=m) for v in ("v1", "v2") for m in ("m1", "m2")]
    frame = Results(cells).side_by_side(style=False)
    assert list(frame.columns) == ["target", "m1 · v1", "m2 · v1", "m1 · v2", "m2 · v2"]


# ---------------------------------------------------------------------- exports


def rich_results() -> Results:
    res = two_variants()
    c = res.results[0]
    c.completion.logprobs = [TokenLogprob("A", -0.1, {"A": -0.1, "B": -2.3})]
    c.grades["tier"].details = {"gold": "A", "scores": [0.9, 0.1]}
    res.results.append(cell_result("7", {"tier": "A", "why": ["x"]}, "A", variant="mixed",
                                   settings=Settings(temperature=0.7, stop=("\n", "END"), max_tokens=4),
                                   settings_label="t=0.7"))
    res.meta.update(seed=3, models=["echo:x"])
    return res


def test_jsonl_round_trip_is_exact(tmp_path):
    res = rich_results()
    path = res.to_jsonl(tmp_path / "run.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(res)
    first = json.loads(lines[0])
    assert set(first) >= {"cell", "completion", "grades", "meta"}
    back = Results.from_jsonl(path)
    assert back.results == res.results
    assert back.meta == res.meta
    assert back == res
    pd.testing.assert_frame_equal(back.df, res.df)


def test_jsonl_of_empty_results_keeps_meta(tmp_path):
    path = Results([], {"name": "nothing"}).to_jsonl(tmp_path / "e.jsonl")
    back = Results.from_jsonl(path)
    assert len(back) == 0 and back.meta == {"name": "nothing"}


def test_from_jsonl_names_file_and_line_of_bad_input(tmp_path):
    good = json.dumps(_one_line())
    p = tmp_path / "bad.jsonl"
    p.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.jsonl, line 2: not valid JSON"):
        Results.from_jsonl(p)
    p.write_text(good + "\n" + json.dumps({"completion": {}}) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 2: missing field 'cell'"):
        Results.from_jsonl(p)
    broken = _one_line()
    del broken["cell"]["request"]
    p.write_text(json.dumps(broken) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 1: malformed cell result: missing field 'request'"):
        Results.from_jsonl(p)
    with pytest.raises(DatasetError, match="does not exist"):
        Results.from_jsonl(tmp_path / "missing.jsonl")


def _one_line() -> dict:
    return Results([cell_result("1", "A", "A")]).to_records()[0]


def test_csv_reads_back_with_the_same_rows_and_values(tmp_path):
    res = rich_results()
    path = res.to_csv(tmp_path / "run.csv")
    back = pd.read_csv(path, keep_default_na=False, na_values=[""])
    assert list(back.columns) == list(res.df.columns)
    assert len(back) == len(res)
    assert back["key"].tolist() == res.df["key"].tolist()
    assert back["output"].fillna("").tolist() == res.df["output"].tolist()
    assert back["tier_score"].tolist() == pytest.approx(res.df["tier_score"].tolist(), nan_ok=True)
    assert json.loads(back["stop"].iloc[-1]) == ["\n", "END"]
    assert json.loads(back["target"].iloc[-1]) == {"tier": "A", "why": ["x"]}


def test_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.txt"

    def half(f):
        f.write("half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert not target.exists()
    assert os.listdir(tmp_path) == []
    target.write_text("old", encoding="utf-8")
    with pytest.raises(OSError):
        atomic_write(target, half)
    assert target.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_jsonl_export_failing_midway_leaves_no_file(tmp_path):
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot serialise")

    res = two_variants()
    res.results[-2].grades["tier"].details = {"obj": Unprintable()}
    with pytest.raises(RuntimeError, match="cannot serialise"):
        res.to_jsonl(tmp_path / "run.jsonl")
    assert os.listdir(tmp_path) == []


def test_canary_key_is_redacted_in_every_export(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    res = two_variants()
    res.results[-1].completion.error = f"401 Unauthorized: Authorization: Bearer {CANARY}"
    res.results[0].grades["tier"].reason = f"judge said api_key={CANARY}"
    res.results[1].completion.text = f"echoing {CANARY}"
    res.meta["note"] = f"run with {CANARY}"
    assert CANARY not in res.df.to_csv()
    outputs = [
        res.to_jsonl(tmp_path / "r.jsonl"), res.to_csv(tmp_path / "r.csv"), res.to_html(tmp_path / "r.html"),
    ]
    for path in outputs:
        text = path.read_text(encoding="utf-8")
        assert CANARY not in text, path.name
        assert "[REDACTED]" in text, path.name
    assert CANARY not in json.dumps(res.to_records())
    assert CANARY not in res.side_by_side().to_html()


# ---------------------------------------------------------------------- regrade


def test_regrade_changes_scores_without_calling_a_model(tmp_path, monkeypatch):
    from promptkit.providers import base

    async def no_calls(self, request):
        raise AssertionError("regrade must not call a model")

    monkeypatch.setattr(base.Provider, "complete", no_calls)
    res = Results.from_jsonl(two_variants().to_jsonl(tmp_path / "run.jsonl"))

    class SaysB:
        name = "says_b"

        def __init__(self):
            self.calls = 0

        def __call__(self, completion, target):
            self.calls += 1
            ok = completion.text == "B"
            return Grade(1.0 if ok else 0.0, ok)

    grader = SaysB()
    again = res.regrade(grader)
    assert grader.calls == 12  # the failed call is not graded
    assert again.grader_names == ["says_b"]
    s = again.summary().set_index("variant")
    assert s.loc["always_a", "score"] == 0.0 and s.loc["mixed", "score"] == pytest.approx(3 / 6)
    assert res.summary().set_index("variant").loc["always_a", "score"] == pytest.approx(4 / 6)  # original untouched
    both = res.regrade([grader, LabelGrader()], keep=True)
    assert both.grader_names == ["tier", "says_b"]
    assert "accuracy" in both.summary(grader="tier")
    assert all(r.completion is o.completion for r, o in zip(again.results, res.results))


def test_regrade_rejects_bad_graders_and_records_a_failing_grader_like_a_run():
    res = two_variants()
    with pytest.raises(GraderError, match="two graders are named 'tier'"):
        res.regrade([LabelGrader(), LabelGrader()])
    with pytest.raises(GraderError, match="has no .name"):
        res.regrade([lambda c, t: Grade(1.0, True)])

    class Boom:
        name = "boom"

        def __call__(self, completion, target):
            if completion.text == "B":
                raise KeyError("field")
            return Grade(1.0, True)

    with pytest.warns(UserWarning, match=r"a grader failed on 3 cell\(s\).*first: row '1' \(variant 'mixed'"):
        again = res.regrade(Boom())
    df = again.df
    bad = df[df["boom_reason"].fillna("").str.contains("failed: KeyError")]
    assert len(bad) == 3 and not bad["boom_parsed"].any() and (bad["boom_score"] == 0).all()
    assert again.summary().set_index("variant").loc["always_a", "score"] == 1.0


def test_label_match_grader_gold_is_read_as_the_grader_reads_it():
    """Targets spelled differently from the label set are scored with the grader's canonical gold."""
    from promptkit.graders import label_match

    targets = ["commit", "AT-RISK", {"label": "Likely"}, "commit"]
    answers = ["Commit.", "At-Risk, I think", "likely", "hmm"]
    cells = [cell_result(str(i), t, a, graders=()) for i, (t, a) in enumerate(zip(targets, answers))]
    res = Results(cells).regrade(label_match(["Commit", "Likely", "At-Risk"], name="tier"))
    s = res.summary().iloc[0]
    assert s["accuracy"] == 0.75 and s["unparseable"] == 1 and s["wrong"] == 0
    assert s["majority_label"] == "Commit" and s["baseline"] == 0.5
    cm = res.confusion()
    assert list(cm.index) == ["Commit", "At-Risk", "Likely"]
    assert cm.loc["Commit", "Commit"] == 1 and cm.loc["Commit", "(unparseable)"] == 1


def test_results_from_echo_provider_calls():
    """Real completions from the in-package echo provider flow through to the summary."""
    cells = []
    for i, word in enumerate(["A", "B", "C"]):
        req = build_request(word, max_tokens=4)
        comp = pk.complete(req, "echo:x")
        cell = Cell(cell_key("echo:x", req), "plain", "echo:x", req.settings, str(i), 0, req, target="A")
        cells.append(CellResult(cell, comp))
    res = Results(cells).regrade(LabelGrader())
    s = res.summary().iloc[0]
    assert s["n"] == 3 and s["accuracy"] == pytest.approx(1 / 3) and s["baseline"] == 1.0
    assert s["flag"] == "not above majority baseline"
    assert res.df["output"].tolist() == ["A", "B", "C"]
    assert res.df["output_tokens"].tolist() == [1, 1, 1]
    assert math.isclose(res.df["latency_s"].notna().mean(), 1.0)


def test_runner_results_round_trip_regrade_and_report(tmp_path):
    """The runner's Results (echo provider) survive JSONL, regrade offline and make a report."""
    from promptkit.experiment import Experiment
    from promptkit.graders import label_match
    from promptkit.runner import run
    from promptkit.templates import Template

    rows = [Row(id=f"r{i}", input={"answer": a, "ref": f"ref{i}"}, target=t)
            for i, (a, t) in enumerate([("Commit", "Commit"), ("Likely", "Commit"), ("At-Risk", "At-Risk"),
                                        ("no idea", "Likely")])]
    variants = [Template(name="echo_answer", turns="{{answer}}"), Template(name="always_commit", turns="Commit {{ref}}")]
    tier = label_match(["Commit", "Likely", "At-Risk"], name="tier")
    exp = Experiment(variants=variants, models=["echo:x"], rows=rows, graders=[tier], repeats=2,
                     settings=Settings(max_tokens=4), name="echo tiers")
    res = run(exp, cache="off", progress=False)
    assert isinstance(res, Results) and len(res) == 16 and res.meta["experiment"]["name"] == "echo tiers"
    s = res.summary().set_index("variant")
    assert s.loc["echo_answer", "accuracy"] == 0.5 and s.loc["echo_answer", "unparseable"] == 2
    assert s.loc["always_commit", "accuracy"] == 0.5 and s.loc["always_commit", "baseline"] == 0.5
    assert s.loc["always_commit", "flag"] == "not above majority baseline"
    assert res.compare("echo_answer", "always_commit").details["pairs"] == 8

    back = Results.from_jsonl(res.to_jsonl(tmp_path / "run.jsonl"))
    assert back == res
    loose = back.regrade(label_match(["Commit", "Likely", "At-Risk"], aliases={"no idea": "Likely"}, name="tier"))
    assert loose.summary().set_index("variant").loc["echo_answer", "accuracy"] == 0.75
    text = back.to_html(tmp_path / "run.html").read_text(encoding="utf-8")
    assert "<title>echo tiers</title>" in text and "experiment.models" in text


def test_mentioned_not_answered_is_counted_apart_within_unparseable():
    """A label named in passing is unreadable (not a choice) and the summary counts it separately."""
    from promptkit.graders import label_match
    from promptkit.lessons import answer_counts

    targets = ["Likely", "Likely", "Commit", "At-Risk"]
    answers = ["This account is likely to renew.", "Likely", "hmm", "Tier: 1.\nThe account is likely to renew."]
    cells = [cell_result(str(i), t, a, graders=()) for i, (t, a) in enumerate(zip(targets, answers))]
    res = Results(cells).regrade(label_match(["Commit", "Likely", "At-Risk"], name="tier"))
    s = res.summary().iloc[0]
    assert s["correct"] == 1 and s["unparseable"] == 3 and s["mentioned"] == 2
    counts = answer_counts(res, by=["variant"])
    assert counts.loc["gold labels"].to_dict() == {"Commit": 1, "Likely": 2, "At-Risk": 1,
                                                   "mentioned, not answered": 0, "unparseable": 0}
    row = counts.drop(index="gold labels").iloc[0]
    assert row["mentioned, not answered"] == 2 and row["unparseable"] == 1 and row["Likely"] == 1
    assert row["Commit"] == 0 and row["At-Risk"] == 0  # labels nobody answered still have a column


def test_every_summary_view_names_columns_the_summary_makes():
    """One definition of the views' columns (results.SUMMARY_VIEWS): a misspelt name would silently drop a column."""
    import promptkit as pk
    from promptkit.experiment import Experiment
    from promptkit.providers import clear_providers
    from promptkit.providers.mock import mock_provider
    from promptkit.results import SUMMARY_VIEWS
    from promptkit.templates import Template
    from promptkit.types import Row

    clear_providers()
    mock_provider("mock:views").always(lambda req: "Commit" if "renew" in req.messages[-1].content else "At-Risk")
    rows = [Row(f"r{i}", {"notes": "will renew" if i % 3 else "leaving"}, "Commit" if i % 2 else "At-Risk")
            for i in range(8)]
    exp = Experiment([Template("t", turns="{{notes}}")], ["mock:views"], rows,
                     sweep={"temperature": [0.0, 0.5]}, graders=[label_match(["Commit", "At-Risk"])])
    made = set(pk.run(exp, cache="off", progress=False).summary().columns)
    clear_providers()
    for view, cols in SUMMARY_VIEWS.items():
        missing = [c for c in cols if c not in made and not (c.endswith(" CI") and f"{c[:-3]}_low" in made)]
        assert not missing, f"SUMMARY_VIEWS[{view!r}] names columns the summary does not make: {missing}"
