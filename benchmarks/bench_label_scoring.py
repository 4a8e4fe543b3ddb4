"""Likelihood scoring and calibration on the kit's label datasets: what moves the balanced score, and what does not.

For each task and local model: every dev and test row is scored by the
probability of each complete label (promptkit.scoring); the test rows are then
summarised raw, after contextual calibration (content-free inputs, Zhao et al.
2021), and for binary tasks with a threshold chosen on dev only. ROC AUC of
P(positive) shows whether the probabilities rank rows even when the argmax
is one label for every row. McNemar compares calibrated with raw predictions.

Run: .venv/bin/python benchmarks/bench_label_scoring.py [--models smollm2,qwen2.5-0.5b] [task ...]
"""
from __future__ import annotations

import argparse
import json
import time

DEFAULT_TASKS = ("competitor_mention", "renewal_tier", "health_colour")
POSITIVE = {"competitor_mention": "Yes", "renewal_tier": "At-Risk", "health_colour": "Red"}


def run(task: str, model: str) -> dict:
    import promptkit as pk
    from promptkit.calibration import contextual_calibration, fit_threshold
    from promptkit.metrics import mcnemar_test
    from promptkit.scoring import auc, predictions, score_labels, summarize

    ds = pk.load_dataset(task)
    tpl = pk.load_template(ds.task.directory / ds.task.template)
    labels = ds.labels
    t0 = time.perf_counter()
    test = score_labels(model, tpl, ds.split("test").rows, labels)
    per_row = (time.perf_counter() - t0) / len(test)
    dev = score_labels(model, tpl, ds.split("dev").rows, labels)
    cc = contextual_calibration(model, tpl, labels)
    cal_test = cc(test)
    pos = POSITIVE.get(task, labels[0])
    out: dict = {"task": task, "model": model, "test_rows": len(test), "dev_rows": len(dev),
                 "s_per_row": round(per_row, 2), "content_free_probs": cc.p_cf}

    def brief(scores: list) -> dict:
        s = summarize(scores, labels, n_boot=500)
        return {"accuracy": s.accuracy, "majority_rate": s.majority_rate, "beats_baseline": s.beats_baseline,
                "balanced_accuracy": s.balanced_accuracy, "balanced_low": s.balanced_accuracy_ci.low,
                "balanced_high": s.balanced_accuracy_ci.high, "macro_f1": s.macro_f1, "predicted": s.predicted_counts}

    out["raw"] = brief(test)
    out["contextual"] = brief(cal_test)
    out[f"auc_{pos}"] = auc(test, pos) if len(labels) == 2 else _one_vs_rest_auc(test, pos)
    gold = [s.target for s in test]
    out["contextual_vs_raw"] = mcnemar_test(gold, predictions(cal_test), predictions(test),
                                            name_a="calibrated", name_b="raw").verdict
    if len(labels) == 2:
        th = fit_threshold(cc(dev), pos, split="dev")
        thr_test = th.apply(cal_test)
        out["threshold"] = {"value": th.threshold, "dev_balanced": th.fitted_value, **brief(thr_test)}
        out["threshold_vs_raw"] = mcnemar_test(gold, predictions(thr_test), predictions(test),
                                               name_a="threshold", name_b="raw").verdict
    return out


def _one_vs_rest_auc(scores: list, positive: str) -> float:
    from promptkit.metrics import roc_auc

    ok = [s for s in scores if s.ok]
    return roc_auc([s.target == positive for s in ok], [s.prob(positive) for s in ok], positive=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="*", default=list(DEFAULT_TASKS))
    ap.add_argument("--models", default="smollm2")
    a = ap.parse_args()
    for model in a.models.split(","):
        spec = model if ":" in model else f"local:{model}"
        for task in a.tasks:
            r = run(task, spec)
            print(json.dumps(r, default=str))
            for k in ("raw", "contextual", "threshold"):
                if k in r:
                    m = r[k]
                    print(f"  {task} {spec} {k:10s}: accuracy {m['accuracy']:.3f} (baseline {m['majority_rate']:.3f}) "
                          f"balanced {m['balanced_accuracy']:.3f} [{m['balanced_low']:.3f}, {m['balanced_high']:.3f}] "
                          f"macro-F1 {m['macro_f1']:.3f} predicted {m['predicted']}")
            auc_key = next(k for k in r if k.startswith("auc_"))
            print(f"  {auc_key} {r[auc_key]:.3f}; calibrated vs raw: {r['contextual_vs_raw']}")
            if "threshold_vs_raw" in r:
                print(f"  threshold {r['threshold']['value']:.3f} vs raw: {r['threshold_vs_raw']}")


if __name__ == "__main__":
    main()
