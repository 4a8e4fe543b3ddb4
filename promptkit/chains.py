"""Prompt chains: one prompt's answer becomes a variable of the next, measured like a single prompt.

A chain is a list of steps; each step is a template and the name under which its
answer is handed on (`Step(extract, output="signals")` fills `{{signals}}` in the
next step). Every step runs through the runner (cached, concurrent, graded), and
the chain's final answers come back as ordinary Results whose tokens and latency
are the sums over all steps, so a chain and a single prompt sit in one scoreboard
and one paired test.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from .errors import ExperimentError
from .types import CellResult, Row, Settings


@dataclass(frozen=True)
class Step:
    """One link: a prompt, the name its answer is passed on as, and its own settings (e.g. max_tokens)."""

    template: Any
    output: str
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ChainRun:
    """Every step's Results, and the final answers as Results with per-row totals over the steps."""

    name: str
    steps: list[Any]
    results: Any
    outputs: list[str]

    def intermediate(self, max_chars: int = 160) -> Any:
        """One row per dataset row: each step's answer side by side, then the final grade and gold."""
        import pandas as pd

        frames = []
        for out, res in zip(self.outputs, self.steps):
            frames.append(res.df.set_index("row_id")["output"].rename(f"{out}").map(lambda t: _short(t, max_chars)))
        final = self.results.df.set_index("row_id")
        g = self.results.primary_grader
        table = pd.concat(frames, axis=1)
        table[f"{g} label"] = final[f"{g}_label"]
        table["gold"] = final["target"]
        table["correct"] = final[f"{g}_score"] == 1.0
        return table


def _short(text: Any, n: int) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def run_chain(
    steps: Sequence[Step],
    rows: Sequence[Row],
    model: str,
    *,
    name: str = "chain",
    grader: Any = None,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> ChainRun:
    """Run `steps` in order on `rows` with `model`; the last step is graded with `grader` against each row's target."""
    from .experiment import Experiment
    from .results import Results
    from .runner import run

    steps = list(steps)
    if len(steps) < 2:
        raise ExperimentError(f"a chain needs at least two steps, got {len(steps)}")
    names = [s.output for s in steps]
    if len(set(names)) != len(names):
        raise ExperimentError(f"chain {name!r}: step outputs must have distinct names, got {names}")
    base = dict(settings or {})
    current = [replace(r, input=dict(r.input)) for r in rows]
    step_results: list[Any] = []
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        missing = sorted(step.template.variables - set(current[0].input)) if current else []
        if missing:
            raise ExperimentError(f"chain {name!r} step {i + 1} ({step.output}): the template needs {missing}, "
                                  f"which neither the rows nor an earlier step's output provide")
        exp = Experiment(
            variants=[step.template.replace(name=f"{name} · {step.output}")], models=[model], rows=current,
            settings=Settings.from_dict({**base, **dict(step.settings)}), graders=[grader] if (last and grader) else [],
            name=f"{name} step {i + 1}: {step.output}",
        )
        res = run(exp, progress=progress)
        step_results.append(res)
        by_row = {r.cell.row_id: r.completion.text for r in res.results}
        current = [replace(r, input={**r.input, step.output: by_row.get(r.id, "")}) for r in current]
    finals: list[CellResult] = []
    earlier = [{r.cell.row_id: r.completion for r in res.results} for res in step_results[:-1]]
    for r in step_results[-1].results:
        comp = replace(r.completion)
        for prev in earlier:
            p = prev.get(r.cell.row_id)
            if p is None:
                continue
            comp.input_tokens = _add(comp.input_tokens, p.input_tokens)
            comp.output_tokens = _add(comp.output_tokens, p.output_tokens)
            comp.latency_s = _add(comp.latency_s, p.latency_s)
            comp.cost_usd = _add(comp.cost_usd, p.cost_usd)
            if not p.ok and comp.ok:
                comp.error_kind, comp.error = p.error_kind, f"an earlier step failed: {p.error}"
        finals.append(CellResult(cell=replace(r.cell, variant=name), completion=comp, grades=r.grades))
    return ChainRun(name=name, steps=step_results, results=Results(finals, meta={"chain": names}), outputs=names)


def _add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None if a is None and b is None else (a if b is None else b)
    return a + b


def combine(*results: Any) -> Any:
    """One Results from several (e.g. a single prompt and a chain's final answers), for one scoreboard and `compare`."""
    from .results import Results

    cells = [c for r in results for c in (r.results.results if isinstance(r, ChainRun) else r.results)]
    return Results(cells)


def cost_table(results: Any, calls: Mapping[str, int] | None = None) -> Any:
    """Per variant: tokens in and out and latency per row (chains: summed over their steps), and calls per row."""
    df = results.df
    g = df.groupby("variant", sort=False)
    out = g.agg(rows=("row_id", "nunique"), input_tokens_per_row=("input_tokens", "mean"),
                output_tokens_per_row=("output_tokens", "mean"), latency_s_per_row=("latency_s", "mean"))
    out["calls_per_row"] = [int((calls or {}).get(v, 1)) for v in out.index]
    return out.reset_index()


def plot_costs(results: Any, calls: Mapping[str, int] | None = None, metric: str = "accuracy") -> Any:
    """Three panels side by side: the score (with the majority baseline), input tokens per row and seconds per row."""
    from matplotlib.figure import Figure

    s = results.summary(by=["variant"]).set_index("variant")
    c = cost_table(results, calls).set_index("variant")
    names = list(c.index)
    colors = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a"]
    fig = Figure(figsize=(10, 2.8))
    axes = fig.subplots(1, 3)
    panels = [(s[metric], metric.replace("_", " ")), (c["input_tokens_per_row"], "input tokens per row"),
              (c["latency_s_per_row"], "seconds per row")]
    for ax, (values, title) in zip(axes, panels):
        ax.bar(names, [float(values[n]) for n in names], color=colors[: len(names)])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    if "baseline" in s:
        axes[0].axhline(float(s["baseline"].iloc[0]), color="black", ls="--", lw=1, label="majority baseline")
        axes[0].legend(fontsize=7)
        axes[0].set_ylim(0, 1)
    fig.tight_layout()
    return fig


def chain_verdict(results: Any, single: str, chain: str, metric: str = "accuracy") -> str:
    """Sentences, computed from the run, on what the chain bought and what it cost against the single prompt."""
    s = results.summary(by=["variant"]).set_index("variant")
    test = results.compare(chain, single, metric=metric)
    a, b = float(s.loc[chain, metric]), float(s.loc[single, metric])
    costs = cost_table(results).set_index("variant")
    tin = costs.loc[chain, "input_tokens_per_row"] / costs.loc[single, "input_tokens_per_row"]
    lat = costs.loc[chain, "latency_s_per_row"] / costs.loc[single, "latency_s_per_row"]
    moved = "no significant difference" if not test.significant else ("the chain is better" if a > b else "the chain is worse")
    return (f"{metric.replace('_', ' ').capitalize()}: one prompt {b:.2f}, chain {a:.2f} ({a - b:+.2f}; "
            f"{test.test}, p = {test.p_value:.2f}: {moved} on these {int(s.loc[chain, 'n'])} rows). "
            f"The chain read {tin:.1f}× the input tokens and took {lat:.1f}× the time per row.")


__all__ = ["ChainRun", "Step", "chain_verdict", "combine", "cost_table", "plot_costs", "run_chain"]
