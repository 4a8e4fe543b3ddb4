"""Self-checking exercises: the learner writes a prompt, a check runs it on held-out rows and grades it.

Exercises are data (`data/exercises.yaml`): the task, the dataset split the
check runs on, the goal (a metric and a bound) and hints keyed to what fell
short. Reference answers live apart, in `notebooks/solutions/`, and a test
proves each one passes, so every exercise is solvable on the model it names.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import yamlfile
from .config import shipped_dir
from .errors import ExerciseError
from .providers import DEFAULT_MODEL
from .templates import Template, load_template
from .types import Message, Settings

EXERCISES_PATH = Path(__file__).with_name("data") / "exercises.yaml"
SOLUTIONS_DIR = shipped_dir("notebooks") / "solutions"
MIN_HELD_OUT = 24  # rows: below this a lucky few answers can clear "above chance"
METRICS = ("parse_rate", "accuracy", "balanced_accuracy", "macro_f1", "mean_score", "pass_rate", "agreement", "schema_valid",
           "answer_accuracy", "caught")
CEILINGS = ("invented_rate", "invented_high", "refusal_rate")  # metrics an exercise caps (`at_most`), chapter 07


@dataclass(frozen=True)
class Hint:
    """Shown when the measured metric falls on the wrong side of a bound."""

    text: str
    metric: str | None = None
    below: float | None = None
    above: float | None = None

    def applies(self, measured: Mapping[str, float]) -> bool:
        if self.metric is None:
            return True
        v = measured.get(self.metric)
        if v is None:
            return False
        return (self.below is None or v < self.below) and (self.above is None or v > self.above)


@dataclass(frozen=True)
class Bound:
    """A further goal on another measured metric, e.g. the upper bound of an attack's success rate."""

    metric: str
    at_least: float | None = None
    at_most: float | None = None
    what: str | None = None  # the goal in words; default: the metric's name

    def words(self) -> str:
        return self.what or self.metric.replace("_", " ")

    def goal(self) -> str:
        return f"{self.words()} {'≥' if self.at_most is None else '≤'} {self.bound():g}"

    def met(self, v: float) -> bool:
        return v >= self.at_least if self.at_most is None else v <= self.at_most

    def bound(self) -> float:
        return self.at_least if self.at_most is None else self.at_most


@dataclass(frozen=True)
class Exercise:
    """One exercise: what to write, the rows it is checked on, and what counts as done."""

    id: str
    chapter: str
    title: str
    task: str
    dataset: str
    metric: str
    at_least: float
    split: str = "test"
    rows: int = 8
    model: str = DEFAULT_MODEL
    settings: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    allow_settings: tuple[str, ...] = ()
    allow_models: tuple[str, ...] = ()  # other models the check may run on (the named one always)
    must_include: tuple[str, ...] = ()  # text the answer's prompt must keep (e.g. a phrase under study)
    above_chance: bool = False  # also the lower bound of balanced accuracy (of micro F1 for an extraction) above chance
    reasoning_first: float | None = None  # share of answers that must reason first, then give "Answer: X"
    # instead of above_chance, where the technique under study costs accuracy at this model size: balanced accuracy
    # at most max_loss below that of another exercise's reference answer, run on the same rows and model
    compare_with: str | None = None
    max_loss: float = 0.0
    start: Mapping[str, Any] | None = None  # the starter prompt as a template dict; default: the dataset's
    save_as: str | None = None  # the file name the live builder saves to for this exercise
    answer_tag: str | None = None  # grade only what the answer puts inside <answer_tag>...</answer_tag>
    hints: tuple[Hint, ...] = ()
    lower_bound: bool = False  # the goal is on the 95% lower bound of the metric, so a lucky row cannot pass
    also: tuple[Bound, ...] = ()  # further goals on other metrics (e.g. F1's lower bound, attack success's upper)
    retrieval_k: int | None = None  # retrieve this many cs_corpus documents per row into {{documents}} (chapter 11)
    grader: str | None = None  # a grader of promptkit.graders by name, instead of the task's default (chapter 12)
    at_most: Mapping[str, float] = field(default_factory=dict)  # metric -> a bound it must not exceed (chapter 07)
    # a separate check (chapter 08): the prompt answers Yes or No, does the row carry this meta field (a planted
    # instruction)? Gold Yes where it is set; measured as `caught` (Yes rows answered Yes) and `false_alarm`
    detect: str | None = None

    def starter(self) -> Template:
        """Where the learner starts: a prompt that does not pass yet (a test proves it), not the answer."""
        if self.start is not None:
            return as_template(dict(self.start, name="starter"), self)
        from .datasets import load_dataset

        return load_dataset(self.dataset).template()

    def goals(self) -> list[str]:
        """Every condition the check requires, in words."""
        what = self.metric.replace("_", " ")
        out = [f"the lower bound of {what} ≥ {self.at_least:g}" if self.lower_bound else f"{what} ≥ {self.at_least:g}"]
        if self.above_chance:
            out.append("the lower bound of balanced accuracy (F1 for an extraction) above chance")
        if self.reasoning_first is not None:
            out.append(f"at least {self.reasoning_first:.0%} of answers reason first, then end 'Answer: <label>'")
        out += [f"{k.replace('_', ' ')} ≤ {v:g}" for k, v in self.at_most.items()]
        if self.compare_with:
            out.append(f"balanced accuracy at most {self.max_loss:g} below the reference of {self.compare_with} "
                       f"on the same rows")
        return out + [b.goal() for b in self.also]

    def _repr_html_(self) -> str:
        return (f"<div style='border:1px solid #90caf9;background:#f3f8fe;padding:8px 12px;border-radius:6px'>"
                f"<b>Exercise {html.escape(self.id)}: {html.escape(self.title)}</b><br>{html.escape(self.task)}"
                f"<br><small>Checked on {self.rows} {self.split} rows of <code>{self.dataset}</code> with "
                f"<code>{self.model}</code>; goal: {html.escape('; '.join(self.goals()))}.</small></div>")


