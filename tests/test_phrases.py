"""The power-phrase library: valid data, honest sources, and every phrase applying where it says."""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

import promptkit as pk
from promptkit.errors import TemplateError
from promptkit.phrases import (
    FOLKLORE, PLACEMENTS, Phrase, ablation, apply_phrases, default_library, get_phrase, load_phrases,
    builtin_phrases, phrase_table, phrases, wrap_targets,
)
from promptkit.templates import Template, format_value, load_template
from promptkit.types import Message, Row

ROOT = Path(__file__).resolve().parents[1]
# the research notes sit beside the checkout (CI lays a copy of shared/ there); users do not have them
EVIDENCE = next((p for p in (ROOT.parent / "shared" / "research" / "prompting-evidence.md",
                             Path("/work/shared/research/prompting-evidence.md")) if p.exists()),
                ROOT.parent / "shared" / "research" / "prompting-evidence.md")
LIB = default_library()

# built-in templates, so the phrase checks mean something before (and beside) the dataset templates
BUILTIN = {
    "label_task": (
        Template("label_task", system="You are a customer-success analyst.",
                 turns="Account notes:\n{{notes}}\n\nAnswer with one of: Commit, Likely, At-Risk.\n"),
        {"notes": "Usage fell 40% since March; champion left in May."},
    ),
    "fewshot_json_prefill": (
        Template("fewshot_json_prefill", system="Extract risk signals as JSON like {\"signals\": []}.",
                 turns=[Message("user", "Notes: usage down"), Message("assistant", '{"signals": ["declining usage"]}'),
                        Message("user", "Notes: {{notes}}\nAccount: {{account}}")],
                 prefill="{"),
        {"notes": "Procurement stalled; they mentioned a competitor.", "account": "Harbourline"},
    ),
    "inline_no_system": (
        Template("inline_no_system", turns="Write a renewal email to {{contact}} at {{account}}, {{days}} days out."),
        {"contact": "Dana", "account": "Acme", "days": 60},
    ),
    "no_variables": (Template("no_variables", turns="Name three signs an account may churn."), {}),
}


def _dataset_cases() -> dict[str, tuple[Template, dict]]:
    """Every datasets/*.template.yaml with the input of its first dataset row (or stand-in values)."""
    out = {}
    for path in sorted((ROOT / "datasets").glob("*.template.yaml")):
        t = load_template(path)
        rows = ROOT / "datasets" / (path.name[: -len(".template.yaml")] + ".jsonl")
        values = None
        if rows.exists():
            for line in rows.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    values = json.loads(line)["input"]
                    break
        out[f"dataset:{path.name}"] = (t, values if values is not None else {v: f"value of {v}" for v in t.variables})
    return out


CASES = {**BUILTIN, **_dataset_cases()}


# ---- the library as data ----------------------------------------------------------------------


def test_library_has_at_least_30_phrases_across_the_required_categories():
    assert len(LIB) >= 30
    counts = {c.id: len(LIB.by_category(c.id)) for c in LIB.categories}
    for cat in ("role", "context", "reasoning", "thinking_tags", "output", "examples", "length", "grounding",
                "self_check", "large_model"):
        assert counts.get(cat, 0) >= 1, f"no phrase in category {cat}"
    assert len(set(LIB.ids)) == len(LIB)
    assert {p.placement for p in LIB} <= set(PLACEMENTS)


def test_the_much_quoted_phrases_are_there_verbatim():
    texts = {p.id: p.text for p in LIB}
    assert texts["cot"] == "Let's think step by step."
    assert texts["deep_breath"] == "Take a deep breath and work on this problem step-by-step."
    assert texts["emotion"] == "This is very important to my career."
    assert texts["only_label"] == "Answer with only the label, nothing else."
    assert "I don't know" in texts["dont_know"]
    assert "word for word" in texts["quote_first"]


@pytest.mark.skipif(not EVIDENCE.exists(), reason=f"the research evidence file {EVIDENCE} is not on this machine")
def test_every_citation_and_reported_number_comes_from_the_evidence_file():
    evidence = EVIDENCE.read_text(encoding="utf-8")
    for p in LIB:
        cited = p.source + " " + p.reported + " " + p.notes
        for arxiv in re.findall(r"\d{4}\.\d{4,5}", cited):
            assert arxiv in evidence, f"phrase {p.id}: arXiv {arxiv} is not in the evidence file"
        for url in re.findall(r"(?:platform\.claude\.com|blog\.dottxt\.co)[^\s);]*", cited):
            tail = url.rsplit("/", 1)[-1]
            assert tail in evidence, f"phrase {p.id}: {url} is not in the evidence file"
        for number in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", p.reported):
            assert number in evidence, f"phrase {p.id}: reported number {number} is not in the evidence file"
        if "arXiv" not in p.source and "docs" not in p.source:
            assert p.source == FOLKLORE, f"phrase {p.id}: uncited source {p.source!r}"


