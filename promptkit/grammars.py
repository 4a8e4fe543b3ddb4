"""Constrained output for local models: llama.cpp grammars (GBNF) that allow only valid answers.

A grammar masks every token that would leave the language it defines, so a
small model that rambles can still only answer one of the labels, or JSON that
fits a schema. Pass the grammar text through the settings the local provider
honours: `pk.complete(prompt, "local:smollm2", grammar=label_grammar(labels))`
or `Settings(grammar=...)` in an experiment. Vendor APIs ignore it (they have
their own structured-output modes).

Constraining fixes the parse rate by construction; whether it moves accuracy
is an empirical question (Tam et al. 2024 report format limits can hurt
reasoning but help classification; see the research notes), measured in
`benchmarks/bench_grammars.py`.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from .errors import SettingsError


def gbnf_literal(text: str) -> str:
    """`text` as a quoted GBNF string literal (quotes, backslashes and control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def label_grammar(labels: Sequence[str], *, prefix: str = "", suffix: str = "") -> str:
    """A grammar whose only sentences are the labels (optionally wrapped, e.g. prefix="Answer: ").

    The model must pick exactly one label and then stop: the answer cannot be
    unparseable, so any remaining error is a wrong label, not a format failure.
    """
    if isinstance(labels, str) or not labels:
        raise SettingsError(f"label_grammar needs a list of labels like ['Yes', 'No'], got {labels!r}")
    labels = list(labels)
    for i, lab in enumerate(labels):
        if not isinstance(lab, str) or not lab:
            raise SettingsError(f"label_grammar: labels[{i}] must be non-empty text, got {lab!r}")
    if len(set(labels)) != len(labels):
        raise SettingsError(f"label_grammar: labels has duplicates: {labels}")
    alts = " | ".join(gbnf_literal(lab) for lab in labels)
    parts = [gbnf_literal(prefix)] if prefix else []
    parts.append("label")
    if suffix:
        parts.append(gbnf_literal(suffix))
    return f"root ::= {' '.join(parts)}\nlabel ::= {alts}\n"


def json_grammar(schema: Mapping[str, Any] | str, *, prop_order: Sequence[str] | None = None) -> str:
    """A grammar for JSON that fits `schema` (a JSON Schema dict or its JSON text), via llama.cpp's converter.

    Supports what llama.cpp's json-schema-to-grammar supports (types, enum,
    const, properties/required, items, min/maxItems, patterns, $ref); keywords it
    cannot express (e.g. uniqueItems) are not enforced, so still validate the result.
    """
    if isinstance(schema, str):
        try:
            schema_obj = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"json_grammar: schema is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    else:
        schema_obj = schema
    if not isinstance(schema_obj, Mapping):
        raise SettingsError(f"json_grammar: schema must be a JSON Schema object (a dict), got {type(schema_obj).__name__}")
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        return json_schema_to_gbnf(json.dumps(schema_obj), list(prop_order or []))
    except Exception as exc:  # the converter raises plain exceptions on unsupported schemas
        raise SettingsError(f"json_grammar: llama.cpp cannot convert this schema: {type(exc).__name__}: {exc}") from exc


def any_json_grammar() -> str:
    """A grammar for any JSON object (llama.cpp's JSON_GBNF), when there is no schema."""
    from llama_cpp.llama_grammar import JSON_GBNF

    return JSON_GBNF
