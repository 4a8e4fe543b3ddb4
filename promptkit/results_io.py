"""Results on disk: lossless JSONL (read back exactly), CSV of the DataFrame, and the redaction every export passes.

`Results.to_jsonl`, `.from_jsonl`, `.to_csv` and `.to_records` are these
functions. Every string written goes through `errors.redact`, so no export
carries an API key.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, TextIO

from .errors import DatasetError, redact
from .files import atomic_write, jsonl_values
from .types import Cell, CellResult, Completion, Grade, Request, Settings

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

JSONL_FORMAT = "promptkit.results/1"


def to_records(results: Sequence[CellResult]) -> list[dict[str, Any]]:
    """One JSON-ready dict per cell (cell, completion, grades), secrets redacted."""
    return [redact_tree(cell_result_to_dict(r)) for r in results]


def write_jsonl(path: str | os.PathLike[str], results: Sequence[CellResult], meta: dict[str, Any]) -> Path:
    """One JSON object per cell, lossless (secrets redacted); the first line also carries the run's meta."""
    meta = redact_tree(jsonable(meta))

    def write(f: TextIO) -> None:
        for i, r in enumerate(results):
            obj = redact_tree(cell_result_to_dict(r))
            if i == 0:
                obj = {"format": JSONL_FORMAT, "meta": meta, **obj}
            f.write(json.dumps(obj, ensure_ascii=False, default=json_default))
            f.write("\n")
        if not results:
            f.write(json.dumps({"format": JSONL_FORMAT, "meta": meta}, ensure_ascii=False, default=json_default))
            f.write("\n")

    return atomic_write(path, write)


def read_jsonl(path: str | os.PathLike[str]) -> tuple[list[CellResult], dict[str, Any]]:
    """The cell results and meta of a `write_jsonl` file; a bad line is named by file and line number."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"results file {path} does not exist") from None
    meta: dict[str, Any] = {}
    results = []
    for n, _, obj in jsonl_values(lines, lambda n: f"{path}, line {n}"):
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}, line {n}: expected a JSON object, got {type(obj).__name__}")
        if "meta" in obj:
            meta = obj["meta"] or {}
        if "cell" not in obj:
            if "meta" in obj:
                continue
            raise DatasetError(f"{path}, line {n}: missing field 'cell'; is this a promptkit results export?")
        try:
            results.append(cell_result_from_dict(obj))
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DatasetError(f"{path}, line {n}: malformed cell result: {what}") from None
    return results, meta


def write_csv(path: str | os.PathLike[str], df: "pd.DataFrame") -> Path:
    """A results DataFrame as CSV (one row per call; lists and dicts as JSON), secrets redacted."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object or str(df[col].dtype) in ("str", "string"):
            df[col] = redact_column([_csv_value(v) for v in df[col].tolist()])
    return atomic_write(path, lambda f: df.to_csv(f, index=False, lineterminator="\n"))


def cell_result_to_dict(r: CellResult) -> dict[str, Any]:
    """One cell result as plain JSON-ready data (what a JSONL line holds)."""
    c = r.cell
    return {
        "cell": {
            "key": c.key, "variant": c.variant, "model": c.model, "settings_label": c.settings_label,
            "settings": c.settings.to_dict(), "row_id": c.row_id, "repeat": c.repeat,
            "target": jsonable(c.target), "request": c.request.to_dict(),
        },
        "completion": r.completion.to_dict(),
        "grades": {name: jsonable(asdict(g)) for name, g in r.grades.items()},
    }


def cell_result_from_dict(d: dict[str, Any]) -> CellResult:
    """The inverse of cell_result_to_dict."""
    c = d["cell"]
    cell = Cell(
        key=c["key"], variant=c["variant"], model=c["model"], settings=Settings.from_dict(c["settings"]),
        row_id=c["row_id"], repeat=c["repeat"], request=Request.from_dict(c["request"]),
        target=c.get("target"), settings_label=c.get("settings_label", ""),
    )
    grades = {name: Grade(**g) for name, g in (d.get("grades") or {}).items()}
    return CellResult(cell, Completion.from_dict(d["completion"]), grades)


def json_default(x: Any) -> Any:
    """json.dumps' fallback for numpy scalars and arrays, sets and paths."""
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, (set, frozenset)):
        return sorted(x, key=str)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return str(x)


def jsonable(x: Any) -> Any:
    """Tuples become lists (as JSON has them) so that what is written is what is read back."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def redact_tree(x: Any) -> Any:
    """Every string in a nested structure passed through `redact`: exports never carry an API key.

    One `redact` over all the strings joined decides whether any needs it, so
    the common clean record costs one regex pass instead of one per string.
    """
    strings: list[str] = []
    _collect_strings(x, strings)
    joined = "\x00".join(strings)
    if redact(joined) == joined:
        return x
    return _redact_each(x)


def _collect_strings(x: Any, out: list[str]) -> None:
    if isinstance(x, str):
        out.append(x)
    elif isinstance(x, dict):
        for k, v in x.items():
            if isinstance(k, str):
                out.append(k)
            _collect_strings(v, out)
    elif isinstance(x, (list, tuple)):
        for v in x:
            _collect_strings(v, out)


def _redact_each(x: Any) -> Any:
    if isinstance(x, str):
        return redact(x)
    if isinstance(x, dict):
        return {(redact(k) if isinstance(k, str) else k): _redact_each(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_redact_each(v) for v in x]
    return x


def redact_column(values: Sequence[Any]) -> list[Any]:
    """A column's strings redacted, with one regex pass when none needs it."""
    values = list(values)
    joined = "\x00".join(v for v in values if isinstance(v, str))
    if redact(joined) == joined:
        return values
    return [redact(v) if isinstance(v, str) else v for v in values]


def _csv_value(x: Any) -> Any:
    if isinstance(x, (list, tuple, dict)):
        return json.dumps(jsonable(x), ensure_ascii=False, default=json_default)
    return x