def test_phrases_by_category_and_unknown_category():
    assert [p.id for p in phrases("reasoning")][:2] == ["cot", "cot_prefill"]
    assert len(phrases()) == len(LIB)
    with pytest.raises(TemplateError, match=r"unknown phrase category 'reason'; categories are \['role'"):
        phrases("reason")


def test_unknown_phrase_id_names_close_matches():
    with pytest.raises(TemplateError) as e:
        get_phrase("cto")
    assert str(e.value).startswith("unknown phrase id 'cto' in ")
    assert str(e.value).endswith("; did you mean 'cot'?")


def test_phrase_table_has_one_row_per_phrase_and_html_lists_every_id():
    df = phrase_table()
    assert list(df.columns) == ["id", "category", "title", "placement", "text", "helps_when", "hurts_when",
                                "source", "reported"]
    assert list(df["id"]) == LIB.ids
    assert list(phrase_table("grounding")["id"]) == [p.id for p in phrases("grounding")]
    html = LIB._repr_html_()
    assert all(f"<code>{i}</code>" in html for i in LIB.ids)
    assert pk.phrase_table is phrase_table and phrases is builtin_phrases


# ---- loading bad files ---------------------------------------------------------------------------

GOOD_ENTRY = """\
  - id: cot
    category: reasoning
    title: Step by step
    text: Let's think step by step.
    placement: after_user
    helps_when: big models
    hurts_when: small models
    source: "Kojima et al. 2022, arXiv 2205.11916"
"""
HEAD = "categories:\n  - id: reasoning\n    title: Reasoning\n    about: Think first.\nphrases:\n"


def _bad(tmp_path: Path, entry: str) -> str:
    p = tmp_path / "phrases.yaml"
    p.write_text(HEAD + GOOD_ENTRY + entry)
    with pytest.raises(TemplateError) as e:
        load_phrases(p)
    return str(e.value).replace(str(p), "FILE")


def test_a_good_custom_file_loads(tmp_path):
    p = tmp_path / "phrases.yaml"
    p.write_text(HEAD + GOOD_ENTRY)
    lib = load_phrases(p)
    assert lib.ids == ["cot"] and lib["cot"].hurts_when == "small models" and lib[0].reported == ""


@pytest.mark.parametrize("change, message", [
    (("placement: after_user", "placement: after"),
     "FILE, line 18: phrase 'deep': field 'placement' must be one of ['system_prepend', 'system_append', "
     "'before_user', 'after_user', 'wrap_input', 'repeat_user', 'prefill'], got 'after'"),
    (("category: reasoning", "category: reasonning"),
     "FILE, line 15: phrase 'deep': field 'category' must be one of ['reasoning'], got 'reasonning'"),
    (("id: cot", "id: cot"),
     "FILE, line 14: phrase 'cot': field 'id' repeats the id of phrases[0]"),
    (("id: cot", "id: Deep Breath"),
     "FILE, line 14: phrase 'Deep Breath': field 'id' must be a short slug (a-z, 0-9, _; at most 24 characters)"),
    (("    helps_when: big models\n", ""),
     "FILE, line 14: phrase 'deep': missing field 'helps_when'"),
    (("    hurts_when: small models\n", "    hurts_when: small models\n    hurt_when: x\n"),
     "FILE, line 21: phrase 'deep': unknown field 'hurt_when' (did you mean 'hurts_when'?); fields are "
     "['id', 'category', 'title', 'text', 'placement', 'helps_when', 'hurts_when', 'source', 'reported', 'notes']"),
    (("title: Step by step", "title: ''"),
     "FILE, line 16: phrase 'deep': field 'title' must be non-empty text, got ''"),
    (("text: Let's think step by step.", "text: Think about {{notes}}"),
     "FILE, line 17: phrase 'deep': field 'text' must not contain a {{variable}}; phrases add words, not inputs"),
    (("placement: after_user", "placement: wrap_input"),
     "FILE, line 17: phrase 'deep': field 'text' of a wrap_input phrase must contain {input}"),
    (("text: Let's think step by step.", "text: 'Look at {input}'"),
     "FILE, line 17: phrase 'deep': field 'text' uses {input}, which only wrap_input phrases fill"),
    (('source: "Kojima et al. 2022, arXiv 2205.11916"', "source: a blog I read"),
     "FILE, line 21: phrase 'deep': field 'source' must cite a paper (arXiv id) or a vendor doc, or say "
     "'practitioner folklore; no controlled study in our evidence file'"),
])
def test_a_bad_entry_names_file_line_phrase_and_field(tmp_path, change, message):
    old, new = change
    entry = GOOD_ENTRY.replace(old, new, 1)
    if "repeats" not in message:
        entry = entry.replace("id: cot", "id: deep", 1) if "id: cot" in entry else entry
    assert _bad(tmp_path, entry) == message


