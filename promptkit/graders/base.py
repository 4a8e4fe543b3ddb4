"""The grader base: what every grader shares, and the graders that combine others.

Every grader is made by a factory and called as `grader(completion, target) -> Grade`. A failed model call
gives a failing Grade with `parsed=False` (never an exception). Graders compose with `all_of`, `any_of`,
`weighted`, `mean`, `not_`, `in_tag` and the operators `&`, `|` and `~`.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import replace
from dataclasses import replace as dc_replace
from typing import Any, Mapping, Sequence

from ..errors import GraderError
from ..types import Completion, Grade

# in_tag is left out: it wraps a grader, so an experiment file cannot name it alone (registry.py reads __all__).
__all__ = ["BaseGrader", "all_of", "any_of", "error_grade", "gold_of", "mean", "not_", "unparsed", "weighted"]


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


def as_completion(completion: Any) -> Completion:
    """A grader's input as a Completion: a plain answer string is wrapped, anything else refused."""
    if isinstance(completion, Completion):
        return completion
    if isinstance(completion, str):
        return Completion(text=completion)
    raise GraderError(
        f"a grader takes a Completion (or a plain answer string), got {type(completion).__name__}"
    )


ON_CHOICES: tuple[str, ...] = ("text", "reply")


def check_on(on: Any, where: str) -> str:
    """`on` checked: "text" or "reply", else a GraderError naming the grader."""
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
        completion = as_completion(completion)
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
        other.on = check_on(on, self.name)
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


def check_threshold(threshold: float, where: str) -> float:
    """A pass threshold checked to lie in [0, 1], else a GraderError naming the grader."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise GraderError(f"{where}: threshold must be a number between 0 and 1, got {threshold!r}")
    return float(threshold)




# --------------------------------------------------------------------------- composition


class _Not(BaseGrader):
    def __init__(self, inner: Any, name: str | None):
        if not callable(inner) or not isinstance(getattr(inner, "name", None), str):
            raise GraderError(f"not_: {inner!r} is not a grader (a callable with a .name)")
        self.inner, self.name = inner, name or f"not_{inner.name}"

    def __call__(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = as_completion(completion)
        if not completion.ok:  # a failed call is no answer, so it cannot pass a must-not check either
            return error_grade(completion)
        return self._flip(self.inner(self.view(completion), target))

    async def agrade(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = as_completion(completion)
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
        self.threshold = None if threshold is None else check_threshold(threshold, kind)
        self.names = _part_names(self.parts)
        self.name = name or f"{kind}({','.join(self.names)})"

    def __call__(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = self.view(as_completion(completion))
        return self.combine([g(completion, target) for g in self.parts])

    async def agrade(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = self.view(as_completion(completion))
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
