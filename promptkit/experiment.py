"""An experiment: prompt variants x models x settings x dataset rows x repeats, and its graders.

`Experiment.expand()` turns the grid into Cells, one per model call, each keyed
by `cache.cell_key`. A row that lacks a variable a prompt needs is an
ExperimentError raised by `expand()` before any call is made (naming the row,
the prompt and the variable), so a typo never costs half a paid run.
Experiments are written in Python or in a YAML file (`load_experiment`).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .cache import cell_key
from .errors import ExperimentError, PromptkitError
from .types import Cell, Grader, PromptVariant, Row, Settings

MAX_PROBLEMS_SHOWN = 5


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
            out.append(Row(id=str(r["id"]), input=dict(r["input"]), target=r.get("target"),
                           split=r.get("split", "test"), meta=dict(r.get("meta") or {})))
        else:
            raise ExperimentError(f"rows[{i}] must be a Row or a mapping, got {type(r).__name__}")
    return out


@dataclass
class Experiment:
    """What to compare: every variant on every model, settings combination, row and repeat.

    `settings` is the base; `sweep` maps a setting name to the values to try,
    e.g. {"temperature": [0, 0.7]}, and every combination becomes its own
    settings_label. `graders` grade each answer (those with `agrade` are awaited).
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
        return len(self.variants) * len(self.models) * len(self.settings_grid()) * len(self.rows) * self.repeats

    def expand(self) -> list[Cell]:
        """Every cell of the grid, model-major (variants, settings, rows, repeats inside).

        Raises ExperimentError, before any call, when rows cannot fill a prompt.
        """
        grid = self.settings_grid()
        problems: dict[tuple[int, int], str] = {}
        requests: dict[tuple[int, int, int], Any] = {}
        for vi, variant in enumerate(self.variants):
            for si, (_, settings) in enumerate(grid):
                for ri, row in enumerate(self.rows):
                    try:
                        requests[vi, si, ri] = variant.to_request(row.input, settings)
                    except PromptkitError as exc:
                        problems.setdefault((vi, ri), f"row {row.id!r} cannot fill prompt {variant.name!r}: {exc}")
        if problems:
            shown = list(problems.values())[:MAX_PROBLEMS_SHOWN]
            more = len(problems) - len(shown)
            where = f"{self.source}: " if self.source else ""
            raise ExperimentError(
                f"{where}{len(problems)} prompt(s) could not be built from the rows, nothing was run:\n  "
                + "\n  ".join(shown) + (f"\n  ... and {more} more" if more > 0 else "")
                + "\nFix the dataset rows or the template variables (or drop those rows) and run again."
            )
        cells: list[Cell] = []
        for model in self.models:
            for vi, variant in enumerate(self.variants):
                for si, (label, settings) in enumerate(grid):
                    for ri, row in enumerate(self.rows):
                        req = requests[vi, si, ri]
                        for rep in range(self.repeats):
                            cells.append(Cell(
                                key=cell_key(model, req, rep), variant=variant.name, model=model,
                                settings=settings, row_id=row.id, repeat=rep, request=req,
                                target=row.target, settings_label=label,
                            ))
        return cells

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
        }


def _unique(items: Iterable[Any], where: str, what: str) -> None:
    seen: set[Any] = set()
    for it in items:
        if it in seen:
            raise ExperimentError(f"{where}: {what} {it!r} appears twice; each must be unique")
        seen.add(it)


def load_experiment(path: Any) -> Experiment:  # filled in below the Python API
    raise NotImplementedError