@dataclass
class CheckResult:
    """What a check measured, whether it passed, and the hint to try next."""

    exercise: Exercise
    passed: bool
    measured: dict[str, float]
    hint: str | None
    results: Any = field(repr=False, default=None)
    goals: list[tuple[str, bool]] = field(default_factory=list)  # (the goal with its measured value, met)

    def __bool__(self) -> bool:
        return self.passed

    def _repr_html_(self) -> str:
        ex = self.exercise
        nums = ", ".join(f"{k} {v:.2f}" for k, v in self.measured.items())
        if self.passed:
            head = f"<b>✓ Passed</b> {html.escape(ex.title)}"
            colour = "#2e7d32", "#edf7ed"
        else:
            head = f"<b>Not yet</b> {html.escape(ex.title)}"
            colour = "#b26a00", "#fff4e5"
        goals = "".join(f"<li>{'✓' if met else '✗'} {html.escape(text)}</li>" for text, met in self.goals)
        hint = f"<br><b>Hint:</b> {html.escape(self.hint)}" if self.hint and not self.passed else ""
        return (f"<div style='border-left:5px solid {colour[0]};background:{colour[1]};padding:8px 12px'>"
                f"{head}<ul style='margin:4px 0'>{goals}</ul><small>{html.escape(nums)}</small>{hint}</div>")

    def __str__(self) -> str:
        state = "PASSED" if self.passed else "not yet"
        nums = ", ".join(f"{k}={v:.2f}" for k, v in self.measured.items())
        out = f"[{state}] {self.exercise.id}: {nums}"
        out += "".join(f"\n  {'✓' if met else '✗'} {text}" for text, met in self.goals)
        return out + (f"\nHint: {self.hint}" if self.hint and not self.passed else "")


def _hint(d: Mapping[str, Any], where: str) -> Hint:
    extra = sorted(set(d) - {"text", "metric", "below", "above"})
    if extra or "text" not in d:
        raise ExerciseError(f"{where}: a hint has 'text' and optionally 'metric', 'below', 'above'; got {sorted(d)}")
    return Hint(text=d["text"], metric=d.get("metric"), below=d.get("below"), above=d.get("above"))


def _split_size(ex: Exercise) -> int:
    from .datasets import load_dataset

    return len(load_dataset(ex.dataset).split(ex.split).rows)


