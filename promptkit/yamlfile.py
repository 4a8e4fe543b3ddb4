"""YAML files people edit, read one way: load, find a field's line, say where a parse error is.

Every YAML reader (experiment files, phrases, templates, models.yaml, tasks.yaml, exercises.yaml, the tools
file, the judge's prompts, the cited evidence) goes through here, so each message points at the file, line, column and field the same way.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .errors import PromptkitError

FieldPath = Sequence["str | int"]


def parse_error(source: str, exc: Exception) -> str:
    """`source, line L, column C: not valid YAML: problem (context that starts at line ...)` for a YAMLError."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    start = getattr(exc, "context_mark", None)
    if context and start is not None and mark is not None and start.line != mark.line:
        # an unclosed quote or bracket is found where the file ends: say where it was opened
        context += f" that starts at line {start.line + 1}, column {start.column + 1}"
    detail = f"{problem} ({context})" if context else f"{problem}"
    return f"{source}{where}: not valid YAML: {detail}"


def loads(text: str, source: str, error: type[PromptkitError] = PromptkitError, hint: str = "") -> Any:
    """The parsed document, or `error` naming source, line and column (and `hint`, what to do)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(parse_error(source, exc) + hint) from None


def read_text(path: str | os.PathLike[str], error: type[PromptkitError] = PromptkitError, what: str = "file",
              hint: str = "") -> str:
    """The file's text, or `error` saying it is missing or not UTF-8 (`what` names the kind of file)."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{p}: {what} not found{hint}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start}){hint}") from None


def load(path: str | os.PathLike[str], error: type[PromptkitError] = PromptkitError, what: str = "file",
         hint: str = "") -> Any:
    """Read and parse a YAML file; every failure is `error` naming the file (and line and column if it parsed)."""
    return loads(read_text(path, error, what, hint), str(path), error, hint)


def compose(text: str | None) -> Any:
    """The node tree of `text` (it carries line numbers), or None if there is none or it does not parse."""
    import yaml

    if text is None:
        return None
    try:
        return yaml.compose(text)
    except yaml.YAMLError:
        return None


def line_of(root: Any, path: FieldPath) -> int | None:
    """1-based line of the deepest field of `path` (keys and list indexes) found in a composed tree.

    A key's own line for mappings, an item's line for lists; a path that leaves the tree early points at the
    last field it found, None when it finds none (an empty path names the document's first line).
    """
    import yaml

    node = root
    if node is None:
        return None
    line = node.start_mark.line + 1 if not path else None
    for step in path:
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == step), None)
            if match is None:
                break
            line = match[0].start_mark.line + 1
            node = match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            break
    return line


def field_name(path: FieldPath) -> str:
    """`a.b[2]` for ("a", "b", 2)."""
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path))


def where(source: str, root: Any, path: FieldPath) -> str:
    """`source, line N, field 'a.b[2]'`: the place an error message starts with."""
    line = line_of(root, path) if path else None
    name = field_name(path)
    return f"{source}" + (f", line {line}" if line else "") + (f", field '{name}'" if name else "")


__all__ = ["compose", "field_name", "line_of", "load", "loads", "parse_error", "read_text", "where"]
