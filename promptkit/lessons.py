"""Short calls for the tour's cells: evaluate prompts on a dataset and read the result honestly.

Notebooks stay thin: a lesson cell is one call here, and the logic it composes
(runner, graders, results, metrics) is tested where it lives.
"""
from __future__ import annotations

from typing import Any, Sequence

from .effects import (  # noqa: F401 - the tour's cells call these as lessons.X
    ALPHA, ablation_table, below_chance_warning, detectable_sentence, effect, holm, plot_effects, rows_needed,
    smallest_detectable, verdict_lines, what_moved,
)
from .evidence import cited  # noqa: F401 - lessons.cited in the chapters: one reader of the cited rows
from .providers import DEFAULT_MODEL
from .results import SUMMARY_VIEWS
from .types import Settings

HONEST_COLUMNS = SUMMARY_VIEWS["scoreboard"]


def evaluate(variants: Any, dataset: Any = "renewal_tier", *, progress: bool = True, **options: Any) -> Any:
    """Run prompt variants on a dataset split with the task's default grader; returns Results.

    The keywords (split, n, models, repeats, graders, sweep, name, and any
    setting such as max_tokens=8) are experiment()'s, which builds the grid.
    """
    from .runner import run

    return run(experiment(variants, dataset, **options), progress=progress)


def experiment(
    variants: Any,
    dataset: Any = "renewal_tier",
    *,
    split: str = "dev",
    n: int | None = None,
    models: Sequence[str] | str = (DEFAULT_MODEL,),
    repeats: int = 1,
    graders: Sequence[Any] | None = None,
    sweep: dict[str, Sequence[Any]] | None = None,
    name: str | None = None,
    **settings: Any,
) -> Any:
    """The Experiment of prompt variants on a dataset split: the one builder behind evaluate, the exercise
    checks and the live builder.

    `dataset` is a dataset name, a Dataset, or a list of Rows (new rows
    written apart from the kit): a list is used as given (`split` does not
    apply) and needs `graders` unless every row's target is a label, in which
    case label_match over the labels seen is used.
    """
    from .datasets import Dataset, load_dataset
    from .errors import ExperimentError
    from .experiment import Experiment
    from .graders import default_grader, label_match
    from .types import Row

    if isinstance(dataset, (str, Dataset)):
        ds = load_dataset(dataset) if isinstance(dataset, str) else dataset
        rows = ds.split(split).rows if split else ds.rows
        grader = default_grader(ds.task) if graders is None else None
        title = ds.name
    else:
        rows = list(dataset)
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, Row)), None)
        if bad is not None or not rows:
            raise ExperimentError(
                f"evaluate(dataset=...) takes a dataset name, a Dataset or a non-empty list of Rows; "
                + (f"item {bad} is a {type(rows[bad]).__name__}" if bad is not None else "the list is empty"))
        grader = None
        if graders is None:
            if not all(isinstance(r.target, str) for r in rows):
                raise ExperimentError("these rows' targets are not all labels; pass graders=[...] to say how to grade them")
            grader = label_match(list(dict.fromkeys(r.target for r in rows)))
        split, title = None, f"{len(rows)} rows"
    rows = rows[:n] if n else rows
    variants = variants if isinstance(variants, (list, tuple)) else [variants]
    return Experiment(
        variants=list(variants), models=[models] if isinstance(models, str) else list(models), rows=rows,
        settings=Settings.from_dict(settings), sweep=dict(sweep or {}), repeats=repeats,
        graders=list(graders) if graders is not None else [grader],
        name=name or (f"{title} ({split})" if split else title),
    )


def chapter_rows(dataset: str, n_rows: int, *, split: str = "dev", colwidth: int = 120) -> tuple[Any, list[Any]]:
    """A chapter's opening: pandas set to show `colwidth` characters a cell, the dataset printed (its size and
    splits), and it with its first `n_rows` rows of `split`."""
    import pandas as pd

    from .datasets import load_dataset

    pd.set_option("display.max_colwidth", colwidth)
    ds = load_dataset(dataset)
    print(ds)
    return ds, ds.split(split).rows[:n_rows]