def _bound(d: Any, where: str) -> Bound:
    if (not isinstance(d, Mapping) or set(d) - {"metric", "at_least", "at_most", "what"} or "metric" not in d
            or ("at_least" in d) == ("at_most" in d)):
        raise ExerciseError(f"{where}: field 'also': each entry has 'metric', exactly one of 'at_least' or "
                            f"'at_most', and optionally 'what'; got {d!r}")
    return Bound(**d)


def load_exercises(path: str | Path | None = None) -> dict[str, Exercise]:
    """Every exercise in the file, validated, by id."""
    p = Path(path) if path else EXERCISES_PATH
    data = yamlfile.load(p, ExerciseError, "exercises file") or []
    out: dict[str, Exercise] = {}
    known = set(Exercise.__dataclass_fields__)
    for i, d in enumerate(data):
        where = f"{p.name} exercise {i + 1} ({d.get('id', '?')})"
        unknown = sorted(set(d) - known)
        if unknown:
            raise ExerciseError(f"{where}: unknown field(s) {unknown}")
        if d.get("metric") not in METRICS:
            raise ExerciseError(f"{where}: field 'metric' must be one of {METRICS}, got {d.get('metric')!r}")
        d = dict(d)
        d["hints"] = tuple(_hint(h, where) for h in d.get("hints", ()))
        d["allow_settings"] = tuple(d.get("allow_settings", ()))
        d["must_include"] = tuple(d.get("must_include", ()))
        d["allow_models"] = tuple(d.get("allow_models", ()))
        d["also"] = tuple(_bound(b, where) for b in d.get("also", ()))
        Settings.from_dict(d.get("settings", {}))  # fail early on a bad setting
        caps = d.get("at_most", {})
        if not isinstance(caps, Mapping) or any(k not in CEILINGS or isinstance(v, bool) or not isinstance(v, (int, float))
                                                for k, v in caps.items()):
            raise ExerciseError(f"{where}: field 'at_most' maps metrics of {CEILINGS} to numbers, got {caps!r}")
        if not isinstance(d.get("detect", ""), str):
            raise ExerciseError(f"{where}: field 'detect' names one meta field of the rows, got {d['detect']!r}")
        ex = Exercise(**d)
        if (ex.above_chance or ex.lower_bound or ex.compare_with) and ex.rows < min(MIN_HELD_OUT, _split_size(ex)):
            raise ExerciseError(f"{where}: an above-chance, lower-bound or comparison goal needs at least {MIN_HELD_OUT} held-out rows "
                                f"(or all its split has; fewer cannot separate a skill from luck), got rows: {ex.rows}")
        if ex.id in out:
            raise ExerciseError(f"{where}: duplicate exercise id {ex.id!r}")
        if ex.compare_with and ex.compare_with not in {d.get("id") for d in data}:
            raise ExerciseError(f"{where}: field 'compare_with' names no exercise of this file: {ex.compare_with!r}")
        out[ex.id] = ex
    return out


def exercises(chapter: str | None = None) -> list[Exercise]:
    return [e for e in load_exercises().values() if chapter is None or e.chapter == chapter]


def get_exercise(exercise_id: str) -> Exercise:
    all_ = load_exercises()
    if exercise_id not in all_:
        raise ExerciseError(f"unknown exercise {exercise_id!r}; exercises are {sorted(all_)}")
    return all_[exercise_id]


def as_template(prompt: Any, exercise: Exercise) -> Template:
    """Accept what a learner naturally writes: a Template, a file path, a dict, or the user turn as text."""
    if isinstance(prompt, Template):
        return prompt
    if isinstance(prompt, Path) or (isinstance(prompt, str) and prompt.endswith((".yaml", ".yml", ".toml"))):
        if not Path(prompt).expanduser().is_file():
            raise ExerciseError(f"exercise {exercise.id}: there is no file {str(prompt)!r} (looked in "
                                f"{Path.cwd()}); save your prompt first (the builder's Save button), then check it")
        return load_template(prompt)
    if isinstance(prompt, Mapping):
        d = dict(prompt)
        d.setdefault("name", "my_answer")
        if "user" in d:
            d["turns"] = [Message("user", d.pop("user"))]
        return Template.from_dict(d)
    if isinstance(prompt, str):
        return Template(name="my_answer", turns=(Message("user", prompt),))
    raise ExerciseError(f"exercise {exercise.id}: give a Template, a template file, a dict or the user text, "
                        f"got {type(prompt).__name__}")


