"""The power-phrase library: phrases kept as data, applied to templates to make measurable variants.

Phrases live in `data/phrases.yaml`. Applying a set of them to a Template gives a
new Template (named `base+cot+xml_input`) in a fixed order, so the same set always
gives the same prompt and the same cache key; `ablation` gives the variants an
experiment needs to measure each phrase.
"""
from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from . import yamlfile
from .errors import TemplateError
from .templates import VAR_RE, Template, variables_in
from .types import Message

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_PATH = Path(__file__).parent / "data" / "phrases.yaml"

# placement -> what it does (the code below is the only place that gives these meaning)
PLACEMENTS: dict[str, str] = {
    "system_prepend": "before the system prompt",
    "system_append": "after the system prompt",
    "before_user": "before the final user turn",
    "after_user": "after the final user turn",
    "wrap_input": "around each input variable of the final user turn ({var} = its name, {input} = its slot)",
    "repeat_user": "after the final user turn, followed by that turn again",
    "prefill": "at the start of the assistant's answer",
}
REQUIRED: tuple[str, ...] = ("id", "category", "title", "text", "placement", "helps_when", "hurts_when", "source")
OPTIONAL: tuple[str, ...] = ("reported", "notes")
ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
FOLKLORE = "practitioner folklore; no controlled study in our evidence file"


@dataclass(frozen=True)
class Phrase:
    """One power phrase: its words, where they go, and what is known about when they help."""

    id: str
    category: str
    title: str
    text: str
    placement: str
    helps_when: str
    hurts_when: str
    source: str
    reported: str = ""
    notes: str = ""

    def __str__(self) -> str:
        return f"{self.id} [{self.category}, {self.placement}]: {self.text}"


@dataclass(frozen=True)
class Category:
    """A group of phrases with a one-line explanation for the tour."""

    id: str
    title: str
    about: str


