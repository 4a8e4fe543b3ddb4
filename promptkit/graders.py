"""Graders: score a completion against a row's gold target, the same way every time.

Every grader is made by a factory (`label_match(...)`, `json_match(...)`, ...)
and called as `grader(completion, target) -> Grade`. A grader reads
`completion.text` (the prefill + the reply, the answer as a reader sees it) unless
made with `on="reply"` (or `.on_reply()`), which grades the continuation alone.
Text checks follow Python's defaults: `regex` and `equals` are case-sensitive and
strip nothing; `contains` ignores case and spacing unless told otherwise. A failed model call gives a
failing Grade with `parsed=False` (never an exception), and an answer that
cannot be read (`parsed=False`) is kept apart from a wrong one. Graders compose
with `all_of`, `any_of`, `weighted`, `mean` and the operators `&` and `|`.
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field, replace
from dataclasses import replace as dc_replace
from typing import Any, Iterable, Mapping, Sequence

from .errors import GraderError
from .providers import DEFAULT_MODEL
from .types import Completion, Grade

__all__ = [
    "BaseGrader", "Criterion", "LabelParse", "Verdict", "all_of", "any_of", "contains", "default_grader",
    "equals", "error_grade", "extract_json", "extraction_summary", "gold_of", "json_match", "judge_grammar",
    "label_key", "label_match", "length", "line_count", "llm_judge", "mean", "not_", "numeric", "parse_label",
    "parse_number", "parse_verdict", "prf", "regex", "rubric_criteria", "unparsed", "weighted",
]


# --------------------------------------------------------------------------- base


def error_grade(completion: Completion) -> Grade:
    """The grade of a failed model call: fails, unread, and says which error it was."""
    kind = completion.error_kind or "unknown"
    msg = (completion.error or "").strip()
    reason = f"no answer: the model call failed ({kind})" + (f": {msg[:200]}" if msg else "")
    return Grade(score=0.0, passed=False, reason=reason, parsed=False, details={"error_kind": kind})


def unparsed(reason: str, **details: Any) -> Grade:
    """A failing grade for an answer that could not be read (kept apart from a wrong answer)."""
    return Grade(score=0.0, passed=False, reason=f"unparseable: {reason}", parsed=False, details=details)


def gold_of(target: Any) -> Any:
    """The gold answer inside a target: a Row's `.target`, or the value itself."""
    if hasattr(target, "target") and hasattr(target, "input"):
        return target.target
    return target


def _as_completion(completion: Any) -> Completion:
    if isinstance(completion, Completion):
        return completion
    if isinstance(completion, str):
        return Completion(text=completion)
    raise GraderError(
        f"a grader takes a Completion (or a plain answer string), got {type(completion).__name__}"
    )


ON_CHOICES: tuple[str, ...] = ("text", "reply")


def _check_on(on: Any, where: str) -> str:
    if on not in ON_CHOICES:
        raise GraderError(f"{where}: on must be 'text' (prefill + reply) or 'reply' (the continuation alone), got {on!r}")
    return on