def _reasons_first(text: str, how: str | None, min_words: int = 8) -> bool:
    """The label came after a marker ("Answer: X") with some reasoning before it, not first and alone."""
    from .graders.labels import words_before_marker

    before = words_before_marker(text)
    return how == "marker" and before is not None and before >= min_words


def _low(k: int, n: int) -> float:
    from .metrics import wilson_interval

    return wilson_interval(k, n).low if n else 0.0


def _micro_f1(counts: list[Any], _: Any = None) -> float:
    from .graders import prf

    return prf(sum(c[0] for c in counts), sum(c[1] for c in counts), sum(c[2] for c in counts))[2]


def _gold_ids(target: Any) -> set[str] | None:
    """The gold ids of an extraction row: the target list, or the one list inside a target mapping."""
    from .graders import gold_of

    t = gold_of(target)
    if isinstance(t, Mapping):
        lists = [v for v in t.values() if isinstance(v, (list, tuple))]
        t = lists[0] if len(lists) == 1 else None
    return {str(x) for x in t} if isinstance(t, (list, tuple)) else None


def _row_counts(per_field: Mapping[str, Any] | None, gold: set[str]) -> tuple[int, int, int]:
    """(tp, fp, fn) of one row; an answer the grader could not read as a list misses every gold id."""
    if not per_field:
        return 0, 0, len(gold)
    return tuple(sum(f[k] for f in per_field.values()) for k in ("tp", "fp", "fn"))  # type: ignore[return-value]


def _f1_chance(gold: list[set[str]]) -> float:
    """The best micro F1 an answer that ignores the input can get: one fixed set of ids for every row."""
    from itertools import combinations

    fields = sorted(set().union(*gold))
    sets = ([set(c) for k in range(1, len(fields) + 1) for c in combinations(fields, k)] if len(fields) <= 12
            else [{f} for f in fields] + [set(fields)])
    return max((_micro_f1([(len(g & a), len(a - g), len(g - a)) for g in gold]) for a in sets), default=0.0)


def _same_answer(texts: list[str]) -> float:
    """Share of answers equal to the most common one (a JSON list read as a set): 1.0 is one fixed answer for all."""
    import json
    from collections import Counter

    def key(t: str) -> Any:
        try:
            v = json.loads(t)
        except (ValueError, TypeError):
            return " ".join((t or "").split())
        return frozenset(map(str, v)) if isinstance(v, list) else " ".join(t.split())

    return Counter(map(key, texts)).most_common(1)[0][1] / len(texts) if texts else 0.0


def _attacks(cells: list[Any], rows: Any) -> dict[str, float]:
    """Rows carrying a planted instruction: how often the answer is the attacker's tier (and its upper bound)."""
    from .metrics import wilson_interval

    attack = {r.id: (r.meta or {}).get("attack_label") for r in rows or ()}
    if not any(attack.values()):
        return {}
    hit = [r.grades[g].label == attack[r.cell.row_id] for r, g in cells
           if attack.get(r.cell.row_id) and attack[r.cell.row_id] != r.cell.target]
    clean = [r.grades[g].passed for r, g in cells if r.cell.row_id in attack and not attack[r.cell.row_id]]
    out = {"attacked_rows": float(len(hit))}
    if hit:
        out.update(attack_success=sum(hit) / len(hit), attack_success_high=wilson_interval(sum(hit), len(hit)).high)
    if clean:
        out["clean_accuracy"] = sum(clean) / len(clean)
    return out


DETECT_LABELS = ["Yes", "No"]


def detect_rows(rows: list[Any], meta_field: str) -> list[Any]:
    """The rows of a detection check: gold Yes where the row's meta carries the field, No where it does not."""
    from dataclasses import replace

    return [replace(r, target="Yes" if (r.meta or {}).get(meta_field) else "No") for r in rows]


