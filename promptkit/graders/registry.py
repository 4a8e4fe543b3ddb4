"""Graders by name: the dataset task's usual grader (`default_grader`) and a grader from its YAML spec.

An experiment file names its graders (`label_match`, `{name: contains, text: Commit}`); this module turns
such a name into a grader, so the experiment loader and the command line share one registry.
"""
from __future__ import annotations

import copy
import difflib
import importlib
from typing import Any, Mapping

from ..errors import GraderError
from ..providers import DEFAULT_MODEL
from . import base, json, judge, labels, text
from .base import BaseGrader, mean, not_
from .json import json_match
from .judge import llm_judge
from .labels import label_match

__all__ = ["default_grader"]

# Short names an experiment file may use for a grader.
GRADER_ALIASES: dict[str, str] = {"label": "label_match", "json": "json_match", "default": "default_grader"}

# Graders that live beside their chapter's module (promptkit.tools, promptkit.retrieval), reachable by name.
ELSEWHERE = {"tool_call": "promptkit.tools", "cited_answer": "promptkit.retrieval", "rubric_checks": "promptkit.rubrics",
             "grounded_answer": "promptkit.grounding"}


def default_grader(task: Any, *, judge_model: str = DEFAULT_MODEL) -> BaseGrader:
    """The usual grader for a dataset task (a TaskInfo or a dict with type, labels, labels_field, ...).

    label -> label_match; multilabel -> json_match F1 over the labels (the task's target_schema checked
    but not zeroing the score), averaged with the primary label when the task has one; rubric -> llm_judge.
    """
    get = task.get if isinstance(task, Mapping) else (lambda k, d=None: getattr(task, k, d))
    kind, labels_ = get("type", "label"), list(get("labels", None) or [])
    if kind == "label":
        return label_match(labels_)
    if kind == "multilabel":
        field_name, primary = get("labels_field", None), get("primary_field", None)
        schema = get("target_schema", None)
        found = json_match(schema, fields=labels_, key=field_name, strict=False, name=field_name or "json_match")
        if not primary:
            return found
        return mean(found, json_match(fields=[primary], name=primary), name=f"{field_name}+{primary}")
    if kind == "rubric":
        return llm_judge(model=judge_model)
    if kind == "structured":  # a JSON target whose grader is named in tasks.yaml (tool calls, cited answers)
        return elsewhere(get("grader", None))()
    raise GraderError(f"no default grader for task type {kind!r}; known types are label, multilabel, rubric, structured")


def elsewhere(name: str | None) -> Any:
    """A grader factory kept in its chapter's module (`tool_call`, `cited_answer`, `rubric_checks`)."""
    if name not in ELSEWHERE:
        raise GraderError(f"a structured task names its grader in tasks.yaml, one of {sorted(ELSEWHERE)}; got {name!r}")
    return getattr(importlib.import_module(ELSEWHERE[name]), name)


def _factories() -> dict[str, Any]:
    mods = (base, labels, text, json, judge)
    found = {n: getattr(m, n) for m in mods for n in m.__all__}
    found["default_grader"] = default_grader
    return {n: f for n, f in found.items() if callable(f) and n[0].islower()}


def grader_from_spec(spec: Any, dataset: Any = None) -> Any:
    """A grader from its name and arguments (`label_match`, {name: contains, text: Commit}); labels default to the dataset's.

    `default` is the dataset's usual grader as tasks.yaml names it (label_match, json_match, llm_judge).
    Any grader also takes `on: reply` (grade the continuation after the prefill), `negate: true` (must not
    pass) and `as: column_name` (its name in the results, so two graders of one kind can sit side by side).
    """
    if isinstance(spec, str):
        name, args = spec, {}
    elif isinstance(spec, Mapping) and "name" in spec:
        name, args = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    else:
        raise GraderError(f"a grader is a name or {{name: ..., arguments...}}, got {spec!r}")
    name = GRADER_ALIASES.get(name, name)
    if True in args:  # YAML 1.1 reads the key `on` as true
        args["on"] = args.pop(True)
    on, negate, label = args.pop("on", None), args.pop("negate", False), args.pop("as", None)
    if not isinstance(negate, bool):
        raise GraderError(f"grader {name!r}: negate must be true or false, got {negate!r}")
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise GraderError(f"grader {name!r}: 'as' names its column and must be non-empty text, got {label!r}")

    def finish(grader: Any) -> Any:
        if on is not None:  # `on: reply` grades the continuation alone, for any grader
            grader = grader.on_reply(on)
        if negate:
            grader = not_(grader)
        if label is not None:  # `as: name` tells two graders of one kind apart
            grader = copy.copy(grader)
            grader.name = label
        return grader

    if name == "default_grader":  # the dataset's usual grader (tasks.yaml)
        task = getattr(dataset, "task", None)
        if task is None:
            raise GraderError("'default' means the dataset's usual grader, but no dataset is given")
        return finish(default_grader(task, **args))
    factories = _factories()
    factory = factories.get(name) if isinstance(name, str) else None
    if factory is None:
        public = list(factories)
        hint = difflib.get_close_matches(str(name), public, n=1)
        raise GraderError(f"unknown grader {name!r}" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                          + f"; graders are {sorted(public)}")
    if name == "label_match" and "labels" not in args:
        labels_ = list(getattr(dataset, "labels", []) or [])
        if not labels_:
            raise GraderError("label_match needs 'labels' (the dataset gives none)")
        args["labels"] = labels_
    try:
        grader = factory(**args)
    except TypeError as exc:
        raise GraderError(f"grader {name!r}: {exc}") from None
    if not callable(grader) or not isinstance(getattr(grader, "name", None), str):
        raise GraderError(f"{name!r} is not a grader factory (it returned {type(grader).__name__})")
    return finish(grader)
