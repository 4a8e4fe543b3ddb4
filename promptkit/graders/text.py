"""Graders of the answer's text as written: contains, regex, equals, line_count, numeric, length.

Text checks follow Python's defaults: `regex` and `equals` are case-sensitive and strip nothing; `contains`
ignores case and spacing unless told otherwise.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from ..errors import GraderError
from ..types import Completion, Grade
from .base import BaseGrader, check_on, gold_of, unparsed
from .labels import MARKER, QUOTES

__all__ = ["contains", "equals", "length", "line_count", "numeric", "parse_number", "regex"]


def _squash(text: str, case_sensitive: bool) -> str:
    s = " ".join(str(text).translate(QUOTES).split())
    return s if case_sensitive else s.casefold()


class _Contains(BaseGrader):
    def __init__(self, needles, require_all, case_sensitive, name, on="text"):
        self.on = check_on(on, name)
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
        self.flags, self.fullmatch, self.name, self.on = flags, fullmatch, name, check_on(on, name)

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
        self.on = check_on(on, name)

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
        self.name, self.on = name, check_on(on, name)

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



_NUMBER = re.compile(r"(?<![\w.])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?%?")


def find_numbers(text: str) -> list[tuple[float, str]]:
    """Every number written in the text (1,000 and 12% and \u22123 read), with its spelling."""
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
    plain = re.sub(r"[*`#]+", " ", (text or "").translate(QUOTES))
    for m in MARKER.finditer(plain):
        nums = find_numbers(plain[m.end():])
        if nums:
            return nums[0][0]
    nums = find_numbers(plain)
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
