"""Graders on hand-made right, wrong, unparseable and failed answers."""
from __future__ import annotations

import asyncio
import re

import pytest

import promptkit as pk
from promptkit.datasets import list_datasets
from promptkit.errors import ModelSpecError
from promptkit import graders as G
from promptkit.errors import GraderError
from promptkit.providers import Provider, clear_providers, register
from promptkit.types import Completion, Grade, Row

TIERS = ["Commit", "Likely", "At-Risk"]
SIGNALS = [
    "declining usage", "ticket escalation", "executive sponsor departure", "missed milestones",
    "NPS/CSAT drop", "low QBR attendance", "procurement delays", "competitive mentions",
]


def C(text: str, **kw) -> Completion:
    return Completion(text=text, provider="test", model="hand", **kw)


FAILED = Completion(provider="test", model="hand", error_kind="rate_limit", error="429 Too Many Requests")


# --------------------------------------------------------------------------- label normaliser

@pytest.mark.parametrize("answer, label", [
    ("Likely", "Likely"),
    ("likely", "Likely"),
    ("  LIKELY.\n", "Likely"),
    ('"Commit"', "Commit"),
    ("'At-Risk'", "At-Risk"),
    ("\u201cAt Risk\u201d", "At-Risk"),
    ("**At Risk**", "At-Risk"),
    ("at_risk", "At-Risk"),
    ("AtRisk", "At-Risk"),
    ("Answer: Commit", "Commit"),
    ("Final answer: **at-risk**", "At-Risk"),
    ("Tier: Likely", "Likely"),
    ("Likely. The customer renewed last year and usage is steady.", "Likely"),
    ("At-Risk - usage fell 40% and the sponsor left.", "At-Risk"),
    ("1. Commit\n2. Reason: signed early", "Commit"),
    ("The renewal tier for this account is **Likely** because the customer is expanding.", "Likely"),
    ("Based on the notes, I would classify this account as **Commit**.", "Commit"),
    ("The answer is At-Risk since the champion left and usage is down.", "At-Risk"),
    ("The tier is **Likely**, although **At-Risk** signals exist.", "Likely"),
    ("Likely, not At-Risk: the QBR went well.", "Likely"),
    ("Renewal tier: **At-Risk**\n\nExplanation: procurement is stalled and a Commit is unlikely.", "At-Risk"),
    # SmolLM2-135M answers seen on renewal_tier: a label line, then a rambling explanation
    ("Commit\n\nThe account notes suggest that the renewal tier is likely to be a high-risk option.", "Commit"),
    ("Commit: 90% or more likely to renew.", "Commit"),
    ("Answer: Commit. The renewal tier is likely to grow next year.", "Commit"),
])
def test_label_normaliser_reads_the_label(answer, label):
    p = G.parse_label(answer, TIERS)
    assert p.label == label, p.reason


# Strict readability: an answer is readable when it IS the label (trimmed of punctuation and markup), STARTS
# with it, or gives it after an explicit marker. A label used as a word or named in passing is "mentioned,
# not answered": never graded as a choice (a lenient parser once read the first two as Likely).
@pytest.mark.parametrize("answer, label, mentioned", [
    ("This account is likely to renew.", None, {"Likely"}),
    ("Tier: 1.\nThe account is likely to renew, but the sponsor left.", None, {"Likely"}),
    ("Given the declining usage, this customer is likely At-Risk.", None, {"Likely", "At-Risk"}),
    ("The account is not Commit; it is Likely.", None, {"Likely"}),
    ("The customer may commit to a longer term if the QBR goes well.", None, {"Commit"}),
    ("Usage is down and the account is at risk.", None, {"At-Risk"}),
    ("I think this is a Commit account.", None, {"Commit"}),
    ("It could be Likely or Commit.", None, {"Likely", "Commit"}),
    ("Either **Likely** or **At-Risk**, depending on the QBR.", None, {"Likely", "At-Risk"}),
    ("Some would say Commit, others At Risk.", None, {"Commit", "At-Risk"}),
    ("Based on the notes, I would classify this account as **Commit**.", "Commit", None),
    ("> **At-Risk**", "At-Risk", None),
    ("`Likely`", "Likely", None),
    ("## Likely\nThe notes show expansion.", "Likely", None),
    ("Tier: 1.\nAnswer: Likely", "Likely", None),
    ("likely to renew, but procurement is slow", "Likely", None),
    ("After reading the notes carefully.\n\nFinal answer: At-Risk", "At-Risk", None),
    ("The renewal is likely. Final tier: Commit", "Commit", None),
])
def test_strict_readability_hard_cases(answer, label, mentioned):
    p = G.parse_label(answer, TIERS)
    assert p.label == label, p.reason
    if mentioned is None:
        assert not p.mentioned
    else:
        assert p.mentioned and not p.ambiguous and set(p.candidates) == mentioned, p
        assert "mentioned, not answered" in p.reason


