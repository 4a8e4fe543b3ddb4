"""The kit's datasets with gold labels: load, validate, split, sample.

Tasks are described in `datasets/tasks.yaml` (file, type, labels, inputs, target
schema, default template); rows live in one JSONL file per task. Every row is
checked on load and a bad one is reported by file, line and field, so a learner
who edits a dataset sees exactly what to fix.
"""
from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

from . import yamlfile
from .files import atomic_write, jsonl_values
from .errors import DatasetError
from .types import Row

SPLITS = ("train", "dev", "test")
TASK_TYPES = ("label", "multilabel", "rubric", "structured")  # structured: a JSON target checked by target_schema
ROW_FIELDS = ("id", "split", "input", "target", "meta")
TASKS_FILE = "tasks.yaml"
CARD_START = "<!-- counts:start -->"
CARD_END = "<!-- counts:end -->"


def datasets_dir() -> Path:
    """Where datasets live: $PROMPTKIT_DATASETS_DIR, else the ones shipped with promptkit (the repo's `datasets/`)."""
    from .config import shipped_dir

    override = os.environ.get("PROMPTKIT_DATASETS_DIR")
    if override:
        return Path(override).expanduser()
    return shipped_dir("datasets")


@dataclass(frozen=True)
class TaskInfo:
    """One task's metadata from tasks.yaml: what a row holds and how it is graded."""

    name: str
    description: str = ""
    type: str = "label"
    file: str | None = None
    labels: tuple[str, ...] = ()
    label_definitions: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    target_schema: dict[str, Any] | None = None
    template: str | None = None
    grader: str | None = None
    labels_field: str | None = None
    primary_field: str | None = None
    derived_from: str | None = None
    positive: str | None = None
    directory: Path | None = field(default=None, compare=False)

    @property
    def input_fields(self) -> tuple[str, ...]:
        """Names of the row's input fields, i.e. the template's variables."""
        return tuple(self.inputs)

    def label_set(self, row_target: Any) -> list[str]:
        """The labels present in one target (a label task's one label, a multilabel task's list)."""
        if self.type == "label":
            return [row_target] if isinstance(row_target, str) else []
        if self.type == "multilabel":
            return list(row_target[self.labels_field] if self.labels_field else row_target)
        return []


def _task_from_yaml(name: str, raw: Any, where: str, directory: Path) -> TaskInfo:
    """Build a TaskInfo from one tasks.yaml entry, naming the field that is wrong."""
    def bad(fld: str, msg: str) -> DatasetError:
        return DatasetError(f"{where}: task '{name}': field '{fld}': {msg}")

    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: task '{name}': expected a mapping, got {type(raw).__name__}")
    known = {f for f in TaskInfo.__dataclass_fields__ if f not in ("name", "directory")}
    for key in raw:
        if key not in known:
            raise bad(key, f"unknown field (allowed: {', '.join(sorted(known))})")
    ttype = raw.get("type", "label")
    if ttype not in TASK_TYPES:
        raise bad("type", f"{ttype!r} is not one of {', '.join(TASK_TYPES)}")
    labels = raw.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise bad("labels", "expected a list of strings (quote Yes/No in YAML)")
    if ttype in ("label", "multilabel") and not labels:
        raise bad("labels", f"a {ttype} task needs a label set")
    inputs = raw.get("inputs") or {}
    if not isinstance(inputs, dict) or (not inputs and not raw.get("derived_from")):
        raise bad("inputs", "expected a mapping of input field name -> description")
    norm_inputs: dict[str, dict[str, Any]] = {}
    for k, v in inputs.items():
        norm_inputs[k] = {"description": v} if isinstance(v, str) else dict(v or {})
    if not raw.get("file") and not raw.get("derived_from"):
        raise bad("file", "missing (or give derived_from)")
    return TaskInfo(
        name=name, description=str(raw.get("description", "")), type=ttype, file=raw.get("file"),
        labels=tuple(labels), label_definitions=dict(raw.get("label_definitions") or {}), inputs=norm_inputs,
        target_schema=raw.get("target_schema"), template=raw.get("template"), grader=raw.get("grader"),
        labels_field=raw.get("labels_field"), primary_field=raw.get("primary_field"),
        derived_from=raw.get("derived_from"), positive=raw.get("positive"), directory=directory,
    )


