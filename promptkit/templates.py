"""Prompt templates: a system part, user/assistant turns and a prefill, with `{{name}}` variables.

`placeholders="single"` reads Python format-style `{name}` variables instead (with `{{`
and `}}` for literal braces), the style most third-party prompts are written in.

A Template is the PromptVariant the runner renders once per dataset row. It
is immutable, so applying phrases or examples always makes a new one, and it
round-trips through a small YAML (or TOML) file so learners keep their prompts.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field, replace as dc_replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import yamlfile
from .errors import TemplateError
from .files import atomic_write
from .types import Message, Request, Row, Settings

VAR_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SINGLE_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")  # Python format style: {name}, {{ and }} literal
PLACEHOLDERS: tuple[str, ...] = ("double", "single")
FIELDS: tuple[str, ...] = ("name", "description", "system", "turns", "prefill", "meta", "placeholders")
REQUIRED: tuple[str, ...] = ("name", "turns")
TURN_ROLES: tuple[str, ...] = ("user", "assistant")


def variables_in(text: str, placeholders: str = "double") -> list[str]:
    """Variable names in `text`, in order of first use (`{{name}}`; `{name}` with placeholders="single")."""
    seen: dict[str, None] = {}
    for m in (SINGLE_RE if placeholders == "single" else VAR_RE).finditer(text):
        if m.group(1) is not None:
            seen.setdefault(m.group(1), None)
    return list(seen)


def format_value(value: Any) -> str:
    """How a variable value appears in a prompt: strings as is, structures as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, indent=2)
    return str(value)


def substitute(text: str, variables: Mapping[str, Any], placeholders: str = "double", *, final: bool = False) -> str:
    """Fill the slots whose names are in `variables`; leave the others as they are.

    With placeholders="single", `final=True` also turns the escaped `{{` and `}}` into single braces.
    """
    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:  # an escaped brace
            return m.group(0)[0] if final else m.group(0)
        return format_value(variables[name]) if name in variables else m.group(0)
    return (SINGLE_RE if placeholders == "single" else VAR_RE).sub(fill, text)


def unfilled_single(text: str, names: Iterable[str]) -> list[str]:
    """`{name}` slots left in rendered text whose name is in `names`: a single-brace template read as `{{name}}`."""
    want = set(names)
    return list(dict.fromkeys(m.group(1) for m in SINGLE_RE.finditer(text) if m.group(1) in want))


def _coerce_turn(turn: Any, i: int, where: str) -> Message:
    if isinstance(turn, Message):
        msg = turn
    elif isinstance(turn, Mapping):
        extra = sorted(set(turn) - {"role", "content"})
        if extra:
            raise TemplateError(f"{where}: turns[{i}] has unknown field(s) {extra}; a turn has 'role' and 'content'",
                                field=("turns", i))
        for key in ("role", "content"):
            if key not in turn:
                raise TemplateError(f"{where}: turns[{i}] is missing the field '{key}'", field=("turns", i))
        if not isinstance(turn["content"], str):
            raise TemplateError(f"{where}: turns[{i}].content must be text, got {type(turn['content']).__name__}",
                                field=("turns", i, "content"))
        if turn["role"] not in TURN_ROLES:
            raise TemplateError(
                f"{where}: turns[{i}].role must be 'user' or 'assistant', got {turn['role']!r}"
                + (" (put system text in the template's 'system' field)" if turn["role"] == "system" else ""),
                field=("turns", i, "role"),
            )
        msg = Message(turn["role"], turn["content"])
    else:
        raise TemplateError(f"{where}: turns[{i}] must be a mapping with 'role' and 'content', got {turn!r}",
                            field=("turns", i))
    if msg.role not in TURN_ROLES:
        raise TemplateError(
            f"{where}: turns[{i}].role must be 'user' or 'assistant', got {msg.role!r}"
            " (put system text in the template's 'system' field)", field=("turns", i, "role"),
        )
    return msg


