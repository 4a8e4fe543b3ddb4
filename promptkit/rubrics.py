"""Rubric grading for generation tasks: mechanical checks, and how far an LLM judge agrees with people.

Rubric rows (renewal_email, interview_synthesis) carry criteria; some have a
`check` a program can decide (max_words, contains_any, contains_none, regex).
`rubric_checks()` grades those and nothing else. The judge (`graders.llm_judge`)
rules on every criterion; `judge_agreement()` sets its rulings beside gold human
ratings (`datasets/renewal_email_ratings.jsonl`) so a learner sees how far to trust it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .errors import DatasetError
from .graders import BaseGrader, Grade, gold_of
from .providers import DEFAULT_MODEL
from .types import Completion

CHECK_KINDS = ("max_words", "contains_any", "contains_none", "regex")


def run_check(check: Mapping[str, Any], text: str) -> bool:
    """Whether `text` passes one criterion's mechanical check (case-insensitive, as the dataset card says)."""
    (kind, arg), = check.items()
    low = (text or "").casefold()
    if kind == "max_words":
        return len((text or "").split()) <= int(arg)
    if kind == "contains_any":
        return any(s.casefold() in low for s in arg)
    if kind == "contains_none":
        return not any(s.casefold() in low for s in arg)
    if kind == "regex":
        return re.search(arg, text or "", re.IGNORECASE) is not None
    raise DatasetError(f"unknown check {kind!r}; checks are {CHECK_KINDS}")


class _RubricChecks(BaseGrader):
    def __init__(self, name: str) -> None:
        self.name = name

    def grade(self, completion: Completion, target: Any) -> Grade:
        rubric = gold_of(target)
        checks = {c["id"]: c["check"] for c in rubric or [] if isinstance(c, Mapping) and c.get("check")}
        if not checks:
            return Grade(0.0, False, "no criterion of this rubric has a mechanical check", parsed=False)
        if not (completion.text or "").strip():
            return Grade(0.0, False, "empty answer", parsed=False, details={"criteria": {k: False for k in checks}})
        results = {k: run_check(chk, completion.text) for k, chk in checks.items()}
        failed = [k for k, ok in results.items() if not ok]
        score = sum(results.values()) / len(results)
        reason = f"{len(results) - len(failed)}/{len(results)} checks passed" + (f" (failed: {', '.join(failed)})" if failed else "")
        return Grade(score, not failed, reason, details={"criteria": results, "words": len(completion.text.split())})


def rubric_checks(*, name: str = "rubric_checks") -> BaseGrader:
    """Grades only the rubric criteria a program can decide (their `check`): score = share passed."""
    return _RubricChecks(name)


@dataclass(frozen=True)
class RatedAnswer:
    """An answer to one dataset row with a person's yes/no ruling on each of the row's criteria."""

    id: str
    row_id: str
    text: str
    ratings: dict[str, bool]


def load_ratings(name: str = "renewal_email_ratings.jsonl", dataset: str = "renewal_email") -> list[RatedAnswer]:
    """Gold human ratings, validated: every row id exists and every criterion of its rubric is rated yes or no."""
    from .datasets import datasets_dir, load_dataset

    ds = load_dataset(dataset)
    path = datasets_dir() / name
    out: list[RatedAnswer] = []
    seen: set[str] = set()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {lineno}"
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not valid JSON: {exc.msg}") from None
        missing = [k for k in ("id", "row_id", "email", "ratings") if k not in d]
        if missing:
            raise DatasetError(f"{where}: missing field(s) {missing}")
        if d["id"] in seen:
            raise DatasetError(f"{where}: field 'id': duplicate id {d['id']!r}")
        seen.add(d["id"])
        try:
            row = ds[d["row_id"]]
        except KeyError:
            raise DatasetError(f"{where}: field 'row_id': {d['row_id']!r} is not a row of {dataset}") from None
        crit = [c["id"] for c in row.target]
        if set(d["ratings"]) != set(crit):
            raise DatasetError(f"{where}: field 'ratings': must rate exactly the criteria {crit}, got {sorted(d['ratings'])}")
        bad = [k for k, v in d["ratings"].items() if not isinstance(v, bool)]
        if bad:
            raise DatasetError(f"{where}: field 'ratings': {bad} must be true or false")
        out.append(RatedAnswer(d["id"], d["row_id"], d["email"], dict(d["ratings"])))
    if not out:
        raise DatasetError(f"{name}: empty file (no rows)")
    return out


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Agreement between two raters beyond what chance would give (1 = perfect, 0 = chance)."""
    n = len(a)
    if n == 0 or n != len(b):
        raise ValueError("cohen_kappa needs two equally long, non-empty lists")
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def cached_judge(model: str = DEFAULT_MODEL, *, cache: Any = None, **kwargs: Any) -> BaseGrader:
    """The LLM judge with its calls kept in the answer store the runner uses (`cache`: a Cache; default the
    standard one, which honours PROMPTKIT_CACHE_DIR), so re-grading an email already judged calls no model."""
    from .cache import open_cache
    from .graders import llm_judge

    return llm_judge(model=model, cache=cache if cache is not None else open_cache(), **kwargs)


def judge_rulings(rated: Sequence[RatedAnswer], judge: Any, dataset: str = "renewal_email", progress: bool = True) -> Any:
    """One row per (answer, criterion): the person's ruling, the judge's, and the mechanical check's when there is one."""
    import pandas as pd

    from .datasets import load_dataset

    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the kit
        def tqdm(x, **_):
            return x

    ds = load_dataset(dataset)
    recs = []
    for r in tqdm(rated, desc="judging rated answers", disable=not progress):
        row = ds[r.row_id]
        g = judge(Completion(text=r.text, provider="human", model="gold"), row)
        rulings = g.details.get("criteria") or {}
        checks = {c["id"]: c.get("check") for c in row.target}
        for cid, human in r.ratings.items():
            chk = checks.get(cid)
            recs.append({"answer": r.id, "row_id": r.row_id, "criterion": cid, "human": human,
                         "judge": rulings.get(cid), "mechanical": run_check(chk, r.text) if chk else None,
                         "judge_reason": g.reason[:160]})
    return pd.DataFrame(recs)