def load_tasks(directory: str | os.PathLike[str] | None = None) -> dict[str, TaskInfo]:
    """Every task in a datasets folder's tasks.yaml, in file order."""
    directory = Path(directory) if directory is not None else datasets_dir()
    path = directory / TASKS_FILE
    text = yamlfile.read_text(path, DatasetError, hint=f" (set PROMPTKIT_DATASETS_DIR to a folder holding {TASKS_FILE})")
    raw = yamlfile.loads(text, str(path), DatasetError)
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{TASKS_FILE}: expected a mapping of task name -> metadata")
    tasks = {name: _task_from_yaml(name, spec, TASKS_FILE, directory) for name, spec in raw.items()}
    for t in tasks.values():
        if t.derived_from:
            base = tasks.get(t.derived_from)
            if base is None or base.type != "multilabel":
                raise DatasetError(f"{TASKS_FILE}: task '{t.name}': field 'derived_from': "
                                   f"{t.derived_from!r} is not a multilabel task in this file")
            if t.positive not in base.labels:
                raise DatasetError(f"{TASKS_FILE}: task '{t.name}': field 'positive': "
                                   f"{t.positive!r} is not one of {', '.join(base.labels)}")
    return tasks


def list_datasets() -> list[str]:
    """Names of the datasets a learner can load, in the order of tasks.yaml."""
    return list(load_tasks())


# --- row validation -------------------------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__)


class _RowChecker:
    """Checks one file's rows against its task, raising DatasetError at the first problem."""

    def __init__(self, task: TaskInfo, filename: str) -> None:
        self.task = task
        self.filename = filename
        self.seen: dict[str, int] = {}
        self._validator = None
        if task.target_schema is not None:
            import jsonschema

            self._validator = jsonschema.Draft202012Validator(task.target_schema)

    def fail(self, lineno: int, fld: str, msg: str) -> DatasetError:
        return DatasetError(f"{self.filename} line {lineno}: field '{fld}': {msg}")

    def _string(self, lineno: int, fld: str, value: Any) -> str:
        if not isinstance(value, str):
            raise self.fail(lineno, fld, f"expected a string, got {_type_name(value)}")
        if not value.strip():
            raise self.fail(lineno, fld, "empty")
        return value

    def _label(self, lineno: int, fld: str, value: Any) -> str:
        self._string(lineno, fld, value)
        if self.task.labels and value not in self.task.labels:
            raise self.fail(lineno, fld, f"{value!r} is not one of {', '.join(self.task.labels)}")
        return value

    def _label_list(self, lineno: int, fld: str, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise self.fail(lineno, fld, f"expected a list of labels, got {_type_name(value)}")
        seen: set[str] = set()
        for i, item in enumerate(value):
            self._label(lineno, f"{fld}[{i}]", item)
            if item in seen:
                raise self.fail(lineno, f"{fld}[{i}]", f"{item!r} is listed twice")
            seen.add(item)
        return value

    def _target(self, lineno: int, target: Any) -> None:
        t = self.task
        if t.type == "label" and not t.labels:
            pass  # a file with no tasks.yaml entry: any target is accepted
        elif t.type == "label":
            self._label(lineno, "target", target)
        elif t.type == "multilabel":
            if t.labels_field:
                if not isinstance(target, dict):
                    raise self.fail(lineno, "target", f"expected an object, got {_type_name(target)}")
                if t.labels_field not in target:
                    raise self.fail(lineno, f"target.{t.labels_field}", "missing")
                labels = self._label_list(lineno, f"target.{t.labels_field}", target[t.labels_field])
                if t.primary_field:
                    fld = f"target.{t.primary_field}"
                    if t.primary_field not in target:
                        raise self.fail(lineno, fld, "missing")
                    primary = self._label(lineno, fld, target[t.primary_field])
                    if primary not in labels:
                        raise self.fail(lineno, fld, f"{primary!r} is not among target.{t.labels_field}")
            else:
                self._label_list(lineno, "target", target)
        elif t.type == "rubric":
            if not isinstance(target, list) or not target:
                raise self.fail(lineno, "target", f"expected a non-empty list of criteria, got {_type_name(target)}")
            ids: set[str] = set()
            for i, crit in enumerate(target):
                if not isinstance(crit, dict):
                    raise self.fail(lineno, f"target[{i}]", f"expected an object, got {_type_name(crit)}")
                for key in ("id", "description"):
                    if key not in crit:
                        raise self.fail(lineno, f"target[{i}].{key}", "missing")
                    self._string(lineno, f"target[{i}].{key}", crit[key])
                if crit["id"] in ids:
                    raise self.fail(lineno, f"target[{i}].id", f"duplicate criterion id {crit['id']!r}")
                ids.add(crit["id"])
        if self._validator is not None:
            err = next(iter(sorted(self._validator.iter_errors(target), key=lambda e: list(e.path))), None)
            if err is not None:
                path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path)
                raise self.fail(lineno, f"target{path}", err.message)

    def check(self, lineno: int, obj: Any) -> Row:
        if not isinstance(obj, dict):
            raise DatasetError(f"{self.filename} line {lineno}: expected a JSON object, got {_type_name(obj)}")
        for key in obj:
            if key not in ROW_FIELDS:
                raise self.fail(lineno, key, f"unexpected field (allowed: {', '.join(ROW_FIELDS)})")
        for key in ("id", "split", "input", "target"):
            if key not in obj:
                raise self.fail(lineno, key, "missing")
        row_id = self._string(lineno, "id", obj["id"])
        if row_id in self.seen:
            raise self.fail(lineno, "id", f"duplicate id {row_id!r} (first on line {self.seen[row_id]})")
        self.seen[row_id] = lineno
        split = self._string(lineno, "split", obj["split"])
        if split not in SPLITS:
            raise self.fail(lineno, "split", f"{split!r} is not one of {', '.join(SPLITS)}")
        inp = obj["input"]
        if not isinstance(inp, dict):
            raise self.fail(lineno, "input", f"expected an object, got {_type_name(inp)}")
        if self.task.inputs:
            for key in inp:
                if key not in self.task.inputs:
                    raise self.fail(lineno, f"input.{key}", "unexpected (this task's inputs are: "
                                    f"{', '.join(self.task.inputs)})")
            for key, spec in self.task.inputs.items():
                if key not in inp:
                    raise self.fail(lineno, f"input.{key}", "missing")
                value = self._string(lineno, f"input.{key}", inp[key])
                choices = spec.get("choices")
                if choices and value not in choices:
                    raise self.fail(lineno, f"input.{key}", f"{value!r} is not one of {', '.join(choices)}")
        self._target(lineno, obj["target"])
        meta = obj.get("meta", {})
        if not isinstance(meta, dict):
            raise self.fail(lineno, "meta", f"expected an object, got {_type_name(meta)}")
        return Row(id=row_id, input=dict(inp), target=obj["target"], split=split, meta=dict(meta))