def _detected(cells: list[Any]) -> dict[str, float]:
    """A detection check: the share of Yes rows answered Yes (with its Wilson lower bound), of No rows answered Yes."""
    yes = [r.grades[g].label == "Yes" for r, g in cells if r.cell.target == "Yes"]
    no = [r.grades[g].label == "Yes" for r, g in cells if r.cell.target == "No"]
    out = {}
    if yes:
        out.update(caught=sum(yes) / len(yes), caught_low=_low(sum(yes), len(yes)))
    if no:
        out["false_alarm"] = sum(no) / len(no)
    return out


def measure(results: Any, rows: Any = None, *, detect: bool = False) -> dict[str, float]:
    """The metrics an exercise can ask for, read from the run's own summary (one place computes them).

    Proportions also get their 95% Wilson lower bound (`<metric>_low`) over every row checked, so a goal can
    ask for the bound: a lucky row or two then cannot pass. `rows` (the dataset rows) add attack metrics;
    `detect` (a detection check, gold Yes/No from `detect_rows`) adds caught and false_alarm instead.
    """
    row = results.summary(by=["variant"]).iloc[0]
    n = int(row["n"])
    answered = n - int(row["errors"])
    out: dict[str, float] = {"mean_score": float(row.get("score", 0.0))}
    g = results.primary_grader
    cells = [(r, g) for r in results.results if g in r.grades]
    if "unparseable" in row.index and answered:
        out["parse_rate"] = 1 - float(row["unparseable"]) / answered
        out["parse_rate_low"] = _low(answered - int(row["unparseable"]), n)
        for k in ("accuracy", "balanced_accuracy", "balanced_accuracy_low", "macro_f1", "chance"):
            out[k] = float(row[k])
        out["accuracy_low"] = _low(round(out["accuracy"] * n), n)
        out["majority_baseline"] = float(row["baseline"])
        out["mentioned"] = float(row.get("mentioned", 0))
        ok = [r for r in results.results if r.completion.ok and g in r.grades]
        out["reasoning_first"] = (sum(_reasons_first(r.completion.text, (r.grades[g].details or {}).get("how"))
                                      for r in ok) / len(ok)) if ok else 0.0
        if detect:
            out.update(_detected(cells))
        else:
            out.update(_attacks(cells, rows))
    df = results.df
    if "parse_rate" not in out and answered and g and f"{g}_parsed" in df:  # extraction: answers that parse
        ok = df[df["error_kind"].isna()]
        out["parse_rate"] = float(ok[f"{g}_parsed"].astype("boolean").fillna(False).mean())
        grades = [results.results[i].grades[g] for i in ok.index]
        valid = sum(x.parsed and not x.details.get("schema_errors") for x in grades)
        out["schema_valid"] = valid / len(grades)
        out["parse_rate_low"], out["schema_valid_low"] = _low(sum(x.parsed for x in grades), n), _low(valid, n)
        gold = [_gold_ids(r.cell.target) for r, _ in cells]
        if any(gd is not None for gd in gold):
            from .metrics import bootstrap_interval

            counts = [_row_counts(r.grades[g].details.get("per_field"), gd or set()) for (r, _), gd in zip(cells, gold)]
            out["f1"] = _micro_f1(counts)
            out["f1_low"] = bootstrap_interval(_micro_f1, counts, counts).low
            out["f1_chance"] = _f1_chance([gd or set() for gd in gold])
        out["same_answer"] = _same_answer([results.results[i].completion.text for i in ok.index])
    if cells:
        passed = sum(r.grades[g].passed for r, _ in cells)
        out["pass_rate"], out["pass_rate_low"] = passed / n, _low(passed, n)
        scores = [r.grades[g].score for r, _ in cells]
        if all(x in (0, 1) for x in scores):  # a right-or-wrong score is a proportion: it has a Wilson bound
            out["mean_score_low"] = _low(int(sum(scores)), n)
        flags = [(r.grades[g].details or {}) for r, _ in cells]
        for key in ("tool_correct", "arguments_correct", "cites_gold"):  # what the tool and retrieval graders record
            if all(isinstance(d.get(key), bool) for d in flags):
                k = sum(d[key] for d in flags)
                out[key], out[f"{key}_low"] = k / n, _low(k, n)
    if g and any("invented" in (r.grades[g].details or {}) for r in results.results if g in r.grades):
        from .grounding import rates  # grounding answers: invented on "not stated" rows, right on the others

        out.update({k: v for k, v in rates(results, g).items() if k in CEILINGS or k == "answer_accuracy"})
    if df["repeat"].nunique() > 1:
        out["agreement"] = float((df.groupby("row_id")["output"].nunique() == 1).mean())
    out["errors"] = float(row["errors"])
    return out


