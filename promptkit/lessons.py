"""Short calls for the tour's cells: evaluate prompts on a dataset and read the result honestly.

Notebooks stay thin: a lesson cell is one call here, and the logic it composes
(runner, graders, results, metrics) is tested where it lives.
"""
from __future__ import annotations

from typing import Any, Sequence

from .providers import DEFAULT_MODEL
from .results import SUMMARY_VIEWS
from .types import Settings

HONEST_COLUMNS = SUMMARY_VIEWS["scoreboard"]


def evaluate(
    variants: Any,
    dataset: Any = "renewal_tier",
    *,
    split: str = "dev",
    n: int | None = None,
    models: Sequence[str] | str = (DEFAULT_MODEL,),
    repeats: int = 1,
    graders: Sequence[Any] | None = None,
    sweep: dict[str, Sequence[Any]] | None = None,
    progress: bool = True,
    name: str | None = None,
    **settings: Any,
) -> Any:
    """Run prompt variants on a dataset split with the task's default grader; returns Results.

    `dataset` is a dataset name, a Dataset, or a list of Rows (new rows
    written apart from the kit): a list is used as given (`split` does not
    apply) and needs `graders` unless every row's target is a label, in which
    case label_match over the labels seen is used.
    """
    from .datasets import Dataset, load_dataset
    from .errors import ExperimentError
    from .experiment import Experiment
    from .graders import default_grader, label_match
    from .runner import run
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
    exp = Experiment(
        variants=list(variants), models=[models] if isinstance(models, str) else list(models), rows=rows,
        settings=Settings.from_dict(settings), sweep=dict(sweep or {}), repeats=repeats,
        graders=list(graders) if graders is not None else [grader],
        name=name or (f"{title} ({split})" if split else title),
    )
    return run(exp, progress=progress)


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


ALPHA = 0.05


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values: many comparisons in one table, each read at the usual 0.05."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    out = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * float(p_values[i])))
        out[i] = running
    return out


def smallest_detectable(n: int, alpha: float = ALPHA) -> float:
    """The smallest share of n paired rows that must flip, all one way, before a paired test can say p < alpha.

    Exact McNemar on k discordant rows all favouring one side gives p = 2 * 0.5**k, so nothing smaller
    than k/n can reach significance, however real; below it "no significant effect" is all a run can say.
    """
    if n <= 0:
        return float("nan")
    return rows_needed(alpha) / n  # above 1.00: these rows cannot show any change at all


def rows_needed(alpha: float = ALPHA) -> int:
    """Rows that must all flip the same way before an exact paired test reaches p < alpha."""
    k = 1
    while 2 * 0.5 ** k >= alpha:
        k += 1
    return k


def detectable_sentence(n: int, comparisons: int = 1) -> str:
    """What these rows could show at all, said plainly (with Holm's share of alpha for several comparisons)."""
    k = rows_needed(ALPHA / comparisons)
    where = f"With {n} rows" + (f" and {comparisons} comparisons" if comparisons > 1 else "")
    after = " after correction" if comparisons > 1 else ""
    if k > n:
        return f"{where}, no change could reach significance{after}: it takes {k} rows all moving one way."
    return f"{where}, the smallest change that could reach significance{after} is {k / n:.2f} ({k} rows all moving one way)."


def _rows_of(results: Any, model: str | None) -> Any:
    s = results.summary(by=["variant", "model"])
    return s[s["model"] == model] if model else s


def below_chance_warning(results: Any, baseline: str, model: str | None = None) -> str:
    """A warning when the baseline prompt does not beat chance: then a 'gain' may only be a climb back to it."""
    s = _rows_of(results, model)
    rows = s[s["variant"] == baseline]
    if rows.empty or "balanced_accuracy" not in rows.columns:
        return ""
    r = rows.iloc[0]
    if float(r["balanced_accuracy"]) > float(r["chance"]):
        return ""
    return (f"Warning: the baseline prompt ({baseline}) scores balanced accuracy {float(r['balanced_accuracy']):.2f}, "
            f"not above chance ({float(r['chance']):.2f}), so a gain here may be a climb back to chance "
            f"rather than the technique working.")


