"""The `promptkit` command: list models, ask one, run and compare experiments."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import PromptkitError
from .providers import DEFAULT_MODEL
from .results import interval_columns


def cmd_models(args: argparse.Namespace) -> int:
    from .models_status import model_table

    if args.install:
        from .local_models import install_model

        print(f"local:{args.install} ready: {install_model(args.install)}")
        return 0
    rows = model_table()
    width = max(len(r["spec"]) for r in rows)
    for r in rows:
        mark = "ready " if r["ready"] else "not ready"
        print(f"{r['spec']:<{width}}  {mark:<9}  {r['why']}")
    from .cpu import thread_plan

    print(f"\nlocal models run on {thread_plan(check=True)}")
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from .complete import complete

    c = complete(
        args.prompt, args.model, system=args.system, prefill=args.prefill or "",
        temperature=args.temperature, max_tokens=args.max_tokens, stream=args.stream,
    )
    if not c.ok:
        print(f"error ({c.error_kind}): {c.error}", file=sys.stderr)
        return 1
    print(c.text)
    cost = "unknown" if c.cost_usd is None else f"${c.cost_usd:.6f}"
    print(
        f"[{c.provider}:{c.model}  in={c.input_tokens} out={c.output_tokens} tokens  "
        f"latency={c.latency_s:.2f}s  ttft={'-' if c.ttft_s is None else f'{c.ttft_s:.2f}s'}  "
        f"finish={c.finish_reason}  cost={cost}]",
        file=sys.stderr,
    )
    return 0


def _run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `run` and `compare`."""
    p.add_argument("--out", default=None, help="folder for results.csv, results.jsonl and report.html (default runs/NAME)")
    p.add_argument("--cache", choices=["use", "refresh", "off"], default=None,
                   help="use: answer from the cache (default); refresh: call again and overwrite; off: no cache")
    p.add_argument("--concurrency", type=int, default=None, help="calls in flight at once (default 16)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes that make API calls (default 1; 2 uses both cores of a 2-core machine)")
    p.add_argument("--budget-usd", type=float, default=None, help="stop starting calls before spending this much")
    p.add_argument("--budget-tokens", type=int, default=None, help="stop starting calls before using this many tokens")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds one call may take (default 120 for API calls, no limit for local models)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--stream", action="store_true", default=None,
                   help="stream API calls to measure time to first token (costs client CPU per call)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="answer local-model cells on a Dask cluster, e.g. tcp://host:8786 ('local': this machine's "
                        "cores); needs promptkit[cluster]")
    p.add_argument("--batch", action="store_true", default=None,
                   help="send openai:/anthropic: cells through the vendors' batch APIs (half price, within 24 h; "
                        "stop any time and run again to collect)")


def _run_and_report(experiment: object, args: argparse.Namespace) -> int:
    """Run, write the exports, print a summary; exit 3 when the budget stopped the run."""
    from pathlib import Path

    from .runner import run

    opts = {k: v for k, v in {
        "cache": args.cache, "concurrency": args.concurrency, "budget_usd": args.budget_usd,
        "budget_tokens": args.budget_tokens, "timeout_s": args.timeout, "workers": args.workers,
        "stream": args.stream, "batch": args.batch, "cluster": args.scheduler,
    }.items() if v is not None}
    out = Path(args.out or Path("runs") / experiment.name)  # type: ignore[attr-defined]
    check_out(out)  # before the first call: a bad --out must not waste the calls
    res = run(experiment, progress=not args.no_progress, **opts)
    out.mkdir(parents=True, exist_ok=True)
    files = [res.to_csv(out / "results.csv"), res.to_jsonl(out / "results.jsonl"), res.to_html(out / "report.html")]
    print(summary_text(res))
    for f in files:
        print(f"wrote {f}")
    return 3 if res.meta.get("stopped_for_budget") else 0


EXPORTS = ("results.csv", "results.jsonl", "report.html")


def check_out(out: "Path") -> None:
    """Refuse an output folder that cannot take the exports, naming it and what to do, before any call."""
    import os
    import tempfile

    if out.exists() and not out.is_dir():
        raise PromptkitError(f"--out {out}: is a file; give a folder for {', '.join(EXPORTS)} (or remove the file)")
    for name in EXPORTS:
        if (out / name).is_dir():
            raise PromptkitError(f"--out {out}: {out / name} is a folder; remove it or choose another --out")
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise PromptkitError(f"--out {out}: {probe} is a file, so the folder cannot be made; choose another --out")
    try:
        fd, name = tempfile.mkstemp(prefix=".promptkit-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise PromptkitError(
            f"--out {out}: cannot write in {probe} ({exc.strerror or exc}); choose another --out") from None


