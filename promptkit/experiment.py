"""An experiment: prompt variants x models x settings x dataset rows x repeats, and its graders.

`Experiment.expand()` turns the grid into Cells, one per model call, each keyed
by `cache.cell_key`. A row that lacks a variable a prompt needs is an
ExperimentError raised by `expand()` before any call is made (naming the row,
the prompt and the variable), so a typo never costs half a paid run.
Experiments are written in Python or in a YAML file (`experiment_file.load_experiment`).
"""
from __future__ import annotations

import itertools
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .cache import cell_key
from .errors import ExperimentError, PromptkitError
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


def as_rows(rows: Any) -> list[Row]:
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
        self.rows = as_rows(self.rows)
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


# The YAML loader lives in experiment_file.py (which imports this module); its names stay reachable here for
# callers written before the split. New code imports them from promptkit.experiment_file.
_LOADER_NAMES = ("load_experiment", "experiment_from_dict", "grader_from_spec", "GRADER_ALIASES")


def __getattr__(name: str) -> Any:
    if name in _LOADER_NAMES:
        import importlib

        return getattr(importlib.import_module("promptkit.experiment_file"), name)
    raise AttributeError(f"module 'promptkit.experiment' has no attribute {name!r}")
