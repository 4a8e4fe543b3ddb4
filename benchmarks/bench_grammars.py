"""How much a grammar changes parse rate and accuracy on the kit's datasets (free vs constrained answers).

For each task, every row of the chosen split is answered twice by the same
local model with the same prompt: free text, then under a grammar that allows
only the labels (label tasks) or JSON fitting the task's target schema
(risk_signals). Both answers are graded by the task's own grader and
summarised with promptkit.metrics (baseline, balanced accuracy, unparseable
count, exact McNemar between the two).

Run: .venv/bin/python benchmarks/bench_grammars.py [--model local:smollm2] [--split test] [--rows N] [task ...]
"""
from __future__ import annotations

import argparse
import json

DEFAULT_TASKS = ("renewal_tier", "competitor_mention", "risk_signals")
MAX_TOKENS = {"label": 24, "multilabel": 96}


def run_task(task: str, model: str, split: str, limit: int | None) -> dict:
    from tqdm.auto import tqdm

    import promptkit as pk
    from promptkit.graders import extraction_summary, json_match, label_match
    from promptkit.grammars import json_grammar, label_grammar
    from promptkit.metrics import classification_summary, mcnemar_test

    ds = pk.load_dataset(task).split(split)
    rows = ds.rows[:limit] if limit else ds.rows
    tpl = pk.load_template(ds.task.directory / ds.task.template)
    if ds.task.type == "label":
        grader = label_match(ds.labels)
        grammar = label_grammar(ds.labels)
    else:
        grader = json_match(ds.task.target_schema, ds.labels)
        grammar = json_grammar(ds.task.target_schema)
    max_tokens = MAX_TOKENS[ds.task.type]
    grades: dict[str, list] = {"free": [], "grammar": []}
    for row in tqdm(rows, desc=f"{task} ({model})", unit="row"):
        for mode in ("free", "grammar"):  # same prompt back to back: the second reuses the prompt cache
            settings = pk.Settings(max_tokens=max_tokens, grammar=grammar if mode == "grammar" else None)
            c = pk.complete(tpl.to_request(row.input, settings), model)
            grades[mode].append(grader(c, row.target))
    out: dict = {"task": task, "model": model, "split": split, "rows": len(rows)}
    if ds.task.type == "label":
        gold = [r.target for r in rows]
        for mode, gs in grades.items():
            s = classification_summary(gold, gs, ds.labels)
            out[mode] = {**{k: v for k, v in s.to_dict().items()}, "parse_rate": 1 - s.unparseable / s.n}
        t = mcnemar_test(gold, grades["grammar"], grades["free"], name_a="grammar", name_b="free")
        out["mcnemar"] = {"p": t.p_value, "verdict": t.verdict, **t.details}
    else:
        for mode, gs in grades.items():
            ex = extraction_summary(gs)
            out[mode] = {"parse_rate": 1 - ex["unparsed"] / ex["rows"], "micro_f1": ex["micro"]["f1"],
                         "macro_f1": ex["macro_f1"], "exact": sum(g.passed for g in gs) / len(gs)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="*", default=list(DEFAULT_TASKS))
    ap.add_argument("--model", default="local:smollm2")
    ap.add_argument("--split", default="test")
    ap.add_argument("--rows", type=int, default=None, help="first N rows of the split only")
    a = ap.parse_args()
    for task in a.tasks:
        r = run_task(task, a.model, a.split, a.rows)
        print(json.dumps(r, default=str))
        for mode in ("free", "grammar"):
            m = r[mode]
            if "accuracy" in m:
                print(f"  {task} {mode:7s}: parse {m['parse_rate']:.2f}  accuracy {m['accuracy']:.3f} "
                      f"(baseline {m['majority_rate']:.3f})  balanced {m['balanced_accuracy']:.3f}  "
                      f"macro-F1 {m['macro_f1']:.3f}  predicted {m['predicted']}")
            else:
                print(f"  {task} {mode:7s}: parse {m['parse_rate']:.2f}  micro-F1 {m['micro_f1']:.3f}  "
                      f"exact {m['exact']:.3f}")
        if "mcnemar" in r:
            print(f"  grammar vs free: {r['mcnemar']['verdict']}")


if __name__ == "__main__":
    main()