def summary_text(res: object) -> str:
    """A terminal-width summary of a run: counts, then score, latency and cost per variant x model."""
    meta = res.meta  # type: ignore[attr-defined]
    c = meta["counts"]
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(c["errors_by_kind"].items())) or "none"
    lines = [
        f"{meta['experiment']['name']}: {c['cells']} cells in {meta['wall_s']:.1f} s; {c['calls']} calls, "
        f"{c['cache_hits']} from cache, {c['retries']} retries; errors: {kinds}; spent ${meta['spent_usd']:.4f}",
    ]
    if meta.get("stop_reason"):
        lines.append(meta["stop_reason"])
    by = ["variant", "model"] + (["settings_label"] if len(meta["experiment"]["settings_labels"]) > 1 else [])
    table = res.summary(by=by)  # type: ignore[attr-defined]

    def ci(row: object, col: str) -> str:
        v = row[col]  # type: ignore[index]
        if v != v:  # NaN: nothing scored
            return "-"
        lo, hi = (row[c] for c in interval_columns(col))  # type: ignore[index]
        if lo != lo or hi != hi:  # one scored row: no interval
            return f"{v:.2f} [no CI: n=1]" if row["scored"] == 1 else f"{v:.2f}"  # type: ignore[index]
        return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"

    has_pass = "pass_rate" in table.columns
    head = by + ["n", "errors"] + (["passed"] if has_pass else []) + ["score [95% CI]"]
    has_acc = "accuracy" in table.columns
    if has_acc:
        head += ["baseline", "flag"]
    head += ["p50 s", "$/100"]
    rows = []
    for _, r in table.iterrows():
        cells = [str(r[b]) for b in by] + [str(r["n"]), str(r["errors"])]
        if has_pass:  # errors count as failures here
            cells.append(f"{r['passed']}/{r['n']}")
        cells.append(ci(r, "score") if "score" in table else "-")
        if has_acc:
            cells += [f"{r['baseline']:.2f}" if r["baseline"] == r["baseline"] else "-", str(r["flag"] or "")]
        cells += [f"{r['latency_p50']:.2f}" if r["latency_p50"] == r["latency_p50"] else "-",
                  f"{r['cost_per_100']:.4f}" if r["cost_per_100"] == r["cost_per_100"] else "-"]
        rows.append(cells)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in rows]
    if has_pass and c.get("errors"):
        lines.append(f"{c['errors']} error cell(s) count as failures in 'passed'; the score is over answered cells")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from .experiment_file import load_experiment

    return _run_and_report(load_experiment(args.experiment), args)


def cmd_compare(args: argparse.Namespace) -> int:
    from .experiment_file import experiment_from_dict

    data: dict[str, object] = {
        "name": args.name or f"compare-{args.dataset}",
        "prompts": [{"template": args.template or "default"}],
        "models": [m.strip() for m in args.models.split(",") if m.strip()],
        "dataset": {"name": args.dataset, "split": args.split, "n": args.n, "seed": args.seed},
        "settings": {"temperature": args.temperature, "max_tokens": args.max_tokens},
        "graders": [] if args.grader in ("", "none") else [
            {"name": args.grader, "on": args.grade_on} if args.grade_on else args.grader],
    }
    return _run_and_report(experiment_from_dict(data, source="promptkit compare"), args)


def cmd_batches(args: argparse.Namespace) -> int:
    from datetime import datetime

    from .batch import list_batches

    entries = list_batches(refresh=not args.offline, cache=args.cache)
    if not entries:
        print("no batches recorded (pk.run(exp, batch=True) or promptkit run --batch records them)")
        return 0
    for e in entries:
        counts = " ".join(f"{k}={v}" for k, v in (e.get("counts") or {}).items()) or f"total={len(e['keys'])}"
        when = datetime.fromtimestamp(e.get("created_at", 0)).strftime("%Y-%m-%d %H:%M")
        print(f"{when}  {e.get('batch_id') or '-':<24} {e['model_spec']:<28} {e.get('state'):<10} "
              f"{e.get('status') or '-':<12} {counts}  cells={len(e['keys'])}  [{e.get('experiment')}]")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .dashboard import serve

    from .dashboard import parse_params

    return serve(args.notebooks, port=args.port, show_tracebacks=args.show_tracebacks,
                 params=parse_params(args.param or []))


