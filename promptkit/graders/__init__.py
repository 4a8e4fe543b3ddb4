"""Graders: score a completion against a row's gold target, the same way every time.

Every grader is made by a factory (`label_match(...)`, `json_match(...)`, ...) and called as
`grader(completion, target) -> Grade`. A grader reads `completion.text` (the prefill + the reply, the answer
as a reader sees it) unless made with `on="reply"` (or `.on_reply()`), which grades the continuation alone.
A failed model call gives a failing Grade with `parsed=False` (never an exception), and an answer that
cannot be read (`parsed=False`) is kept apart from a wrong one.

The package, one module per kind of check: `base` (the base class and the graders that combine others),
`labels` (one label from a chatty answer), `text` (contains, regex, equals, counts, numbers), `json`
(schema and per-field F1), `judge` (LLM as judge) and `registry` (a grader by name, the dataset's default).
"""
from __future__ import annotations

from typing import Any

from ..types import Completion, Grade
from . import base, json, judge, labels, registry, text
from .base import BaseGrader, all_of, any_of, error_grade, gold_of, in_tag, mean, not_, unparsed, weighted
from .json import extract_json, extraction_summary, json_match, prf
from .judge import Criterion, Verdict, judge_grammar, llm_judge, parse_verdict, rubric_criteria
from .labels import LabelParse, label_key, label_match, parse_label
from .registry import default_grader, grader_from_spec
from .text import contains, equals, length, line_count, numeric, parse_number, regex

# What an experiment file may name (registry.py reads the same lists): every grader factory and its helpers.
__all__ = sorted(base.__all__ + labels.__all__ + text.__all__ + json.__all__ + judge.__all__ + registry.__all__)


def __getattr__(name: str) -> Any:
    """`graders.tool_call`, `graders.cited_answer`, `graders.rubric_checks`: graders kept beside their chapter."""
    if name in registry.ELSEWHERE:
        return registry.elsewhere(name)
    raise AttributeError(f"module 'promptkit.graders' has no attribute {name!r}")
