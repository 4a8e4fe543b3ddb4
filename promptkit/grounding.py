"""Grounding: did an answer come from the notes, or was it invented? The grader and chapter 07's tables.

A row of `account_questions` asks about an account whose answer is, or is not, in its notes. On a
"not stated" row an answer passes only by saying the notes do not say (a value, or a "not stated" followed
by a guess, is **invented**); on an answerable row it passes when it holds one of the accepted forms of the
gold fact (saying "not stated" there is a **refusal**). Quoted evidence (inside `<quote>` tags) is never
graded as the answer, and when the answer sits in `<answer>` tags only the last pair is read.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from .errors import GraderError
from .graders import BaseGrader, Grade, gold_of
from .types import Completion

STATED, NOT_STATED = "stated", "not stated"

_APOSTROPHES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})
_NT = re.compile(r"\b(can|won|don|doesn|didn|isn|aren|wasn|haven|hasn|couldn)'t\b")
_NT_BASE = {"can": "can", "won": "will", "don": "do", "doesn": "does", "didn": "did", "isn": "is", "aren": "are",
            "wasn": "was", "haven": "have", "hasn": "has", "couldn": "could"}
# "the notes do not say", "is not explicitly stated", "there is no mention of", "cannot be determined", ...
_SAYS_NOT_STATED = re.compile(
    r"\bnot\s+(?:\w+\s+){0,2}?(?:stated|mentioned|specified|given|provided|included|listed|named|indicated|"
    r"disclosed|available|known|found|recorded|say|says|state|states|mention|mentions|specify|specifies|tell|"
    r"indicate|provide|include|know|determined|clear)\b"
    r"|\bno\s+(?:\w+\s+){0,2}?(?:information|mention|details?|data|indication|record|answer)\b"
    r"|\b(?:unknown|unclear|unspecified|undisclosed|unstated)\b"
    r"|\bnot\s+(?:be\s+)?determin(?:ed|able)\b",
    re.IGNORECASE)
# words that turn "not stated" into a guess: "not stated, but probably around 10%"
_GUESS = re.compile(
    r"\b(?:probably|likely|maybe|perhaps|presumably|possibly|might\s+be|may\s+be|could\s+be|guess|assume|"
    r"assuming|estimate[ds]?|approximately|roughly|around|typically|usually|i\s+think|i\s+believe)\b",
    re.IGNORECASE)
_QUOTE = re.compile(r"<quote>.*?(?:</quote>|$)", re.IGNORECASE | re.DOTALL)  # an unclosed quote runs to the end
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"</?\w+>")


def _normal(text: str) -> str:
    t = str(text).translate(_APOSTROPHES).casefold()
    t = _NT.sub(lambda m: _NT_BASE[m.group(1)] + " not", t)
    return re.sub(r"\s+", " ", t.replace("cannot", "can not")).strip()


def answer_part(text: str) -> str:
    """The part of a reply that is its answer: quoted evidence dropped, the last <answer> tag if there is one."""
    t = _QUOTE.sub(" ", text or "")
    tagged = _ANSWER.findall(t)
    if tagged:
        t = tagged[-1]
    return _TAG.sub(" ", t).strip()


def says_not_stated(text: str) -> bool:
    """The answer says the notes do not hold the answer ("Not stated", "the notes don't mention it", ...)."""
    return _SAYS_NOT_STATED.search(_normal(text)) is not None


def guesses(text: str) -> bool:
    """The answer hedges towards a value ("probably", "around", "I think"): a guess, not an abstention."""
    return _GUESS.search(_normal(text)) is not None


def mentions(accept: str, text: str) -> bool:
    """An accepted form appears as whole words or a whole number ("8%" not inside "18%"; "48,000" = "48000")."""
    a, t = _normal(accept), _normal(text)
    if not a:
        return False
    edge_l = r"(?<![\w])" if a[0].isalnum() else ""
    edge_r = r"(?![\w])" if a[-1].isalnum() else ""
    pat = edge_l + re.escape(a) + edge_r
    return bool(re.search(pat, t) or re.search(pat.replace(",", ""), t.replace(",", "")))


class _GroundedAnswer(BaseGrader):
    def __init__(self, name: str) -> None:
        self.name = name

    def grade(self, completion: Completion, target: Any) -> Grade:
        gold = gold_of(target)
        if not isinstance(gold, Mapping) or gold.get("status") not in (STATED, NOT_STATED) or "accept" not in gold:
            raise GraderError(f"{self.name}: the target must hold 'status' ({STATED!r} or {NOT_STATED!r}), "
                              f"'answer' and 'accept', got {gold!r}")
        answer = answer_part(completion.text or "")
        abstains = says_not_stated(answer)
        guessed = abstains and guesses(answer)
        kind = "guess" if guessed else NOT_STATED if abstains else "answer"
        details: dict[str, Any] = {"status": gold["status"], "answer_part": answer[:300], "said_not_stated": abstains,
                                   "guessed": guessed}
        if not answer:
            return Grade(0.0, False, "unparseable: no answer (empty, or only a quote)", parsed=False, label=None,
                         details={**details, "invented": False, "refused": False, "correct": False})
        if gold["status"] == NOT_STATED:
            ok = abstains and not guessed
            details.update(invented=not ok, refused=False, correct=ok)
            reason = ("says the notes do not state it (right: they do not)" if ok else
                      "says 'not stated' but then guesses: counted as invented" if guessed else
                      "gives an answer the notes do not state: invented")
            return Grade(float(ok), ok, reason, label=kind, details=details)
        hits = [a for a in gold["accept"] if mentions(a, answer)]
        refused = abstains and not hits
        details.update(invented=False, refused=refused, correct=bool(hits), matched=hits)
        reason = (f"contains the gold answer ({gold['answer']!r})" if hits else
                  f"says 'not stated', but the notes do state it ({gold['answer']!r})" if refused else
                  f"lacks the gold answer ({gold['answer']!r})")
        return Grade(float(bool(hits)), bool(hits), reason, label=kind, details=details)


def grounded_answer(*, name: str = "grounded_answer") -> BaseGrader:
    """Grades a question about account notes: on "not stated" rows, saying so passes and any answer or guess is
    invented; on answerable rows an accepted form of the gold fact must be in the answer."""
    return _GroundedAnswer(name)


# --------------------------------------------------------------------------- tables for chapter 07


def _cells(results: Any, grader: str | None) -> list[tuple[Any, dict[str, Any], bool]]:
    g = grader or results.primary_grader
    out = []
    for r in results.results:
        grade = r.grades.get(g)
        if grade is not None and isinstance(grade.details, Mapping) and "status" in grade.details:
            out.append((r, grade.details, bool(grade.parsed)))
    return out


def rates(results: Any, grader: str | None = None) -> dict[str, float]:
    """Invented-answer rate on "not stated" rows (with its Wilson interval) and accuracy on answerable rows."""
    from .metrics import wilson_interval

    cells = _cells(results, grader)
    ns = [(d, ok) for r, d, ok in cells if d["status"] == NOT_STATED and r.completion.ok]
    st = [(d, ok) for r, d, ok in cells if d["status"] == STATED and r.completion.ok]
    out: dict[str, float] = {"not_stated_rows": float(len(ns)), "answerable_rows": float(len(st))}
    if ns:
        k = sum(d["invented"] for d, _ in ns)
        ci = wilson_interval(k, len(ns))
        out.update(invented=float(k), invented_rate=k / len(ns), invented_low=ci.low, invented_high=ci.high)
    if st:
        k = sum(d["correct"] for d, _ in st)
        ci = wilson_interval(k, len(st))
        out.update(answer_accuracy=k / len(st), answer_accuracy_low=ci.low, answer_accuracy_high=ci.high,
                   refusal_rate=sum(d["refused"] for d, _ in st) / len(st))
    out["unreadable"] = float(sum(not ok for _, _, ok in cells))
    return out


def grounding_table(results: Any, by: Sequence[str] = ("variant", "model"), grader: str | None = None) -> Any:
    """Per group: invented-answer rate on "not stated" rows and accuracy and refusals on answerable rows,
    each with its 95% Wilson interval. An unreadable answer (empty, or only a quote) is neither invented nor
    right: it is counted in `unreadable`, and failed calls are left out."""
    import pandas as pd

    groups: dict[tuple, list[Any]] = {}
    for r in results.results:
        groups.setdefault(tuple(getattr(r.cell, b) for b in by), []).append(r)
    recs = []
    for keys, cells in groups.items():
        m = rates(type(results)(cells, results.meta), grader)
        recs.append({**dict(zip(by, keys)),
                     "not-stated rows": int(m["not_stated_rows"]), "invented": int(m.get("invented", 0)),
                     "invented rate": m.get("invented_rate", float("nan")),
                     "invented low": m.get("invented_low", float("nan")),
                     "invented high": m.get("invented_high", float("nan")),
                     "answerable rows": int(m["answerable_rows"]),
                     "accuracy": m.get("answer_accuracy", float("nan")),
                     "accuracy low": m.get("answer_accuracy_low", float("nan")),
                     "accuracy high": m.get("answer_accuracy_high", float("nan")),
                     "refused answerable": m.get("refusal_rate", float("nan")),
                     "unreadable": int(m["unreadable"])})
    return pd.DataFrame(recs)


def paired_table(results: Any, baseline: str, *, model: str | None = None, grader: str | None = None) -> Any:
    """Each variant against the baseline on the same rows, separately on "not stated" rows (invented answers)
    and answerable rows (right answers): exact McNemar, Holm across every test, the smallest change each could show."""
    import pandas as pd

    from .lessons import ALPHA, holm, rows_needed
    from .metrics import mcnemar_test

    cells = [c for c in _cells(results, grader) if c[0].completion.ok and (model is None or c[0].cell.model == model)]
    by: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for r, d, _ in cells:
        by.setdefault((r.cell.model, r.cell.variant), {})[r.cell.row_id] = d
    recs = []
    for (m, v), mine in by.items():
        if v == baseline or (m, baseline) not in by:
            continue
        base = by[(m, baseline)]
        for status, what, good in ((NOT_STATED, "invented rate", lambda d: not d["invented"]),
                                   (STATED, "accuracy", lambda d: d["correct"])):
            ids = [i for i in mine if i in base and mine[i]["status"] == status]
            if not ids:
                continue
            a = [good(mine[i]) for i in ids]
            b = [good(base[i]) for i in ids]
            test = mcnemar_test([True] * len(ids), a, b, name_a=v, name_b=baseline)
            sign = -1 if status == NOT_STATED else 1  # the invented rate falls when more rows are right
            recs.append({"model": m, "variant": v, "rows": status, "metric": what, "n": len(ids),
                         baseline: sum(not x for x in b) / len(ids) if sign < 0 else sum(b) / len(ids),
                         "variant value": sum(not x for x in a) / len(ids) if sign < 0 else sum(a) / len(ids),
                         "change": sign * test.difference, "p": test.p_value,
                         "better": test.details["a_right_b_wrong"], "worse": test.details["a_wrong_b_right"]})
    table = pd.DataFrame(recs)
    if table.empty:
        return table
    table = table.rename(columns={baseline: "baseline value"})
    table["p (Holm)"] = holm(list(table["p"]))
    need = rows_needed(ALPHA / len(table))
    table["rows needed"] = need
    table["smallest detectable"] = [need / n for n in table["n"]]
    table["verdict"] = ["significant" if p < ALPHA else "not significant" for p in table["p (Holm)"]]
    return table


def table_sentences(table: Any) -> list[str]:
    """One sentence per prompt and model, generated from `grounding_table`: invented, right and refused."""
    return [f"{r['variant']} [{str(r['model']).split(':')[-1]}]: invented an answer on {r['invented']} of "
            f"{r['not-stated rows']} not-stated rows ({r['invented rate']:.0%}, 95% interval "
            f"{r['invented low']:.0%}-{r['invented high']:.0%}); right on {r['accuracy']:.0%} of "
            f"{r['answerable rows']} answerable rows ({r['accuracy low']:.0%}-{r['accuracy high']:.0%}), "
            f"refusing {r['refused answerable']:.0%} of them."
            for _, r in table.iterrows()]


def _rows(k: Any) -> str:
    return f"{int(k)} row" + ("" if int(k) == 1 else "s")


def paired_sentences(paired: Any, baseline: str) -> list[str]:
    """One sentence per test of `paired_table`: the change, the discordant rows, p before and after Holm, and the
    smallest change these rows could show."""
    out = []
    for _, r in paired.iterrows():
        k = int(r["rows needed"])
        reach = (f"no change could reach significance on {int(r['n'])} rows (it takes {k} all moving one way)"
                 if k > r["n"] else f"the smallest change that could is {r['smallest detectable']:.2f} ({k} rows "
                 f"all moving one way)")
        out.append(f"{r['variant']} vs {baseline} [{str(r['model']).split(':')[-1]}], {r['metric']} on "
                   f"{int(r['n'])} {'not-stated' if r['rows'] == NOT_STATED else 'answerable'} rows: {r['baseline value']:.2f} → {r['variant value']:.2f} "
                   f"({_rows(r['better'])} better, {int(r['worse'])} worse; exact McNemar p = {r['p']:.2f}, "
                   f"Holm {r['p (Holm)']:.2f} over {len(paired)} tests: {r['verdict']}); {reach}.")
    return out


def tradeoff_sentences(table: Any, baseline: str) -> list[str]:
    """Per prompt against the baseline: invented answers, accuracy and refusals on answerable rows, before → after."""
    out = []
    for m, part in table.groupby("model", sort=False):
        t = part.set_index("variant")
        if baseline not in t.index:
            continue
        b = t.loc[baseline]
        for v, r in t.iterrows():
            if v != baseline:
                out.append(f"{v} [{str(m).split(':')[-1]}]: invented answers {b['invented rate']:.0%} → "
                           f"{r['invented rate']:.0%}; accuracy on answerable rows {b['accuracy']:.0%} → "
                           f"{r['accuracy']:.0%}; answerable rows refused {b['refused answerable']:.0%} → "
                           f"{r['refused answerable']:.0%}.")
    return out


def plot(table: Any, title: str | None = None) -> Any:
    """Invented rate on "not stated" rows against accuracy on answerable rows, each with its interval: the
    trade-off in one picture (down and right is better)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for i, (_, r) in enumerate(table.iterrows()):
        colour = f"C{i % 10}"
        x, y = r["accuracy"], r["invented rate"]
        ax.errorbar([x], [y], xerr=[[x - r["accuracy low"]], [r["accuracy high"] - x]],
                    yerr=[[y - r["invented low"]], [r["invented high"] - y]], fmt="o", color=colour, capsize=3,
                    label=f"{r['variant']} [{str(r['model']).split(':')[-1]}]")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("accuracy on answerable rows (95% interval)")
    ax.set_ylabel("invented answers on not-stated rows")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def not_stated_answers(results: Any, n: int = 8, grader: str | None = None, **where: Any) -> Any:
    """What the model said on "not stated" rows, and how it was graded: invented values are what to read."""
    import pandas as pd

    sub = results.filter(**where) if where else results
    recs = [{"variant": r.cell.variant, "row": r.cell.row_id, "answer": r.completion.text.strip()[:160],
             "graded": "invented" if d["invented"] else "not stated" if ok else "unreadable"}
            for r, d, ok in _cells(sub, grader) if d["status"] == NOT_STATED]
    return pd.DataFrame(recs[:n], columns=["variant", "row", "answer", "graded"])


__all__ = ["NOT_STATED", "STATED", "answer_part", "grounded_answer", "grounding_table", "guesses", "mentions",
           "not_stated_answers", "paired_sentences", "paired_table", "plot", "rates", "says_not_stated",
           "table_sentences", "tradeoff_sentences"]