def cmd_tour(args: argparse.Namespace) -> int:
    from .tour import open_tour

    return open_tour(args.dir, no_browser=args.no_browser, port=args.port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptkit", description="The Prompt Intelligence study kit.")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list providers and local models, which are ready and why not")
    m.add_argument("--install", metavar="NAME", help="join and verify a local model now, e.g. qwen2.5-0.5b")
    m.set_defaults(func=cmd_models)

    c = sub.add_parser("complete", help="ask one model one prompt")
    c.add_argument("prompt")
    c.add_argument("-m", "--model", default=DEFAULT_MODEL, help="model spec, e.g. local:smollm2, openai:gpt-4o-mini")
    c.add_argument("-s", "--system", default=None)
    c.add_argument("--prefill", default=None, help="start of the assistant's answer")
    c.add_argument("-t", "--temperature", type=float, default=0.0)
    c.add_argument("-n", "--max-tokens", type=int, default=256)
    c.add_argument("--stream", action="store_true", help="stream the call to measure time to first token")
    c.set_defaults(func=cmd_complete)

    r = sub.add_parser("run", help="run an experiment YAML file; write CSV, JSONL and an HTML report",
                       description="Exit status: 0 done (error cells are in the results), 2 bad input, "
                                   "3 stopped for budget.")
    r.add_argument("experiment", help="experiment file, e.g. examples/renewal_tier.yaml")
    _run_options(r)
    r.set_defaults(func=cmd_run)

    k = sub.add_parser("compare", help="one template on several models over a dataset (the common case)")
    k.add_argument("--template", default=None, help="template file (default: the dataset's own template)")
    k.add_argument("--models", required=True, help="comma-separated model specs, e.g. local:smollm2,openai:gpt-4o-mini")
    k.add_argument("--dataset", required=True, help="dataset name (promptkit datasets) or a .jsonl path")
    k.add_argument("--split", default="test", help="dataset split (default test)")
    k.add_argument("--n", type=int, default=20, help="rows to sample (default 20)")
    k.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    k.add_argument("--grader", default="default",
                   help="grader name, e.g. label (labels from the dataset); default: the dataset's usual grader; none: no grading")
    k.add_argument("--grade-on", choices=["text", "reply"], default=None,
                   help="what the grader reads: text (default: prefill + reply) or reply (the continuation alone)")
    k.add_argument("-t", "--temperature", type=float, default=0.0)
    k.add_argument("--max-tokens", type=int, default=64)
    k.add_argument("--name", default=None, help="run name (default compare-DATASET)")
    _run_options(k)
    k.set_defaults(func=cmd_compare)

    b = sub.add_parser("batches", help="list vendor batches recorded by batch runs, with status and counts")
    b.add_argument("--offline", action="store_true", help="show the ledger only; do not ask the vendors")
    b.add_argument("--cache", default=None, metavar="PATH",
                   help="the cache the batch runs used (a .sqlite3 file or a folder; default: promptkit's cache)")
    b.set_defaults(func=cmd_batches)

    d = sub.add_parser("dashboard", help="serve the tour and the live builder as web pages on 127.0.0.1 (Voila)")
    d.add_argument("--port", type=int, default=8866, help="port to listen on (default 8866)")
    d.add_argument("--notebooks", default=None, help="folder of .ipynb chapters (default ./notebooks)")
    d.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a chapter parameter like papermill, e.g. -p N_ROWS 6 (chapters without it ignore it)")
    d.add_argument("--show-tracebacks", action="store_true", help="show full tracebacks of failing cells in the page")
    d.set_defaults(func=cmd_dashboard)

    t = sub.add_parser("tour", help="copy the tour's notebooks into a folder of yours and open them in JupyterLab")
    t.add_argument("dir", nargs="?", default="promptkit-tour",
                   help="folder for your copy of the tour (default ./promptkit-tour); files already there are kept")
    t.add_argument("--no-browser", action="store_true", help="do not open a browser; open the printed URL yourself")
    t.add_argument("--port", type=int, default=None, help="port for JupyterLab (default 8888, or the next free one)")
    t.set_defaults(func=cmd_tour)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PromptkitError as exc:
        print(f"promptkit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("promptkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
