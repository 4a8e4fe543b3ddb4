"""Stored runs: a larger run's answers, shipped with the kit, shown beside a learner's small live run.

A chapter's live run has a handful of rows, so its intervals are wide and it can only detect large changes.
A stored run is the same comparison on every test row, run once with one command and committed as a compact
table: one line per row x prompt x model holding the answer *text*, not a verdict, so every number shown
from it is recomputed by today's grader. `python -m promptkit.stored_run examples/tour_stored_run.yaml`
runs the experiment (from the answer cache where it can) and rewrites the table; `--results
runs/NAME/results.jsonl` stores a finished `promptkit run` instead.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import PromptkitError
from .files import atomic_write
from .types import Cell, CellResult, Completion, Message, Request, Settings

STORED_DIR = Path(__file__).with_name("data") / "stored"
COLUMNS: tuple[str, ...] = (
    "dataset", "split", "grader", "variant", "model", "row_id", "target", "prompt_sha", "temperature", "max_tokens",
    "text", "prefill", "finish_reason", "input_tokens", "output_tokens", "error_kind",
)
INT_COLUMNS = ("max_tokens", "input_tokens", "output_tokens")
_NOTE = "stored run: the prompt is the variant of the experiment file named in promptkit/data/stored/README.md"


class StoredRunError(PromptkitError):
    """A stored-run file that is missing or malformed (the message names the file, line and field)."""


def prompt_sha(request: Request) -> str:
    """A short digest of exactly what the model read (turns and prefill), to prove a stored answer's prompt."""
    text = json.dumps([[[m.role, m.content] for m in request.messages], request.prefill], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def path_of(name: str | os.PathLike[str]) -> Path:
    """A stored run's file: a name shipped with the kit (`tour_stored_run`) or a path to a .csv.gz."""
    p = Path(name)
    if p.suffix == ".gz" or p.exists():
        return p
    return STORED_DIR / f"{name}.csv.gz"


def records(results: Any, dataset: str, split: str) -> list[dict[str, Any]]:
    """The compact lines of a finished run, in the run's order (one per cell; repeats are not stored)."""
    if any(r.cell.repeat for r in results.results):
        raise StoredRunError("a stored run keeps one answer per row x prompt x model; run it with repeats: 1")
    grader = results.primary_grader or ""
    out = []
    for r in results.results:
        c, comp, s = r.cell, r.completion, r.cell.settings
        out.append({
            "dataset": dataset, "split": split, "grader": grader, "variant": c.variant, "model": c.model,
            "row_id": c.row_id, "target": c.target, "prompt_sha": prompt_sha(c.request),
            "temperature": float(s.temperature), "max_tokens": s.max_tokens, "text": comp.text, "prefill": comp.prefill,
            "finish_reason": comp.finish_reason or "", "input_tokens": comp.input_tokens,
            "output_tokens": comp.output_tokens, "error_kind": comp.error_kind or "",
        })
    return out


def write(lines: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write the compact table as gzip'd CSV with a fixed timestamp, so the same answers give the same bytes."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    for line in lines:
        w.writerow({k: "" if line.get(k) is None else line[k] for k in COLUMNS})
    def write_gzip(raw: Any) -> None:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            gz.write(buf.getvalue().encode("utf-8"))

    return atomic_write(path, write_gzip, binary=True, durable=False)


def read(name: str | os.PathLike[str] = "tour_stored_run") -> list[dict[str, Any]]:
    """The compact lines of a stored run, checked: every column present, numbers where numbers belong."""
    path = path_of(name)
    try:
        text = gzip.decompress(path.read_bytes()).decode("utf-8")
    except FileNotFoundError:
        shipped = sorted(p.name.removesuffix(".csv.gz") for p in STORED_DIR.glob("*.csv.gz"))
        raise StoredRunError(f"stored run {path} does not exist; the kit ships {shipped}") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise StoredRunError(f"{path}: not a gzip'd UTF-8 CSV ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise StoredRunError(f"{path}, line 1: missing column(s) {missing}; expected {list(COLUMNS)}")
    out = []
    for n, row in enumerate(reader, 2):
        for col in INT_COLUMNS:
            if row[col] != "":
                try:
                    row[col] = int(row[col])
                except ValueError:
                    raise StoredRunError(f"{path}, line {n}, field {col!r}: expected a whole number, "
                                         f"got {row[col]!r}") from None
            else:
                row[col] = None
        try:
            row["temperature"] = float(row["temperature"])
        except ValueError:
            raise StoredRunError(f"{path}, line {n}, field 'temperature': expected a number, "
                                 f"got {row['temperature']!r}") from None
        for col in ("variant", "model", "row_id", "dataset", "grader"):
            if not row[col]:
                raise StoredRunError(f"{path}, line {n}, field {col!r}: empty")
        out.append(row)
    if not out:
        raise StoredRunError(f"{path}: no answers (only a header)")
    return out


def load(name: str | os.PathLike[str] = "tour_stored_run") -> Any:
    """A stored run as Results, every answer graded now by its dataset's grader (no model is called)."""
    from .datasets import load_dataset
    from .experiment import grader_from_spec
    from .results import Results

    lines = read(name)
    datasets = {(ln["dataset"], ln["grader"]) for ln in lines}
    if len(datasets) != 1:
        raise StoredRunError(f"{path_of(name)}: one dataset and grader per stored run, found {sorted(datasets)}")
    dataset, grader_name = datasets.pop()
    grader = grader_from_spec(grader_name, load_dataset(dataset))
    cells = []
    for ln in lines:
        settings = Settings(temperature=ln["temperature"], max_tokens=ln["max_tokens"] or 1)
        request = Request(messages=(Message("user", _NOTE),), settings=settings, prefill=ln["prefill"])
        key = hashlib.sha256(f"{ln['model']}\0{ln['prompt_sha']}\0{ln['row_id']}".encode()).hexdigest()
        cell = Cell(key=key, variant=ln["variant"], model=ln["model"], settings=settings, row_id=ln["row_id"],
                    repeat=0, request=request, target=ln["target"])
        comp = Completion(text=ln["text"], provider=ln["model"].split(":", 1)[0], model=ln["model"],
                          input_tokens=ln["input_tokens"], output_tokens=ln["output_tokens"],
                          finish_reason=ln["finish_reason"] or None, error_kind=ln["error_kind"] or None,
                          error=ln["error_kind"] or None, prefill=ln["prefill"])
        cells.append(CellResult(cell, comp, {}))
    meta = {"name": path_of(name).name.removesuffix(".csv.gz"), "dataset": dataset, "split": lines[0]["split"],
            "stored": True}
    return Results(cells, meta).regrade({grader_name: grader})


POWER = 0.8


def detectable_at_power(n: int, discordant: float, comparisons: int, power: float = POWER) -> float:
    """The accuracy change a paired test finds with this power at alpha / comparisons (Holm's strictest step).

    McNemar's normal approximation with the share of rows on which the two prompts disagree taken from the
    run itself: (z[1 - alpha/2m] + z[power]) * sqrt(discordant / n). The floor `lessons.smallest_detectable`
    is what *can* reach significance at all; this is what a run would find most of the time.
    """
    from statistics import NormalDist

    from .lessons import ALPHA

    if n <= 0:
        return float("nan")
    z = NormalDist().inv_cdf(1 - ALPHA / (2 * max(comparisons, 1))) + NormalDist().inv_cdf(power)
    return z * (max(discordant, 1.0 / n) / n) ** 0.5  # at least one disagreeing row: never a zero "detectable"


def effects(results: Any, baseline: str) -> Any:
    """Each technique against the baseline, per model, Holm-corrected across that model's techniques, with
    the smallest change each comparison could detect: at all (the floor) and at 80% power."""
    import pandas as pd

    from .lessons import ablation_table

    df = results.df
    ok = df[df["passed"].notna()]
    right = ok.set_index(["variant", "model", "row_id"])["passed"].astype(bool).sort_index()
    parts = []
    for m in results.models:
        t = ablation_table(results, baseline, model=m)
        power = []
        for _, r in t.iterrows():
            a, b = right.xs((r["variant"], m)), right.xs((baseline, m))
            both = a.index.intersection(b.index)
            share = float((a[both] != b[both]).mean()) if len(both) else float("nan")
            floor = float(r["smallest detectable"])  # the approximation fails when few rows disagree
            power.append(max(detectable_at_power(len(both), share, len(t)), floor))
        t.insert(t.columns.get_loc("smallest detectable") + 1, "detectable at 80% power", power)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def scores(results: Any) -> Any:
    """Balanced accuracy with its 95% interval per prompt and model, beside chance and unreadable answers."""
    s = results.summary(by=["variant", "model"])
    return s[["model", "variant", "n", "balanced_accuracy", "balanced_accuracy_low", "balanced_accuracy_high",
              "chance", "unparseable"]].sort_values(["model", "variant"]).reset_index(drop=True)


def _base_row(results: Any, baseline: str, model: str) -> Any:
    s = results.summary(by=["variant", "model"])
    rows = s[(s["variant"] == baseline) & (s["model"] == model)]
    if rows.empty:
        raise StoredRunError(f"no answers for prompt {baseline!r} on {model!r}; the run has prompts "
                             f"{results.variants} and models {results.models}")
    return rows.iloc[0]


def _ba(r: Any) -> str:
    return (f"{float(r['balanced_accuracy']):.2f} [{float(r['balanced_accuracy_low']):.2f}, "
            f"{float(r['balanced_accuracy_high']):.2f}]")


def contrast_sentence(live: Any, stored: Any, baseline: str, model: str, *, live_table: Any = None,
                      stored_table: Any = None) -> str:
    """How much narrower the stored run's intervals are than the live run's, generated from both runs.

    `live_table` / `stored_table` are their `effects` (or `lessons.ablation_table`) tables when already computed.
    """
    if model not in stored.models or model not in live.models:
        return (f"The stored run has answers from {', '.join(stored.models)} and the live run from "
                f"{', '.join(live.models)}; {model} is not in both, so their intervals are not compared.")
    lv, st = _base_row(live, baseline, model), _base_row(stored, baseline, model)
    lw = float(lv["balanced_accuracy_high"]) - float(lv["balanced_accuracy_low"])
    sw = float(st["balanced_accuracy_high"]) - float(st["balanced_accuracy_low"])
    le = live_table if live_table is not None else effects(live.filter(model=model), baseline)
    se = stored_table if stored_table is not None else effects(stored.filter(model=model), baseline)
    le, se = le[le["model"] == model], se[se["model"] == model]
    ld, sd = (float((t["Δ high"] - t["Δ low"]).median()) for t in (le, se))
    lm, sm = (float(t["smallest detectable"].iloc[0]) for t in (le, se))

    ratio = f"{lw / sw:.1f} times as wide" if sw > 0 else "wider"
    text = (f"On {model.split(':')[-1]}, the base prompt ({baseline}) scores balanced accuracy {_ba(lv)} on your "
            f"{int(lv['n'])} live rows and {_ba(st)} on the stored run's {int(st['n'])} rows: your interval is "
            f"{lw:.2f} wide, {ratio} as the stored run's ({sw:.2f}). The intervals of the techniques' changes are "
            f"{ld:.2f} wide (median) live and {sd:.2f} stored. After Holm correction "
            + ("no change could reach significance on your live rows" if lm > 1 else
               f"a change could reach significance on your live rows from {lm:.2f}")
            + (f", and on the stored run's from {sm:.2f}." if sm <= 1 else ", nor on the stored run's."))
    missing = [v for v in live.variants if v not in stored.variants]
    return text + (f" Not in the stored run: {', '.join(missing)}." if missing else "")


def _span(values: Any) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"


def headline(results: Any, baseline: str, table: Any = None) -> str:
    """The stored run's results, one sentence per model (README and chapter), generated from the answers."""
    table = table if table is not None else effects(results, baseline)
    out = []
    for m in results.models:
        b = _base_row(results, baseline, m)
        t = table[table["model"] == m]

        def named(verdict: str) -> str:
            part = t[t["verdict"] == verdict]
            return ", ".join(f"{r['variant']} {r['Δ balanced_accuracy']:+.2f} [{r['Δ low']:+.2f}, {r['Δ high']:+.2f}]"
                             + (f" ({r['why']})" if r["why"] else "") for _, r in part.iterrows()) or "none"

        out.append(f"{m}: base prompt balanced accuracy {_ba(b)} on {int(b['n'])} rows (chance "
                   f"{float(b['chance']):.2f}); after Holm correction across its {len(t)} techniques, helped: "
                   f"{named('helped')}; hurt: {named('hurt')}; the smallest change that could reach significance "
                   f"is {float(t['smallest detectable'].iloc[0]):.2f}, and one of {_span(t['detectable at 80% power'])} "
                   f"would be found 80% of the time (by how often the two prompts disagree).")
    return "\n".join(out)


def dataset_of(experiment_path: str | os.PathLike[str]) -> tuple[str, str]:
    """The dataset name and split an experiment file names (a stored run regrades with its grader)."""
    import yaml

    d = yaml.safe_load(Path(experiment_path).read_text(encoding="utf-8")) or {}
    spec = d.get("dataset")
    if isinstance(spec, str):
        return spec, ""
    if isinstance(spec, dict) and spec.get("name"):
        return str(spec["name"]), str(spec.get("split") or "")
    raise StoredRunError(f"{experiment_path}: a stored run needs a named dataset (dataset: NAME or {{name, split}})")


def main(argv: Sequence[str] | None = None) -> int:
    """python -m promptkit.stored_run EXPERIMENT.yaml [--results runs/NAME/results.jsonl] [--out FILE.csv.gz]

    Runs the experiment (answers come from the cache where they can) and stores its answers, by default
    in promptkit/data/stored/NAME.csv.gz; with --results, stores a finished `promptkit run`'s answers
    (checked against the experiment) instead of running.
    """
    import argparse

    from .experiment import load_experiment
    from .results import Results
    from .runner import run

    p = argparse.ArgumentParser(prog="python -m promptkit.stored_run", description=main.__doc__)
    p.add_argument("experiment")
    p.add_argument("--results", default=None)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    exp = load_experiment(a.experiment)
    dataset, split = dataset_of(a.experiment)
    results = Results.from_jsonl(a.results) if a.results else run(exp)
    lines = records(results, dataset, split)
    problems = mismatches(lines, exp)
    if problems:
        raise StoredRunError(f"{a.results or a.experiment}: the answers do not match {a.experiment}: {problems[0]} "
                             f"({len(problems)} problem(s))")
    out = write(lines, a.out or STORED_DIR / f"{exp.name}.csv.gz")
    print(f"wrote {len(lines)} answers to {out}")
    print(headline(load(out), exp.variants[0].name))
    return 0


def mismatches(lines: Sequence[dict[str, Any]], experiment: Any) -> list[str]:
    """Where stored answers and an experiment differ: cells missing or extra, or a prompt that reads differently."""
    want = {(c.variant, c.model, c.row_id): (prompt_sha(c.request), c.target, c.settings)
            for c in experiment.expand()}
    have = {(ln["variant"], ln["model"], ln["row_id"]): ln for ln in lines}
    out = [f"missing answer for prompt {v!r}, model {m!r}, row {r!r}" for (v, m, r) in want if (v, m, r) not in have]
    out += [f"answer for prompt {v!r}, model {m!r}, row {r!r} is not in the experiment" for (v, m, r) in have
            if (v, m, r) not in want]
    for k, (sha, target, settings) in want.items():
        ln = have.get(k)
        if ln is None:
            continue
        if ln["prompt_sha"] != sha:
            out.append(f"prompt {k[0]!r} on row {k[2]!r} reads differently now (prompt_sha {ln['prompt_sha']} vs {sha})")
        if str(ln["target"]) != str(target):
            out.append(f"row {k[2]!r}: gold label {ln['target']!r} stored, {target!r} in the dataset now")
        if (float(ln["temperature"]), ln["max_tokens"]) != (float(settings.temperature), settings.max_tokens):
            out.append(f"prompt {k[0]!r}, model {k[1]!r}: settings differ (temperature, max_tokens)")
    return out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