def effect(
    results: Any,
    baseline: str,
    variant: str,
    *,
    metric: str = "balanced_accuracy",
    paper: str | None = None,
    paper_says: str | None = None,
    model: str | None = None,
) -> str:
    """One plain paragraph, generated from the run: what a change did, whether it is more than noise on these
    rows, the smallest change these rows could show, and how that sits with a published result.

    `paper_says` is "helps", "no effect" or "hurts" (what the cited source found on its models). A run that
    shows no significant effect never "agrees" with a published null: it could not have seen a small effect.
    """
    if paper_says not in (None, "helps", "hurts", "no effect", "no significant effect"):
        raise ValueError(f"paper_says must be 'helps', 'hurts' or 'no effect', got {paper_says!r}")
    where = {"model": model} if model else {}
    s = _rows_of(results, model)
    row = {v: s[s["variant"] == v].iloc[0] for v in (baseline, variant)}
    size = results.compare(variant, baseline, metric=metric, **where)  # the change's interval
    test, p = _decisive_test(results, variant, baseline, metric, where)
    n = int(size.details.get("pairs", row[baseline]["n"]))
    a, b = float(row[variant][metric]), float(row[baseline][metric])
    measured = _measured(p, a - b, test)
    ci = ""
    if "ci_low" in size.details:
        ci = f", 95% interval of the change [{size.details['ci_low']:+.2f}, {size.details['ci_high']:+.2f}]"
    text = (f"{variant} vs {baseline} on the same {n} rows: {metric.replace('_', ' ')} {b:.2f} → {a:.2f} "
            f"({a - b:+.2f}{ci}; {test.test} on the rows each got right, p = {p:.2f}: {measured}).")
    if "unparseable" in s.columns:
        ub, ua = int(row[baseline]["unparseable"]), int(row[variant]["unparseable"])
        text += f" Unreadable answers: {ub} → {ua} of {int(row[baseline]['n'])}."
    mde = smallest_detectable(n)
    text += " " + detectable_sentence(n)
    warning = below_chance_warning(results, baseline, model)
    if warning:
        text += " " + warning
    if paper and paper_says:
        said = {"helps": "it helps", "hurts": "it hurts", "no effect": "it made no significant difference",
                "no significant effect": "it made no significant difference"}[paper_says]
        if measured == paper_says:
            text += f" This agrees with {paper}, which found that {said}."
        elif measured == "no significant effect" and paper_says in ("no effect", "no significant effect"):
            text += (f" {paper} found that {said} on its (much larger) models; this run shows no significant "
                     f"effect either, but it could not have detected a change smaller than {min(mde, 1.0):.2f}, "
                     f"so it neither confirms nor contradicts that.")
        else:
            text += (f" {paper} found that {said} on its (much larger) models; "
                     f"this run does not show that (not shown here is not the same as disproved).")
    return text


def _decisive_test(results: Any, variant: str, baseline: str, metric: str, where: dict) -> tuple[Any, float]:
    """The exact paired test that decides significance: McNemar on which rows each prompt got right.

    Its floor is known (`smallest_detectable`), so a verdict never contradicts the detectable-effect line,
    which a bootstrap of balanced accuracy on a handful of rows can.
    """
    test = results.compare(variant, baseline, metric="accuracy", **where)
    return test, float(test.p_value)


def _measured(p: float, diff: float, test: Any, alpha: float = ALPHA) -> str:
    """'helps' / 'hurts' only when the exact test is significant and agrees in direction with the metric."""
    acc_diff = float(test.difference)
    if p >= alpha or diff == 0 or (acc_diff > 0) != (diff > 0):
        return "no significant effect"
    return "helps" if diff > 0 else "hurts"


