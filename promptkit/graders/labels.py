"""Reading one label from a free-text answer (`parse_label`) and grading it (`label_match`).

The parse is strict: the whole answer, its first words, or the words after a marker ("Answer: X"). A label
only mentioned in passing is "mentioned, not answered", kept apart from unreadable and wrong.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from ..errors import GraderError
from ..types import Completion, Grade
from .base import BaseGrader, gold_of, unparsed

__all__ = ["LabelParse", "label_key", "label_match", "parse_label"]

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # letters/digits, inner apostrophes kept ("isn't")
QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})
_NEGATORS = {"not", "no", "never", "nor", "isn't", "wasn't", "aren't", "won't", "cannot", "without", "neither"}
_JOINERS = {"or", "and", "vs", "versus", "nor", ","}
_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|,")  # words, and commas (to see lists of labels)
_NEGATOR_PAIRS = {("rather", "than"), ("instead", "of"), ("other", "than"), ("can't", "be"), ("not", "be")}
MARKER = re.compile(
    r"\b(?:(?:final\s+)?(?:answer|label|tier|classification|category|class|prediction|rating|colou?r|"
    r"verdict|status|health|decision|result|output)\b"
    r"(?:\s+[\w'-]+){0,3}?\s*(?:is|was|would\s+be|should\s+be|:|=|->|=>)"
    r"|(?:classify|classified|rate|rated|label|labelled|labeled|mark|marked)(?:\s+[\w'-]+){0,3}?\s+as)\s*",
    re.IGNORECASE,
)
_LIST_LEAD = re.compile(r"^\s*(?:[-*\u2022>]+|\d+[.)])\s+")


def words_before_marker(text: str) -> int | None:
    """How many words come before the last answer marker ("Answer: X"), or None when there is no marker."""
    marks = list(MARKER.finditer(text or ""))
    return len(WORD.findall(text[: marks[-1].start()])) if marks else None


def label_key(text: str, case_sensitive: bool = False) -> str:
    """The comparable form of a label: words only, so 'At Risk', 'at-risk' and '**AT_RISK**' agree."""
    s = "".join(WORD.findall(str(text).translate(QUOTES)))
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
        words = tuple(WORD.findall(surface.translate(QUOTES)))
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
    raw = (text or "").translate(QUOTES)
    if not raw.strip():
        return LabelParse(None, None, [], "empty answer")
    plain = re.sub(r"[*`#]+", " ", raw)
    if not vocab.has_slash:  # "Commit/Likely" names two labels
        plain = re.sub(r"(?<=\w)\s*/\s*(?=\w)", " or ", plain)
    # 1. the whole answer is a label, maybe quoted, bold, or after "Answer:"
    whole = MARKER.sub(" ", plain, count=1) if MARKER.match(plain.strip()) else plain
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
    runs = [vocab.labels_at(_TOKEN.findall(plain[m.end():])[:16]) for m in MARKER.finditer(plain)]
    runs = [r for r in runs if r[0]]
    if not vocab.case_sensitive and any(exact for _, exact in runs):
        runs = [r for r in runs if r[1]]
    decided = _decide([lab for labels, _ in runs for lab in labels], "marker")
    if decided:
        return decided
    # Anything else is not an answer: a label used as a word ("likely to renew") or named in passing is
    # "mentioned, not answered", kept apart so a summary can show it without grading it as a choice.
    mentions = _distinct(lab for lab, _, neg in vocab.mentions(WORD.findall(plain)) if not neg)
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