def test_invalid_yaml_and_missing_file(tmp_path):
    assert _bad(tmp_path, "  - id: x\n    text: a: b\n") == (
        "FILE, line 15, column 12: not valid YAML: mapping values are not allowed here")
    with pytest.raises(TemplateError, match="phrase file not found"):
        load_phrases(tmp_path / "none.yaml")


# ---- applying ------------------------------------------------------------------------------------


def _user(req) -> str:
    return req.turns[-1].content


def assert_placed(phrase: Phrase, base: Template, variant: Template, values: dict) -> None:
    """The phrase text is exactly where its placement says, and nothing else moved."""
    rb, rv = base.render(values), variant.render(values)
    text = phrase.text
    assert [(m.role, m.content) for m in rv.turns[:-1]] == [(m.role, m.content) for m in rb.turns[:-1]], \
        "few-shot turns must not change"
    bu, vu = _user(rb).strip("\n"), _user(rv)
    p = phrase.placement
    if p == "system_prepend":
        assert rv.system.startswith(text) and rv.system.endswith(rb.system.strip("\n"))
    elif p == "system_append":
        assert rv.system.endswith(text) and rv.system.startswith(rb.system.strip("\n"))
    elif p == "before_user":
        assert vu == f"{text}\n\n{bu}"
    elif p == "after_user":
        assert vu == f"{bu}\n\n{text}"
    elif p == "repeat_user":
        assert vu == f"{bu}\n\n{text}\n{bu}"
    elif p == "prefill":
        if rb.prefill.startswith(text):  # already starts that way: not doubled
            assert rv.prefill == rb.prefill
        else:
            assert rv.prefill == (f"{text}\n{rb.prefill}" if rb.prefill else text)
    elif p == "wrap_input":
        targets = wrap_targets(base.user)
        if not targets:
            assert vu == text.replace("{var}", "input").replace("{input}", bu)
        for v in targets:
            assert text.replace("{var}", v).replace("{input}", format_value(values[v])) in vu
    else:  # pragma: no cover - a new placement needs a check here
        pytest.fail(f"no check for placement {p}")
    if p not in ("system_prepend", "system_append"):
        assert rv.system == rb.system
    if p != "prefill":
        assert rv.prefill == rb.prefill


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("phrase_id", LIB.ids)
def test_every_phrase_applies_cleanly_to_every_template(case, phrase_id):
    base, values = CASES[case]
    phrase = LIB[phrase_id]
    variant = apply_phrases(base, [phrase_id])
    assert variant.name == f"{base.name}+{phrase_id}"
    assert variant.variables == base.variables, "a phrase must not add or drop a variable"
    assert_placed(phrase, base, variant, values)


@pytest.mark.parametrize("case", sorted(CASES))
def test_all_phrases_together_still_render(case):
    base, values = CASES[case]
    variant = apply_phrases(base, LIB.ids)
    req = variant.render(values)
    for p in LIB:
        if p.placement != "wrap_input":
            assert p.text in (req.system + "\n" + _user(req) + "\n" + req.prefill), p.id


def test_dataset_templates_are_covered_when_present():
    found = sorted((ROOT / "datasets").glob("*.template.yaml"))
    assert [k for k in CASES if k.startswith("dataset:")] == [f"dataset:{p.name}" for p in found]
    for name in [k for k in CASES if k.startswith("dataset:")]:
        t, values = CASES[name]
        assert t.missing(values) == [], f"{name}: its first row lacks {t.missing(values)}"


