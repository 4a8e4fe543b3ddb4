"""The experiment file: an Experiment written in YAML, read with every error naming its file, line and field.

`load_experiment("examples/renewal_tier.yaml")` reads the file, resolves its templates and dataset relative
to the file's folder, builds its graders by name (graders/registry.py) and returns the Experiment grid.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import yamlfile
from .errors import ExperimentError, PromptkitError
from .experiment import Experiment, as_rows
from .graders.registry import GRADER_ALIASES, grader_from_spec
from .types import Settings

__all__ = ["GRADER_ALIASES", "experiment_from_dict", "grader_from_spec", "load_experiment"]


FIELDS: tuple[str, ...] = (
    "name", "description", "prompts", "models", "dataset", "rows", "settings", "sweep", "repeats", "graders", "run",
    "pairing", "strict",
)
PROMPT_FIELDS: tuple[str, ...] = ("template", "name", "phrases", "ablation", "placeholders")
DATASET_FIELDS: tuple[str, ...] = ("name", "path", "split", "n", "seed")
RUN_FIELDS: tuple[str, ...] = (
    "cache", "concurrency", "provider_concurrency", "rpm", "timeout_s", "max_attempts", "budget_usd", "budget_tokens",
    "stream", "workers", "batch", "cluster",
)


class _Where:
    """Names a place in an experiment file as 'file, line N, field 'a.b[2]'' for error messages."""

    def __init__(self, source: str, text: str | None) -> None:
        self.source = source
        self.root = yamlfile.compose(text)

    def __call__(self, *path: str | int) -> str:
        return yamlfile.where(self.source, self.root, path)

    def error(self, *path: str | int, msg: str) -> ExperimentError:
        return ExperimentError(f"{self(*path)}: {msg}")


def _check_keys(d: Any, allowed: Sequence[str], where: _Where, *path: str | int) -> dict[str, Any]:
    import difflib

    if not isinstance(d, Mapping):
        raise where.error(*path, msg=f"expected a mapping with fields {list(allowed)}, got {type(d).__name__}")
    for k in d:
        if k not in allowed:
            hint = difflib.get_close_matches(str(k), allowed, n=1)
            raise where.error(*path, str(k), msg="unknown field" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                              + f"; fields here are {list(allowed)}")
    return dict(d)


def load_experiment(path: str | os.PathLike[str]) -> Experiment:
    """Read an experiment YAML file; every error names the file, the line and the field.

    Paths inside (templates, a dataset .jsonl) are relative to the file's folder.
    """
    p = Path(path)
    text = yamlfile.read_text(p, ExperimentError, "experiment file")
    data = yamlfile.loads(text, str(p), ExperimentError)
    return experiment_from_dict(data, source=str(p), base_dir=p.parent, text=text)


def experiment_from_dict(
    data: Any, *, source: str = "<experiment>", base_dir: str | os.PathLike[str] | None = None, text: str | None = None,
) -> Experiment:
    """Build an Experiment from the YAML file format (already parsed), naming the field of any error."""
    where = _Where(source, text)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    d = _check_keys(data, FIELDS, where)
    for req in ("prompts", "models"):
        if req not in d:
            raise where.error(msg=f"missing the required field '{req}'")
    if "dataset" not in d and "rows" not in d:
        raise where.error(msg="needs 'dataset' (a dataset name or {name|path, split, n, seed}) or 'rows'")
    if "dataset" in d and "rows" in d:
        raise where.error("rows", msg="give 'dataset' or 'rows', not both")

    dataset, rows = None, None
    if "dataset" in d:
        dataset = _load_dataset(d["dataset"], where, base)
        rows = dataset.rows
    else:
        if not isinstance(d["rows"], list):
            raise where.error("rows", msg=f"expected a list of rows {{id, input, target}}, got {type(d['rows']).__name__}")
        try:
            rows = as_rows(d["rows"])
        except ExperimentError as exc:
            raise where.error("rows", msg=str(exc)) from None

    variants = _load_prompts(d["prompts"], where, base, dataset)

    models = d["models"]
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if not isinstance(models, list) or not models:
        raise where.error("models", msg="expected a list of model specs like [local:smollm2, openai:gpt-4o-mini]")
    from .providers import parse_spec

    for i, m in enumerate(models):
        try:
            parse_spec(m)
        except PromptkitError as exc:
            raise where.error("models", i, msg=str(exc)) from None

    try:
        settings = Settings.from_dict(d.get("settings") or {})
    except PromptkitError as exc:
        raw = d.get("settings")  # point at the line of the setting that is out of range
        at = ("settings", *exc.field) if exc.field and isinstance(raw, Mapping) and exc.field[0] in raw else ("settings",)
        raise where.error(*at, msg=str(exc)) from None
    sweep = d.get("sweep") or {}
    if not isinstance(sweep, Mapping):
        raise where.error("sweep", msg="expected a mapping of setting -> list of values, e.g. {temperature: [0, 0.7]}")
    for k, v in sweep.items():
        if not isinstance(v, list) or not v:
            raise where.error("sweep", k, msg=f"expected a non-empty list of values, got {v!r}")
        if k not in settings.to_dict():
            raise where.error("sweep", k, msg=f"not a setting; settings are {sorted(settings.to_dict())}")
        for j, val in enumerate(v):
            try:
                settings.replace(**{k: val})
            except (PromptkitError, TypeError) as exc:
                raise where.error("sweep", k, j, msg=str(exc)) from None

    repeats = d.get("repeats", 1)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise where.error("repeats", msg=f"must be a whole number of at least 1, got {repeats!r}")
    graders = _load_graders(d.get("graders") or [], where, dataset)
    run_options = _check_keys(d.get("run") or {}, RUN_FIELDS, where, "run")

    name = d.get("name") or Path(source).stem
    try:
        return Experiment(
            variants=variants, models=models, rows=rows, settings=settings, sweep=sweep, repeats=repeats,
            graders=graders, name=str(name), description=str(d.get("description") or ""), source=source,
            run_options=run_options, pairing=d.get("pairing", "cross"), strict=_flag(d, "strict", where),
        )
    except ExperimentError:
        raise
    except PromptkitError as exc:
        raise ExperimentError(f"{source}: {exc}") from None


def _flag(d: Mapping[str, Any], key: str, where: _Where) -> bool:
    value = d.get(key, False)
    if not isinstance(value, bool):
        raise where.error(key, msg=f"must be true or false, got {value!r}")
    return value


def _resolve_path(value: Any, base: Path) -> Path:
    p = Path(str(value)).expanduser()
    if p.is_absolute():
        return p
    here = base / p
    return here if here.exists() or not p.exists() else p


def _load_dataset(spec: Any, where: _Where, base: Path) -> Any:
    from .datasets import load_dataset

    if isinstance(spec, str):
        spec = {"path": spec} if spec.endswith(".jsonl") else {"name": spec}
    d = _check_keys(spec, DATASET_FIELDS, where, "dataset")
    if ("name" in d) == ("path" in d):
        raise where.error("dataset", msg="give the dataset's 'name' (e.g. renewal_tier) or a 'path' to a .jsonl file")
    try:
        if "path" in d:
            ds = load_dataset(_resolve_path(d["path"], base), split=d.get("split"))
        else:
            ds = load_dataset(str(d["name"]), split=d.get("split"))
    except PromptkitError as exc:
        fld = "path" if "path" in d else ("split" if "split" in d and "split" in str(exc) else "name")
        raise where.error("dataset", fld, msg=str(exc)) from None
    n = d.get("n")
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise where.error("dataset", "n", msg=f"must be a whole number of at least 1, got {n!r}")
        if n < len(ds.rows):
            ds = ds.sample(n, seed=int(d.get("seed", 0)))
    if not ds.rows:
        raise where.error("dataset", msg=f"dataset {ds.name!r} has no rows" + (f" in split {d['split']!r}" if d.get("split") else ""))
    return ds


def _load_template(spec: Any, where: _Where, base: Path, dataset: Any, i: int) -> Any:
    from .templates import Template, load_template

    try:
        if isinstance(spec, Mapping):
            return Template.from_dict(spec, source=where("prompts", i, "template"))
        if spec == "default":
            if dataset is None:
                raise where.error("prompts", i, "template", msg="'default' means the dataset's template, but no dataset is given")
            return dataset.template()
        if not isinstance(spec, str):
            raise where.error("prompts", i, "template", msg=f"expected a file path or a template mapping, got {spec!r}")
        return load_template(_resolve_path(spec, base))
    except ExperimentError:
        raise
    except PromptkitError as exc:
        raise where.error("prompts", i, "template", msg=str(exc)) from None


def _phrase_list(value: Any, where: _Where, *path: str | int) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise where.error(*path, msg=f"expected a list of phrase ids, got {value!r}")
    return value


def _load_prompts(spec: Any, where: _Where, base: Path, dataset: Any) -> list[Any]:
    if isinstance(spec, (str, Mapping)):
        spec = [spec]
    if not isinstance(spec, list) or not spec:
        raise where.error("prompts", msg="expected a list of prompts, each {template: path, name?, phrases?, ablation?}")
    out: list[Any] = []
    for i, item in enumerate(spec):
        if isinstance(item, str):
            item = {"template": item}
        d = _check_keys(item, PROMPT_FIELDS, where, "prompts", i)
        if "template" not in d:
            raise where.error("prompts", i, msg="missing the field 'template' (a file path, 'default' or a mapping)")
        if "phrases" in d and "ablation" in d:
            raise where.error("prompts", i, msg="give 'phrases' (one variant) or 'ablation' (one variant per phrase), not both")
        template = _load_template(d["template"], where, base, dataset, i)
        if "placeholders" in d:  # `placeholders: single` reads Python-style {name} variables
            try:
                template = template.replace(placeholders=d["placeholders"])
            except PromptkitError as exc:
                raise where.error("prompts", i, "placeholders", msg=str(exc)) from None
        try:
            if "phrases" in d:
                from .phrases import apply_phrases

                template = apply_phrases(template, _phrase_list(d["phrases"], where, "prompts", i, "phrases"))
            if "ablation" in d:
                from .phrases import ablation

                variants = list(ablation(template, _phrase_list(d["ablation"], where, "prompts", i, "ablation")))
                if "name" in d:
                    raise where.error("prompts", i, "name", msg="an ablation names its variants itself; remove 'name'")
                out.extend(variants)
                continue
        except ExperimentError:
            raise
        except PromptkitError as exc:
            fld = "phrases" if "phrases" in d else "ablation"
            raise where.error("prompts", i, fld, msg=str(exc)) from None
        if "name" in d:
            if not isinstance(d["name"], str) or not d["name"].strip():
                raise where.error("prompts", i, "name", msg=f"expected non-empty text, got {d['name']!r}")
            template = template.replace(name=d["name"])
        out.append(template)
    return out


def _load_graders(spec: Any, where: _Where, dataset: Any) -> list[Any]:
    if isinstance(spec, (str, Mapping)):
        spec = [spec]
    if not isinstance(spec, list):
        raise where.error("graders", msg="expected a list of graders, e.g. [label_match] or [{name: contains, text: Commit}]")
    out = []
    for i, item in enumerate(spec):
        try:
            out.append(grader_from_spec(item, dataset))
        except PromptkitError as exc:
            raise where.error("graders", i, msg=str(exc)) from None
    return out