def ablation_table(results: Any, baseline: str, *, metric: str = "balanced_accuracy", model: str | None = None) -> Any:
    """Each variant's effect against the baseline on the same rows: the change with its (bootstrap) interval,
    the exact paired test's p corrected for the number of comparisons (Holm), the smallest change these rows
    could show, and a verdict in which "hurt" also covers any rise in unreadable answers on these rows."""
    import pandas as pd

    from .phrases import default_library

    lib = {p.id: p for p in default_library()}
    s = results.summary(by=["variant", "model"])
    models = [model] if model else list(dict.fromkeys(s["model"]))
    rows = []
    for m in models:
        sm = s[s["model"] == m].set_index("variant")
        base = sm.loc[baseline]
        for v in sm.index:
            if v == baseline:
                continue
            test = results.compare(v, baseline, metric=metric, model=m)  # the change's interval
            decisive, p = _decisive_test(results, v, baseline, metric, {"model": m})
            diff = float(sm.loc[v, metric]) - float(base[metric])
            ids = [part for part in v.split("+")[1:] if part in lib]
            n = int(test.details.get("pairs", base["n"]))
            rows.append({
                "model": m, "variant": v,
                "category": ", ".join(sorted({lib[i].category for i in ids})) or "",
                metric: float(sm.loc[v, metric]), f"Δ {metric}": diff,
                "Δ low": float(test.details.get("ci_low", float("nan"))),
                "Δ high": float(test.details.get("ci_high", float("nan"))),
                "test": decisive.test, "p": p, "_acc_diff": float(decisive.difference), "rows": n,
                "Δ unparseable": int(sm.loc[v, "unparseable"]) - int(base["unparseable"]) if "unparseable" in sm else 0,
                "published evidence": "; ".join(lib[i].source for i in ids)[:160],
            })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p (Holm)"] = holm(list(table["p"]))
    m_tests = len(table)
    table["smallest detectable"] = [smallest_detectable(n, ALPHA / m_tests) for n in table["rows"]]

    def verdict(r: Any) -> str:
        same_way = r[f"Δ {metric}"] != 0 and (r["_acc_diff"] > 0) == (r[f"Δ {metric}"] > 0)
        if r["p (Holm)"] < ALPHA and same_way and r[f"Δ {metric}"] > 0:
            return "helped"
        if r["p (Holm)"] < ALPHA and same_way and r[f"Δ {metric}"] < 0:
            return "hurt"
        if r["Δ unparseable"] > 0:
            return "hurt"  # more answers nobody can read is a cost on these rows, whatever the score did
        return "no significant effect"

    table["verdict"] = [verdict(r) for _, r in table.iterrows()]
    table["why"] = [
        (f"{int(r['Δ unparseable'])} more unreadable answers" if v == "hurt" and not (r["p (Holm)"] < ALPHA and r[f"Δ {metric}"] < 0) else
         f"{metric.replace('_', ' ')} {'up' if r[f'Δ {metric}'] > 0 else 'down'}" if v != "no significant effect" else "")
        for (_, r), v in zip(table.iterrows(), table["verdict"])
    ]
    cols = ["model", "variant", "category", metric, f"Δ {metric}", "Δ low", "Δ high", "test", "p", "p (Holm)",
            "smallest detectable", "Δ unparseable", "verdict", "why", "rows", "published evidence"]
    return table[cols].sort_values(["model", f"Δ {metric}"], ascending=[True, False]).reset_index(drop=True)


def verdict_lines(table: Any, metric: str = "balanced_accuracy") -> list[str]:
    """'helped / hurt / no significant effect' sentences, generated from an ablation table."""
    out = []
    for verdict in ("helped", "hurt", "no significant effect"):
        part = table[table["verdict"] == verdict]
        names = ", ".join(
            f"{v} ({d:+.2f}" + (f", {w}" if w else "") + ")"
            for v, d, w in zip(part["variant"], part[f"Δ {metric}"], part["why"])) or "none"
        out.append(f"{verdict}: {names}")
    return out


def plot_effects(table: Any, metric: str = "balanced_accuracy", title: str | None = None) -> Any:
    """Forest plot: each variant's change against the baseline with its 95% interval and a zero line;
    filled markers where the change is significant after Holm correction."""
    from matplotlib.figure import Figure

    col = f"Δ {metric}"
    models = list(dict.fromkeys(table["model"]))
    fig = Figure(figsize=(8, 0.4 * len(table) + 1.4))
    ax = fig.subplots()
    labels = []
    for i, (_, r) in enumerate(table.iterrows()):
        color = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a"][models.index(r["model"]) % 4]
        sig = r["verdict"] != "no significant effect"
        lo, hi = r.get("Δ low"), r.get("Δ high")
        if lo == lo and hi == hi:  # not NaN
            ax.plot([lo, hi], [i, i], color=color, lw=2)
        ax.plot([r[col]], [i], "o", color=color, markerfacecolor=color if sig else "white", markersize=7)
        ax.annotate(f"{r[col]:+.2f}", (r[col], i), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
        labels.append(f"{r['variant']} [{r['model'].split(':')[-1]}]")
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.7)
    ax.set_xlabel(f"change in {metric.replace('_', ' ')} vs baseline, 95% interval (filled: significant after Holm)")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


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