@dataclass(frozen=True)
class PhraseLibrary:
    """A validated set of phrases in file order (the order phrases are applied in)."""

    path: str
    categories: tuple[Category, ...]
    phrases: tuple[Phrase, ...]

    def __iter__(self) -> Iterator[Phrase]:
        return iter(self.phrases)

    def __len__(self) -> int:
        return len(self.phrases)

    def __contains__(self, phrase_id: object) -> bool:
        return any(p.id == phrase_id for p in self.phrases)

    def __getitem__(self, key: int | str) -> Phrase:
        return self.get(key) if isinstance(key, str) else self.phrases[key]

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.phrases]

    def get(self, phrase_id: str) -> Phrase:
        """The phrase with this id; an unknown id names the closest ones."""
        for p in self.phrases:
            if p.id == phrase_id:
                return p
        close = difflib.get_close_matches(str(phrase_id), self.ids, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else f"; known ids: {self.ids}"
        raise TemplateError(f"unknown phrase id {phrase_id!r} in {self.path}{hint}")

    def by_category(self, category: str | None = None) -> list[Phrase]:
        """Phrases of one category (all when None); an unknown category lists the known ones."""
        if category is None:
            return list(self.phrases)
        known = [c.id for c in self.categories]
        if category not in known:
            raise TemplateError(f"unknown phrase category {category!r}; categories are {known}")
        return [p for p in self.phrases if p.category == category]

    def position(self, phrase_id: str) -> int:
        return self.ids.index(phrase_id)

    def table(self, category: str | None = None) -> "pd.DataFrame":
        """The library as a DataFrame, one row per phrase, for the tour."""
        import pandas as pd
        cols = ["id", "category", "title", "placement", "text", "helps_when", "hurts_when", "source", "reported"]
        return pd.DataFrame([{c: getattr(p, c) for c in cols} for p in self.by_category(category)], columns=cols)

    def _repr_html_(self) -> str:
        """One table row per phrase under its category (data/templates/phrase_library.html.j2)."""
        from .htmlrender import render

        groups = [{"title": c.title, "about": c.about, "phrases": [p for p in self.phrases if p.category == c.id]}
                  for c in self.categories]
        return render("phrase_library.html.j2", groups=[g for g in groups if g["phrases"]])


# ---- loading -------------------------------------------------------------------------------


def load_phrases(path: str | os.PathLike[str] | None = None) -> PhraseLibrary:
    """Read and validate a phrase file; a bad entry names the file, line, phrase id and field."""
    p = Path(path) if path is not None else DEFAULT_PATH
    text = yamlfile.read_text(p, TemplateError, "phrase file")
    data = yamlfile.loads(text, str(p), TemplateError)
    return _validate(data, yamlfile.compose(text), str(p))


def _validate(data: Any, root: Any, source: str) -> PhraseLibrary:
    def fail(msg: str, *path: str | int) -> TemplateError:
        line = yamlfile.line_of(root, path)
        return TemplateError(f"{source}{f', line {line}' if line else ''}: {msg}")

    if not isinstance(data, dict):
        raise fail("a phrase file is a mapping with 'categories' and 'phrases'")
    extra = sorted(set(data) - {"categories", "phrases"})
    if extra:
        raise fail(f"unknown top-level field(s) {extra}; expected 'categories' and 'phrases'", extra[0])
    for key in ("categories", "phrases"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise fail(f"'{key}' must be a non-empty list", key)

    cats: list[Category] = []
    for i, c in enumerate(data["categories"]):
        if not isinstance(c, dict) or set(c) != {"id", "title", "about"} or not all(
                isinstance(v, str) and v.strip() for v in c.values()):
            raise fail(f"categories[{i}] must have exactly the text fields id, title, about", "categories", i)
        cats.append(Category(c["id"], c["title"], c["about"]))
    cat_ids = [c.id for c in cats]

    out: list[Phrase] = []
    seen: dict[str, int] = {}
    for i, e in enumerate(data["phrases"]):
        pid = e.get("id") if isinstance(e, dict) else None
        label = f"phrase {pid!r}" if isinstance(pid, str) else f"phrases[{i}]"
        if not isinstance(e, dict):
            raise fail(f"{label} must be a mapping of fields {list(REQUIRED)}", "phrases", i)
        unknown = [k for k in e if k not in REQUIRED + OPTIONAL]
        if unknown:
            hint = difflib.get_close_matches(str(unknown[0]), REQUIRED + OPTIONAL, n=1)
            raise fail(f"{label}: unknown field '{unknown[0]}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                       + f"; fields are {list(REQUIRED + OPTIONAL)}", "phrases", i, str(unknown[0]))
        for f in REQUIRED:
            if f not in e:
                raise fail(f"{label}: missing field '{f}'", "phrases", i)
        for f in REQUIRED + OPTIONAL:
            if f in e and (not isinstance(e[f], str) or (f in REQUIRED and not e[f].strip())):
                raise fail(f"{label}: field '{f}' must be non-empty text, got {e[f]!r}", "phrases", i, f)
        if not ID_RE.match(pid):
            raise fail(f"{label}: field 'id' must be a short slug (a-z, 0-9, _; at most 24 characters)",
                       "phrases", i, "id")
        if pid in seen:
            raise fail(f"{label}: field 'id' repeats the id of phrases[{seen[pid]}]", "phrases", i, "id")
        seen[pid] = i
        if e["category"] not in cat_ids:
            raise fail(f"{label}: field 'category' must be one of {cat_ids}, got {e['category']!r}",
                       "phrases", i, "category")
        if e["placement"] not in PLACEMENTS:
            raise fail(f"{label}: field 'placement' must be one of {list(PLACEMENTS)}, got {e['placement']!r}",
                       "phrases", i, "placement")
        if VAR_RE.search(e["text"]):
            raise fail(f"{label}: field 'text' must not contain a {{{{variable}}}}; phrases add words, not inputs",
                       "phrases", i, "text")
        has_input = "{input}" in e["text"]
        if e["placement"] == "wrap_input" and not has_input:
            raise fail(f"{label}: field 'text' of a wrap_input phrase must contain {{input}}", "phrases", i, "text")
        if e["placement"] != "wrap_input" and has_input:
            raise fail(f"{label}: field 'text' uses {{input}}, which only wrap_input phrases fill",
                       "phrases", i, "text")
        src = e["source"]
        if not ("arXiv" in src or "docs" in src or src.startswith("practitioner folklore")):
            raise fail(f"{label}: field 'source' must cite a paper (arXiv id) or a vendor doc, or say "
                       f"{FOLKLORE!r}", "phrases", i, "source")
        out.append(Phrase(**{f: e.get(f, "") for f in REQUIRED + OPTIONAL}))
    return PhraseLibrary(source, tuple(cats), tuple(out))


@functools.lru_cache(maxsize=1)
def default_library() -> PhraseLibrary:
    """The built-in library, read once per process."""
    return load_phrases()


def builtin_phrases(category: str | None = None) -> list[Phrase]:
    """The built-in phrases, optionally of one category, in library order."""
    return default_library().by_category(category)


phrases = builtin_phrases  # the old name, the same as its module's: kept so existing code runs


def get_phrase(phrase_id: str) -> Phrase:
    """One built-in phrase by id; an unknown id names the closest ones."""
    return default_library().get(phrase_id)


def phrase_table(category: str | None = None, library: PhraseLibrary | None = None) -> "pd.DataFrame":
    """The library as a DataFrame (id, category, title, placement, text, when it helps/hurts, source)."""
    return (library or default_library()).table(category)


# ---- applying ----------------------------------------------------------------------------


def _resolve(ids: str | Phrase | Iterable[str | Phrase], library: PhraseLibrary) -> list[Phrase]:
    """Phrases in a fixed order: library order first, then phrases not in the library as given."""
    items = [ids] if isinstance(ids, (str, Phrase)) else list(ids)
    chosen: list[tuple[tuple[int, int], Phrase]] = []
    seen: set[str] = set()
    for n, item in enumerate(items):
        phrase = item if isinstance(item, Phrase) else library.get(item)
        if phrase.placement not in PLACEMENTS:
            raise TemplateError(f"phrase {phrase.id!r}: placement must be one of {list(PLACEMENTS)}, "
                                f"got {phrase.placement!r}")
        if phrase.id in seen:
            raise TemplateError(f"phrase {phrase.id!r} is given twice")
        seen.add(phrase.id)
        in_lib = phrase.id in library and library.get(phrase.id) == phrase
        chosen.append(((0, library.position(phrase.id)) if in_lib else (1, n), phrase))
    return [p for _, p in sorted(chosen, key=lambda t: t[0])]


def _join(*parts: str, sep: str = "\n\n") -> str:
    return sep.join(p.strip("\n") for p in parts if p.strip())


def wrap_targets(user: str) -> list[str]:
    """Variables a wrap_input phrase wraps: those on a line of their own (the data); else all of them."""
    on_own_line = {m.group(1) for m in (VAR_RE.fullmatch(line.strip()) for line in user.splitlines()) if m}
    names = variables_in(user)
    return [v for v in names if v in on_own_line] or names


def _wrap(user: str, pattern: str) -> str:
    targets = set(wrap_targets(user))
    if not targets:  # no variables: the whole turn is the input
        return pattern.replace("{var}", "input").replace("{input}", user.strip("\n"))

    def sub(m: re.Match[str]) -> str:
        v = m.group(1)
        return pattern.replace("{var}", v).replace("{input}", m.group(0)) if v in targets else m.group(0)
    return VAR_RE.sub(sub, user)


def apply_phrases(
    template: Template,
    ids: str | Phrase | Iterable[str | Phrase],
    *,
    library: PhraseLibrary | None = None,
    name: str | None = None,
) -> Template:
    """A new template with the phrases added where their placement says (the original is untouched).

    Phrases are applied in library order whatever order they are given in, so
    `["xml_input", "cot"]` and `["cot", "xml_input"]` give the same prompt and name.
    """
    template = template.as_double()  # phrases are written with {{variables}}
    lib = library or default_library()
    chosen = _resolve(ids, lib)
    if not chosen:
        return template
    texts: dict[str, list[str]] = {k: [p.text for p in chosen if p.placement == k] for k in PLACEMENTS}

    system = template.system
    if texts["system_prepend"] or texts["system_append"]:
        system = _join(*texts["system_prepend"], system, *texts["system_append"])
    user = template.user
    for pattern in texts["wrap_input"]:
        user = _wrap(user, pattern)
    core = user
    for lead in texts["repeat_user"]:
        user = _join(user, _join(lead, core, sep="\n"))
    if texts["before_user"]:
        user = _join(*texts["before_user"], user)
    if texts["after_user"]:
        user = _join(user, _join(*texts["after_user"], sep="\n"))
    starts = [t for t in texts["prefill"] if not template.prefill.startswith(t)]  # "{" on a "{" prefill: once
    prefill = _join(*starts, template.prefill, sep="\n") if starts else template.prefill

    meta = dict(template.meta)
    meta.setdefault("base", template.name)
    meta["phrases"] = list(meta.get("phrases", [])) + [p.id for p in chosen]
    return template.replace(
        name=name or "+".join([template.name, *(p.id for p in chosen)]),
        system=system,
        turns=template.turns[:-1] + (Message("user", user),),
        prefill=prefill,
        meta=meta,
    )


def ablation(
    template: Template,
    ids: Sequence[str | Phrase],
    *,
    leave_one_out: bool = False,
    library: PhraseLibrary | None = None,
) -> list[Template]:
    """The variants that measure each phrase: baseline, each alone, all together (and each left out)."""
    lib = library or default_library()
    chosen = _resolve(ids, lib)
    if not chosen:
        raise TemplateError(f"ablation of template {template.name!r} needs at least one phrase")
    out = [template] + [apply_phrases(template, [p], library=lib) for p in chosen]
    if len(chosen) > 1:
        out.append(apply_phrases(template, chosen, library=lib))
    if leave_one_out and len(chosen) > 2:
        out += [apply_phrases(template, [q for q in chosen if q is not p], library=lib) for p in chosen]
    return out


__all__ = [
    "PLACEMENTS", "Category", "Phrase", "PhraseLibrary", "ablation", "apply_phrases", "builtin_phrases",
    "default_library", "get_phrase", "load_phrases", "phrase_table", "phrases",
]