def test_a_mention_is_unreadable_and_counted_apart_in_the_summary():
    g = G.label_match(TIERS)
    grade = g(C("This account is likely to renew."), "Likely")
    assert not grade.parsed and not grade.passed and grade.details["how"] == "mention"
    assert "mentioned, not answered" in grade.reason


@pytest.mark.parametrize("answer, candidates", [
    ("Commit or At-Risk, hard to say.", {"Commit", "At-Risk"}),
    ("The answer is Likely or Commit.", {"Likely", "Commit"}),
    ("Tier: Commit/Likely", {"Commit", "Likely"}),
    ("Commit, Likely, At-Risk.", {"Commit", "Likely", "At-Risk"}),  # the label list echoed back
    ("Answer: Commit, or Likely", {"Commit", "Likely"}),
])
def test_two_labels_are_ambiguous_not_a_guess(answer, candidates):
    p = G.parse_label(answer, TIERS)
    assert p.label is None and p.ambiguous
    assert set(p.candidates) == candidates
    assert "ambiguous" in p.reason


@pytest.mark.parametrize("answer", ["", "   ", "I cannot determine that.", "The customer seems happy.", "Committed to growth"])
def test_no_label_is_unparseable(answer):
    p = G.parse_label(answer, TIERS)
    assert p.label is None and not p.ambiguous


def test_aliases_both_directions_and_conflicts():
    p = G.parse_label("Churn.", TIERS, aliases={"churn": "At-Risk"})
    assert p.label == "At-Risk"
    assert G.parse_label("This one will churn.", TIERS, aliases={"churn": "At-Risk"}).mentioned
    p = G.parse_label("safe", TIERS, aliases={"Commit": ["safe", "locked in"]})
    assert p.label == "Commit"
    assert G.parse_label("Locked-in for sure", TIERS, aliases={"Commit": ["safe", "locked in"]}).label == "Commit"
    with pytest.raises(GraderError, match="names no label"):
        G.label_match(TIERS, aliases={"churn": "Lost"})
    with pytest.raises(GraderError, match="match both"):
        G.label_match(["At-Risk", "at risk"])
    with pytest.raises(GraderError, match="non-empty list"):
        G.label_match("Commit")


@pytest.mark.parametrize("answer, label", [
    ("Yes", "Yes"),
    ("Yes. No other signals appear in the notes.", "Yes"),
    ("No, usage is flat.", "No"),
    ("There is no evidence of declining usage, so the answer is No.", "No"),
    ("Yes/No", None),
    ("Answer: **YES**", "Yes"),
])
def test_yes_no_answers(answer, label):
    assert G.parse_label(answer, ["Yes", "No"]).label == label


def test_labels_with_slashes_still_match():
    assert G.parse_label("NPS/CSAT drop", ["NPS/CSAT drop", "declining usage"]).label == "NPS/CSAT drop"


def test_case_sensitive_labels():
    assert G.parse_label("yes", ["Yes", "No"], case_sensitive=True).label is None
    assert G.parse_label("Yes", ["Yes", "No"], case_sensitive=True).label == "Yes"
    assert G.parse_label("yes", ["Yes", "No"]).label == "Yes"


def test_longest_label_wins():
    labels = ["Risk", "At-Risk", "Not Likely", "Likely"]
    assert G.parse_label("At Risk", labels).label == "At-Risk"
    assert G.parse_label("Not likely to renew", labels).label == "Not Likely"


# --------------------------------------------------------------------------- label_match grader

def test_label_match_right_wrong_unparseable_ambiguous():
    g = G.label_match(TIERS)
    assert g.name == "label_match"
    right = g(C("The tier is **Likely** because usage grew."), "Likely")
    assert (right.score, right.passed, right.parsed, right.label) == (1.0, True, True, "Likely")
    wrong = g(C("Commit"), "Likely")
    assert (wrong.score, wrong.passed, wrong.parsed, wrong.label) == (0.0, False, True, "Commit")
    assert "wrong" in wrong.reason and "Commit" in wrong.reason
    unread = g(C("I am not sure."), "Likely")
    assert (unread.score, unread.passed, unread.parsed, unread.label) == (0.0, False, False, None)
    assert unread.reason.startswith("unparseable") and "no label" in unread.reason
    amb = g(C("Likely or Commit"), "Likely")
    assert amb.parsed is False and amb.label is None and "ambiguous" in amb.reason