def lone_surrogate(value: Any, path: str = "") -> tuple[str, str] | None:
    """(field path, what is wrong) for the first string holding half a surrogate pair, else None.

    Such a string cannot be encoded as UTF-8: it would fail the cell key, the cache and
    every export, so it is reported where it was written instead.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return path or "value", (f"contains a lone surrogate \\u{ord(value[exc.start]):04x} at character "
                                     f"{exc.start} (half of an emoji or a broken escape), which is not text: "
                                     f"fix or remove it")
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        sub = f"{path}[{k}]" if isinstance(k, int) else (f"{path}.{k}" if path else str(k))
        found = lone_surrogate(v, sub)
        if found is not None:
            return found
    return None


def read_rows(path: str | os.PathLike[str], task: TaskInfo) -> list[Row]:
    """Read and validate one JSONL file; the first bad row raises DatasetError naming file, line and field."""
    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    checker = _RowChecker(task, name)
    rows: list[Row] = []
    for lineno, line, obj in jsonl_values(text.splitlines(), lambda n: f"{name} line {n}"):
        if "\\ud" in line.lower():  # JSON may escape half a surrogate pair, which no text can hold
            bad = lone_surrogate(obj)
            if bad is not None:
                raise checker.fail(lineno, bad[0], bad[1])
        rows.append(checker.check(lineno, obj))
    if not rows:
        raise DatasetError(f"{name}: empty file (no rows)")
    return rows


# --- the Dataset ----------------------------------------------------------------------------------------------

@dataclass
class Dataset:
    """A task's rows plus the metadata that says how to prompt and grade them."""

    name: str
    task: TaskInfo
    rows: list[Row]
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __getitem__(self, key: int | str) -> Row:
        if isinstance(key, str):
            for r in self.rows:
                if r.id == key:
                    return r
            raise KeyError(f"dataset {self.name!r} has no row with id {key!r}")
        return self.rows[key]

    def __repr__(self) -> str:
        sizes = Counter(r.split for r in self.rows)
        parts = ", ".join(f"{s}={sizes[s]}" for s in SPLITS if sizes[s])
        return f"Dataset({self.name!r}, {self.task.type}, {len(self.rows)} rows: {parts})"

    @property
    def labels(self) -> list[str]:
        """The task's label set (empty for rubric tasks)."""
        return list(self.task.labels)

    @property
    def splits(self) -> dict[str, int]:
        """Rows per split, so a learner sees what is held out."""
        sizes = Counter(r.split for r in self.rows)
        return {s: sizes[s] for s in SPLITS if sizes[s]}

    def _with_rows(self, rows: list[Row], name: str | None = None) -> Dataset:
        return Dataset(name or self.name, self.task, rows, self.path)

    def split(self, name: str) -> Dataset:
        """Only the rows of one split: train (few-shot examples), dev (tuning, calibration), test (held out)."""
        if name not in SPLITS:
            raise DatasetError(f"dataset {self.name!r}: split {name!r} is not one of {', '.join(SPLITS)}")
        return self._with_rows([r for r in self.rows if r.split == name])

    def sample(self, n: int, seed: int = 0) -> Dataset:
        """n rows drawn without replacement, the same ones for the same seed, so runs stay comparable."""
        if not isinstance(n, int) or n < 0:
            raise DatasetError(f"dataset {self.name!r}: sample size must be a non-negative integer, got {n!r}")
        if n > len(self.rows):
            raise DatasetError(f"dataset {self.name!r}: asked for {n} rows but it has {len(self.rows)}")
        return self._with_rows(random.Random(seed).sample(self.rows, n))

    def label_counts(self) -> dict[str, Counter]:
        """Per split, how many rows carry each label (multilabel: rows containing it; '(none)' for empty)."""
        out: dict[str, Counter] = {}
        for r in self.rows:
            c = out.setdefault(r.split, Counter())
            labels = self.task.label_set(r.target)
            if not labels and self.task.type == "multilabel":
                c["(none)"] += 1
            c.update(labels)
        return out

    def to_frame(self):
        """One row per example: id, split, one column per input field, target and meta."""
        import pandas as pd

        records = [{"id": r.id, "split": r.split, **r.input, "target": r.target, "meta": r.meta} for r in self.rows]
        columns = ["id", "split", *self.task.input_fields, "target", "meta"]
        return pd.DataFrame.from_records(records, columns=columns)

    def binary(self, label: str) -> Dataset:
        """A Yes/No view of a multilabel task ("is this label present?"), for label scoring and calibration."""
        if self.task.type != "multilabel":
            raise DatasetError(f"dataset {self.name!r}: binary() needs a multilabel task, this one is {self.task.type}")
        if label not in self.task.labels:
            raise DatasetError(f"dataset {self.name!r}: {label!r} is not one of {', '.join(self.task.labels)}")
        derived = None
        if self.task.directory is not None and (self.task.directory / TASKS_FILE).exists():
            derived = next((t for t in load_tasks(self.task.directory).values()
                            if t.derived_from == self.task.name and t.positive == label), None)
        task = derived or TaskInfo(
            name=f"{self.task.name}.{label}", description=f"Is {label} present? (Yes/No view of {self.task.name})",
            type="label", labels=("Yes", "No"), inputs=self.task.inputs, grader="label_match",
            derived_from=self.task.name, positive=label, directory=self.task.directory)
        if derived is not None and not derived.inputs:
            task = replace(derived, inputs=self.task.inputs)
        rows = [replace(r, target="Yes" if label in self.task.label_set(r.target) else "No",
                        meta={**r.meta, "source_target": r.target}) for r in self.rows]
        return Dataset(task.name, task, rows, self.path)

    def template(self):
        """The task's default prompt template (datasets/<task>.template.yaml)."""
        if not self.task.template or self.task.directory is None:
            raise DatasetError(f"dataset {self.name!r}: tasks.yaml names no default template for it")
        from .templates import load_template

        return load_template(self.task.directory / self.task.template)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the rows as JSONL; written to a temporary file and renamed, so a crash never leaves half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for r in self.rows:
            obj: dict[str, Any] = {"id": r.id, "split": r.split, "input": r.input, "target": r.target}
            if r.meta:
                obj["meta"] = r.meta
            lines.append(json.dumps(obj, ensure_ascii=False))
        _atomic_write(path, "\n".join(lines) + "\n")
        return path