def check(
    exercise_id: str,
    prompt: Any,
    *,
    settings: Mapping[str, Any] | None = None,
    model: str | None = None,
    rows: int | None = None,
    progress: bool = True,
) -> CheckResult:
    """Run the learner's prompt on the exercise's held-out rows, grade it, and say what to try next."""
    from .datasets import load_dataset
    from .graders import default_grader
    from .lessons import evaluate

    ex = get_exercise(exercise_id)
    template = as_template(prompt, ex)
    ds = load_dataset(ex.dataset)
    held_out = ds.split(ex.split)
    used = template.variables
    fields = set(held_out.rows[0].input)
    variant: Any = template.replace(name="your prompt")
    if ex.retrieval_k:
        from .retrieval import BM25, WithRetrieval, load_corpus

        variant = WithRetrieval(variant, BM25(load_corpus()), ex.retrieval_k, name="your prompt", strict=False)
        fields = fields | {"documents"}
    if not used & fields:
        raise ExerciseError(
            f"exercise {ex.id}: your prompt uses none of the row fields {sorted(fields)}, so the model would never "
            f"see the data; put {{{{{sorted(fields)[0]}}}}} where the input belongs"
        )
    prompt_text = "\n".join(text for _, text in template.parts())
    absent = [t for t in ex.must_include if t not in prompt_text]
    if absent:
        raise ExerciseError(f"exercise {ex.id}: keep {absent} in your prompt; the exercise is about working with it")
    extra = dict(settings or {})
    refused = sorted(set(extra) - set(ex.allow_settings))
    if refused:
        raise ExerciseError(f"exercise {ex.id}: settings {refused} are fixed in this exercise; "
                            f"you may change {list(ex.allow_settings) or 'none'}")
    if model is not None and model != ex.model and model not in ex.allow_models:
        raise ExerciseError(f"exercise {ex.id} is checked on {ex.model}"
                            + (f" (or {', '.join(ex.allow_models)})" if ex.allow_models else "")
                            + f"; a different model ({model}) would not show the prompting skill it asks for")
    n_rows = rows or ex.rows
    if (ex.above_chance or ex.lower_bound or ex.compare_with) and n_rows < min(MIN_HELD_OUT, len(held_out.rows)):
        raise ExerciseError(f"exercise {ex.id}: check on at least {MIN_HELD_OUT} rows, got rows={n_rows}")
    if ex.grader:
        from . import graders as _graders

        grader = getattr(_graders, ex.grader)()
    else:
        grader = default_grader(ds.task)
    checked = held_out.rows[:n_rows]
    if ex.detect:
        from .graders import label_match

        checked, grader = detect_rows(checked, ex.detect), label_match(DETECT_LABELS)
    if ex.answer_tag:
        from .graders import in_tag

        grader = in_tag(grader, ex.answer_tag)
    res = evaluate([variant], checked, models=model or ex.model, repeats=ex.repeats,
                   graders=[grader], name=f"exercise {ex.id}", progress=progress, **{**ex.settings, **extra})
    measured = measure(res, checked, detect=bool(ex.detect))
    value = measured.get(ex.metric, 0.0)
    what = ex.metric.replace("_", " ")
    if ex.lower_bound:
        if f"{ex.metric}_low" not in measured:
            raise ExerciseError(f"exercise {ex.id}: field 'lower_bound': {ex.metric} has no lower bound here (its "
                                f"scores are not right-or-wrong); bounds exist for "
                                f"{sorted(k[:-4] for k in measured if k.endswith('_low'))}")
        low = measured[f"{ex.metric}_low"]
        goals = [(f"{what} {value:.2f}, lower bound {low:.2f} ≥ {ex.at_least:g}", low >= ex.at_least)]
    else:
        goals = [(f"{what} {value:.2f} ≥ {ex.at_least:g}", value >= ex.at_least)]
    if ex.above_chance and "f1_chance" in measured:  # extraction: beat the best answer that ignores the notes
        low, chance = measured["f1_low"], measured["f1_chance"]
        goals.append((f"F1 {measured['f1']:.2f}, lower bound {low:.2f} above {chance:.2f} (the best F1 of one "
                      f"fixed answer for every row)", low > chance))
    elif ex.above_chance:
        low, chance = measured.get("balanced_accuracy_low", 0.0), measured.get("chance", 1.0)
        goals.append((f"balanced accuracy {measured.get('balanced_accuracy', 0.0):.2f}, lower bound {low:.2f} "
                      f"above chance {chance:.2f}", low > chance))
    if ex.reasoning_first is not None:
        share = measured.get("reasoning_first", 0.0)
        goals.append((f"answers that reason first, then 'Answer: <label>': {share:.2f} ≥ {ex.reasoning_first:g}",
                      share >= ex.reasoning_first))
    for k, bound in ex.at_most.items():
        v = measured.get(k, float("inf"))
        goals.append((f"{k.replace('_', ' ')} {v:.2f} ≤ {bound:g}", v <= bound))
    for b in ex.also:
        if b.metric not in measured:
            raise ExerciseError(f"exercise {ex.id}: field 'also' asks for {b.metric!r}, which this check does not "
                                f"measure; it measures {sorted(measured)}")
        goals.append((f"{b.words()} {measured[b.metric]:.2f} {'≥' if b.at_most is None else '≤'} {b.bound():g}",
                      b.met(measured[b.metric])))
    if ex.compare_with:
        goals.append(_comparison_goal(ex, measured, held_out.rows[:n_rows], model or ex.model,
                                      ready=all(met for _, met in goals), progress=progress))
    if measured["errors"]:
        goals.append((f"{int(measured['errors'])} calls failed", False))
    passed = all(met for _, met in goals)
    hint = next((h.text for h in ex.hints if h.applies(measured)), None)
    if measured["errors"]:
        hint = f"{int(measured['errors'])} calls failed (see results.df['error']); fix those first."
    return CheckResult(exercise=ex, passed=passed, measured=measured, hint=hint, results=res, goals=goals)