def test_label_match_targets_row_dict_and_spelling():
    g = G.label_match(TIERS)
    row = Row(id="r1", input={"notes": "..."}, target="At-Risk")
    assert g(C("at risk"), row).passed
    assert g(C("at risk"), {"label": "at_risk"}).passed
    assert g("Commit", "commit").passed  # a plain string answer works too
    with pytest.raises(GraderError, match="not one of the labels"):
        g(C("Commit"), "Lost")
    with pytest.raises(GraderError, match="must be one label"):
        g(C("Commit"), None)


def test_label_match_truncated_answer_says_so():
    g = G.label_match(TIERS)(C("Based on the account notes provided, the", finish_reason="length"), "Commit")
    assert not g.parsed and "max_tokens" in g.reason


# --------------------------------------------------------------------------- error completions

ALL_GRADERS = [
    G.label_match(TIERS), G.contains("renew"), G.regex(r"\d+"), G.json_match(), G.numeric(),
    G.length(max_words=5), G.label_match(TIERS) & G.length(max_words=5), G.label_match(TIERS) | G.contains("x"),
    G.mean(G.contains("a"), G.contains("b")),
]


@pytest.mark.parametrize("grader", ALL_GRADERS, ids=lambda g: g.name)
def test_failed_call_is_a_failing_unparsed_grade(grader):
    g = grader(FAILED, "Commit")
    assert isinstance(g, Grade)
    assert (g.score, g.passed, g.parsed) == (0.0, False, False)
    assert "rate_limit" in g.reason


@pytest.mark.parametrize("grader", ALL_GRADERS, ids=lambda g: g.name)
def test_every_grader_has_an_awaitable_form(grader):
    assert asyncio.run(grader.agrade(FAILED, "Commit")).passed is False


def test_error_kind_is_named_for_each_kind():
    for kind in ("timeout", "auth", "context_length"):
        g = G.label_match(TIERS)(Completion(error_kind=kind, error="boom"), "Commit")
        assert kind in g.reason and g.details["error_kind"] == kind


def test_non_completion_is_rejected_clearly():
    with pytest.raises(GraderError, match="takes a Completion"):
        G.contains("x")(42, None)


# --------------------------------------------------------------------------- contains / regex

def test_contains_all_and_any():
    g = G.contains(["renewal", "QBR"])
    full = g(C("Let us book the QBR before the  renewal."), None)
    assert full.passed and full.score == 1.0
    half = g(C("About your renewal..."), None)
    assert not half.passed and half.score == 0.5 and "QBR" in half.reason
    anyg = G.contains(["renewal", "QBR"], all=False)
    assert anyg(C("about your Renewal"), None).passed
    assert not anyg(C("hello"), None).passed
    assert not G.contains("QBR", case_sensitive=True)(C("qbr"), None).passed


def test_contains_uses_target_when_no_text_given():
    g = G.contains()
    assert g(C("Risk: the sponsor left"), "sponsor left").passed
    assert not g(C("all fine"), ["sponsor left"]).passed
    with pytest.raises(GraderError):
        G.contains([""])


def test_regex_match_label_and_bad_pattern():
    g = G.regex(r"health:\s*(green|yellow|red)", flags=re.IGNORECASE)
    r = g(C("Health: Yellow, because adoption is shallow"), None)
    assert r.passed and r.details["group"] == "Yellow" and r.label is None
    assert not g(C("healthy"), None).passed
    assert G.regex(r"(Green|Yellow|Red)", fullmatch=True)(C("Red"), None).passed
    assert not G.regex(r"(Green|Yellow|Red)", fullmatch=True)(C(" Red \n"), None).passed  # nothing stripped
    assert not G.regex(r"(Green|Yellow|Red)", fullmatch=True)(C("Red."), None).passed
    with pytest.raises(GraderError, match="invalid pattern"):
        G.regex("(unclosed")


# --------------------------------------------------------------------------- JSON

@pytest.mark.parametrize("text", [
    '{"signals": ["declining usage"]}',
    '```json\n{"signals": ["declining usage"]}\n```',
    'Here is the JSON you asked for:\n```\n{"signals": ["declining usage"]}\n```\nLet me know!',
    'Sure! {"signals": ["declining usage"]} I hope this helps.',
    '{"signals": ["declining usage"]}\n\nExplanation: usage fell {sharply}.',
    '{{"signals": ["declining usage"]}',  # prefill "{" and a model that repeats it
    '```json\n{"signals": ["declining usage"]}',  # fence never closed
])
def test_extract_json_tolerates_fences_and_text(text):
    value, err = G.extract_json(text)
    assert err is None and value == {"signals": ["declining usage"]}


