"""promptkit: learn prompting and compare models, measured on data.

`import promptkit as pk` is all a notebook needs. Heavy modules (pandas,
llama-cpp, vendor SDKs) load only when first used.
"""
from __future__ import annotations

import importlib
from typing import Any

from .cpu import prefer_passive_wait

prefer_passive_wait()  # before anything can load llama.cpp's OpenMP runtime (issue 21): see promptkit/cpu.py

from .complete import acomplete, build_request, complete
from .errors import (
    DatasetError, ExperimentError, GraderError, MissingKeyError, MissingPackageError, ModelInstallError,
    ModelSpecError, PromptkitError, SettingsError, TemplateError,
)
from .providers import DEFAULT_MODEL, get_provider, parse_spec, register

# Providers that live above the providers layer, registered lazily here so providers/ never names them.
register("score", "promptkit.scoring:ScoringProvider")  # classify by label likelihood: score:smollm2[Yes|No]
register("tools", "promptkit.tools:ToolCallProvider")  # tool calls through the native interface: tools:openai:gpt-4o-mini
from .types import Completion, Grade, Grader, Message, PromptVariant, Request, Row, Settings, TokenLogprob
# eager: the function `phrases` has the name of its module, so a lazy entry would be shadowed
# by the submodule as soon as anything imported promptkit.phrases (the module is light: yaml loads on use)
from .phrases import phrases
from . import report as _report  # noqa: E402,F401 - installs the HTML behind Results.to_html (light: plots load on use)

__version__ = "0.1.0"

# name -> "module:attribute", imported on first use
_LAZY: dict[str, str] = {
    "model_table": "promptkit.models_status:model_table",
    "install_model": "promptkit.local_models:install_model",
    "prompt_builder": "promptkit.widgets:prompt_builder",
    "PromptBuilder": "promptkit.widgets:PromptBuilder",
    "exercises": "promptkit.exercises:",
    "lessons": "promptkit.lessons:",
    "Experiment": "promptkit.experiment:Experiment",
    "load_experiment": "promptkit.experiment_file:load_experiment",
    "run": "promptkit.runner:run",
    "arun": "promptkit.runner:arun",
    "graders": "promptkit.graders:",
    "label_match": "promptkit.graders:label_match",
    "json_match": "promptkit.graders:json_match",
    "llm_judge": "promptkit.graders:llm_judge",
    "Template": "promptkit.templates:Template",
    "load_template": "promptkit.templates:load_template",
    "Phrase": "promptkit.phrases:Phrase",
    "load_phrases": "promptkit.phrases:load_phrases",
    "get_phrase": "promptkit.phrases:get_phrase",
    "apply_phrases": "promptkit.phrases:apply_phrases",
    "ablation": "promptkit.phrases:ablation",
    "phrase_table": "promptkit.phrases:phrase_table",
    "Dataset": "promptkit.datasets:Dataset",
    "load_dataset": "promptkit.datasets:load_dataset",
    "list_datasets": "promptkit.datasets:list_datasets",
    "metrics": "promptkit.metrics:",
    "classification_summary": "promptkit.metrics:classification_summary",
    "mcnemar_test": "promptkit.metrics:mcnemar_test",
    "paired_bootstrap_test": "promptkit.metrics:paired_bootstrap_test",
    "paired_permutation_test": "promptkit.metrics:paired_permutation_test",
    "paired_test": "promptkit.metrics:paired_test",
    "roc_auc": "promptkit.metrics:roc_auc",
    "scoring": "promptkit.scoring:",
    "label_logprobs": "promptkit.scoring:label_logprobs",
    "score_labels": "promptkit.scoring:score_labels",
    "scoring_model": "promptkit.scoring:scoring_model",
    "calibration": "promptkit.calibration:",
    "contextual_calibration": "promptkit.calibration:contextual_calibration",
    "fit_threshold": "promptkit.calibration:fit_threshold",
    "fit_label_offsets": "promptkit.calibration:fit_label_offsets",
    "grammars": "promptkit.grammars:",
    "label_grammar": "promptkit.grammars:label_grammar",
    "json_grammar": "promptkit.grammars:json_grammar",
    "Results": "promptkit.results:Results",
    "plot_scores": "promptkit.report:plot_scores",
    "plot_latency": "promptkit.report:plot_latency",
    "plot_confusion": "promptkit.report:plot_confusion",
    "html_report": "promptkit.report:html_report",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'promptkit' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr) if attr else importlib.import_module(module)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MODEL", "Completion", "DatasetError", "ExperimentError", "Grade", "GraderError", "Message",
    "MissingKeyError", "MissingPackageError", "ModelInstallError", "ModelSpecError", "PromptkitError", "Request",
    "Settings", "SettingsError", "TemplateError", "TokenLogprob", "Grader", "PromptVariant", "Row", "acomplete", "build_request", "complete",
    "get_provider", "parse_spec", "phrases", "register", *_LAZY,
]
