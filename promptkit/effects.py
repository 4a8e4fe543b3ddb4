"""Did a prompt change make a difference? The paired test, Holm's correction, the smallest change a run's
rows could show at all, and the sentences a lesson prints about them, each generated from the run.
"""
from __future__ import annotations

from typing import Any, Sequence

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


def rows_of(results: Any, model: str | None) -> Any:
    """The run's summary by variant and model, of one model when named."""
    s = results.summary(by=["variant", "model"])
    return s[s["model"] == model] if model else s


def below_chance_warning(results: Any, baseline: str, model: str | None = None) -> str:
    """A warning when the baseline prompt does not beat chance: then a 'gain' may only be a climb back to it."""
    s = rows_of(results, model)
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
    s = rows_of(results, model)
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
