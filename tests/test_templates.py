"""Templates: strict rendering, readable errors, file round trips and few-shot helpers."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import promptkit as pk
from promptkit.errors import TemplateError
from promptkit.templates import Template, load_template
from promptkit.types import Message, PromptVariant, Request, Row, Settings


@pytest.fixture
def tier() -> Template:
    return Template(
        name="renewal_tier",
        description="Renewal-risk tier from account notes.",
        system="You are a customer-success analyst at {{company}}.",
        turns=[
            {"role": "user", "content": "Account notes:\n{{notes}}\n\nReply as JSON like {\"tier\": \"Commit\"}.\n"},
        ],
        prefill='{"tier": "',
    )


# ---- rendering --------------------------------------------------------------------------


def test_render_fills_every_part_and_returns_a_request(tier):
    req = tier.render({"company": "Acme", "notes": "Usage up 20%."}, Settings(max_tokens=7))
    assert isinstance(req, Request)
    assert req.system == "You are a customer-success analyst at Acme."
    assert [m.role for m in req.turns] == ["user"]
    assert req.turns[0].content == 'Account notes:\nUsage up 20%.\n\nReply as JSON like {"tier": "Commit"}.\n'
    assert req.prefill == '{"tier": "'
    assert req.settings.max_tokens == 7


def test_template_is_a_prompt_variant_and_to_request_ignores_extra_row_fields(tier):
    assert isinstance(tier, PromptVariant)
    req = tier.to_request({"company": "Acme", "notes": "n", "id": "rt-1", "segment": "SMB"}, Settings())
    assert req.turns[0].content.startswith("Account notes:\nn\n")


def test_render_takes_a_row_directly(tier):
    row = Row("rt-1", {"company": "Acme", "notes": "Renewal signed."}, "Commit")
    assert tier.render(row) == tier.render(row.input)


def test_missing_variable_names_variable_template_and_part(tier):
    with pytest.raises(TemplateError) as e:
        tier.render({"company": "Acme"})
    assert str(e.value) == (
        "template 'renewal_tier': missing variable 'notes' (used in turn 1 (user)); given variables: ['company']"
    )


def test_several_missing_variables_are_all_named_with_their_parts_and_a_hint(tier):
    t = tier.replace(prefill="Tier for {{account}}:")
    with pytest.raises(TemplateError) as e:
        t.render({"note": "typo"})
    assert str(e.value) == (
        "template 'renewal_tier': missing variables 'company' (used in system), "
        "'notes' (used in turn 1 (user); did you mean 'note'?), 'account' (used in prefill); "
        "given variables: ['note']"
    )


def test_unused_variables_are_reported_not_fatal_unless_strict(tier):
    given = {"company": "Acme", "notes": "n", "segment": "SMB", "id": "x"}
    assert tier.unused(given) == ["id", "segment"]
    assert tier.missing(given) == []
    tier.render(given)  # the runner passes whole rows: extras are fine by default
    with pytest.raises(TemplateError) as e:
        tier.render(given, strict=True)
    assert str(e.value) == (
        "template 'renewal_tier': unused variables ['id', 'segment'] (the template uses ['company', 'notes']); "
        "pass strict=False to allow extras"
    )


def test_single_braces_stay_literal_and_only_double_braces_are_variables():
    t = Template("braces", turns='Schema: {"a": {"b": 1}} {not_a_var} {{ x }} {{{y}}} {{1bad}}')
    assert t.variables == {"x", "y"}
    out = t.render({"x": "X", "y": "Y"}).turns[0].content
    assert out == 'Schema: {"a": {"b": 1}} {not_a_var} X {Y} {{1bad}}'


def test_values_are_formatted_structures_as_json():
    t = Template("fmt", turns="{{n}} | {{flag}} | {{items}} | {{none}}")
    out = t.render({"n": 3, "flag": True, "items": {"a": [1, "é"]}, "none": None}).turns[0].content
    assert out == '3 | True | {\n  "a": [\n    1,\n    "é"\n  ]\n} | '


def test_variables_and_order(tier):
    assert tier.variables == {"company", "notes"}
    assert tier.variable_order() == ["company", "notes"]


def test_fill_partially_fills_and_keeps_other_slots(tier):
    part = tier.fill({"company": "Acme"})
    assert part.variables == {"notes"}
    assert part.system == "You are a customer-success analyst at Acme."
    assert tier.variables == {"company", "notes"}  # original untouched


def test_rendered_request_runs_through_a_provider(tier):
    req = tier.render({"company": "Acme", "notes": "Renewal signed."}, Settings(max_tokens=16))
    c = pk.complete(req, "echo:x")
    assert c.ok, c.error
    assert "Renewal signed." in c.text


# ---- construction errors ----------------------------------------------------------------


def test_turns_must_end_with_a_user_turn():
    with pytest.raises(TemplateError, match=r"^template 't': the last turn is an assistant turn"):
        Template("t", turns=[Message("user", "q"), Message("assistant", "a")])


def test_system_role_inside_turns_is_refused_with_a_pointer():
    with pytest.raises(TemplateError) as e:
        Template("t", turns=[{"role": "system", "content": "x"}, {"role": "user", "content": "q"}])
    assert str(e.value) == ("template 't': turns[0].role must be 'user' or 'assistant', got 'system' "
                            "(put system text in the template's 'system' field)")


def test_empty_name_and_empty_turns_are_refused():
    with pytest.raises(TemplateError, match="template name must be non-empty text"):
        Template("  ", turns="q")
    with pytest.raises(TemplateError, match="'turns' is empty"):
        Template("t", turns=[])


def test_replace_makes_a_copy_and_names_unknown_fields(tier):
    t2 = tier.replace(system="Be brief.")
    assert t2.system == "Be brief." and tier.system.startswith("You are")
    with pytest.raises(TemplateError, match=r"unknown field\(s\) \['sytem'\]"):
        tier.replace(sytem="x")


# ---- files ---------------------------------------------------------------------------------


def test_yaml_round_trip_keeps_every_part(tmp_path, tier):
    t = tier.with_examples([Row("r1", {"notes": "Signed early."}, "Commit")], answer="{{target}}\"}")
    path = t.save(tmp_path / "sub" / "tier.yaml")
    text = path.read_text()
    assert "content: |" in text  # multi-line prompts stay readable in the file
    assert load_template(path) == t
    assert Template.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_toml_round_trip(tmp_path, tier):
    t = tier.replace(system="Quotes ''' and \"\"\" and a backslash \\ survive.\nSecond line'", meta={"k": [1, "v"]})
    path = t.save(tmp_path / "tier.toml")
    assert load_template(path) == t


def test_loading_the_brief_format(tmp_path):
    p = tmp_path / "renewal.yaml"
    p.write_text(
        "name: renewal_tier\n"
        "description: one line on what the prompt is for\n"
        "system: |\n  You are a customer-success analyst.\n"
        "turns:                       # user/assistant turns\n"
        "  - role: user\n    content: |\n      Account notes:\n      {{notes}}\n"
        "      Answer with one of: Commit, Likely, At-Risk.\n"
        'prefill: ""\n'
    )
    t = load_template(p)
    assert t.name == "renewal_tier" and t.variables == {"notes"} and t.prefill == ""
    assert t.system == "You are a customer-success analyst.\n"


def _write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BAD_TEMPLATES = {  # what the file says -> the whole message, naming the file ({p}), line, column and field
    "invalid_yaml": ("bad.yaml", "name: x\nturns:\n  - role: user\n    content: [oops\nprefill: ''\n",
                     "{p}, line 5, column 8: not valid YAML: expected ',' or ']', but got ':' "
                     "(while parsing a flow sequence that starts at line 4, column 14)"),
    "unknown_field_with_suggestion": (
        "bad.yaml", "name: x\nsytem: hi\nturns:\n  - role: user\n    content: q\n",
        "{p}, line 2: unknown template field 'sytem' (did you mean 'system'?); "
        "fields are ['name', 'description', 'system', 'turns', 'prefill', 'meta', 'placeholders']"),
    "missing_field": ("bad.yaml", "name: x\nsystem: hi\n", "{p}: template is missing the required field 'turns'"),
    "bad_turn_role": ("bad.yaml", "name: x\nturns:\n  - role: user\n    content: q\n  - role: sytem\n    content: a\n",
                      "{p}, line 5: template 'x': turns[1].role must be 'user' or 'assistant', got 'sytem'"),
    "turn_without_content": ("bad2.yaml", "name: x\nturns:\n  - role: user\n    content: q\n  - role: user\n",
                             "{p}, line 5: template 'x': turns[1] is missing the field 'content'"),
    "invalid_toml": ("bad.toml", 'name = "x"\nturns = oops\n', "{p}, line 2, column 9: not valid TOML: Invalid value"),
}


@pytest.mark.parametrize("case", list(BAD_TEMPLATES))
def test_a_bad_template_file_is_named_with_its_line_column_and_field(tmp_path, case):
    name, text, message = BAD_TEMPLATES[case]
    p = _write(tmp_path, text, name)
    with pytest.raises(TemplateError) as e:
        load_template(p)
    assert str(e.value) == message.format(p=p)


def test_non_mapping_file_and_wrong_extension_and_missing_file(tmp_path):
    p = _write(tmp_path, "- just\n- a list\n")
    with pytest.raises(TemplateError, match=r"a template must be a mapping"):
        load_template(p)
    with pytest.raises(TemplateError, match=r"a template file ends in .yaml, .yml or .toml, got '.txt'"):
        load_template(tmp_path / "t.txt")
    with pytest.raises(TemplateError, match=r"template file not found"):
        load_template(tmp_path / "nope.yaml")


def test_save_is_atomic_a_failed_write_leaves_the_old_file(tmp_path, tier, monkeypatch):
    path = tier.save(tmp_path / "tier.yaml")
    before = path.read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        tier.replace(system="changed").save(path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tier.yaml"]  # no temp file left behind


# ---- few-shot examples ------------------------------------------------------------------------


def test_with_examples_adds_pairs_before_the_final_turn():
    t = Template("tier", system="S", turns="Notes:\n{{notes}}\nTier?")
    rows = [Row("a", {"notes": "all good", "extra": 1}, "Commit"), Row("b", {"notes": "churn risk"}, "At-Risk")]
    t2 = t.with_examples(rows)
    assert t2.name == "tier+2shot"
    assert [(m.role, m.content) for m in t2.turns] == [
        ("user", "Notes:\nall good\nTier?"), ("assistant", "Commit"),
        ("user", "Notes:\nchurn risk\nTier?"), ("assistant", "At-Risk"),
        ("user", "Notes:\n{{notes}}\nTier?"),
    ]
    assert t2.meta["examples"] == ["a", "b"]
    assert len(t.turns) == 1  # original untouched


def test_with_examples_formats_answers():
    t = Template("x", turns="{{q}}")
    dict_row = [Row("a", {"q": "Q"}, {"signals": ["declining usage"]})]
    assert t.with_examples(dict_row).turns[1].content == '{\n  "signals": [\n    "declining usage"\n  ]\n}'
    assert t.with_examples([Row("a", {"q": "Q"}, "Red")], answer="Colour: {{target}}").turns[1].content == "Colour: Red"
    assert t.with_examples([Row("a", {"q": "Q"}, "Red")], answer=str.lower).turns[1].content == "red"
    pre = t.replace(prefill="Answer:")
    assert pre.with_examples([Row("a", {"q": "Q"}, " Red")]).turns[1].content == "Answer: Red"
    assert pre.with_examples([Row("a", {"q": "Q"}, "Answer: Red")]).turns[1].content == "Answer: Red"


def test_with_examples_names_a_row_missing_an_input():
    t = Template("tier", turns="{{notes}} {{stage}}")
    with pytest.raises(TemplateError) as e:
        t.with_examples([Row("rt-9", {"notes": "n"}, "Commit")])
    assert str(e.value) == ("template 'tier': example row 'rt-9' has no input field(s) ['stage'] "
                            "for the user turn (row fields: ['notes'])")


# ---- display -----------------------------------------------------------------------------------


def test_str_and_html_show_every_part(tier):
    t = tier.with_examples([Row("a", {"notes": "<b>ok</b>"}, "Commit")])
    s = str(t)
    for piece in ("Template 'renewal_tier+1shot'", "variables: company, notes", "--- system ---",
                  "--- turn 1: user ---", "--- turn 2: assistant ---", "--- prefill (start of the answer) ---"):
        assert piece in s
    h = t._repr_html_()
    assert "&lt;b&gt;ok&lt;/b&gt;" in h and "<b>ok</b>" not in h  # prompt text is escaped
    assert "(example answer)" in h and "{{notes}}" in h