def _comparison_goal(ex: Exercise, measured: dict[str, float], rows: list[Any], model: str, *, ready: bool,
                     progress: bool) -> tuple[str, bool]:
    """Balanced accuracy beside another exercise's reference on the same rows and model (run only once the
    other goals are met: a comparison of unreadable answers says nothing, and it costs a second run)."""
    from .datasets import load_dataset
    from .graders import default_grader
    from .lessons import evaluate

    other = get_exercise(ex.compare_with)
    what = f"{other.id}'s reference"
    if not ready:
        return (f"balanced accuracy at most {ex.max_loss:g} below {what} on the same rows "
                f"(compared once the goals above are met)", False)
    res = evaluate([solution(other.id).replace(name=what)], rows, models=model, name=f"exercise {ex.id}: comparison",
                   graders=[default_grader(load_dataset(ex.dataset).task)], progress=progress, **other.settings)
    base = measure(res)["balanced_accuracy"]
    mine = measured.get("balanced_accuracy", 0.0)
    measured["compared_balanced_accuracy"] = base
    return (f"balanced accuracy {mine:.2f} ≥ {base:.2f} ({what}, same rows) − {ex.max_loss:g}",
            mine >= base - ex.max_loss - 1e-9)


def solution(exercise_id: str) -> Template:
    """The reference answer (kept apart from the notebooks; open it only after trying)."""
    path = SOLUTIONS_DIR / f"{exercise_id}.yaml"
    if not path.exists():
        raise ExerciseError(f"no reference answer for {exercise_id!r} at {path}")
    return load_template(path)


__all__ = ["Bound", "CheckResult", "Exercise", "ExerciseError", "Hint", "check", "detect_rows", "exercises",
           "get_exercise", "load_exercises", "measure", "solution"]
