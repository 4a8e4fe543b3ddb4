"""The `promptkit` command: list models, ask one, and (later) run experiments."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import PromptkitError


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
    return 0


def cmd_complete(args: argparse.Namespace) -> int:
    from .complete import complete

    c = complete(
        args.prompt, args.model, system=args.system, prefill=args.prefill or "",
        temperature=args.temperature, max_tokens=args.max_tokens,
    )
    if not c.ok:
        print(f"error ({c.error_kind}): {c.error}", file=sys.stderr)
        return 1
    print(c.text)
    cost = "unknown" if c.cost_usd is None else f"${c.cost_usd:.6f}"
    print(
        f"[{c.provider}:{c.model}  in={c.input_tokens} out={c.output_tokens} tokens  "
        f"latency={c.latency_s:.2f}s  ttft={(c.ttft_s or 0):.2f}s  finish={c.finish_reason}  cost={cost}]",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="promptkit", description="The Prompt Intelligence study kit.")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list providers and local models, which are ready and why not")
    m.add_argument("--install", metavar="NAME", help="join and verify a local model now, e.g. qwen2.5-0.5b")
    m.set_defaults(func=cmd_models)

    c = sub.add_parser("complete", help="ask one model one prompt")
    c.add_argument("prompt")
    c.add_argument("-m", "--model", default="local:smollm2", help="model spec, e.g. local:smollm2, openai:gpt-4o-mini")
    c.add_argument("-s", "--system", default=None)
    c.add_argument("--prefill", default=None, help="start of the assistant's answer")
    c.add_argument("-t", "--temperature", type=float, default=0.0)
    c.add_argument("-n", "--max-tokens", type=int, default=256)
    c.set_defaults(func=cmd_complete)
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