class BaseGrader:
    """Shared behaviour: failed calls fail unread, `&`, `|` and `~` compose, `agrade` can be awaited.

    `on` is what is graded: "text" (default: the prefill + the reply) or "reply" (the continuation alone).
    """

    name: str = "grader"
    on: str = "text"

    def __call__(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = _as_completion(completion)
        if not completion.ok:
            return error_grade(completion)
        return self.grade(self.view(completion), target)

    def view(self, completion: Completion) -> Completion:
        """The completion as this grader reads it: with `on="reply"`, the text without the prefill."""
        if self.on == "reply" and completion.prefill:
            return dc_replace(completion, text=completion.reply, prefill="")
        return completion

    def on_reply(self, on: str = "reply") -> "BaseGrader":
        """A copy that grades the reply alone (the third-party convention), or `on="text"` for the whole text."""
        other = copy.copy(self)
        other.on = _check_on(on, self.name)
        return other

    def __invert__(self) -> "BaseGrader":
        return not_(self)

    def grade(self, completion: Completion, target: Any) -> Grade:  # pragma: no cover - abstract
        raise NotImplementedError

    async def agrade(self, completion: Completion | str, target: Any = None) -> Grade:
        """Async form the runner awaits; graders that call no model answer at once."""
        return self(completion, target)

    def __and__(self, other: "BaseGrader") -> "BaseGrader":
        return all_of(self, other)

    def __or__(self, other: "BaseGrader") -> "BaseGrader":
        return any_of(self, other)

    def __repr__(self) -> str:
        return f"<grader {self.name}>"


def _check_threshold(threshold: float, where: str) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise GraderError(f"{where}: threshold must be a number between 0 and 1, got {threshold!r}")
    return float(threshold)


# --------------------------------------------------------------------------- label normalisation

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # letters/digits, inner apostrophes kept ("isn't")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})
_NEGATORS = {"not", "no", "never", "nor", "isn't", "wasn't", "aren't", "won't", "cannot", "without", "neither"}
_JOINERS = {"or", "and", "vs", "versus", "nor", ","}
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|,")  # words, and commas (to see lists of labels)
_NEGATOR_PAIRS = {("rather", "than"), ("instead", "of"), ("other", "than"), ("can't", "be"), ("not", "be")}
_MARKER = re.compile(
    r"\b(?:(?:final\s+)?(?:answer|label|tier|classification|category|class|prediction|rating|colou?r|"
    r"verdict|status|health|decision|result|output)\b"
    r"(?:\s+[\w'-]+){0,3}?\s*(?:is|was|would\s+be|should\s+be|:|=|->|=>)"
    r"|(?:classify|classified|rate|rated|label|labelled|labeled|mark|marked)(?:\s+[\w'-]+){0,3}?\s+as)\s*",
    re.IGNORECASE,
)
_LIST_LEAD = re.compile(r"^\s*(?:[-*\u2022>]+|\d+[.)])\s+")


def label_key(text: str, case_sensitive: bool = False) -> str:
    """The comparable form of a label: words only, so 'At Risk', 'at-risk' and '**AT_RISK**' agree."""
    s = "".join(_WORD.findall(str(text).translate(_QUOTES)))
    return s if case_sensitive else s.casefold()


@dataclass
class LabelParse:
    """What `parse_label` read from an answer: the label (or None), how it was found, and why."""

    label: str | None
    how: str | None  # exact | leading | marker; "mention" when a label only appears elsewhere (not an answer)
    candidates: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def ambiguous(self) -> bool:
        return self.label is None and len(self.candidates) > 1 and self.how != "mention"

    @property
    def mentioned(self) -> bool:
        """A label appears in the answer, but not as the answer: counted apart from unreadable and wrong."""
        return self.label is None and self.how == "mention"


@dataclass
class _Form:
    label: str
    words: tuple[str, ...]  # as written (for the case-exact preference)
    keys: tuple[str, ...]  # compared form
    joined: str


class _Vocabulary:
    """The labels and their aliases as word sequences, matched longest first."""

    def __init__(self, labels: Sequence[str], aliases: Mapping[str, Any] | None, case_sensitive: bool) -> None:
        if isinstance(labels, str) or not labels:
            raise GraderError(f"label_match needs a non-empty list of labels, got {labels!r}")
        self.labels = [str(x) for x in labels]
        self.case_sensitive = case_sensitive
        self.forms: list[_Form] = []
        self.by_key: dict[str, str] = {}
        for lab in self.labels:
            self._add(lab, lab)
        for key, value in (aliases or {}).items():
            values = [value] if isinstance(value, str) else list(value)
            if len(values) == 1 and self.lookup(values[0]) is not None and self.lookup(key) is None:
                self._add(key, self.lookup(values[0]))  # alias -> label
            elif self.lookup(key) is not None:
                for v in values:  # label -> [aliases]
                    self._add(str(v), self.lookup(key))
            else:
                raise GraderError(
                    f"alias {key!r}: {value!r} names no label of {self.labels}; write aliases as "
                    f"{{'alias': 'Label'}} or {{'Label': ['alias', ...]}}"
                )
        self.forms.sort(key=lambda f: len(f.keys), reverse=True)
        self.has_slash = any("/" in f.label for f in self.forms) or any("/" in str(a) for a in (aliases or {}))

    def _fold(self, w: str) -> str:
        return w if self.case_sensitive else w.casefold()

    def _add(self, surface: str, label: str) -> None:
        words = tuple(_WORD.findall(surface.translate(_QUOTES)))
        if not words:
            raise GraderError(f"label or alias {surface!r} has no letters or digits to match")
        keys = tuple(self._fold(w) for w in words)
        joined = "".join(keys)
        prev = self.by_key.get(joined)
        if prev is not None and prev != label:
            raise GraderError(f"{surface!r} would match both {prev!r} and {label!r}; labels must differ in words")
        self.by_key[joined] = label
        self.forms.append(_Form(label, words, keys, joined))

    def lookup(self, text: str) -> str | None:
        return self.by_key.get(label_key(text, self.case_sensitive))

    def match_at(self, words: list[str], i: int) -> tuple[_Form, int, bool] | None:
        """The longest label form starting at word i: (form, words used, written in the label's case)."""
        folded = [self._fold(w) for w in words[i: i + 8]]
        for f in self.forms:
            n = len(f.keys)
            if tuple(folded[:n]) == f.keys:
                return f, n, tuple(words[i: i + n]) == f.words
            if folded and folded[0] == f.joined and n > 1:
                return f, 1, words[i] == "".join(f.words)
        return None

    def labels_at(self, words: list[str], i: int = 0) -> tuple[list[str], bool]:
        """The label starting at word i and any joined to it ('Commit or Likely', 'Commit, Likely'),
        and whether the first is written in the label's own case.

        A lower-case hedge before a label written in its own case ('likely At-Risk') is skipped.
        """
        m = self.match_at(words, i)
        if m is None:
            return [], False
        form, n, exact = m
        if not exact and not self.case_sensitive:
            nxt = self.match_at(words, i + n)
            if nxt is not None and nxt[2]:
                form, i, n, exact = nxt[0], i + n, nxt[1], True
        out = [form.label]
        j = i + n
        while j + 1 < len(words) and words[j].casefold() in _JOINERS:
            k = j + 2 if words[j] == "," and j + 2 < len(words) and words[j + 1].casefold() in _JOINERS else j + 1
            nxt = self.match_at(words, k)
            if nxt is None:
                break
            out.append(nxt[0].label)
            j = k + nxt[1]
        return out, exact

    def mentions(self, words: list[str]) -> list[tuple[str, bool, bool]]:
        """Every label mention: (label, written in the label's case, negated)."""
        out = []
        i = 0
        low = [w.casefold() for w in words]
        while i < len(words):
            m = self.match_at(words, i)
            if m is None:
                i += 1
                continue
            form, n, exact = m
            negated = (i >= 1 and low[i - 1] in _NEGATORS) or (i >= 2 and (low[i - 2], low[i - 1]) in _NEGATOR_PAIRS)
            out.append((form.label, exact, negated))
            i += n
        return out


def _distinct(labels: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(labels))


def _decide(found: list[str], how: str) -> LabelParse | None:
    found = _distinct(found)
    if len(found) == 1:
        return LabelParse(found[0], how, found, f"read {found[0]!r} ({how})")
    if len(found) > 1:
        return LabelParse(None, how, found, "ambiguous: the answer names " + " and ".join(repr(x) for x in found))
    return None


def _parse(text: str, vocab: _Vocabulary) -> LabelParse:
    raw = (text or "").translate(_QUOTES)
    if not raw.strip():
        return LabelParse(None, None, [], "empty answer")
    plain = re.sub(r"[*`#]+", " ", raw)
    if not vocab.has_slash:  # "Commit/Likely" names two labels
        plain = re.sub(r"(?<=\w)\s*/\s*(?=\w)", " or ", plain)
    # 1. the whole answer is a label, maybe quoted, bold, or after "Answer:"
    whole = _MARKER.sub(" ", plain, count=1) if _MARKER.match(plain.strip()) else plain
    for candidate in (plain, whole):
        lab = vocab.lookup(candidate)
        if lab is not None:
            return LabelParse(lab, "exact", [lab], f"read {lab!r} (exact)")
    # 2. the answer starts with a label, then explains ("Likely. The account ...")
    labels, _ = vocab.labels_at(_TOKEN.findall(_LIST_LEAD.sub("", plain.strip(), count=1))[:16])
    decided = _decide(labels, "leading")
    if decided:
        return decided
    # 3. an explicit marker: "Answer: X", "the tier for this account is X"; a label in its own case wins
    runs = [vocab.labels_at(_TOKEN.findall(plain[m.end():])[:16]) for m in _MARKER.finditer(plain)]
    runs = [r for r in runs if r[0]]
    if not vocab.case_sensitive and any(exact for _, exact in runs):
        runs = [r for r in runs if r[1]]
    decided = _decide([lab for labels, _ in runs for lab in labels], "marker")
    if decided:
        return decided
    # Anything else is not an answer: a label used as a word ("likely to renew") or named in passing is
    # "mentioned, not answered", kept apart so a summary can show it without grading it as a choice.
    mentions = _distinct(lab for lab, _, neg in vocab.mentions(_WORD.findall(plain)) if not neg)
    if mentions:
        return LabelParse(None, "mention", mentions,
                          "mentioned, not answered: " + " and ".join(repr(x) for x in mentions)
                          + " appear(s) in the answer, but not as the answer (alone, first, or after 'Answer:')")
    return LabelParse(None, None, [], "no label of " + ", ".join(vocab.labels) + " in the answer")


def parse_label(
    text: str, labels: Sequence[str], aliases: Mapping[str, Any] | None = None, case_sensitive: bool = False
) -> LabelParse:
    """Read one label from a free-text answer, strictly: the whole answer, its first words, or after a marker.

    None (with the reason) when there is no label, several, or a label only mentioned in passing
    (`how == "mention"`): a parse rate that counted mentions would reward rambling.
    """
    return _parse(text, _Vocabulary(labels, aliases, case_sensitive))


class _LabelMatch(BaseGrader):
    def __init__(self, labels, aliases, case_sensitive, name):
        self.vocab = _Vocabulary(labels, aliases, case_sensitive)
        self.labels = self.vocab.labels
        self.name = name

    def gold(self, target: Any) -> str:
        gold = gold_of(target)
        if isinstance(gold, Mapping):
            gold = gold.get("label", gold.get("answer"))
        if not isinstance(gold, str):
            raise GraderError(f"{self.name}: the target must be one label of {self.labels}, got {gold!r}")
        lab = self.vocab.lookup(gold)
        if lab is None:
            raise GraderError(f"{self.name}: the target {gold!r} is not one of the labels {self.labels}")
        return lab

    def grade(self, completion: Completion, target: Any) -> Grade:
        gold = self.gold(target)
        p = _parse(completion.text, self.vocab)
        details = {"gold": gold, "how": p.how, "candidates": p.candidates}
        if p.label is None:
            g = unparsed(p.reason, **details)
            if completion.finish_reason == "length" and not p.candidates:
                g.reason += " (the answer was cut off at max_tokens)"
            return g
        ok = p.label == gold
        reason = f"right: {p.label!r}" if ok else f"wrong: answered {p.label!r}, gold {gold!r}"
        return Grade(score=float(ok), passed=ok, reason=reason, label=p.label, parsed=True, details=details)


def label_match(
    labels: Sequence[str],
    aliases: Mapping[str, Any] | None = None,
    case_sensitive: bool = False,
    *,
    name: str = "label_match",
) -> BaseGrader:
    """Classification grader: reads one label from a chatty answer and compares it with the gold label.

    Args:
        labels: the label set, e.g. ["Commit", "Likely", "At-Risk"].
        aliases: extra spellings, as {"alias": "Label"} or {"Label": ["alias", ...]}.
    """
    return _LabelMatch(labels, aliases, case_sensitive, name)


# --------------------------------------------------------------------------- contains / regex


def _squash(text: str, case_sensitive: bool) -> str:
    s = " ".join(str(text).translate(_QUOTES).split())
    return s if case_sensitive else s.casefold()


class _Contains(BaseGrader):
    def __init__(self, needles, require_all, case_sensitive, name, on="text"):
        self.on = _check_on(on, name)
        if needles is not None:
            needles = [needles] if isinstance(needles, str) else list(needles)
            if not needles or not all(isinstance(n, str) and n.strip() for n in needles):
                raise GraderError(f"contains needs non-empty strings to look for, got {needles!r}")
        self.needles, self.require_all, self.case_sensitive, self.name = needles, require_all, case_sensitive, name

    def grade(self, completion: Completion, target: Any) -> Grade:
        needles = self.needles
        if needles is None:
            gold = gold_of(target)
            needles = [gold] if isinstance(gold, str) else list(gold or [])
            if not needles or not all(isinstance(n, str) for n in needles):
                raise GraderError(f"{self.name}: with no text given, the target must be a string or list of strings, got {gold!r}")
        hay = _squash(completion.text, self.case_sensitive)
        found = [n for n in needles if _squash(n, self.case_sensitive) in hay]
        missing = [n for n in needles if n not in found]
        if self.require_all:
            score = len(found) / len(needles)
            ok = not missing
            reason = "contains all" if ok else "missing " + ", ".join(repr(m) for m in missing)
        else:
            ok = bool(found)
            score = float(ok)
            reason = f"contains {found[0]!r}" if ok else "contains none of " + ", ".join(repr(n) for n in needles)
        if not self.case_sensitive:
            reason += " (ignoring case and spacing)"
        return Grade(score=score, passed=ok, reason=reason, details={"found": found, "missing": missing})


def contains(
    text: str | Sequence[str] | None = None, all: bool = True, case_sensitive: bool = False, *, name: str = "contains",
    on: str = "text",
) -> BaseGrader:
    """Passes when the answer contains the text (all of a list, or any with all=False); None uses the target.

    Unlike `regex` and `equals`, it ignores case and runs of whitespace by default (case_sensitive=False).
    """
    return _Contains(text, all, case_sensitive, name, on)


def _compile(pattern: Any, flags: int, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, flags)
    except (re.error, TypeError) as exc:
        raise GraderError(f"{where}: invalid pattern {pattern!r}: {exc}") from None


def _flag_names(flags: int) -> str:
    names = [n for n in ("IGNORECASE", "MULTILINE", "DOTALL", "VERBOSE", "ASCII") if flags & getattr(re, n)]
    return "flags " + "|".join(names) if names else "case-sensitive"


class _Regex(BaseGrader):
    def __init__(self, pattern, flags, fullmatch, name, on="text"):
        self.pattern = None if pattern is None else _compile(pattern, flags, name)
        self.flags, self.fullmatch, self.name, self.on = flags, fullmatch, name, _check_on(on, name)

    def grade(self, completion: Completion, target: Any) -> Grade:
        pattern = self.pattern
        if pattern is None:  # the pattern is the row's own target
            gold = gold_of(target)
            if not isinstance(gold, str):
                raise GraderError(f"{self.name}: with no pattern given, the row's target must be a regex string, got {gold!r}")
            pattern = _compile(gold, self.flags, f"{self.name} (the row's target)")
        how = f"{'whole answer' if self.fullmatch else 'search'}, {_flag_names(self.flags)}"
        text = completion.text
        m = pattern.fullmatch(text) if self.fullmatch else pattern.search(text)
        if m is None:
            return Grade(0.0, False, f"no match for /{pattern.pattern}/ ({how})", details={"pattern": pattern.pattern})
        group = next((g for g in m.groups() if g is not None), None)
        return Grade(1.0, True, f"matched {m.group(0)[:60]!r} ({how})",
                     details={"match": m.group(0), "group": group, "pattern": pattern.pattern})


def regex(
    pattern: str | None = None, flags: int = 0, fullmatch: bool = False, *, name: str = "regex", on: str = "text",
) -> BaseGrader:
    """Passes when the pattern is found (or, with fullmatch, matches the whole answer as written).

    Python's defaults: case-sensitive (pass flags=re.IGNORECASE to ignore case) and nothing stripped.
    `pattern=None` takes each row's target as its pattern. The first group is kept in details.
    """
    return _Regex(pattern, flags, fullmatch, name, on)


class _Equals(BaseGrader):
    def __init__(self, text, case_sensitive, strip, name, on):
        if text is not None and not isinstance(text, str):
            raise GraderError(f"{name}: text must be a string (or None to use each row's target), got {text!r}")
        self.text, self.case_sensitive, self.strip, self.name = text, case_sensitive, strip, name
        self.on = _check_on(on, name)

    def grade(self, completion: Completion, target: Any) -> Grade:
        want = self.text if self.text is not None else gold_of(target)
        if not isinstance(want, str):
            raise GraderError(f"{self.name}: with no text given, the row's target must be a string, got {want!r}")
        got = completion.text
        a, b = (got.strip(), want.strip()) if self.strip else (got, want)
        if not self.case_sensitive:
            a, b = a.casefold(), b.casefold()
        ok = a == b
        how = ("case-sensitive" if self.case_sensitive else "ignoring case") + (", stripped" if self.strip else ", as written")
        reason = f"equals {want[:60]!r} ({how})" if ok else f"{got[:60]!r} is not {want[:60]!r} ({how})"
        return Grade(float(ok), ok, reason)


def equals(
    text: str | None = None, *, case_sensitive: bool = True, strip: bool = False, name: str = "equals", on: str = "text",
) -> BaseGrader:
    """Passes when the answer is exactly the text (Python's `==`: case-sensitive, nothing stripped); None uses the target."""
    return _Equals(text, case_sensitive, strip, name, on)


class _LineCount(BaseGrader):
    def __init__(self, lines, min_lines, max_lines, blank, name, on):
        for k, v in {"lines": lines, "min_lines": min_lines, "max_lines": max_lines}.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise GraderError(f"{name}: {k} must be a whole number of at least 0, got {v!r}")
        if lines is None and min_lines is None and max_lines is None:
            raise GraderError(f"{name} needs lines (exactly), min_lines or max_lines")
        self.lines, self.min_lines, self.max_lines, self.blank = lines, min_lines, max_lines, blank
        self.name, self.on = name, _check_on(on, name)

    def grade(self, completion: Completion, target: Any) -> Grade:
        lines = completion.text.splitlines()
        n = len(lines) if self.blank else sum(1 for line in lines if line.strip())
        what = "lines" if self.blank else "non-blank lines"
        broken = []
        if self.lines is not None and n != self.lines:
            broken.append(f"{n} {what}, not {self.lines}")
        if self.min_lines is not None and n < self.min_lines:
            broken.append(f"{n} {what}, under the minimum of {self.min_lines}")
        if self.max_lines is not None and n > self.max_lines:
            broken.append(f"{n} {what}, over the limit of {self.max_lines}")
        ok = not broken
        return Grade(float(ok), ok, f"{n} {what}" if ok else "; ".join(broken), details={"lines": n})


def line_count(
    lines: int | None = None, *, min_lines: int | None = None, max_lines: int | None = None, blank: bool = False,
    name: str = "line_count", on: str = "text",
) -> BaseGrader:
    """Passes when the answer has `lines` lines exactly (or within min/max); blank lines count only if blank=True."""
    return _LineCount(lines, min_lines, max_lines, blank, name, on)


class _Not(BaseGrader):
    def __init__(self, inner: Any, name: str | None):
        if not callable(inner) or not isinstance(getattr(inner, "name", None), str):
            raise GraderError(f"not_: {inner!r} is not a grader (a callable with a .name)")
        self.inner, self.name = inner, name or f"not_{inner.name}"

    def __call__(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = _as_completion(completion)
        if not completion.ok:  # a failed call is no answer, so it cannot pass a must-not check either
            return error_grade(completion)
        return self._flip(self.inner(self.view(completion), target))

    async def agrade(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = _as_completion(completion)
        if not completion.ok:
            return error_grade(completion)
        ag = getattr(self.inner, "agrade", None)
        inner = await ag(self.view(completion), target) if ag is not None else self.inner(self.view(completion), target)
        return self._flip(inner)

    def _flip(self, g: Grade) -> Grade:
        if not g.parsed:  # an unreadable answer stays unreadable (and failing), never a pass
            return Grade(0.0, False, f"not {self.inner.name}: {g.reason}", parsed=False, details={"inner": g})
        ok = not g.passed
        return Grade(1.0 - g.score, ok, f"{'passes' if ok else 'fails'} not {self.inner.name}: {g.reason}",
                     details={"inner": g})


def not_(grader: BaseGrader, *, name: str | None = None) -> BaseGrader:
    """Passes when `grader` fails (a must-not check, also written `~grader`); failed calls and unreadable answers still fail."""
    return _Not(grader, name)


# --------------------------------------------------------------------------- JSON

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def extract_json(text: str) -> tuple[Any, str | None]:
    """The first JSON object or array in an answer (code fences and text around it allowed), or why not."""
    s = (text or "").strip()
    if not s:
        return None, "empty answer"
    chunks = [m.group(1) for m in _FENCE.finditer(s)] + [s]
    decoder = json.JSONDecoder()
    first_error: str | None = None
    for chunk in chunks:
        chunk = chunk.strip()
        try:
            value = json.loads(chunk)
            if isinstance(value, (dict, list)):
                return value, None
        except ValueError:
            pass
        starts = [i for i, c in enumerate(chunk) if c in "{["][:50]
        for i in starts:
            try:
                value, _ = decoder.raw_decode(chunk, i)
            except json.JSONDecodeError as exc:
                if first_error is None:
                    first_error = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
                if chunk[i + 1:].lstrip()[:1] in ("{", "["):
                    continue  # a doubled opener, e.g. a prefilled "{" that the model wrote again
                if not _closes(chunk, i):
                    break  # cut off: a list inside it must not pass for the whole answer
                continue
            if isinstance(value, (dict, list)):
                return value, None
    return None, first_error or "no JSON object or array in the answer"


def _closes(text: str, i: int) -> bool:
    """Whether the bracket at i is closed later (string contents skipped)."""
    depth, in_str, esc = 0, False, False
    for c in text[i:]:
        if in_str:
            esc, in_str = (not esc and c == "\\"), in_str and (esc or c != '"')
        elif c == '"':
            in_str = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return True
    return False


_TRUE = {"true", "yes", "y", "1", "present", "met", "pass"}
_FALSE = {"false", "no", "n", "0", "absent", "none", "null", "", "fail", "not met"}
_ITEM_KEYS = ("label", "signal", "name", "type", "category", "driver", "id", "value")


def _truthy(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if v is None:
        return False
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, str):
        s = v.strip().casefold()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    return None


def _label_list(value: Any, key: str | None) -> list[str] | None:
    """The labels in a JSON value: a list, a dict of booleans, or the one list inside a dict."""
    if isinstance(value, Mapping):
        if key is not None and key in value:
            return _label_list(value[key], None)
        flags = {k: _truthy(v) for k, v in value.items()}
        if value and all(f is not None for f in flags.values()):
            return [k for k, f in flags.items() if f]
        lists = [v for v in value.values() if isinstance(v, (list, Mapping))]
        if len(lists) == 1:
            return _label_list(lists[0], None)
        return None
    if isinstance(value, (list, tuple, set)):
        out = []
        for item in value:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, Mapping):
                k = next((k for k in _ITEM_KEYS if isinstance(item.get(k), str)), None)
                if k is None:
                    return None
                out.append(item[k])
            else:
                return None
        return out
    return None


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall, F1; an empty prediction of an empty gold set scores 1 (nothing to find, nothing claimed)."""
    p = tp / (tp + fp) if tp + fp else (1.0 if fn == 0 else 0.0)
    r = tp / (tp + fn) if tp + fn else (1.0 if fp == 0 else 0.0)
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return _truthy(a) == _truthy(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, str) and isinstance(b, str):
        return label_key(a) == label_key(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return sorted(label_key(json.dumps(x)) for x in a) == sorted(label_key(json.dumps(x)) for x in b)
    return a == b


class _JsonMatch(BaseGrader):
    def __init__(self, schema, fields, key, aliases, threshold, strict, name):
        self.name = name
        self.validator = None
        if schema is not None:
            import jsonschema

            cls = jsonschema.validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise GraderError(f"{name}: the JSON schema is invalid at {'/'.join(map(str, exc.path)) or 'top'}: {exc.message}") from None
            self.validator = cls(schema)
        self.fields = list(fields) if fields is not None else None
        self.key, self.threshold, self.strict = key, _check_threshold(threshold, name), strict
        self.canon: dict[str, str] = {}
        for f in self.fields or []:
            self.canon[label_key(f)] = f
        for alias, label in (aliases or {}).items():
            if label_key(label) not in self.canon:
                raise GraderError(f"{name}: alias {alias!r} points to {label!r}, which is not one of the fields {self.fields}")
            self.canon[label_key(alias)] = self.canon[label_key(label)]

    def _canonical(self, labels: Iterable[str]) -> dict[str, str]:
        """key -> display name, mapping spellings and aliases onto the field names."""
        out: dict[str, str] = {}
        for lab in labels:
            k = label_key(lab)
            out[label_key(self.canon.get(k, lab))] = self.canon.get(k, lab)
        return out

    def grade(self, completion: Completion, target: Any) -> Grade:
        value, err = extract_json(completion.text)
        if err is not None:
            g = unparsed(err, text=completion.text[:200])
            if completion.finish_reason == "length":
                g.reason += " (the answer was cut off at max_tokens)"
            gold = gold_of(target)
            if gold is not None:  # count the gold labels as missed, so summaries over rows stay honest
                empty = self._compare({}, gold)
                if isinstance(empty, Grade):
                    empty = self._compare([], gold)
                if not isinstance(empty, Grade):
                    g.details.update(per_field=empty["per_field"], tp=0, fp=0, fn=empty["fn"])
            return g
        details: dict[str, Any] = {"value": value}
        schema_errors: list[str] = []
        if self.validator is not None:
            errs = sorted(self.validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
            schema_errors = [f"{e.json_path}: {e.message}" for e in errs]
            details["schema_errors"] = schema_errors
        gold = gold_of(target)
        if gold is None:  # schema (or parse) check only
            ok = not schema_errors
            reason = "valid JSON" + (" matching the schema" if self.validator else "") if ok else \
                "schema violation: " + "; ".join(schema_errors[:3])
            return Grade(float(ok), ok, reason, details=details)
        cmp = self._compare(value, gold)
        if isinstance(cmp, Grade):
            cmp.details.update(details)
            return cmp
        details.update(cmp)
        score, reason = cmp["f1"], cmp["summary"]
        if schema_errors:
            reason = "schema violation: " + "; ".join(schema_errors[:3]) + "; " + reason
            if self.strict:
                score = 0.0
        ok = not schema_errors and score >= self.threshold
        return Grade(score=score, passed=ok, reason=reason, details=details)

    def _compare(self, value: Any, gold: Any) -> dict[str, Any] | Grade:
        named_fields = (isinstance(gold, Mapping) and bool(self.fields) and self.key is None
                        and not all(isinstance(v, bool) for v in gold.values())
                        and all(any(label_key(k) == label_key(f) for k in gold) for f in self.fields))
        gold_is_set = not named_fields and (isinstance(gold, (list, tuple, set)) or (
            isinstance(gold, Mapping) and (_label_list(gold, self.key) is not None)))
        if not gold_is_set:
            if not isinstance(gold, Mapping):
                raise GraderError(f"{self.name}: the target must be a list of labels or a JSON object, got {gold!r}")
            return self._compare_fields(value, gold)
        gold_labels = _label_list(gold, self.key)
        if gold_labels is None:
            raise GraderError(f"{self.name}: cannot read a list of labels from the target {gold!r}")
        pred_labels = _label_list(value, self.key)
        if pred_labels is None:
            where = f"under the key {self.key!r}" if self.key else "(pass key=... to name where it is)"
            return unparsed(f"the JSON holds no list of labels {where}")
        pred, want = self._canonical(pred_labels), self._canonical(gold_labels)
        universe = list(dict.fromkeys([*(label_key(f) for f in self.fields or []), *want, *pred]))
        names = {**{label_key(f): f for f in self.fields or []}, **want, **pred}
        per_field = {}
        for k in universe:
            per_field[names[k]] = {"tp": int(k in pred and k in want), "fp": int(k in pred and k not in want),
                                   "fn": int(k in want and k not in pred)}
        return self._summarise(per_field, predicted=sorted(pred.values()), gold=sorted(want.values()),
                               unknown=sorted(v for k, v in pred.items() if self.fields and k not in
                                              {label_key(f) for f in self.fields}))

    def _compare_fields(self, value: Any, gold: Mapping[str, Any]) -> dict[str, Any] | Grade:
        if not isinstance(value, Mapping):
            return unparsed(f"expected a JSON object with the fields {list(gold)}, got a {type(value).__name__}")
        per_field = {}
        for f in self.fields or list(gold):
            g = gold.get(f, next((v for k, v in gold.items() if label_key(k) == label_key(f)), None))
            p = value.get(f)
            if p is None:  # tolerate other spellings of the key ("Renewal Tier" for "renewal_tier")
                p = next((v for k, v in value.items() if label_key(k) == label_key(f)), None)
            same = g is not None and p is not None and _same(p, g)
            per_field[f] = {"tp": int(same), "fp": int(p is not None and not same), "fn": int(g is not None and not same)}
        return self._summarise(per_field, predicted=None, gold=None, unknown=[])

    def _summarise(self, per_field, predicted, gold, unknown) -> dict[str, Any]:
        tp = sum(c["tp"] for c in per_field.values())
        fp = sum(c["fp"] for c in per_field.values())
        fn = sum(c["fn"] for c in per_field.values())
        p, r, f = prf(tp, fp, fn)
        missed = [k for k, c in per_field.items() if c["fn"]]
        extra = [k for k, c in per_field.items() if c["fp"]]
        summary = f"F1 {f:.2f} (P {p:.2f}, R {r:.2f})"
        if missed:
            summary += "; missed " + ", ".join(missed)
        if extra:
            summary += "; extra " + ", ".join(extra)
        out = {"per_field": per_field, "tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f,
               "summary": summary}
        if predicted is not None:
            out.update(predicted=predicted, gold=gold, unknown=unknown)
        return out


def json_match(
    schema: Mapping[str, Any] | None = None,
    fields: Sequence[str] | None = None,
    *,
    key: str | None = None,
    aliases: Mapping[str, str] | None = None,
    threshold: float = 1.0,
    strict: bool = True,
    name: str = "json_match",
) -> BaseGrader:
    """Extraction grader: parses JSON from the answer, checks a JSON schema, scores F1 against the gold.

    The gold may be a list of labels, a dict of booleans, or a dict of field values. Score is the
    micro F1 over the fields; per-field tp/fp/fn sit in `details["per_field"]` (see `extraction_summary`).

    Args:
        fields: the label (or field) names; spellings like "Declining-Usage" map onto them.
        key: where the list of labels sits in a JSON object (found automatically when there is one list).
        threshold: the F1 at which the grade passes.
        strict: a schema violation scores 0 (the output would break the program reading it).
    """
    return _JsonMatch(schema, fields, key, aliases, threshold, strict, name)


def extraction_summary(grades: Iterable[Grade]) -> dict[str, Any]:
    """Micro and macro precision/recall/F1 over many json_match grades (unparsed answers count as misses)."""
    per: dict[str, dict[str, int]] = {}
    n = unparsed_n = 0
    for g in grades:
        n += 1
        unparsed_n += not g.parsed
        if "per_field" not in g.details:
            continue
        for f, c in g.details["per_field"].items():
            acc = per.setdefault(f, {"tp": 0, "fp": 0, "fn": 0})
            for k in acc:
                acc[k] += c[k]
    tp, fp, fn = (sum(c[k] for c in per.values()) for k in ("tp", "fp", "fn"))
    p, r, f = prf(tp, fp, fn)
    table = {}
    for name, c in per.items():
        fp_, rp_, ff_ = prf(c["tp"], c["fp"], c["fn"])
        table[name] = {"precision": fp_, "recall": rp_, "f1": ff_, "support": c["tp"] + c["fn"], **c}
    macro = sum(v["f1"] for v in table.values()) / len(table) if table else 0.0
    return {"micro": {"precision": p, "recall": r, "f1": f, "tp": tp, "fp": fp, "fn": fn},
            "macro_f1": macro, "per_field": table, "rows": n, "unparsed": unparsed_n}


# --------------------------------------------------------------------------- numeric / length

_NUMBER = re.compile(r"(?<![\w.])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?%?")


def _numbers(text: str) -> list[tuple[float, str]]:
    out = []
    for m in _NUMBER.finditer(text):
        s = m.group(0)
        core = s.rstrip("%").replace(",", "").replace("\u2212", "-").lstrip("+")
        if not re.search(r"\d", core):
            continue
        try:
            out.append((float(core), s))
        except ValueError:
            continue
    return out


def parse_number(text: str) -> float | None:
    """The answer's number: the first after a marker ("Answer: 42"), else the last one written."""
    plain = re.sub(r"[*`#]+", " ", (text or "").translate(_QUOTES))
    for m in _MARKER.finditer(plain):
        nums = _numbers(plain[m.end():])
        if nums:
            return nums[0][0]
    nums = _numbers(plain)
    return nums[-1][0] if nums else None


class _Numeric(BaseGrader):
    def __init__(self, tolerance, relative, name):
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
            raise GraderError(f"numeric: tolerance must be a number of at least 0, got {tolerance!r}")
        self.tolerance, self.relative, self.name = float(tolerance), relative, name

    def grade(self, completion: Completion, target: Any) -> Grade:
        gold = gold_of(target)
        if isinstance(gold, Mapping):
            gold = gold.get("value", gold.get("answer"))
        try:
            gold_v = float(str(gold).replace(",", "").rstrip("%")) if not isinstance(gold, (int, float)) else float(gold)
        except ValueError:
            raise GraderError(f"{self.name}: the target must be a number, got {gold!r}") from None
        got = parse_number(completion.text)
        if got is None:
            return unparsed("no number in the answer", gold=gold_v)
        err = abs(got - gold_v)
        allowed = self.tolerance * abs(gold_v) if self.relative else self.tolerance
        ok = err <= allowed + 1e-12
        tol = f"{self.tolerance:g}" + (" relative" if self.relative else "")
        reason = (f"{got:g} is within {tol} of {gold_v:g}" if ok else f"{got:g} is off by {err:g} from {gold_v:g} (tolerance {tol})")
        return Grade(float(ok), ok, reason, label=f"{got:g}", details={"value": got, "gold": gold_v, "error": err})


def numeric(tolerance: float = 0.0, relative: bool = False, *, name: str = "numeric") -> BaseGrader:
    """Passes when the answer's number is within `tolerance` of the gold (a fraction of it if relative)."""
    return _Numeric(tolerance, relative, name)


class _Length(BaseGrader):
    def __init__(self, max_words, min_words, max_chars, min_chars, name):
        limits = {"max_words": max_words, "min_words": min_words, "max_chars": max_chars, "min_chars": min_chars}
        for k, v in limits.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise GraderError(f"length: {k} must be a whole number of at least 0, got {v!r}")
        if all(v is None for v in limits.values()):
            raise GraderError("length needs at least one of max_words, min_words, max_chars, min_chars")
        if min_words is not None and max_words is not None and min_words > max_words:
            raise GraderError(f"length: min_words {min_words} is above max_words {max_words}")
        self.limits, self.name = limits, name

    def grade(self, completion: Completion, target: Any) -> Grade:
        text = completion.text.strip()
        words, chars = len(text.split()), len(text)
        lim = self.limits
        broken = []
        if lim["max_words"] is not None and words > lim["max_words"]:
            broken.append(f"{words} words, over the limit of {lim['max_words']}")
        if lim["min_words"] is not None and words < lim["min_words"]:
            broken.append(f"{words} words, under the minimum of {lim['min_words']}")
        if lim["max_chars"] is not None and chars > lim["max_chars"]:
            broken.append(f"{chars} characters, over the limit of {lim['max_chars']}")
        if lim["min_chars"] is not None and chars < lim["min_chars"]:
            broken.append(f"{chars} characters, under the minimum of {lim['min_chars']}")
        ok = not broken
        reason = f"{words} words, {chars} characters: within limits" if ok else "; ".join(broken)
        if not ok and completion.finish_reason == "length":
            reason += " (cut off at max_tokens)"
        return Grade(float(ok), ok, reason, details={"words": words, "chars": chars})


def length(
    max_words: int | None = None,
    min_words: int | None = None,
    max_chars: int | None = None,
    min_chars: int | None = None,
    *,
    name: str = "length",
) -> BaseGrader:
    """Passes when the answer's word and character counts are within the limits given."""
    return _Length(max_words, min_words, max_chars, min_chars, name)


# --------------------------------------------------------------------------- composition


def _part_names(graders: Sequence[BaseGrader]) -> list[str]:
    names, seen = [], {}
    for g in graders:
        n = getattr(g, "name", type(g).__name__)
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return names


class _Composite(BaseGrader):
    """Runs every part and combines their grades; each part's Grade stays in details['parts']."""

    def __init__(self, kind: str, graders: Sequence[Any], weights: Sequence[float], threshold: float | None, name):
        if not graders:
            raise GraderError(f"{kind} needs at least one grader")
        for g in graders:
            if not callable(g) or not hasattr(g, "name"):
                raise GraderError(f"{kind}: {g!r} is not a grader (a callable with a .name)")
        for w in weights:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 or not math.isfinite(w):
                raise GraderError(f"{kind}: weights must be numbers of at least 0, got {w!r}")
        if sum(weights) <= 0:
            raise GraderError(f"{kind}: the weights add up to 0")
        self.kind, self.parts, self.weights = kind, list(graders), [float(w) for w in weights]
        self.threshold = None if threshold is None else _check_threshold(threshold, kind)
        self.names = _part_names(self.parts)
        self.name = name or f"{kind}({','.join(self.names)})"

    def __call__(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = self.view(_as_completion(completion))
        return self.combine([g(completion, target) for g in self.parts])

    async def agrade(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = self.view(_as_completion(completion))
        grades = []
        for g in self.parts:
            ag = getattr(g, "agrade", None)
            grades.append(await ag(completion, target) if ag is not None else g(completion, target))
        return self.combine(grades)

    def combine(self, grades: list[Grade]) -> Grade:
        parts = dict(zip(self.names, grades))
        scores = [g.score for g in grades]
        if self.kind == "all_of":
            score, ok, parsed = min(scores), all(g.passed for g in grades), all(g.parsed for g in grades)
        elif self.kind == "any_of":
            score, ok, parsed = max(scores), any(g.passed for g in grades), any(g.parsed for g in grades)
        else:
            total = sum(self.weights)
            score = sum(w * s for w, s in zip(self.weights, scores)) / total
            ok = score >= self.threshold if self.threshold is not None else all(
                g.passed for g, w in zip(grades, self.weights) if w > 0)
            parsed = all(g.parsed for g in grades)
        label = next((g.label for g in grades if g.label is not None), None)
        reason = "; ".join(f"{n}: {'pass' if g.passed else 'fail'} ({g.reason})" for n, g in parts.items())
        return Grade(score=score, passed=ok, reason=reason, label=label, parsed=parsed, details={"parts": parts})

    def __and__(self, other: BaseGrader) -> BaseGrader:
        if self.kind == "all_of" and not self._named:
            return all_of(*self.parts, other)
        return all_of(self, other)

    def __or__(self, other: BaseGrader) -> BaseGrader:
        if self.kind == "any_of" and not self._named:
            return any_of(*self.parts, other)
        return any_of(self, other)

    @property
    def _named(self) -> bool:
        return self.name != f"{self.kind}({','.join(self.names)})"


def all_of(*graders: BaseGrader, name: str | None = None) -> BaseGrader:
    """Passes when every part passes; the score is the lowest part score."""
    return _Composite("all_of", graders, [1.0] * len(graders), None, name)


def any_of(*graders: BaseGrader, name: str | None = None) -> BaseGrader:
    """Passes when any part passes; the score is the highest part score."""
    return _Composite("any_of", graders, [1.0] * len(graders), None, name)


def weighted(weights: Mapping[BaseGrader, float], threshold: float | None = None, *, name: str | None = None) -> BaseGrader:
    """Weighted mean of part scores; passes at `threshold`, or when every weighted part passes if None."""
    if not isinstance(weights, Mapping):
        raise GraderError(f"weighted takes a dict {{grader: weight}}, got {type(weights).__name__}")
    return _Composite("weighted", list(weights), list(weights.values()), threshold, name)


def mean(*graders: BaseGrader, threshold: float | None = None, name: str | None = None) -> BaseGrader:
    """Equal-weight mean of part scores."""
    return _Composite("mean", graders, [1.0] * len(graders), threshold, name)


class _InTag(BaseGrader):
    def __init__(self, grader, tag, name):
        if not re.fullmatch(r"[A-Za-z][\w-]*", tag or ""):
            raise GraderError(f"in_tag: tag must be a tag name such as 'answer', got {tag!r}")
        self.inner, self.tag, self.name = grader, tag, name or grader.name
        self.pattern = re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL | re.IGNORECASE)

    def grade(self, completion: Completion, target: Any) -> Grade:
        found = self.pattern.findall(completion.text or "")
        if not found:
            opened = f"<{self.tag}>".casefold() in (completion.text or "").casefold()
            why = f"no <{self.tag}>...</{self.tag}> in the answer" + (" (opened, never closed)" if opened else "")
            if completion.finish_reason == "length":
                why += " (the answer was cut off at max_tokens)"
            g = unparsed(why)
            try:  # keep the inner grader's gold, so label metrics still count this row as unreadable
                g.details.update({k: v for k, v in self.inner(Completion(text=""), target).details.items() if k == "gold"})
            except GraderError:
                pass
            return g
        inner = replace(completion, text=found[-1].strip())
        g = self.inner(inner, target)
        g.details = {**g.details, "tagged": found[-1].strip()[:200]}
        return g


def in_tag(grader: BaseGrader, tag: str = "answer", *, name: str | None = None) -> BaseGrader:
    """Grade only what the answer puts inside <tag>...</tag> (the last such pair), e.g. after reasoning in
    <thinking> tags; no closed tag is an unreadable answer, kept apart from a wrong one."""
    return _InTag(grader, tag, name)


# --------------------------------------------------------------------------- LLM as judge

_REASON_KEYS = ("reason", "reasoning", "explanation", "rationale", "justification", "comment", "feedback")
_SCORE_KEYS = ("score", "rating", "grade", "overall", "total")
_VERDICT_KEYS = ("met", "verdict", "answer", "pass", "passed", "result", "value", "meets")
_YES_NO = r"(yes|no|true|false|not met|met|pass|fail)\b(?!\s*[|/]|\s+or\b)"


def _judge_prompts() -> dict[str, str]:
    from importlib.resources import files

    import yaml

    return yaml.safe_load(files("promptkit").joinpath("data/judge.yaml").read_text(encoding="utf-8"))


def _fill(template: str, values: Mapping[str, str]) -> str:
    """Fill {{name}} slots in one pass, so braces inside the graded answer are left alone."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values.get(m.group(1), m.group(0)), template)


@dataclass(frozen=True)
class Criterion:
    """One rubric line: an id the judge answers under, what it checks, and its weight in the score."""

    id: str
    description: str
    weight: float = 1.0


def rubric_criteria(rubric: Any) -> list[Criterion] | str:
    """A rubric as criteria (list of dicts, strings, or {id: description}), or one block of text for a 1-5 scale."""
    if isinstance(rubric, str):
        if not rubric.strip():
            raise GraderError("llm_judge: the rubric is empty")
        return rubric.strip()
    if isinstance(rubric, Mapping):
        if "rubric" in rubric:
            return rubric_criteria(rubric["rubric"])
        rubric = [{"id": str(k), "description": str(v)} for k, v in rubric.items()]
    if not isinstance(rubric, (list, tuple)) or not rubric:
        raise GraderError(f"llm_judge: a rubric is a text, a list of criteria or a dict id -> description, got {rubric!r}")
    out: list[Criterion] = []
    for i, c in enumerate(rubric):
        if isinstance(c, str):
            out.append(Criterion(f"c{i + 1}", c))
        elif isinstance(c, Mapping) and isinstance(c.get("description", c.get("criterion")), str):
            w = c.get("weight", 1.0)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                raise GraderError(f"llm_judge: rubric[{i}].weight must be a number of at least 0, got {w!r}")
            out.append(Criterion(str(c.get("id") or f"c{i + 1}"), c.get("description", c.get("criterion")), float(w)))
        else:
            raise GraderError(f"llm_judge: rubric[{i}] needs a 'description' (and an 'id'), got {c!r}")
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise GraderError(f"llm_judge: rubric criterion ids repeat: {ids}")
    if sum(c.weight for c in out) <= 0:
        raise GraderError("llm_judge: the rubric weights add up to 0")
    return out


@dataclass
class Verdict:
    """What a judge reply says: a score in [0, 1] (None when unreadable), the reason, per-criterion rulings."""

    score: float | None
    reason: str
    criteria: dict[str, bool] = field(default_factory=dict)
    raw_score: float | None = None
    problem: str = ""  # why the reply could not be read


def _find_reason(value: Any, text: str) -> str:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if label_key(k) in _REASON_KEYS and isinstance(v, str) and v.strip():
                return v.strip()
    m = re.search(r'"?(?:reason|explanation|rationale)"?\s*[:=]\s*"?([^"\n]+)', text, re.IGNORECASE)
    if m:
        return m.group(1).strip()
    return " ".join(text.split())[:300]


def _ruling(value: Any) -> bool | None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if label_key(k) in _VERDICT_KEYS:
                return _ruling(v)
        return None
    t = _truthy(value)
    if t is None and isinstance(value, str):
        low = value.strip().casefold()
        if re.search(r"[|/]|\bor\b", low):  # "yes|no" copied from the format is no ruling
            return None
        words = _WORD.findall(low)
        if words[:2] == ["not", "met"]:
            return False
        if words and words[0] in ("yes", "met", "pass", "passed", "true"):
            return True
        if words and words[0] in ("no", "fail", "failed", "false"):
            return False
    return t


def parse_verdict(text: str, rubric: list[Criterion] | str) -> Verdict:
    """Read a judge's reply (JSON first, then 'c1: yes' or 'score: 4' lines); never raises."""
    value, _ = extract_json(text)
    reason = _find_reason(value, text or "")
    if isinstance(rubric, str):
        raw = None
        if isinstance(value, Mapping):
            for k, v in value.items():
                if label_key(k) in _SCORE_KEYS:
                    nums = _numbers(str(v))
                    raw = nums[0][0] if nums else None
                    break
        if raw is None:
            m = (re.search(r"\b(?:score|rating|grade)\b\D{0,12}?(\d+(?:\.\d+)?)(?!\s*(?:-|to)\s*\d)", text or "",
                           re.IGNORECASE)
                 or re.search(r"\b(\d(?:\.\d+)?)\s*(?:/|out of)\s*5\b", text or "", re.IGNORECASE))
            raw = float(m.group(1)) if m else None
        if raw is None:
            return Verdict(None, reason, problem="the judge gave no 1-5 score")
        if not 1 <= raw <= 5:
            return Verdict(None, reason, raw_score=raw, problem=f"the judge's score {raw:g} is not between 1 and 5")
        return Verdict((raw - 1) / 4, reason, raw_score=raw)
    rulings: dict[str, bool] = {}
    flat: dict[str, Any] = {}
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(v, Mapping) and label_key(k) in ("criteria", "verdicts", "scores", "results", "rulings"):
                flat.update({str(kk): vv for kk, vv in v.items()})
            elif isinstance(v, list) and label_key(k) in ("criteria", "verdicts", "scores", "results", "rulings"):
                value = v
            else:
                flat[str(k)] = v
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                cid = item.get("id", item.get("criterion"))
                flat[str(cid) if cid is not None else f"#{i}"] = item
    by_key = {label_key(k): v for k, v in flat.items()}
    for i, c in enumerate(rubric):
        for k in (label_key(c.id), label_key(str(i + 1)), label_key(f"#{i}")):
            if k in by_key and _ruling(by_key[k]) is not None:
                rulings[c.id] = bool(_ruling(by_key[k]))
                break
        else:
            m = re.search(re.escape(c.id) + r"\W{0,6}" + _YES_NO, text or "", re.IGNORECASE)
            if m:
                rulings[c.id] = _ruling(m.group(1)) is True
    missing = [c.id for c in rubric if c.id not in rulings]
    if missing:
        return Verdict(None, reason, rulings, problem="the judge gave no yes/no for " + ", ".join(missing))
    total = sum(c.weight for c in rubric)
    score = sum(c.weight for c in rubric if rulings[c.id]) / total
    return Verdict(score, reason, rulings, raw_score=float(sum(rulings.values())))


def _gbnf_literal(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def judge_grammar(rubric: list[Criterion] | str) -> str:
    """GBNF that lets a local judge write only the expected JSON, so even a tiny model's reply parses."""
    if isinstance(rubric, str):
        body = ['"{\\"score\\": "', '[1-5]']
    else:
        body = ['"{"']
        for i, c in enumerate(rubric):
            sep = ", " if i else ""
            body += [_gbnf_literal(sep + json.dumps(c.id) + ": "), "yn"]
    body += ['", \\"reason\\": \\""', "char*", '"\\"}"']
    return (
        "root ::= " + " ".join(body) + "\n"
        'yn ::= "\\"yes\\"" | "\\"no\\""\n'
        'char ::= [^"\\\\\\n]\n'
    )


class _LLMJudge(BaseGrader):
    def __init__(self, rubric, model, task, max_tokens, threshold, constrain, cache, name):
        self.rubric = rubric_criteria(rubric) if rubric is not None else None
        self.model, self.task, self.name = model, task, name
        if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 8):
            raise GraderError(f"llm_judge: max_tokens must be a whole number of at least 8, got {max_tokens!r}")
        self.max_tokens, self.threshold = max_tokens, _check_threshold(threshold, name)
        from .providers import parse_spec

        self.spec = parse_spec(model)  # a bad model spec fails here, not on the first row
        self.constrain = (self.spec.provider == "local") if constrain is None else bool(constrain)
        self.cache = cache
        self.prompts = _judge_prompts()

    def _rubric_and_task(self, target: Any) -> tuple[list[Criterion] | str, str]:
        task = self.task or ""
        gold = gold_of(target)
        if hasattr(target, "input") and isinstance(getattr(target, "input"), Mapping) and not task:
            task = "\n".join(f"{k}: {str(v)[:1500]}" for k, v in target.input.items())
        if isinstance(gold, Mapping) and not task:
            task = str(gold.get("task", gold.get("context", "")))
        if self.rubric is not None:
            return self.rubric, task
        if gold is None:
            raise GraderError(f"{self.name}: no rubric: pass rubric=... or grade rows whose target is a rubric")
        return rubric_criteria(gold), task

    def request(self, answer: str, rubric: list[Criterion] | str, task: str):
        """The judge's Request for one answer (exposed so a learner can read what the judge is asked)."""
        from .types import Message, Request, Settings

        p = self.prompts
        values = {"answer": answer.strip(), "task": _fill(p["task"], {"task": task.strip()}) if task.strip() else ""}
        if isinstance(rubric, str):
            user = _fill(p["scale"], {**values, "rubric": rubric})
            auto = 72
        else:
            fmt = "{" + ", ".join(f"{json.dumps(c.id)}: \"yes|no\"" for c in rubric) + ', "reason": "why, in one sentence"}'
            lines = "\n".join(f"- {c.id}: {c.description}" for c in rubric)
            user = _fill(p["criteria"], {**values, "criteria": lines, "format": fmt})
            auto = 60 + 10 * len(rubric)
        settings = Settings(temperature=0.0, max_tokens=self.max_tokens or auto, seed=0,
                            grammar=judge_grammar(rubric) if self.constrain else None)
        return Request(messages=(Message("system", p["system"].strip()), Message("user", user)), settings=settings)

    def __call__(self, completion: Completion | str, target: Any = None) -> Grade:
        from .aio import run_sync

        return run_sync(self.agrade(completion, target))

    async def agrade(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = _as_completion(completion)
        if not completion.ok:
            return error_grade(completion)
        completion = self.view(completion)
        rubric, task = self._rubric_and_task(target)
        if not completion.text.strip():
            return unparsed("empty answer: nothing to judge")
        req = self.request(completion.text, rubric, task)
        reply = None
        key = None
        if self.cache is not None:
            from .cache import cell_key

            key = cell_key(self.model, req)
            reply = self.cache.get(key)
        if reply is None:
            from .providers import get_provider

            try:
                reply = await get_provider(self.model).complete(req)
            except Exception as exc:  # a provider that cannot be built (missing key, package) fails this grade only
                reply = Completion(error_kind="config", error=f"{type(exc).__name__}: {exc}")
            if self.cache is not None and reply.ok:
                self.cache.put(key, reply)
        details: dict[str, Any] = {
            "judge_model": self.model, "judge_text": reply.text, "judge_latency_s": reply.latency_s,
            "judge_input_tokens": reply.input_tokens, "judge_output_tokens": reply.output_tokens,
            "judge_cost_usd": reply.cost_usd, "judge_cached": reply.cached,
        }
        if not reply.ok:
            details["judge_error_kind"] = reply.error_kind
            return unparsed(f"the judge call failed ({reply.error_kind}): {(reply.error or '')[:200]}", **details)
        v = parse_verdict(reply.text, rubric)
        details.update(criteria=v.criteria, raw_score=v.raw_score)
        if v.score is None:
            g = unparsed(f"{v.problem} (judge said: {' '.join(reply.text.split())[:160]!r})", **details)
            return g
        if isinstance(rubric, str):
            head = f"judge score {v.raw_score:g}/5"
        else:
            unmet = [c for c, ok in v.criteria.items() if not ok]
            head = f"judge: {len(v.criteria) - len(unmet)}/{len(v.criteria)} criteria met" + (
                f" (not met: {', '.join(unmet)})" if unmet else "")
        return Grade(score=v.score, passed=v.score >= self.threshold, reason=f"{head}: {v.reason}", details=details)


def llm_judge(
    rubric: Any = None,
    model: str = DEFAULT_MODEL,
    *,
    task: str | None = None,
    max_tokens: int | None = None,
    threshold: float = 0.5,
    constrain: bool | None = None,
    cache: Any = None,
    name: str = "llm_judge",
) -> BaseGrader:
    """Rubric grader that asks a model (any provider) for per-criterion yes/no or a 1-5 score, with its reason.

    Args:
        rubric: a list of criteria ({"id", "description", "weight"} or strings), a dict id -> description,
            or one text (scored 1-5). None takes the rubric from each row's target.
        task: what the graded answer was asked to do; a Row target supplies its input instead.
        constrain: force the JSON reply with a grammar (default: on for local models, which honour it).
        cache: a `promptkit.cache` Cache, so re-grading the same answer does not call the judge again.
    """
    return _LLMJudge(rubric, model, task, max_tokens, threshold, constrain, cache, name)


# --------------------------------------------------------------------------- per task type


def default_grader(task: Any, *, judge_model: str = DEFAULT_MODEL) -> BaseGrader:
    """The usual grader for a dataset task (a TaskInfo or a dict with type, labels, labels_field, ...).

    label -> label_match; multilabel -> json_match F1 over the labels (the task's target_schema checked
    but not zeroing the score), averaged with the primary label when the task has one; rubric -> llm_judge.
    """
    get = task.get if isinstance(task, Mapping) else (lambda k, d=None: getattr(task, k, d))
    kind, labels = get("type", "label"), list(get("labels", None) or [])
    if kind == "label":
        return label_match(labels)
    if kind == "multilabel":
        field_name, primary = get("labels_field", None), get("primary_field", None)
        schema = get("target_schema", None)
        found = json_match(schema, fields=labels, key=field_name, strict=False, name=field_name or "json_match")
        if not primary:
            return found
        return mean(found, json_match(fields=[primary], name=primary), name=f"{field_name}+{primary}")
    if kind == "rubric":
        return llm_judge(model=judge_model)
    if kind == "structured":  # a JSON target whose grader is named in tasks.yaml (tool calls, cited answers)
        return _structured_grader(get("grader", None))
    raise GraderError(f"no default grader for task type {kind!r}; known types are label, multilabel, rubric, structured")


# Graders that live beside their chapter's module (promptkit.tools, promptkit.retrieval), reachable here by name.
_ELSEWHERE = {"tool_call": "promptkit.tools", "cited_answer": "promptkit.retrieval", "rubric_checks": "promptkit.rubrics",
              "grounded_answer": "promptkit.grounding"}


def _structured_grader(name: str | None) -> BaseGrader:
    if name not in _ELSEWHERE:
        raise GraderError(f"a structured task names its grader in tasks.yaml, one of {sorted(_ELSEWHERE)}; got {name!r}")
    return globals()["__getattr__"](name)()


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module 'promptkit.graders' has no attribute {name!r}")