def agreement_table(rulings: Any) -> Any:
    """Per rater (judge, mechanical checks): criteria rated, agreement with the people, Cohen's kappa, misses."""
    import pandas as pd

    out = []
    for rater in ("judge", "mechanical"):
        part = rulings[rulings[rater].notna()]
        if part.empty:
            continue
        h, r = part["human"].astype(bool).tolist(), part[rater].astype(bool).tolist()
        out.append({"rater": rater, "criteria rated": len(part),
                    "unreadable": int(rulings[rater].isna().sum()) if rater == "judge" else 0,
                    "agreement": sum(x == y for x, y in zip(h, r)) / len(h), "cohen_kappa": cohen_kappa(h, r),
                    "passed what people failed": sum((not x) and y for x, y in zip(h, r)),
                    "failed what people passed": sum(x and (not y) for x, y in zip(h, r))})
    return pd.DataFrame(out)


def trust_sentence(table: Any, judge_model: str) -> str:
    """What the agreement table means, computed from it."""
    t = table.set_index("rater")
    if "judge" not in t.index:
        return f"The judge ({judge_model}) gave no readable ruling, so its agreement with people cannot be measured here."
    j = t.loc["judge"]
    text = (f"The judge ({judge_model}) agreed with the people on {j['agreement']:.0%} of {int(j['criteria rated'])} "
            f"criterion rulings (Cohen's kappa {j['cohen_kappa']:.2f}); it passed {int(j['passed what people failed'])} "
            f"that people failed and failed {int(j['failed what people passed'])} that people passed.")
    if "mechanical" in t.index:
        m = t.loc["mechanical"]
        text += (f" The mechanical checks agreed on {m['agreement']:.0%} of the {int(m['criteria rated'])} criteria "
                 f"they can decide.")
    return text


__all__ = ["CHECK_KINDS", "RatedAnswer", "agreement_table", "best_judge_model", "cached_judge", "cohen_kappa", "criterion_pass_rates", "judge_rulings", "load_ratings",
           "rubric_checks", "run_check", "trust_sentence"]


def best_judge_model(prefer_api: bool = True) -> str:
    """The strongest model ready here to act as judge: an API model with a key, else the largest local one."""
    from .models_status import model_table

    table = model_table()
    ready = {r["spec"] for r in table if r["ready"] and "<model>" not in r["spec"]}
    if prefer_api:
        for r in table:
            if r["ready"] and r["kind"] == "api" and r["spec"].split(":")[0] in ("anthropic", "openai") and "<model>" not in r["spec"]:
                return r["spec"]
    for spec in ("local:qwen2.5-1.5b", "local:qwen2.5-0.5b", DEFAULT_MODEL):
        if spec in ready:
            return spec
    return DEFAULT_MODEL


def criterion_pass_rates(results: Any, grader: str = "rubric_checks") -> Any:
    """Per variant: the share of emails passing each mechanical check, so the failing ones stand out."""
    import pandas as pd

    recs = []
    for r in results.results:
        g = r.grades.get(grader)
        for cid, ok in ((g.details.get("criteria") or {}) if g else {}).items():
            recs.append({"variant": r.cell.variant, "criterion": cid, "passed": bool(ok)})
    df = pd.DataFrame(recs, columns=["variant", "criterion", "passed"])
    return df.pivot_table(index="criterion", columns="variant", values="passed", aggfunc="mean")