def test_extract_json_array_and_errors():
    assert G.extract_json('Result: ["a", "b"] done') == (["a", "b"], None)
    value, err = G.extract_json('{"signals": ["declining usage", ')
    assert value is None and err.startswith("invalid JSON") and "line 1" in err
    assert G.extract_json("no braces here") == (None, "no JSON object or array in the answer")
    assert G.extract_json("") == (None, "empty answer")
    assert G.extract_json("{'single': 'quotes'}")[0] is None
    # a cut-off object must not pass off its inner list as the answer
    value, err = G.extract_json('{"signals": ["declining usage"], "evidence": "logins fell by')
    assert value is None and "Unterminated string" in err
    assert G.extract_json('{"a": "say \\"hi\\" {"}, more')[0] == {"a": 'say "hi" {'}


def test_prf_known_cases():
    assert G.prf(0, 0, 0) == (1.0, 1.0, 1.0)
    assert G.prf(2, 0, 0) == (1.0, 1.0, 1.0)
    p, r, f = G.prf(1, 1, 1)
    assert (p, r, f) == (0.5, 0.5, 0.5)
    p, r, f = G.prf(2, 1, 3)  # P 2/3, R 2/5, F1 = 2PR/(P+R) = 0.5
    assert p == pytest.approx(2 / 3) and r == pytest.approx(0.4) and f == pytest.approx(0.5)
    assert G.prf(0, 2, 0) == (0.0, 0.0, 0.0)  # claimed two, none there
    assert G.prf(0, 0, 2) == (0.0, 0.0, 0.0)  # missed two


def test_json_match_multilabel_f1_arithmetic():
    g = G.json_match(fields=SIGNALS)
    gold = ["declining usage", "ticket escalation", "NPS/CSAT drop"]
    r = g(C('{"signals": ["Declining-Usage", "nps csat drop", "competitive_mentions"]}'), gold)
    assert r.parsed and (r.details["tp"], r.details["fp"], r.details["fn"]) == (2, 1, 1)
    assert r.score == pytest.approx(2 / 3) and not r.passed
    assert r.details["per_field"]["ticket escalation"] == {"tp": 0, "fp": 0, "fn": 1}
    assert r.details["per_field"]["competitive mentions"] == {"tp": 0, "fp": 1, "fn": 0}
    assert r.details["per_field"]["missed milestones"] == {"tp": 0, "fp": 0, "fn": 0}
    assert "missed ticket escalation" in r.reason and "extra competitive mentions" in r.reason
    perfect = g(C('["ticket escalation", "declining usage", "NPS/CSAT drop"]'), gold)
    assert perfect.score == 1.0 and perfect.passed
    none_right = g(C('{"signals": []}'), [])
    assert none_right.score == 1.0 and none_right.passed


def test_json_match_dict_of_booleans_and_items_with_evidence():
    g = G.json_match(fields=SIGNALS)
    gold = {s: s in ("missed milestones", "procurement delays") for s in SIGNALS}
    ans = '{"missed_milestones": true, "procurement_delays": "yes", "declining_usage": false}'
    assert g(C(ans), gold).score == 1.0
    ans = '{"signals": [{"signal": "missed milestones", "evidence": "Phase 2 slipped"}]}'
    r = g(C(ans), ["missed milestones", "procurement delays"])
    assert r.details["recall"] == 0.5 and r.details["precision"] == 1.0


def test_json_match_unknown_label_counts_as_false_positive():
    r = G.json_match(fields=SIGNALS)(C('["budget cuts", "declining usage"]'), ["declining usage"])
    assert r.details["unknown"] == ["budget cuts"] and r.details["fp"] == 1 and r.score == pytest.approx(2 / 3)


def test_json_match_aliases_and_key():
    g = G.json_match(fields=SIGNALS, key="risks", aliases={"champion left": "executive sponsor departure"})
    r = g(C('{"risks": ["champion left"], "other": ["x"]}'), {"risks": ["executive sponsor departure"]})
    assert r.score == 1.0
    r = g(C('{"signals": ["champion left"]}'), ["executive sponsor departure"])  # the one list, under another key
    assert r.score == 1.0
    r = g(C('{"a": ["champion left"], "b": ["x"]}'), ["executive sponsor departure"])
    assert not r.parsed and "risks" in r.reason
    with pytest.raises(GraderError, match="not one of the fields"):
        G.json_match(fields=SIGNALS, aliases={"x": "nonsense"})


