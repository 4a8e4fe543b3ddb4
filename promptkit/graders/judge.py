"""LLM as judge: ask a model (any provider) whether an answer meets a rubric, and read its verdict."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import GraderError
from ..providers import DEFAULT_MODEL
from ..types import Completion, Grade
from .base import BaseGrader, as_completion, check_threshold, error_grade, gold_of, unparsed
from .json import extract_json, truthy
from .labels import WORD, label_key
from .text import find_numbers

__all__ = ["Criterion", "Verdict", "judge_grammar", "llm_judge", "parse_verdict", "rubric_criteria"]

_REASON_KEYS = ("reason", "reasoning", "explanation", "rationale", "justification", "comment", "feedback")
_SCORE_KEYS = ("score", "rating", "grade", "overall", "total")
_VERDICT_KEYS = ("met", "verdict", "answer", "pass", "passed", "result", "value", "meets")
_YES_NO = r"(yes|no|true|false|not met|met|pass|fail)\b(?!\s*[|/]|\s+or\b)"


def _judge_prompts() -> dict[str, str]:
    from importlib.resources import files

    from .. import yamlfile

    return yamlfile.load(str(files("promptkit").joinpath("data/judge.yaml")), GraderError, "judge prompts file")


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
    t = truthy(value)
    if t is None and isinstance(value, str):
        low = value.strip().casefold()
        if re.search(r"[|/]|\bor\b", low):  # "yes|no" copied from the format is no ruling
            return None
        words = WORD.findall(low)
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
                    nums = find_numbers(str(v))
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
        self.max_tokens, self.threshold = max_tokens, check_threshold(threshold, name)
        from ..providers import parse_spec

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
        from ..types import Message, Request, Settings

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
        from ..aio import run_sync

        return run_sync(self.agrade(completion, target))

    async def agrade(self, completion: Completion | str, target: Any = None) -> Grade:
        completion = as_completion(completion)
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
            from ..cache import cell_key

            key = cell_key(self.model, req)
            reply = self.cache.get(key)
        if reply is None:
            from ..providers import get_provider

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
