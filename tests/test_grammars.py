"""Grammars: the GBNF text, and the real local model held to it."""
from __future__ import annotations

import json

import jsonschema
import pytest

import promptkit as pk
from promptkit.errors import SettingsError
from promptkit.grammars import any_json_grammar, gbnf_literal, json_grammar, label_grammar

TIERS = ["Commit", "Likely", "At-Risk"]
NOTES = [
    "Budget cut, champion left, no reply to emails.",
    "Signed early, adding 40 seats next quarter.",
    "Usage flat; they asked for a discount but like the product.",
]


def test_label_grammar_text():
    assert label_grammar(["Yes", "No"]) == 'root ::= label\nlabel ::= "Yes" | "No"\n'
    assert label_grammar(["Yes", "No"], prefix="Answer: ") == 'root ::= "Answer: " label\nlabel ::= "Yes" | "No"\n'
    assert gbnf_literal('say "hi"\\\n') == '"say \\"hi\\"\\\\\\n"'


def test_label_grammar_rejects_bad_labels():
    with pytest.raises(SettingsError, match="list of labels"):
        label_grammar("Yes")
    with pytest.raises(SettingsError, match=r"labels\[1\]"):
        label_grammar(["Yes", ""])
    with pytest.raises(SettingsError, match="duplicates"):
        label_grammar(["Yes", "Yes"])


def test_json_grammar_converts_a_schema_and_names_bad_input():
    g = json_grammar({"type": "object", "properties": {"tier": {"enum": TIERS}}, "required": ["tier"]})
    assert "root ::=" in g and '\\"At-Risk\\"' in g
    with pytest.raises(SettingsError, match="not valid JSON"):
        json_grammar("{not json")
    with pytest.raises(SettingsError, match="must be a JSON Schema object"):
        json_grammar("[1, 2]")


@pytest.mark.local_model
def test_label_grammar_forces_exactly_one_label_on_the_real_model():
    grammar = label_grammar(TIERS)
    free = []
    for notes in NOTES:
        prompt = f"Account notes: {notes}\nWhat is the renewal tier? Answer with one of: Commit, Likely, At-Risk."
        c = pk.complete(prompt, "local:smollm2", max_tokens=12, grammar=grammar)
        assert c.ok, c.error
        assert c.text in TIERS, c.text
        assert c.finish_reason == "stop"
        free.append(pk.complete(prompt, "local:smollm2", max_tokens=12).text)
    assert not all(t in TIERS for t in free), "unconstrained SmolLM2 was expected to ramble at least once"


@pytest.mark.local_model
def test_labels_with_quotes_and_a_prefill_are_escaped_correctly():
    labels = ['a "quoted" one', "back\\slash"]
    c = pk.complete("Pick one.", "local:smollm2", max_tokens=16, grammar=label_grammar(labels, prefix="Pick: "),
                    prefill="")
    assert c.ok, c.error
    assert c.text in [f"Pick: {lab}" for lab in labels], c.text


@pytest.mark.local_model
def test_json_grammar_output_parses_and_fits_the_schema():
    schema = {"type": "array", "items": {"enum": ["declining_usage", "ticket_escalation", "competitive_mentions"]}}
    c = pk.complete("Notes: logins down 40%, they are trialling Zendesk. List the risk signals as a JSON array.",
                    "local:smollm2", max_tokens=48, grammar=json_grammar(schema))
    assert c.ok, c.error
    jsonschema.validate(json.loads(c.text), schema)
    obj = pk.complete("Describe a customer as JSON.", "local:smollm2", max_tokens=24, grammar=any_json_grammar())
    assert obj.ok and obj.text.lstrip().startswith("{")


@pytest.mark.local_model
def test_invalid_grammar_is_an_error_completion_not_a_crash():
    c = pk.complete("hi", "local:smollm2", max_tokens=4, grammar="root ::= (((")
    assert c.error_kind == "bad_request" and "not valid GBNF" in c.error
    c = pk.complete("hi", "local:smollm2", max_tokens=4, grammar='start ::= "a"')  # no root rule
    assert c.error_kind == "bad_request"