def test_json_match_unparseable_is_kept_apart_and_counts_gold_as_missed():
    g = G.json_match(fields=SIGNALS)
    r = g(C('{"signals": ["declining usage", ', finish_reason="length"), ["declining usage"])
    assert not r.parsed and r.score == 0.0 and "invalid JSON" in r.reason and "max_tokens" in r.reason
    assert r.details["per_field"]["declining usage"]["fn"] == 1
    r = g(C("The account shows declining usage."), ["declining usage"])
    assert not r.parsed and "no JSON" in r.reason
    r = g(C('{"summary": "usage is down", "owner": "Ann"}'), ["declining usage"])
    assert not r.parsed and "no list of labels" in r.reason


SCHEMA = {
    "type": "object",
    "properties": {"signals": {"type": "array", "items": {"enum": SIGNALS}}},
    "required": ["signals"],
    "additionalProperties": False,
}


def test_json_schema_validation():
    g = G.json_match(SCHEMA)
    ok = g(C('{"signals": ["ticket escalation"]}'), None)
    assert ok.passed and ok.score == 1.0 and "schema" in ok.reason
    bad = g(C('{"signals": ["budget cuts"], "extra": 1}'), None)
    assert bad.parsed and not bad.passed and bad.score == 0.0
    assert any("budget cuts" in e for e in bad.details["schema_errors"])
    assert any("extra" in e for e in bad.details["schema_errors"])
    missing = g(C("{}"), None)
    assert "'signals' is a required property" in missing.reason


def test_json_schema_strict_and_lenient_with_gold():
    ans = C('{"signals": ["ticket escalation"], "note": "x"}')
    strict = G.json_match(SCHEMA, fields=SIGNALS)(ans, ["ticket escalation"])
    assert strict.score == 0.0 and not strict.passed and strict.details["f1"] == 1.0
    lenient = G.json_match(SCHEMA, fields=SIGNALS, strict=False)(ans, ["ticket escalation"])
    assert lenient.score == 1.0 and not lenient.passed and "schema violation" in lenient.reason


def test_json_invalid_schema_is_a_config_error():
    with pytest.raises(GraderError, match="schema is invalid"):
        G.json_match({"type": "not-a-type"})


def test_json_match_record_fields():
    g = G.json_match(fields=["tier", "arr", "owner"])
    gold = {"tier": "At-Risk", "arr": 12000, "owner": "Ann Lee"}
    r = g(C('{"Tier": "at risk", "arr": 12000.0, "owner": "Bob"}'), gold)
    assert r.details["per_field"]["tier"]["tp"] == 1 and r.details["per_field"]["arr"]["tp"] == 1
    assert r.details["per_field"]["owner"] == {"tp": 0, "fp": 1, "fn": 1}
    assert r.score == pytest.approx(2 / 3)
    r = g(C('["not", "an", "object"]'), gold)
    assert not r.parsed


def test_json_threshold_and_summary_over_rows():
    g = G.json_match(fields=SIGNALS, threshold=0.5)
    grades = [
        g(C('["declining usage"]'), ["declining usage"]),  # tp 1
        g(C('["declining usage", "ticket escalation"]'), ["ticket escalation"]),  # tp 1 fp 1
        g(C("not json"), ["ticket escalation"]),  # unparsed: fn 1
    ]
    assert [x.passed for x in grades] == [True, True, False]
    s = G.extraction_summary(grades)
    assert (s["micro"]["tp"], s["micro"]["fp"], s["micro"]["fn"]) == (2, 1, 1)
    assert s["micro"]["f1"] == pytest.approx(2 / 3)
    assert s["unparsed"] == 1 and s["rows"] == 3
    assert s["per_field"]["declining usage"]["precision"] == 0.5
    assert s["per_field"]["ticket escalation"]["recall"] == 0.5


# --------------------------------------------------------------------------- numeric / length

@pytest.mark.parametrize("answer, gold, tol, rel, ok", [
    ("42", 42, 0, False, True),
    ("The renewal probability is 85%.", 85, 0, False, True),
    ("Answer: 12,000 dollars, not 11,000", 12000, 0, False, True),
    ("First 3 steps, so the total is 7.5", 7.5, 0, False, True),
    ("about 98", 100, 2, False, True),
    ("about 97", 100, 2, False, False),
    ("105", 100, 0.05, True, True),
    ("106", 100, 0.05, True, False),
    ("-3", "-3.0", 0, False, True),
])
def test_numeric(answer, gold, tol, rel, ok):
    g = G.numeric(tolerance=tol, relative=rel)(C(answer), gold)
    assert g.passed is ok and g.parsed