def row_counts(dataset: Any, *fields: str, **computed: Any) -> Any:
    """How many of a dataset's rows fall in each cell of a two-way table, so a chapter shows what it measures on.

    The two features are named columns of `dataset.to_frame()` ("split") and/or
    keywords computing one from each example (`status=lambda ex: ex.target["status"]`);
    the first is the rows, the second the columns.
    """
    frame = dataset.to_frame()
    for name, of in computed.items():
        frame[name] = [of(ex) for ex in dataset.rows]
    names = [*fields, *computed]
    if len(names) != 2:
        raise ValueError(f"row_counts takes two features (rows, then columns), got {names}")
    return frame.pivot_table(index=names[0], columns=names[1], values="id", aggfunc="count", fill_value=0)


def scoreboard(results: Any, by: Sequence[str] = ("variant", "model")) -> Any:
    """The summary columns that keep a classification score honest, in reading order."""
    s = results.summary(by=list(by))
    cols = [c for c in HONEST_COLUMNS if c in s.columns or c in by]
    extra = [b for b in by if b not in cols]
    return s[extra + cols]


def answer_counts(results: Any, by: Sequence[str] = ("variant", "model")) -> Any:
    """How often each label was answered, mentioned without answering, or unreadable; the last row counts the
    gold labels (every label, so it sums to the rows): degenerate prompts show here."""
    df = results.df
    g = results.primary_grader
    col = f"{g}_label"
    parsed = df[f"{g}_parsed"].astype("boolean").fillna(False)
    mentioned = df[f"{g}_reason"].fillna("").str.contains("mentioned, not answered", regex=False)
    answers = df[col].where(parsed, "unparseable").where(parsed | ~mentioned, "mentioned, not answered")
    answers = answers.where(df["error_kind"].isna(), "error")
    table = df.assign(answer=answers).groupby(list(by))["answer"].value_counts().unstack(fill_value=0)
    labels = [str(x) for x in results.labels(g)]  # every label, answered or not, so the gold row sums to n
    apart = [c for c in ("mentioned, not answered", "unparseable", "error") if c in table.columns]
    table = table.reindex(columns=labels + [c for c in table.columns if c not in labels + apart] + apart,
                          fill_value=0)
    gold = df.drop_duplicates("row_id")["target"].map(lambda t: t if isinstance(t, str) else str(t)).value_counts()
    table.loc[("gold labels",) + ("",) * (len(by) - 1) if len(by) > 1 else "gold labels", :] = [
        gold.get(c, 0) for c in table.columns
    ]
    return table.astype(int)


def what_the_model_sees(prompt: Any, model: str = DEFAULT_MODEL, variables: dict[str, Any] | None = None) -> str:
    """The exact text a local model reads (its chat template applied); for an API model, the messages as JSON."""
    import json

    from .complete import build_request
    from .providers import get_provider, parse_spec

    if hasattr(prompt, "render"):
        req = prompt.render(variables or {})
    else:
        req = build_request(prompt)
    if parse_spec(model).provider == "local":
        return get_provider(model).loaded().render(req)
    msgs = [{"role": m.role, "content": m.content} for m in req.messages]
    if req.prefill:
        msgs.append({"role": "assistant", "content": req.prefill})
    return json.dumps(msgs, indent=2, ensure_ascii=False)


