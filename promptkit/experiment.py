"""An experiment: prompt variants x models x settings x dataset rows x repeats, and its graders.

`Experiment.expand()` turns the grid into Cells, one per model call, each keyed
by `cache.cell_key`. A row that lacks a variable a prompt needs is an
ExperimentError raised by `expand()` before any call is made (naming the row,
the prompt and the variable), so a typo never costs half a paid run.
Experiments are written in Python or in a YAML file (`load_experiment`).
"""
from __future__ import annotations

import itertools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from . import yamlfile
from .cache import cell_key
from .errors import ExperimentError, PromptkitError
from .graders.registry import GRADER_ALIASES, grader_from_spec
from .types import Cell, Grader, PromptVariant, Row, Settings

MAX_PROBLEMS_SHOWN = 5
DEFAULT_MAX_CELLS = 1_000_000  # ~1 GB of cells and results; PROMPTKIT_MAX_CELLS raises it


def max_cells() -> int:
    """The largest grid a run expands: PROMPTKIT_MAX_CELLS or 1,000,000."""
    raw = os.environ.get("PROMPTKIT_MAX_CELLS")
    if raw is None:
        return DEFAULT_MAX_CELLS
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ExperimentError(f"environment variable PROMPTKIT_MAX_CELLS must be a whole number of at least 1, "
                              f"got {raw!r}")
    return value



def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def settings_label(swept: Mapping[str, Any]) -> str:
    """A readable name for one combination of swept settings, e.g. 'temperature=0.7, max_tokens=64'."""
    if not swept:
        return "default"
    return ", ".join(f"{k}={_fmt(v)}" for k, v in swept.items())


def _as_rows(rows: Any) -> list[Row]:
    """Rows from a list of Row (or dicts in the dataset format) or a Dataset."""
    if rows is None:
        raise ExperimentError("an experiment needs rows: a list of Row objects or a dataset")
    items = getattr(rows, "rows", rows)
    out: list[Row] = []
    for i, r in enumerate(items):
        if isinstance(r, Row):
            out.append(r)
        elif isinstance(r, Mapping):
            if "id" not in r or "input" not in r:
                raise ExperimentError(f"rows[{i}] needs the fields 'id' and 'input', got {sorted(r)}")
            meta = dict(r.get("meta") or {})
            if "variant" in r:  # a paired row names its own prompt
                meta["variant"] = r["variant"]
            out.append(Row(id=str(r["id"]), input=dict(r["input"]), target=r.get("target"),
                           split=r.get("split", "test"), meta=meta))
        else:
            raise ExperimentError(f"rows[{i}] must be a Row or a mapping, got {type(r).__name__}")
    return out