def test_numeric_unparseable_and_bad_target():
    g = G.numeric()
    r = g(C("about a dozen"), 12)
    assert not r.parsed and "no number" in r.reason
    with pytest.raises(GraderError, match="must be a number"):
        g(C("3"), "three")
    with pytest.raises(GraderError):
        G.numeric(tolerance=-1)


def test_length_limits():
    g = G.length(max_words=5, min_words=2)
    assert g(C("one two three"), None).passed
    over = g(C("one two three four five six"), None)
    assert not over.passed and "6 words" in over.reason and over.parsed
    assert not g(C("one"), None).passed
    assert not G.length(max_chars=10)(C("x" * 11), None).passed
    with pytest.raises(GraderError, match="at least one"):
        G.length()
    with pytest.raises(GraderError, match="above max_words"):
        G.length(max_words=1, min_words=3)


# --------------------------------------------------------------------------- composition

def test_all_of_any_of_and_operators():
    label, short = G.label_match(TIERS), G.length(max_words=3)
    both = label & short
    assert both.name == "all_of(label_match,length)"
    r = both(C("Likely, because the usage grew a lot"), "Likely")
    assert not r.passed and r.score == 0.0 and r.label == "Likely"
    assert r.details["parts"]["label_match"].passed and not r.details["parts"]["length"].passed
    assert both(C("Likely"), "Likely").passed
    either = label | short
    r = either(C("Likely, because the usage grew a lot"), "Likely")
    assert r.passed and r.score == 1.0
    three = label & short & G.contains("Likely")
    assert len(three.parts) == 3  # flattened


def test_weighted_and_mean():
    a, b = G.contains("renewal"), G.length(max_words=3)
    w = G.weighted({a: 3, b: 1})
    r = w(C("your renewal is coming up soon"), None)
    assert r.score == pytest.approx(0.75) and not r.passed  # a part failed and no threshold given
    assert G.weighted({a: 3, b: 1}, threshold=0.7)(C("your renewal is coming up soon"), None).passed
    m = G.mean(a, b, threshold=0.5)
    assert m(C("renewal"), None).score == 1.0
    assert m(C("renewal is coming up soon"), None).score == pytest.approx(0.5)
    with pytest.raises(GraderError):
        G.weighted({a: -1})
    with pytest.raises(GraderError):
        G.all_of()


def test_composite_parsed_and_duplicate_names():
    r = G.all_of(G.label_match(TIERS), G.contains("x"))(C("no idea"), "Likely")
    assert r.parsed is False
    r = G.any_of(G.label_match(TIERS), G.contains("idea"))(C("no idea"), "Likely")
    assert r.parsed is True and r.passed
    dup = G.all_of(G.contains("a"), G.contains("b"))
    assert list(dup(C("ab"), None).details["parts"]) == ["contains", "contains#2"]


def test_lazy_exports():
    assert pk.graders.label_match is G.label_match


# --------------------------------------------------------------------------- default grader per task

def test_default_grader_per_task_type():
    g = G.default_grader({"type": "label", "labels": TIERS})
    assert g(C("**Commit**"), "Commit").passed
    g = G.default_grader({"type": "multilabel", "labels": SIGNALS, "labels_field": "signals"})
    assert g(C('{"signals": ["missed milestones"]}'), {"signals": ["missed milestones"], "primary": "x"}).passed
    assert G.default_grader({"type": "rubric"}).name == "llm_judge"
    with pytest.raises(GraderError, match="no default grader"):
        G.default_grader({"type": "ranking"})


def test_json_match_named_fields_of_a_dict_gold():
    g = G.json_match(fields=["primary"])
    gold = {"drivers": ["customer_effort", "strong_emotion"], "primary": "customer_effort"}
    assert g(C('{"drivers": ["strong_emotion"], "primary": "Customer Effort"}'), gold).score == 1.0
    r = g(C('{"drivers": ["customer_effort"], "primary": "strong_emotion"}'), gold)
    assert r.score == 0.0 and r.details["per_field"]["primary"] == {"tp": 0, "fp": 1, "fn": 1}


def test_default_grader_passes_every_gold_answer_of_every_dataset():
    """Each dataset's gold target, written as the answer its template asks for, passes its default grader."""
    import json

    checked = 0
    for name in list_datasets():
        ds = pk.load_dataset(name)
        if ds.task.type == "rubric":
            judge = G.default_grader(ds.task)
            assert judge.name == "llm_judge"
            for row in ds.rows:  # every row's rubric reads, and the judge is asked about each criterion
                rubric, task = judge._rubric_and_task(row)
                user = judge.request("An answer.", rubric, task).messages[-1].content
                assert all(f"- {c.id}: " in user for c in rubric) and task[:40] in user
            continue
        g = G.default_grader(ds.task)
        for row in ds.rows[:8]:
            answer = row.target if ds.task.type == "label" else json.dumps(row.target)
            grade = g(C(answer), row)
            assert grade.passed and grade.score == 1.0, (name, row.id, grade.reason)
            checked += 1
    assert checked >= 8