def cited(*ids: str) -> Any:
    """Published rows a chapter cites, from the copy shipped in the package (data/evidence_curriculum.yaml)."""
    from importlib.resources import files

    import pandas as pd
    import yaml

    rows = {r["id"]: r for r in yaml.safe_load(files("promptkit").joinpath("data/evidence_curriculum.yaml").read_text(encoding="utf-8"))}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise KeyError(f"no cited row {missing}; known: {sorted(rows)}")
    cols = ["technique", "method", "source", "models", "effect", "notes"]
    return pd.DataFrame([rows[i] for i in ids], index=list(ids))[cols]


def honest_summary(text_results: Any, likelihood: Any, calibrated: Any, forced: Any, tolerance: float = 0.05) -> str:
    """A paragraph per model saying which method moved balanced accuracy above the text answers, from the tables."""
    text = text_results.summary(by=["model"]).set_index("model")
    forced_s = forced.summary(by=["model"]).set_index("model")
    lines = []
    for m in likelihood["model"]:
        base = float(text.loc[m, "balanced_accuracy"]) if m in text.index else float("nan")
        auc = float(likelihood.set_index("model").loc[m, "ROC AUC of P(Yes)"])
        cal = calibrated[calibrated["model"] == m].set_index("method")["balanced accuracy"]
        grammar = float(forced_s.loc[m, "balanced_accuracy"]) if m in forced_s.index else float("nan")
        methods = {**{k: float(v) for k, v in cal.items()}, "grammar-constrained text": grammar}
        better = {k: v for k, v in methods.items() if v > base + tolerance}
        signal = ("carry real signal" if auc >= 0.6 else "carry little signal" if auc > 0.55 else "carry no usable signal")
        line = (f"{m}: text answers reach balanced accuracy {base:.2f}; the label probabilities {signal} "
                f"(ROC AUC {auc:.2f}). ")
        if better:
            best = max(better, key=better.get)
            line += f"Best here: {best} at {better[best]:.2f} ({better[best] - base:+.2f})."
        else:
            line += "Nothing moved balanced accuracy more than {:.2f} above the text answers in this run.".format(tolerance)
        lines.append(line)
    return "\n".join(lines)


def what_moved(results: Any, baseline: str, model: str | None = None) -> str:
    """Sentences, computed from a run, on which variants made answers readable and which beat the baseline."""
    s = results.summary(by=["variant", "model"])
    if model:
        s = s[s["model"] == model]
    s = s.set_index("variant")
    b = s.loc[baseline]
    out = []
    readable = [v for v in s.index if v != baseline and s.loc[v, "unparseable"] < b["unparseable"]]
    worse = [v for v in s.index if v != baseline and s.loc[v, "unparseable"] > b["unparseable"]]
    beat = [v for v in s.index if bool(s.loc[v, "beats_baseline"])]
    above_chance = [v for v in s.index if s.loc[v, "balanced_accuracy_low"] > s.loc[v, "chance"]]
    out.append(f"The baseline prompt left {int(b['unparseable'])} of {int(b['n'])} answers unreadable.")
    out.append("Fewer unreadable answers with: " + (", ".join(readable) or "none") + ".")
    out.append("More unreadable answers with: " + (", ".join(worse) or "none") + ".")
    out.append("Accuracy above the majority baseline (beyond its interval): " + (", ".join(beat) or "none") + ".")
    out.append("Balanced accuracy above chance (beyond its interval): " + (", ".join(above_chance) or "none") + ".")
    warning = below_chance_warning(results, baseline, model)
    if warning:
        out.append(warning)
    return "\n".join(out)


EVIDENCE_PATH = __import__("pathlib").Path(__file__).with_name("data") / "evidence.yaml"
EVIDENCE_FIELDS = ("id", "technique", "method", "paper", "arxiv", "venue", "models", "sizes", "benchmark",
                   "reported", "notes")


def evidence(ids: Sequence[str] | None = None) -> Any:
    """The published results the tour cites (paper, arXiv id, models and sizes, the number), from the kit's
    own data file, so a lesson can show them beside its measurement without pointing outside the kit."""
    import pandas as pd
    import yaml

    from .errors import PromptkitError

    entries = yaml.safe_load(EVIDENCE_PATH.read_text(encoding="utf-8")) or []
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