def _rss_mb() -> float | None:
    try:
        for line in open("/proc/self/status", encoding="ascii"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def model_footprint(model: str, prompt: str = "Write two sentences about renewal risk.", max_tokens: int = 48) -> dict[str, Any]:
    """Load time, memory gained at load (local models) and decode speed, measured now on this machine."""
    from .complete import complete
    from .providers import get_provider, parse_spec

    rec: dict[str, Any] = {"model": model}
    if parse_spec(model).provider == "local":
        prov = get_provider(model)
        before = _rss_mb()
        lm = prov.loaded()
        after = _rss_mb()
        rec["load_s"] = round(lm.load_s, 2)
        rec["memory_gained_mb"] = round(after - before) if before is not None and after is not None else None
        rec["file_mb"] = round(prov.path.stat().st_size / 1e6)
    c = complete(prompt, model, max_tokens=max_tokens)
    rec["error"] = c.error_kind
    if c.ok and c.output_tokens and c.latency_s:
        decode = (c.latency_s - (c.ttft_s or 0.0))
        rec["first_token_s"] = round(c.ttft_s or 0.0, 3)
        rec["tokens_per_s"] = round((c.output_tokens - 1) / decode, 1) if decode > 0 and c.output_tokens > 1 else None
        rec["output_tokens"] = c.output_tokens
    return rec


def repeat_variance(results: Any) -> Any:
    """Per model: how often a row's repeats agree, and how much the score moves from repeat to repeat."""
    import pandas as pd

    df = results.df
    g = results.primary_grader
    rows = []
    for m, part in df.groupby("model", sort=False):
        agree = part.groupby("row_id")["output"].nunique().eq(1).mean()
        per_repeat = part.groupby("repeat")[f"{g}_score"].mean() if g else pd.Series(dtype=float)
        rows.append({"model": m, "rows whose repeats agree": float(agree),
                     "score mean over repeats": float(per_repeat.mean()) if len(per_repeat) else None,
                     "score sd between repeats": float(per_repeat.std(ddof=1)) if len(per_repeat) > 1 else 0.0,
                     "distinct answers per row": float(part.groupby("row_id")["output"].nunique().mean())})
    return pd.DataFrame(rows)


class Constrained:
    """A prompt variant that always runs with some settings of its own (e.g. a grammar), beside plain variants."""

    def __init__(self, template: Any, name: str | None = None, **settings: Any) -> None:
        Settings(**settings)  # a bad setting fails here, naming the field
        self.template, self.settings = template, settings
        self.name = name or f"{template.name}+" + "+".join(sorted(settings))

    def to_request(self, variables: Any, settings: Settings) -> Any:
        from dataclasses import replace

        req = self.template.to_request(variables, settings)
        return replace(req, settings=replace(req.settings, **self.settings))


def _groups(results: Any, by: Sequence[str]) -> Any:
    df = results.df
    for keys, part in df.groupby(list(by), sort=False):
        yield dict(zip(by, keys if isinstance(keys, tuple) else (keys,))), part


def extraction_table(results: Any, by: Sequence[str] = ("variant", "model")) -> Any:
    """Per group: how many answers parse, how many also fit the schema, and micro precision/recall/F1."""
    import pandas as pd

    from .graders import extraction_summary

    g = results.primary_grader
    rows = []
    for keys, part in _groups(results, by):
        grades = [results.results[i].grades[g] for i in part.index]
        n = len(grades)
        parsed = [x for x in grades if x.parsed]
        valid = [x for x in parsed if not x.details.get("schema_errors")]
        s = extraction_summary(grades)
        rows.append({**keys, "answers": n, "parse_rate": len(parsed) / n, "schema_valid": len(valid) / n,
                     "precision": s["micro"]["precision"], "recall": s["micro"]["recall"], "f1": s["micro"]["f1"],
                     "output_tokens_mean": float(part["output_tokens"].mean())})
    return pd.DataFrame(rows)


def per_field_table(results: Any, **where: Any) -> Any:
    """Precision, recall and F1 of each field (signal) over the matching answers; unreadable answers miss all."""
    import pandas as pd

    from .graders import extraction_summary

    sub = results.filter(**where) if where else results
    g = sub.primary_grader
    table = extraction_summary([r.grades[g] for r in sub.results])["per_field"]
    return pd.DataFrame(table).T[["support", "precision", "recall", "f1", "tp", "fp", "fn"]]


def schema_failures(results: Any, n: int = 5, **where: Any) -> Any:
    """Answers that parse as JSON but break the schema, with the validator's messages."""
    import pandas as pd

    sub = results.filter(**where) if where else results
    g = sub.primary_grader
    out = []
    for r in sub.results:
        errs = r.grades[g].details.get("schema_errors") if g in r.grades else None
        if errs:
            out.append({"variant": r.cell.variant, "row_id": r.cell.row_id, "answer": r.completion.text[:160],
                        "schema errors": "; ".join(errs[:3])})
    return pd.DataFrame(out[:n], columns=["variant", "row_id", "answer", "schema errors"])


def majority_vote(results: Any, by: Sequence[str] = ("variant", "model")) -> Any:
    """Self-consistency: per group, the accuracy of one sample against the majority vote over a row's repeats.

    Unreadable samples do not vote; a row with no readable sample counts as wrong; a tie goes to the label
    sampled first.
    """
    import pandas as pd
    from collections import Counter

    g = results.primary_grader
    rows = []
    for keys, part in _groups(results, by):
        ok = part[part["error_kind"].isna()]
        labels = ok[f"{g}_label"].where(ok[f"{g}_parsed"].astype("boolean").fillna(False))
        correct = labels.eq(ok["target"]).fillna(False)
        voted, unanimous = [], []
        for _, one in ok.assign(_label=labels).sort_values("repeat").groupby("row_id", sort=False):
            votes = Counter(x for x in one["_label"] if isinstance(x, str))
            top = max(votes.items(), key=lambda kv: kv[1])[0] if votes else None  # max keeps the first on a tie
            voted.append(top == one["target"].iloc[0])
            unanimous.append(len(votes) == 1 and sum(votes.values()) == len(one))
        rows.append({**keys, "rows": len(voted), "samples per row": int(ok["repeat"].nunique()),
                     "one-sample accuracy": float(correct.mean()) if len(ok) else float("nan"),
                     "majority-vote accuracy": sum(voted) / len(voted) if voted else float("nan"),
                     "unreadable samples": float(labels.isna().mean()) if len(ok) else float("nan"),
                     "rows whose samples agree": sum(unanimous) / len(unanimous) if unanimous else float("nan")})
    return pd.DataFrame(rows)


def attack_table(results: Any, rows: Any, by: Sequence[str] = ("variant", "model"), flagged: Any = None,
                 unattacked: Any = None) -> Any:
    """Prompt injection per group: how often the planted instruction won (the answer is the attacker's label,
    on rows where that differs from the gold), and accuracy on attacked and clean rows.

    `rows` are the dataset rows, whose `meta["attack_label"]` names what the attacker asked for (None: clean).
    `flagged` ({row_id: bool}, from a separate check) holds flagged rows for review: an attack on a flagged row
    does not get through, and a flagged clean row is a false alarm. `unattacked` (Results of the same prompts on
    the same rows with the planted text removed) separates real injections from a model that answers the
    attacker's tier anyway: "flipped by the attack" counts only answers the planted text changed to its tier.
    """
    import pandas as pd

    attack = {r.id: r.meta.get("attack_label") for r in rows}
    g = results.primary_grader
    out = []
    for keys, part in _groups(results, by):
        ok = part[part["error_kind"].isna()]
        labels = ok[f"{g}_label"].where(ok[f"{g}_parsed"].astype("boolean").fillna(False))
        wants = ok["row_id"].map(attack)
        attacked = wants.notna() & (wants != ok["target"])
        clean = wants.isna()
        out.append({**keys, "attacked rows": int(attacked.sum()),
                    "attack success": float((labels[attacked] == wants[attacked]).mean()) if attacked.any() else float("nan"),
                    "accuracy under attack": float((labels[attacked] == ok["target"][attacked]).mean()) if attacked.any() else float("nan"),
                    "clean rows": int(clean.sum()),
                    "accuracy on clean rows": float((labels[clean] == ok["target"][clean]).mean()) if clean.any() else float("nan"),
                    "unreadable": float(labels.isna().mean()) if len(ok) else float("nan")})
        if unattacked is not None:
            u = unattacked.df
            ug = unattacked.primary_grader
            plain = {(v, m, r): (lab if p else None) for v, m, r, lab, p in
                     zip(u["variant"], u["model"], u["row_id"], u[f"{ug}_label"], u[f"{ug}_parsed"])}
            before = [plain.get((v, m, r)) for v, m, r in zip(ok["variant"], ok["model"], ok["row_id"])]
            before = pd.Series(before, index=ok.index, dtype=object)
            flipped = (labels == wants) & (before != wants) & before.notna()
            out[-1]["flipped by the attack"] = float(flipped[attacked].mean()) if attacked.any() else float("nan")
            out[-1]["attacker's tier without the attack"] = float((before == wants)[attacked].mean()) if attacked.any() else float("nan")
        if flagged is not None:
            held = ok["row_id"].map(lambda r: bool(flagged.get(r, False)))
            won = (labels == wants) & attacked & ~held
            out[-1]["attack success with the check"] = float(won[attacked].mean()) if attacked.any() else float("nan")
            out[-1]["clean rows held for review"] = float(held[clean].mean()) if clean.any() else float("nan")
    return pd.DataFrame(out)


EVIDENCE_PATH = __import__("pathlib").Path(__file__).with_name("data") / "evidence.yaml"
EVIDENCE_FIELDS = ("id", "technique", "method", "paper", "arxiv", "venue", "models", "sizes", "benchmark",
                   "reported", "notes")


def evidence(ids: Sequence[str] | None = None) -> Any:
    """The published results the tour cites (paper, arXiv id, models and sizes, the number), from the kit's
    own data file, so a lesson can show them beside its measurement without pointing outside the kit."""
    import pandas as pd

    from . import yamlfile
    from .errors import PromptkitError

    entries = yamlfile.load(EVIDENCE_PATH, PromptkitError, "evidence file") or []
    for i, e in enumerate(entries):
        missing = [f for f in EVIDENCE_FIELDS if f not in e]
        if missing:
            raise PromptkitError(f"{EVIDENCE_PATH.name} entry {i + 1} ({e.get('id', '?')}): missing {missing}")
    table = pd.DataFrame(entries, columns=list(EVIDENCE_FIELDS)).set_index("id")
    if ids is not None:
        unknown = [i for i in ids if i not in table.index]
        if unknown:
            raise PromptkitError(f"no evidence entry {unknown}; entries are {list(table.index)}")
        table = table.loc[list(ids)]
    return table


def clears_chance(
    dataset: str,
    models: Sequence[str],
    *,
    split: str = "dev",
    n: int | None = None,
    progress: bool = True,
    **settings: Any,
) -> Any:
    """Each model's base prompt on a task: balanced accuracy with its interval beside chance, measured now.

    A technique can only be seen working on a model that does better than chance to begin with; below it, a
    'gain' is often a climb back to chance. Chapters run on the first model whose base prompt clears it.
    """
    import pandas as pd

    from .datasets import load_dataset

    res = evaluate(load_dataset(dataset).template(), dataset, split=split, n=n, models=list(models),
                   progress=progress, **settings)
    s = res.summary(by=["model"]).set_index("model")
    rows = []
    for m in models:
        r = s.loc[m]
        rows.append({"model": m, "rows": int(r["n"]), "balanced accuracy": float(r["balanced_accuracy"]),
                     "low": float(r["balanced_accuracy_low"]), "high": float(r["balanced_accuracy_high"]),
                     "chance": float(r["chance"]), "unparseable": int(r["unparseable"]),
                     "clears chance": bool(float(r["balanced_accuracy"]) > float(r["chance"])),
                     "interval above chance": bool(float(r["balanced_accuracy_low"]) > float(r["chance"]))})
    table = pd.DataFrame(rows)
    table.attrs["results"] = res
    return table


def chance_sentence(table: Any) -> str:
    """What the clears-chance table shows, one sentence per model, generated from it."""
    out = []
    for _, r in table.iterrows():
        state = ("above chance, beyond its interval" if r["interval above chance"] else
                 "above chance, but its interval reaches chance" if r["clears chance"] else "not above chance")
        out.append(f"{r['model']}: base prompt balanced accuracy {r['balanced accuracy']:.2f} "
                   f"[{r['low']:.2f}, {r['high']:.2f}] on {r['rows']} rows, chance {r['chance']:.2f}: {state}.")
    return "\n".join(out)


def token_budget(results: Any, max_tokens: int) -> Any:
    """Per variant and model: tokens the answers used and how many stopped at the limit, not on their own."""
    import pandas as pd

    df = results.df[results.df["error_kind"].isna()]
    g = results.primary_grader
    rows = []
    for (v, m), part in df.groupby(["variant", "model"], sort=False):
        rows.append({"variant": v, "model": m, "n": len(part),
                     "output tokens (mean)": float(part["output_tokens"].astype(float).mean()),
                     "max_tokens": max_tokens,
                     "stopped at the limit": int((part["finish_reason"] == "length").sum()),
                     "unreadable": int((~part[f"{g}_parsed"].astype("boolean").fillna(False)).sum()) if g else 0})
    return pd.DataFrame(rows)


def budget_sentence(table: Any, max_tokens: int) -> str:
    """One line per variant, generated from `token_budget`: did the answers have room to finish?"""
    out = []
    for _, r in table.iterrows():
        line = (f"{r['variant']} [{r['model'].split(':')[-1]}]: {r['output tokens (mean)']:.1f} of {max_tokens} "
                f"tokens on average; {r['stopped at the limit']} of {r['n']} answers stopped at the limit, "
                f"{r['unreadable']} unreadable")
        if r["stopped at the limit"] > r["n"] / 2:
            line += " (most were cut off: this budget does not let them finish)"
        out.append(line + ".")
    return "\n".join(out)