def test_default_grader_on_the_real_renewal_dataset():
    ds = pk.load_dataset("renewal_tier")
    g = G.default_grader(ds.task)
    row = ds.rows[0]
    assert g(C(f"The tier is **{row.target}**."), row).passed
    other = next(lab for lab in ds.task.labels if lab != row.target)
    wrong = g(C(other), row)
    assert wrong.parsed and not wrong.passed and wrong.label == other


# --------------------------------------------------------------------------- LLM as judge

RUBRIC = [
    {"id": "stage", "description": "Says the renewal is 60 days away."},
    {"id": "cta", "description": "Asks for one concrete next step, such as a meeting.", "weight": 3},
]


@pytest.mark.parametrize("reply, score, rulings", [
    ('{"stage": "yes", "cta": "no", "reason": "no ask"}', 0.25, {"stage": True, "cta": False}),
    ('```json\n{"stage": true, "cta": true, "reason": "both"}\n```', 1.0, {"stage": True, "cta": True}),
    ('Sure. {"Stage": "Yes", "CTA": "No"} That is my verdict.', 0.25, {"stage": True, "cta": False}),
    ('{"criteria": [{"id": "stage", "met": false}, {"id": "cta", "met": true}], "reason": "r"}', 0.75,
     {"stage": False, "cta": True}),
    ('{"criteria": {"stage": "not met", "cta": "met"}}', 0.75, {"stage": False, "cta": True}),
    ('{"1": "no", "2": "yes"}', 0.75, {"stage": False, "cta": True}),
    ("stage: yes\ncta - no\nReason: it never asks for a meeting", 0.25, {"stage": True, "cta": False}),
    ('{"stage": "yes", "cta": "yes", "reason": "cut of', 1.0, {"stage": True, "cta": True}),  # truncated reply
])
def test_parse_verdict_criteria(reply, score, rulings):
    v = G.parse_verdict(reply, G.rubric_criteria(RUBRIC))
    assert v.score == pytest.approx(score) and v.criteria == rulings


@pytest.mark.parametrize("reply, problem", [
    ('{"stage": "yes|no", "cta": "yes|no", "reason": "why, in one sentence"}', "no yes/no for stage, cta"),
    ('{"stage": "yes"}', "no yes/no for cta"),
    ("I think the email is quite good overall.", "no yes/no for stage, cta"),
    ("", "no yes/no"),
])
def test_parse_verdict_criteria_unreadable(reply, problem):
    v = G.parse_verdict(reply, G.rubric_criteria(RUBRIC))
    assert v.score is None and problem in v.problem


@pytest.mark.parametrize("reply, raw", [
    ('{"score": 4, "reason": "clear and short"}', 4),
    ('{"rating": "5/5"}', 5),
    ("Score: 2 - too long and no ask.", 2),
    ("I would give it 3 out of 5.", 3),
    ('{"score": 1, "reason": "off topic"}', 1),
])
def test_parse_verdict_scale(reply, raw):
    v = G.parse_verdict(reply, "Short, friendly, asks for a meeting.")
    assert v.raw_score == raw and v.score == pytest.approx((raw - 1) / 4)


@pytest.mark.parametrize("reply", ['{"score": 9}', '{"score": 1-5, "reason": "why"}', "Looks fine to me.", '{"score": 0}'])
def test_parse_verdict_scale_unreadable(reply):
    assert G.parse_verdict(reply, "Short and friendly.").score is None


def test_rubric_forms_and_errors():
    assert [c.id for c in G.rubric_criteria(["Is short", "Is polite"])] == ["c1", "c2"]
    assert [c.id for c in G.rubric_criteria({"short": "Is short"})] == ["short"]
    assert G.rubric_criteria({"rubric": RUBRIC})[1].weight == 3
    assert G.rubric_criteria("Be kind.") == "Be kind."
    for bad in ([], "  ", [{"id": "a"}], [{"id": "a", "description": "x"}, {"id": "a", "description": "y"}],
                [{"description": "x", "weight": -1}], 42):
        with pytest.raises(GraderError):
            G.rubric_criteria(bad)


class CannedJudge(Provider):
    """A judge that answers from a queue of canned replies and records what it was asked."""

    name = "canned"
    replies: list = []
    asked: list = []

    async def _complete(self, request):
        CannedJudge.asked.append(request)
        reply = CannedJudge.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return Completion(text=reply, input_tokens=10, output_tokens=5)