@dataclass
class Experiment:
    """What to compare: every variant on every model, settings combination, row and repeat.

    `settings` is the base; `sweep` maps a setting name to the values to try,
    e.g. {"temperature": [0, 0.7]}, and every combination becomes its own
    settings_label. `graders` grade each answer (those with `agrade` are awaited).

    `pairing` says which prompts meet which rows: "cross" (every prompt on every row),
    "row" (each row names its prompt in `row.meta["variant"]`), or "zip" (prompt i with
    row i), for workloads where every case has its own prompt. `strict=True` makes a
    row field the prompt never uses, and rows whose prompts come out identical although
    their inputs differ, errors instead of warnings.
    """

    variants: Sequence[PromptVariant]
    models: Sequence[str]
    rows: Any
    settings: Settings = field(default_factory=Settings)
    sweep: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    repeats: int = 1
    graders: Sequence[Grader] = ()
    name: str = "experiment"
    description: str = ""
    source: str | None = None  # the YAML file it came from, for messages and the report
    run_options: dict[str, Any] = field(default_factory=dict)  # defaults for arun() (the YAML `run:` section)
    pairing: str = "cross"
    strict: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.models, str):
            self.models = [self.models]
        if not isinstance(self.variants, (list, tuple)):
            self.variants = [self.variants] if hasattr(self.variants, "to_request") else list(self.variants)
        self.rows = _as_rows(self.rows)
        self.variants = list(self.variants)
        self.models = list(self.models)
        self.graders = list(self.graders)
        if isinstance(self.settings, Mapping):
            self.settings = Settings.from_dict(dict(self.settings))
        self.sweep = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in dict(self.sweep).items()}
        self.validate()

    def _where(self, fld: str) -> str:
        return f"{self.source}: field '{fld}'" if self.source else f"Experiment.{fld}"

    def validate(self) -> None:
        """Check the grid's shape (names unique, values valid) before anything runs."""
        if not self.variants:
            raise ExperimentError(f"{self._where('variants')}: no prompt variants")
        if not self.models:
            raise ExperimentError(f"{self._where('models')}: no models")
        if not self.rows:
            raise ExperimentError(f"{self._where('rows')}: no rows (is the dataset or split empty?)")
        for i, v in enumerate(self.variants):
            if not (hasattr(v, "to_request") and isinstance(getattr(v, "name", None), str)):
                raise ExperimentError(f"{self._where(f'variants[{i}]')}: needs a .name and .to_request(variables, "
                                      f"settings), got {type(v).__name__}")
        _unique([v.name for v in self.variants], self._where("variants"), "prompt variant name")
        _unique(list(self.models), self._where("models"), "model")
        _unique([r.id for r in self.rows], self._where("rows"), "row id")
        _unique([getattr(g, "name", None) for g in self.graders], self._where("graders"), "grader name")
        for i, g in enumerate(self.graders):
            if not callable(g) or not isinstance(getattr(g, "name", None), str):
                raise ExperimentError(f"{self._where(f'graders[{i}]')}: a grader is callable with a .name, "
                                      f"got {type(g).__name__}")
        if not isinstance(self.repeats, int) or isinstance(self.repeats, bool) or self.repeats < 1:
            raise ExperimentError(f"{self._where('repeats')}: must be a whole number of at least 1, got {self.repeats!r}")
        from .providers import parse_spec

        for i, m in enumerate(self.models):
            try:
                parse_spec(m)
            except PromptkitError as exc:
                raise ExperimentError(f"{self._where(f'models[{i}]')}: {exc}") from None
        self.settings_grid()  # raises on a bad sweep
        self.pairs()  # raises on a bad pairing

    def pairs(self) -> list[tuple[int, int]]:
        """(variant index, row index) of every prompt-row pair the pairing asks for, variant-major."""
        nv, nr = len(self.variants), len(self.rows)
        if self.pairing == "cross":
            return [(vi, ri) for vi in range(nv) for ri in range(nr)]
        if self.pairing == "zip":
            if nv != nr:
                raise ExperimentError(f"{self._where('pairing')}: 'zip' pairs prompt i with row i, but there are "
                                      f"{nv} prompts and {nr} rows; give one prompt per row (or use pairing 'row')")
            return [(i, i) for i in range(nv)]
        if self.pairing == "row":
            index = {v.name: i for i, v in enumerate(self.variants)}
            out, bad = [], []
            for ri, row in enumerate(self.rows):
                name = row.meta.get("variant")
                if name not in index:
                    bad.append(f"row {row.id!r} names {name!r}" if name is not None else f"row {row.id!r} names none")
                    continue
                out.append((index[name], ri))
            if bad:
                raise ExperimentError(
                    f"{self._where('rows')}: with pairing 'row' every row names its prompt (a row's 'variant' field, "
                    f"or Row.meta['variant']) as one of {list(index)}; " + "; ".join(bad[:MAX_PROBLEMS_SHOWN])
                    + (f"; ... and {len(bad) - MAX_PROBLEMS_SHOWN} more" if len(bad) > MAX_PROBLEMS_SHOWN else ""))
            return sorted(out)
        raise ExperimentError(f"{self._where('pairing')}: must be 'cross', 'row' or 'zip', got {self.pairing!r}")

    def settings_grid(self) -> list[tuple[str, Settings]]:
        """(label, Settings) for every combination of the swept values, in the order written."""
        base = self.settings.to_dict()
        names = list(self.sweep)
        for k in names:
            if k not in base:
                raise ExperimentError(f"{self._where(f'sweep.{k}')}: not a setting; settings are {sorted(base)}")
            if not self.sweep[k]:
                raise ExperimentError(f"{self._where(f'sweep.{k}')}: needs at least one value")
        grid = []
        for combo in itertools.product(*(self.sweep[k] for k in names)):
            swept = dict(zip(names, combo))
            try:
                s = Settings.from_dict({**base, **swept})
            except PromptkitError as exc:
                raise ExperimentError(f"{self._where('sweep')}: {exc}") from None
            grid.append((settings_label(swept), s))
        labels = [lab for lab, _ in grid]
        _unique(labels, self._where("sweep"), "settings combination")
        return grid

    @property
    def n_cells(self) -> int:
        return len(self.pairs()) * len(self.models) * len(self.settings_grid()) * self.repeats

    def expand(self) -> list[Cell]:
        """Every cell of the grid, model-major (variants, settings, rows, repeats inside).

        Raises ExperimentError, before any call, when rows cannot fill a prompt or the grid is
        larger than `max_cells()` (checked before a single cell is built).
        """
        grid = self.settings_grid()
        pairs = self.pairs()
        self._check_size(len(grid), len(pairs))
        problems: dict[tuple[int, int], str] = {}
        requests: dict[tuple[int, int, int], Any] = {}
        same: dict[tuple[int, int, Any], int] = {}
        slots: dict[int, list[str] | None] = {}
        for vi, ri in pairs:
            variant, row = self.variants[vi], self.rows[ri]
            for si, (_, settings) in enumerate(grid):
                try:
                    if self.strict and hasattr(variant, "render"):
                        req = variant.render(row.input, settings, strict=True)
                    else:
                        req = variant.to_request(row.input, settings)
                except PromptkitError as exc:
                    problems.setdefault((vi, ri), f"row {row.id!r} cannot fill prompt {variant.name!r}: {exc}")
                    continue
                requests[vi, si, ri] = req
                if si == 0:
                    left = _unfilled(variant, req, row.input, slots)
                    if left:
                        problems.setdefault((vi, ri), _single_brace_problem(row.id, variant.name, left))
                        continue
                    first = same.setdefault((vi, si, (req.messages, req.prefill)), ri)
                    if first != ri and self.rows[first].input != row.input:
                        self._identical(variant.name, self.rows[first], row, problems, (vi, ri))
        if problems:
            shown = list(problems.values())[:MAX_PROBLEMS_SHOWN]
            more = len(problems) - len(shown)
            where = f"{self.source}: " if self.source else ""
            raise ExperimentError(
                f"{where}{len(problems)} prompt(s) could not be built from the rows, nothing was run:\n  "
                + "\n  ".join(shown) + (f"\n  ... and {more} more" if more > 0 else "")
                + "\nFix the dataset rows or the template variables (or drop those rows) and run again."
            )
        by_variant: dict[int, list[int]] = {}
        for vi, ri in pairs:
            by_variant.setdefault(vi, []).append(ri)
        cells: list[Cell] = []
        try:
            for model in self.models:
                for vi, ris in by_variant.items():
                    variant = self.variants[vi]
                    for si, (label, settings) in enumerate(grid):
                        for ri in ris:
                            row = self.rows[ri]
                            req = requests[vi, si, ri]
                            for rep in range(self.repeats):
                                cells.append(Cell(
                                    key=cell_key(model, req, rep), variant=variant.name, model=model,
                                    settings=settings, row_id=row.id, repeat=rep, request=req,
                                    target=row.target, settings_label=label,
                                ))
        except UnicodeEncodeError:  # half a surrogate pair in a row or a prompt: say where, call nothing
            raise ExperimentError(self._not_text()) from None
        return cells

    def _identical(self, variant: str, first: Row, row: Row, problems: dict[Any, str], at: tuple[int, int]) -> None:
        """Rows with different inputs that give the same prompt would share one call: warn, or fail if strict."""
        differ = sorted(k for k in {*first.input, *row.input} if first.input.get(k) != row.input.get(k))
        msg = (f"rows {first.id!r} and {row.id!r} differ in {differ} but give prompt {variant!r} the same text, "
               f"so they share one call and one answer; does the prompt use those fields (as {{{{name}}}})?")
        if self.strict:
            problems.setdefault(at, msg)
        else:
            where = f"{self.source}: " if self.source else ""
            warnings.warn(f"promptkit: {where}{msg} (Experiment(strict=True) makes this an error)", stacklevel=3)

    def _check_size(self, n_settings: int, n_pairs: int) -> None:
        n = n_pairs * len(self.models) * n_settings * self.repeats
        limit = max_cells()
        if n > limit:
            where = f"{self.source}: " if self.source else ""
            raise ExperimentError(
                f"{where}the grid has {n:,} cells ({n_pairs} prompt-row pair(s) x {len(self.models)} model(s) x "
                f"{n_settings} setting(s) x {self.repeats} repeat(s)), more than the limit "
                f"of {limit:,}; nothing was run. Lower repeats, rows or the sweep, or raise the limit with the "
                f"environment variable PROMPTKIT_MAX_CELLS={n}")

    def _not_text(self) -> str:
        from .datasets import lone_surrogate

        where = f"{self.source}: " if self.source else ""
        for row in self.rows:
            bad = lone_surrogate(row.input, "input")
            if bad is not None:
                return f"{where}row {row.id!r}, field '{bad[0]}': {bad[1]}; nothing was run"
        return (f"{where}a prompt holds a lone surrogate (half an emoji or a broken escape), which is not text; "
                f"fix the template; nothing was run")

    def describe(self) -> dict[str, Any]:
        """A plain-data summary of the grid for results meta and reports."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "variants": [v.name for v in self.variants],
            "models": list(self.models),
            "settings": self.settings.to_dict(),
            "sweep": {k: list(v) for k, v in self.sweep.items()},
            "settings_labels": [lab for lab, _ in self.settings_grid()],
            "rows": len(self.rows),
            "repeats": self.repeats,
            "graders": [g.name for g in self.graders],
            "cells": self.n_cells,
            "pairing": self.pairing,
            "strict": self.strict,
        }


def _unfilled(variant: Any, request: Any, fields: Mapping[str, Any], memo: dict[int, list[str] | None]) -> list[str]:
    """Row fields written as `{name}` in a `{{name}}` template (read from the template, not the row's values),
    or, for another kind of prompt variant, still in its rendered prompt."""
    from .templates import SINGLE_RE, unfilled_single

    if not fields:
        return []
    if id(variant) not in memo:
        parts = getattr(variant, "parts", None)
        memo[id(variant)] = None if parts is None else ([] if variant.placeholders == "single" else list(dict.fromkeys(
            m.group(1) for _, text in parts() for m in SINGLE_RE.finditer(text) if m.group(1))))
    names = memo[id(variant)]
    if names is not None:
        return [n for n in names if n in fields]
    texts = [m.content for m in request.messages] + [request.prefill]
    return list(dict.fromkeys(n for t in texts if "{" in t for n in unfilled_single(t, fields)))


def _single_brace_problem(row_id: str, variant: str, names: list[str]) -> str:
    slots = ", ".join("{" + n + "}" for n in names)
    return (f"row {row_id!r}, prompt {variant!r}: {slots} is left in the prompt as written, yet the row has "
            f"{'those fields' if len(names) > 1 else 'that field'}; this template reads {{{{name}}}} variables, so "
            f"write {', '.join('{{' + n + '}}' for n in names)}, or make the template with placeholders='single' "
            f"(YAML: placeholders: single) to read Python-style {{name}}")


def _unique(items: Iterable[Any], where: str, what: str) -> None:
    seen: set[Any] = set()
    for it in items:
        if it in seen:
            raise ExperimentError(f"{where}: {what} {it!r} appears twice; each must be unique")
        seen.add(it)


# ---- YAML experiments ------------------------------------------------------------------------

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
            rows = _as_rows(d["rows"])
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