@dataclass(frozen=True)
class Template:
    """A reusable prompt: system text, user/assistant turns (assistant = few-shot answers) and a prefill."""

    name: str
    description: str = ""
    system: str = ""
    turns: tuple[Message, ...] = ()
    prefill: str = ""
    meta: dict[str, Any] = field(default_factory=dict, hash=False)
    placeholders: str = "double"  # "double": {{name}}; "single": Python format-style {name}

    def __post_init__(self) -> None:
        where = f"template {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise TemplateError(f"template name must be non-empty text, got {self.name!r}")
        if self.placeholders not in PLACEHOLDERS:
            raise TemplateError(f"{where}: 'placeholders' must be 'double' ({{{{name}}}}) or 'single' ({{name}}), "
                                f"got {self.placeholders!r}", field=("placeholders",))
        for key in ("description", "system", "prefill"):
            if not isinstance(getattr(self, key), str):
                raise TemplateError(f"{where}: '{key}' must be text, got {type(getattr(self, key)).__name__}",
                                    field=(key,))
        turns = self.turns
        if isinstance(turns, str):  # a bare string is the one user turn
            turns = (Message("user", turns),)
        if not isinstance(turns, (list, tuple)):
            raise TemplateError(
                f"{where}: 'turns' must be a list of {{role, content}} turns, got {type(turns).__name__}",
                field=("turns",))
        msgs = tuple(_coerce_turn(t, i, where) for i, t in enumerate(turns))
        if not msgs:
            raise TemplateError(f"{where}: 'turns' is empty; a template needs at least one user turn")
        if msgs[-1].role != "user":
            raise TemplateError(
                f"{where}: the last turn is an assistant turn; a template ends with the user turn to answer"
                " (put the start of the answer in 'prefill')"
            )
        if not isinstance(self.meta, Mapping):
            raise TemplateError(f"{where}: 'meta' must be a mapping, got {type(self.meta).__name__}", field=("meta",))
        object.__setattr__(self, "turns", msgs)
        object.__setattr__(self, "meta", dict(self.meta))

    # ---- variables and rendering -------------------------------------------------

    def parts(self) -> list[tuple[str, str]]:
        """(label, text) for every part that may hold variables, labelled as error messages name them."""
        out = [("system", self.system)] if self.system else []
        out += [(f"turn {i} ({m.role})", m.content) for i, m in enumerate(self.turns, 1)]
        if self.prefill:
            out.append(("prefill", self.prefill))
        return out

    @property
    def variables(self) -> set[str]:
        """Names of every `{{variable}}` the template needs."""
        return {v for _, text in self.parts() for v in variables_in(text, self.placeholders)}

    def variable_order(self) -> list[str]:
        """The variables in order of first use, for forms and tables."""
        seen: dict[str, None] = {}
        for _, text in self.parts():
            for v in variables_in(text, self.placeholders):
                seen.setdefault(v, None)
        return list(seen)

    def missing(self, variables: Mapping[str, Any]) -> list[str]:
        """Variables the template needs that `variables` does not give, in order of first use."""
        return [v for v in self.variable_order() if v not in variables]

    def unused(self, variables: Mapping[str, Any]) -> list[str]:
        """Given names the template never uses (a dataset row often carries extra fields)."""
        need = self.variables
        return sorted(k for k in variables if k not in need)

    def check(self, variables: Mapping[str, Any], *, strict: bool = False) -> None:
        """Raise TemplateError naming each missing variable and where it is used (and unused ones if strict)."""
        if not isinstance(variables, Mapping):
            raise TemplateError(f"template {self.name!r}: variables must be a mapping of name -> value, "
                                f"got {type(variables).__name__}")
        missing = self.missing(variables)
        if missing:
            places = []
            for v in missing:
                where = [label for label, text in self.parts() if v in variables_in(text, self.placeholders)]
                hint = difflib.get_close_matches(v, [str(k) for k in variables], n=1)
                places.append(f"'{v}' (used in {', '.join(where)}"
                              + (f"; did you mean '{hint[0]}'?)" if hint else ")"))
            given = sorted(str(k) for k in variables)
            raise TemplateError(
                f"template {self.name!r}: missing variable{'s' if len(missing) > 1 else ''} "
                + ", ".join(places) + f"; given variables: {given}"
            )
        if strict:
            unused = self.unused(variables)
            if unused:
                raise TemplateError(
                    f"template {self.name!r}: unused variable{'s' if len(unused) > 1 else ''} {unused} "
                    f"(the template uses {sorted(self.variables)}); pass strict=False to allow extras"
                )

    def render(self, variables: Mapping[str, Any] | Row | None = None, settings: Settings | None = None,
               *, strict: bool = False) -> Request:
        """The provider-neutral Request for one set of variables (or a Row's input); a missing one is an error."""
        variables = {} if variables is None else variables.input if isinstance(variables, Row) else variables
        self.check(variables, strict=strict)
        ph = self.placeholders

        def sub(text: str) -> str:
            return substitute(text, variables, ph, final=True)
        msgs = ([Message("system", sub(self.system))] if self.system else []) + [
            Message(m.role, sub(m.content)) for m in self.turns
        ]
        return Request(messages=tuple(msgs), settings=settings or Settings(), prefill=sub(self.prefill))

    def to_request(self, variables: Mapping[str, Any], settings: Settings) -> Request:
        """PromptVariant protocol: what the runner calls once per row (extra row fields are fine)."""
        return self.render(variables, settings)

    def fill(self, variables: Mapping[str, Any], **more: Any) -> "Template":
        """A template with some variables filled in and the rest left as `{{slots}}`."""
        vals, ph = {**variables, **more}, self.placeholders
        return self.replace(
            system=substitute(self.system, vals, ph),
            turns=tuple(Message(m.role, substitute(m.content, vals, ph)) for m in self.turns),
            prefill=substitute(self.prefill, vals, ph),
        )

    def as_double(self) -> "Template":
        """The same prompt written with `{{name}}` variables (the converter for a single-brace template)."""
        if self.placeholders == "double":
            return self

        def conv(text: str) -> str:
            return SINGLE_RE.sub(lambda m: "{{" + m.group(1) + "}}" if m.group(1) else m.group(0)[0], text)
        return self.replace(system=conv(self.system), turns=tuple(Message(m.role, conv(m.content)) for m in self.turns),
                            prefill=conv(self.prefill), placeholders="double")

    # ---- building variants ---------------------------------------------------------

    def replace(self, **changes: Any) -> "Template":
        """A copy with some fields changed (the original is untouched)."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise TemplateError(f"template {self.name!r}: unknown field(s) {unknown}; fields are {list(FIELDS)}")
        return dc_replace(self, **changes)

    @property
    def user(self) -> str:
        """The last user turn: the one each row fills and phrases attach to."""
        return self.turns[-1].content

    def with_examples(
        self,
        rows: Iterable[Row],
        answer: str | Callable[[Any], str] | None = None,
        *,
        name: str | None = None,
    ) -> "Template":
        """Add few-shot user/assistant pairs from dataset rows, just before the final user turn.

        Each row's `input` fills a copy of the final user turn; its `target` becomes the
        answer: by `answer` (a callable, or a string with `{{target}}`), else as text
        (dicts and lists as JSON). A prefill the answer does not already start with is
        put in front, so examples look like the answers the model is asked to continue.
        """
        rows = list(rows)
        last = self.turns[-1]
        pairs: list[Message] = []
        need = set(variables_in(last.content, self.placeholders))
        for row in rows:
            if not isinstance(row, Row):
                raise TemplateError(
                    f"template {self.name!r}: with_examples takes Row objects, got {type(row).__name__}")
            lacking = sorted(need - set(row.input))
            if lacking:
                raise TemplateError(
                    f"template {self.name!r}: example row {row.id!r} has no input field(s) {lacking} "
                    f"for the user turn (row fields: {sorted(row.input)})"
                )
            if callable(answer):
                text = answer(row.target)
            elif isinstance(answer, str):
                text = substitute(answer, {"target": row.target})
            else:
                text = format_value(row.target)
            if not isinstance(text, str):
                raise TemplateError(f"template {self.name!r}: answer for example row {row.id!r} must be text, "
                                    f"got {type(text).__name__}")
            if self.prefill and not text.startswith(self.prefill):
                text = self.prefill + text
            pairs += [Message("user", substitute(last.content, row.input, self.placeholders)), Message("assistant", text)]
        meta = dict(self.meta)
        meta["examples"] = list(meta.get("examples", [])) + [r.id for r in rows]
        return self.replace(
            name=name or f"{self.name}+{len(rows)}shot",
            turns=self.turns[:-1] + tuple(pairs) + (last,),
            meta=meta,
        )

    # ---- files ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The file format: plain dicts and strings, keys in reading order."""
        d: dict[str, Any] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["system"] = self.system
        d["turns"] = [{"role": m.role, "content": m.content} for m in self.turns]
        d["prefill"] = self.prefill
        if self.meta:
            d["meta"] = dict(self.meta)
        if self.placeholders != "double":
            d["placeholders"] = self.placeholders
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "<dict>") -> "Template":
        """Build from the file format, naming any missing or unknown field and the source."""
        if not isinstance(d, Mapping):
            raise TemplateError(f"{source}: a template must be a mapping with fields {list(FIELDS)}, "
                                f"got {type(d).__name__}")
        unknown = [k for k in d if k not in FIELDS]
        if unknown:
            hints = [difflib.get_close_matches(str(k), FIELDS, n=1) for k in unknown]
            detail = ", ".join(f"'{k}'" + (f" (did you mean '{h[0]}'?)" if h else "") for k, h in zip(unknown, hints))
            raise TemplateError(f"{source}: unknown template field {detail}; fields are {list(FIELDS)}",
                                field=(unknown[0],))
        for key in REQUIRED:
            if key not in d:
                raise TemplateError(f"{source}: template is missing the required field '{key}'")
        values = {k: ("" if d.get(k) is None and k in ("description", "system", "prefill") else d[k]) for k in d}
        if "meta" in values and values["meta"] is None:
            values["meta"] = {}
        try:
            return cls(**values)
        except TemplateError as e:
            msg = str(e)
            raise TemplateError(msg if msg.startswith(source) else f"{source}: {msg}", field=e.field) from None

    def to_yaml(self) -> str:
        """The template as a human-readable YAML document (multi-line text in block style)."""
        import yaml
        return yaml.dump(self.to_dict(), Dumper=_dumper(), sort_keys=False, allow_unicode=True, width=100)

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<string>") -> "Template":
        """Parse a YAML document; a parse error names the source and line."""
        return cls.from_dict(yamlfile.loads(text, source, TemplateError), source=source)

    def to_toml(self) -> str:
        """The template as TOML (for learners who prefer it); same fields as YAML."""
        return _dump_toml(self.to_dict())

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> "Template":
        """Parse a TOML document; a parse error names the source and line."""
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise TemplateError(f"{source}: reading TOML needs Python 3.11+ (tomllib); use YAML instead") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"^(.*) \(at line (\d+), column (\d+)\)$", str(e))
            where, detail = (f", line {m.group(2)}, column {m.group(3)}", m.group(1)) if m else ("", str(e))
            raise TemplateError(f"{source}{where}: not valid TOML: {detail}") from None
        return cls.from_dict(data, source=source)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the template to a .yaml/.yml/.toml file atomically (never a half-written file)."""
        p = Path(path)
        fmt = _format_of(p)
        text = self.to_toml() if fmt == "toml" else self.to_yaml()
        return atomic_write(p, lambda f: f.write(text), newline="\n")

    # ---- display ------------------------------------------------------------------------

    def __str__(self) -> str:
        head = f"Template {self.name!r}" + (f": {self.description}" if self.description else "")
        vars_ = self.variable_order()
        lines = [head, f"variables: {', '.join(vars_) if vars_ else '(none)'}"]
        if self.system:
            lines += ["--- system ---", self.system.rstrip("\n")]
        for i, m in enumerate(self.turns, 1):
            lines += [f"--- turn {i}: {m.role} ---", m.content.rstrip("\n")]
        if self.prefill:
            lines += ["--- prefill (start of the answer) ---", self.prefill]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """Each part in a coloured box with its {{variables}} in bold (data/templates/prompt_template.html.j2)."""
        from markupsafe import escape

        from .errors import redact
        from .htmlrender import render, trusted

        colours = {"system": "#eef2ff", "user": "#f0fdf4", "assistant": "#fff7ed", "prefill": "#fef9c3"}
        pattern = SINGLE_RE if self.placeholders == "single" else VAR_RE

        def box(label: str, text: str, role: str) -> dict[str, Any]:
            body = pattern.sub(lambda m: f"<b style='color:#7c3aed'>{m.group(0)}</b>" if m.group(1) else m.group(0),
                               str(escape(redact(text))))
            return {"label": label, "colour": colours[role], "body": trusted(body)}

        boxes = [box("system", self.system, "system")] if self.system else []
        boxes += [box(f"turn {i}: {m.role}" + (" (example answer)" if m.role == "assistant" else ""), m.content, m.role)
                  for i, m in enumerate(self.turns, 1)]
        if self.prefill:
            boxes.append(box("prefill (start of the answer)", self.prefill, "prefill"))
        return render("prompt_template.html.j2", name=self.name, description=self.description,
                      variables=", ".join(self.variable_order()), boxes=boxes)


def load_template(path: str | os.PathLike[str]) -> Template:
    """Read a template file (.yaml, .yml or .toml); errors name the file, line and field."""
    p = Path(path)
    fmt = _format_of(p)
    text = yamlfile.read_text(p, TemplateError, "template file")
    if fmt == "toml":
        return Template.from_toml(text, source=str(p))
    data = yamlfile.loads(text, str(p), TemplateError)
    try:
        return Template.from_dict(data, source=str(p))
    except TemplateError as e:
        # the field at fault, or the whole document when it is not a mapping
        line = yamlfile.line_of(yamlfile.compose(text), e.field) if e.field or not isinstance(data, Mapping) else None
        if line is None:
            raise
        raise TemplateError(str(e).replace(f"{p}:", f"{p}, line {line}:", 1), field=e.field) from None


# ---- helpers ------------------------------------------------------------------------------


def _format_of(p: Path) -> str:
    ext = p.suffix.lower()
    if ext in (".yaml", ".yml"):
        return "yaml"
    if ext == ".toml":
        return "toml"
    raise TemplateError(f"{p}: a template file ends in .yaml, .yml or .toml, got {ext or 'no extension'!r}")


def _block_str(dumper: Any, data: str) -> Any:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_DUMPER: list[type] = []


def _dumper() -> type:
    """A SafeDumper that writes multi-line text as `|` blocks, so saved prompts read like the prompt."""
    if not _DUMPER:
        import yaml

        class BlockDumper(yaml.SafeDumper):
            pass

        BlockDumper.add_representer(str, _block_str)
        _DUMPER.append(BlockDumper)
    return _DUMPER[0]


def _toml_str(s: str) -> str:
    if "\n" in s and "'''" not in s and "\r" not in s and not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", s):
        return "'''\n" + s + "'''"
    out = json.dumps(s, ensure_ascii=False)
    return out.replace("\x7f", "\\u007f")


def _toml_value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, where) for x in v) + "]"
    raise TemplateError(f"{where}: cannot write a {type(v).__name__} to TOML; save as .yaml instead")


def _dump_toml(d: Mapping[str, Any]) -> str:
    lines = []
    for k in ("name", "description", "system", "prefill", "placeholders"):
        if k in d:
            lines.append(f"{k} = {_toml_str(d[k])}")
    for t in d.get("turns", []):
        lines += ["", "[[turns]]", f"role = {_toml_str(t['role'])}", f"content = {_toml_str(t['content'])}"]
    if d.get("meta"):
        lines += ["", "[meta]"]
        for k, v in d["meta"].items():
            key = k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)
            lines.append(f"{key} = {_toml_value(v, f'meta.{k}')}")
    return "\n".join(lines) + "\n"


__all__ = ["Template", "load_template", "variables_in", "substitute", "format_value"]