@pytest.fixture
def canned():
    register("canned", CannedJudge)
    CannedJudge.replies, CannedJudge.asked = [], []
    yield CannedJudge
    clear_providers()


def test_llm_judge_flow_with_canned_replies(canned):
    canned.replies = ['{"stage": "yes", "cta": "no", "reason": "no meeting asked"}']
    j = G.llm_judge(model="canned:x", threshold=0.5)
    row = Row(id="e1", input={"stage": "60 days", "account": "Acme"}, target=RUBRIC)
    g = j(C("Hi, your renewal is 60 days away. {{not a slot}}"), row)
    assert g.parsed and g.score == pytest.approx(0.25) and not g.passed
    assert g.reason.startswith("judge: 1/2 criteria met (not met: cta)") and "no meeting asked" in g.reason
    assert g.details["criteria"] == {"stage": True, "cta": False} and g.details["judge_output_tokens"] == 5
    req = canned.asked[0]
    user = req.messages[-1].content
    assert "Acme" in user and "- cta: Asks for one concrete next step" in user
    assert "{{not a slot}}" in user  # braces in the answer are not template slots
    assert req.settings.temperature == 0.0 and req.settings.max_tokens <= 100 and req.settings.grammar is None


def test_llm_judge_unparseable_and_failed_judge(canned):
    canned.replies = ["The email is nice.", RuntimeError("boom"), '{"score": 5, "reason": "great"}']
    j = G.llm_judge(RUBRIC, model="canned:x")
    g = j(C("Hello"), None)
    assert not g.parsed and g.score == 0.0 and "no yes/no" in g.reason and "The email is nice" in g.reason
    g = j(C("Hello"), None)
    assert not g.parsed and "judge call failed (unknown)" in g.reason and "boom" in g.reason
    g = G.llm_judge("Short and warm.", model="canned:x", threshold=0.9)(C("Hello"), None)
    assert g.score == 1.0 and g.passed and g.reason == "judge score 5/5: great"


def test_llm_judge_does_not_call_the_model_for_failed_or_empty_answers(canned):
    j = G.llm_judge(RUBRIC, model="canned:x")
    assert "rate_limit" in j(FAILED, None).reason
    assert not j(C("   "), None).parsed
    assert canned.asked == []
    with pytest.raises(GraderError, match="no rubric"):
        G.llm_judge(model="canned:x")(C("Hello"), None)


def test_llm_judge_async_in_a_composition_and_cache(canned, tmp_path):
    from promptkit.cache import DiskCache

    canned.replies = ['{"stage": "yes", "cta": "yes", "reason": "ok"}']
    judge = G.llm_judge(RUBRIC, model="canned:x", cache=DiskCache(tmp_path))
    both = G.length(max_words=20) & judge
    g = asyncio.run(both.agrade(C("Renewal in 60 days: shall we meet Tuesday?"), None))
    assert g.passed and g.details["parts"]["llm_judge"].score == 1.0
    again = judge(C("Renewal in 60 days: shall we meet Tuesday?"), None)  # no reply queued: must come from cache
    assert again.score == 1.0 and again.details["judge_cached"] is True
    assert len(canned.asked) == 1


def test_llm_judge_config_errors():
    with pytest.raises(ModelSpecError):
        G.llm_judge(RUBRIC, model="nonsense")
    with pytest.raises(GraderError, match="max_tokens"):
        G.llm_judge(RUBRIC, max_tokens=2)
    with pytest.raises(GraderError, match="threshold"):
        G.llm_judge(RUBRIC, threshold=2)


def test_judge_grammar_forces_the_expected_shape():
    gram = G.judge_grammar(G.rubric_criteria(RUBRIC))
    assert gram.startswith('root ::= "{" "\\"stage\\": " yn ", \\"cta\\": " yn')
    assert "[1-5]" in G.judge_grammar("Be kind.")


@pytest.mark.local_model
def test_llm_judge_on_the_real_local_model():
    """SmolLM2 is a weak judge: only check that it yields a well-formed grade with a reason."""
    j = G.llm_judge([{"id": "meeting", "description": "Asks for a meeting."}], model="local:smollm2", max_tokens=40)
    g = j(C("Hi Dana, your renewal is 60 days out. Could we meet on Tuesday?"), None)
    assert isinstance(g, Grade) and g.reason
    assert (g.parsed and 0.0 <= g.score <= 1.0) or (not g.parsed and g.score == 0.0)
    assert g.details["judge_model"] == "local:smollm2" and g.details["judge_text"]
