"""promptkit: learn prompting and compare models, measured on data.

`import promptkit as pk` is all a notebook needs: `__all__` below is the whole public surface, each name one
the notebooks, the README or examples/ use. Everything else is imported from its module
(`from promptkit.metrics import roc_auc`). Heavy modules (pandas, llama-cpp, vendor SDKs) load only when
first used.
"""
from __future__ import annotations

import importlib
from typing import Any

from .cpu import prefer_passive_wait

prefer_passive_wait()  # before anything can load llama.cpp's OpenMP runtime (issue 21): see promptkit/cpu.py

from .complete import complete
from .providers import register

# Providers that live above the providers layer, registered lazily here so providers/ never names them.
register("score", "promptkit.scoring:ScoringProvider")  # classify by label likelihood: score:smollm2[Yes|No]
register("tools", "promptkit.tools:ToolCallProvider")  # tool calls through the native interface: tools:openai:gpt-4o-mini
from .types import Example, Settings

__version__ = "0.1.0"

# name -> "module:attribute" (or "module:" for a submodule), imported on first use
_LAZY: dict[str, str] = {
    "Experiment": "promptkit.experiment:Experiment",
    "Results": "promptkit.results:Results",
    "Template": "promptkit.templates:Template",
    "ablation": "promptkit.phrases:ablation",
    "apply_phrases": "promptkit.phrases:apply_phrases",
    "calibration": "promptkit.calibration:",
    "exercises": "promptkit.exercises:",
    "grammars": "promptkit.grammars:",
    "graders": "promptkit.graders:",
    "lessons": "promptkit.lessons:",
    "load_dataset": "promptkit.datasets:load_dataset",
    "load_template": "promptkit.templates:load_template",
    "metrics": "promptkit.metrics:",
    "model_table": "promptkit.models_status:model_table",
    "phrase_table": "promptkit.phrases:phrase_table",
    "prompt_builder": "promptkit.widgets:prompt_builder",
    "run": "promptkit.runner:run",
    "scoring": "promptkit.scoring:",
}

__all__ = ["Example", "Settings", "complete", *_LAZY]

# Names the package once offered at the top, and the module each now lives in (for the error message only).
_MOVED: dict[str, str] = {
    "Row": "types", "Completion": "types", "Grade": "types", "Grader": "types", "Message": "types",
    "PromptVariant": "types", "Request": "types", "TokenLogprob": "types", "DEFAULT_MODEL": "providers",
    "get_provider": "providers", "parse_spec": "providers", "register": "providers", "acomplete": "complete",
    "build_request": "complete", "arun": "runner", "load_experiment": "experiment_file", "phrases": "phrases",
    "Phrase": "phrases", "load_phrases": "phrases", "get_phrase": "phrases", "Dataset": "datasets",
    "list_datasets": "datasets", "label_match": "graders", "json_match": "graders", "llm_judge": "graders",
    "PromptBuilder": "widgets", "install_model": "local_models", "classification_summary": "metrics",
    "mcnemar_test": "metrics", "paired_bootstrap_test": "metrics", "paired_permutation_test": "metrics",
    "paired_test": "metrics", "roc_auc": "metrics", "label_logprobs": "scoring", "score_labels": "scoring",
    "scoring_model": "scoring", "contextual_calibration": "calibration", "fit_threshold": "calibration",
    "fit_label_offsets": "calibration", "label_grammar": "grammars", "json_grammar": "grammars",
    "plot_scores": "report", "plot_latency": "report", "plot_confusion": "report", "html_report": "report",
    **{e: "errors" for e in ("PromptkitError", "DatasetError", "ExperimentError", "GraderError", "MissingKeyError",
                             "MissingPackageError", "ModelInstallError", "ModelSpecError", "SettingsError",
                             "TemplateError")},
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        if name in _MOVED:
            raise AttributeError(f"promptkit.{name} is not part of the short public surface: "
                                 f"use `from promptkit.{_MOVED[name]} import {name}`")
        raise AttributeError(f"module 'promptkit' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr) if attr else importlib.import_module(module)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