def test_apply_leaves_the_original_untouched_and_records_what_was_applied():
    base, _ = BUILTIN["label_task"]
    before = base.to_dict()
    v = apply_phrases(base, ["xml_input", "cot"])
    assert base.to_dict() == before
    assert v.name == "label_task+cot+xml_input"
    assert v.meta == {"base": "label_task", "phrases": ["cot", "xml_input"]}
    v2 = apply_phrases(v, ["analyst"])
    assert v2.name == "label_task+cot+xml_input+analyst"
    assert v2.meta == {"base": "label_task", "phrases": ["cot", "xml_input", "analyst"]}


def test_order_is_fixed_by_the_library_whatever_order_ids_are_given_in():
    base, _ = BUILTIN["fewshot_json_prefill"]
    ids = ["quote_first", "cot", "analyst", "xml_input", "dont_know", "json_prefill", "reread"]
    first = apply_phrases(base, ids)
    for perm in itertools.islice(itertools.permutations(ids), 0, 200, 17):
        assert apply_phrases(base, list(perm)) == first


def test_phrases_sharing_a_placement_keep_library_order():
    base, values = BUILTIN["label_task"]
    v = apply_phrases(base, ["only_label", "cot"])  # both after_user; cot comes first in the library
    assert _user(v.render(values)).endswith("Let's think step by step.\nAnswer with only the label, nothing else.")
    v = apply_phrases(base, ["helpful", "analyst"])  # both system_prepend
    assert v.system == (f"{LIB['analyst'].text}\n\nYou are a helpful assistant.\n\n"
                        "You are a customer-success analyst.")


def test_wrap_input_wraps_only_data_lines_when_there_are_any():
    t = Template("mixed", turns="Email {{contact}} about:\n{{notes}}\n")
    v = apply_phrases(t, ["xml_input"])
    assert v.user == "Email {{contact}} about:\n<notes>\n{{notes}}\n</notes>\n"


def test_custom_phrase_objects_and_bad_ids():
    base, values = BUILTIN["label_task"]
    mine = Phrase("mine", "context", "Mine", "Our fiscal year ends in January.", "before_user", "-", "-", FOLKLORE)
    v = apply_phrases(base, [mine, "cot"])
    assert v.name == "label_task+cot+mine"
    assert _user(v.render(values)).startswith("Our fiscal year ends in January.\n\n")
    with pytest.raises(TemplateError, match=r"phrase 'cot' is given twice"):
        apply_phrases(base, ["cot", "cot"])
    with pytest.raises(TemplateError, match=r"unknown phrase id 'deep_breathe'.*did you mean 'deep_breath'"):
        apply_phrases(base, ["deep_breathe"])
    assert apply_phrases(base, []) is base


def test_ablation_gives_baseline_each_alone_all_together_and_leave_one_out():
    base, values = BUILTIN["label_task"]
    names = [t.name for t in ablation(base, ["deep_breath", "cot"])]
    assert names == ["label_task", "label_task+cot", "label_task+deep_breath", "label_task+cot+deep_breath"]
    loo = ablation(base, ["cot", "xml_input", "emotion"], leave_one_out=True)
    assert [t.name for t in loo] == [
        "label_task", "label_task+cot", "label_task+xml_input", "label_task+emotion",
        "label_task+cot+xml_input+emotion",
        "label_task+xml_input+emotion", "label_task+cot+emotion", "label_task+cot+xml_input",
    ]
    assert len({t.name for t in loo}) == len(loo)
    for t in loo:
        t.render(values)
    assert [t.name for t in ablation(base, ["cot"])] == ["label_task", "label_task+cot"]
    with pytest.raises(TemplateError, match="needs at least one phrase"):
        ablation(base, [])


def test_learner_flow_apply_two_phrases_and_add_examples():
    base, values = BUILTIN["label_task"]
    rows = [Row("a", {"notes": "Signed early."}, "Commit"), Row("b", {"notes": "Champion left."}, "At-Risk")]
    t = pk.apply_phrases(base, ["only_label", "xml_input"]).with_examples(rows)
    assert apply_phrases(base, ["xml_input", "only_label"]).with_examples(rows) == t
    assert t.name == "label_task+only_label+xml_input+2shot"
    req = t.render(values)
    assert [m.role for m in req.turns] == ["user", "assistant", "user", "assistant", "user"]
    assert req.turns[0].content.startswith("Account notes:\n<notes>\nSigned early.\n</notes>")
    assert req.turns[0].content.endswith("Answer with only the label, nothing else.")