def _atomic_write(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def load_dataset(name_or_path: str | os.PathLike[str], split: str | None = None) -> Dataset:
    """Load a task by name (see list_datasets()) or a JSONL file by path, validating every row."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if text.endswith(".jsonl") or path.is_file():
        directory = path.parent
        tasks = load_tasks(directory) if (directory / TASKS_FILE).exists() else {}
        task = next((t for t in tasks.values() if t.file == path.name), None)
        if task is None:
            task = TaskInfo(name=path.stem, description=f"rows from {path.name}", type="label", file=path.name,
                            directory=directory)
            rows = read_rows(path, task)
            task = replace(task, labels=_infer_labels(rows))
        else:
            rows = read_rows(path, task)
        ds = Dataset(task.name, task, rows, path)
    else:
        tasks = load_tasks()
        if text not in tasks:
            raise DatasetError(f"no dataset named {text!r}; known: {', '.join(tasks)} (or pass a path to a .jsonl file)")
        task = tasks[text]
        if task.derived_from:
            base = tasks[task.derived_from]
            ds = Dataset(base.name, base, read_rows(datasets_dir() / base.file, base),
                         datasets_dir() / base.file).binary(task.positive)
        else:
            path = datasets_dir() / task.file
            ds = Dataset(task.name, task, read_rows(path, task), path)
    return ds.split(split) if split is not None else ds


def _infer_labels(rows: list[Row]) -> tuple[str, ...]:
    """A learner's own file: string targets with few distinct values are taken as its label set."""
    targets = [r.target for r in rows]
    if targets and all(isinstance(t, str) for t in targets):
        distinct = sorted(set(targets))
        if len(distinct) <= 20:
            return tuple(distinct)
    return ()


# --- the card's counts table ----------------------------------------------------------------------------------

def _count_cell(ds: Dataset, rows: list[Row]) -> str:
    if ds.task.type == "structured":
        keys = Counter(str(next(iter(r.target.values()))) for r in rows if isinstance(r.target, dict) and r.target)
        if len(keys) <= 8 and len(keys) < len(rows):  # a small set of kinds (tools): count each
            return ", ".join(f"{k} {n}" for k, n in sorted(keys.items()))
        return f"{len(rows)} distinct answers" if len(keys) == len(rows) else f"{len(rows)} answers"
    if ds.task.type == "rubric":
        sizes = [len(r.target) for r in rows]
        per_row = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"
        return f"{sum(sizes)} criteria ({per_row} per row)"
    counts = Dataset(ds.name, ds.task, rows).label_counts().get(rows[0].split, Counter())
    order = list(ds.task.labels) + (["(none)"] if ds.task.type == "multilabel" else [])
    cell = ", ".join(f"{lab} {counts[lab]}" for lab in order if counts[lab] or lab != "(none)")
    if ds.task.primary_field:
        primary = Counter(r.target[ds.task.primary_field] for r in rows)
        cell += "; primary: " + ", ".join(f"{lab} {primary[lab]}" for lab in ds.task.labels)
    return cell


def counts_table(names: list[str] | None = None) -> str:
    """Markdown table of rows and label counts per task and split, computed from the files (pasted into the card)."""
    lines = ["| task | type | split | rows | label counts (multilabel: rows containing the label) |",
             "|---|---|---|---:|---|"]
    for name in names or list_datasets():
        ds = load_dataset(name)
        for split in SPLITS:
            rows = [r for r in ds.rows if r.split == split]
            if rows:
                lines.append(f"| {name} | {ds.task.type} | {split} | {len(rows)} | {_count_cell(ds, rows)} |")
        lines.append(f"| {name} | {ds.task.type} | **all** | **{len(ds)}** | "
                     f"{_count_cell(ds, [replace(r, split='all') for r in ds.rows])} |")
    return "\n".join(lines)


def update_card(path: str | os.PathLike[str] | None = None) -> Path:
    """Rewrite the counts table between the card's markers (atomically), so the card never drifts from the data."""
    path = Path(path) if path is not None else datasets_dir() / "README.md"
    text = path.read_text(encoding="utf-8")
    if CARD_START not in text or CARD_END not in text:
        raise DatasetError(f"{path.name}: markers {CARD_START} ... {CARD_END} not found")
    head, rest = text.split(CARD_START, 1)
    _, tail = rest.split(CARD_END, 1)
    _atomic_write(path, f"{head}{CARD_START}\n{counts_table()}\n{CARD_END}{tail}")
    return path


if __name__ == "__main__":  # python -m promptkit.datasets [--write]: print (or paste) the card's counts table
    import sys

    if "--write" in sys.argv[1:]:
        print(f"updated {update_card()}")
    else:
        print(counts_table())
