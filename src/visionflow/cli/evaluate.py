"""`visionflow evaluate`: a model directory's checkpoint on a split, once or as checkpoints appear."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_commands(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="evaluate a model directory's checkpoint")
    ev.add_argument("--model-dir", required=True, help="the model directory to evaluate")
    ev.add_argument("--split", default="test", choices=("train", "validation", "test"), help="which split")
    ev.add_argument("--step", type=int, default=None, help="checkpoint to evaluate [default: the latest]")
    ev.add_argument("--data-dir", default=None, help="where the run's dataset lives now [default: where it was]")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    ev.add_argument("--json", action="store_true", help="print results as JSON (one object per evaluation)")
    ev.add_argument("--watch", action="store_true", help="evaluate each new checkpoint until interrupted")
    ev.add_argument("--poll", type=float, default=2.0, help="seconds between checks with --watch")
    ev.add_argument("--timeout", type=float, default=None,
                    help="with --watch: stop after N s with no new checkpoint (it stops anyway after the final one)")
    ev.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..engine.evaluation import evaluate_model_dir, watch

    if args.watch:
        watch(args.model_dir, lambda r: print_eval(r, args.json, args.model_dir), args.split, args.device,
              args.poll, args.timeout, args.data_dir)
        return 0
    result = evaluate_model_dir(args.model_dir, args.split, args.device, args.step, args.data_dir)
    print_eval(result, args.json, args.model_dir)
    return 0


def print_eval(result: Any, as_json: bool, model_dir: str) -> None:
    if as_json:
        print(json.dumps(result.to_dict()), flush=True)
        return
    print(f"{result.split}: {result.headline()}  loss {result.loss:.4f}  global step {result.global_step}  "
          f"({result.count} examples)")
    if result.regression is not None:
        return
    width = max(len(n) for n in result.class_names)
    print(f"  {'class':<{width}}  precision  recall")
    for name, p, r in zip(result.class_names, result.precision, result.recall):
        print(f"  {name:<{width}}  {p:9.4f}  {r:6.4f}")
    print(f"  confusion matrix: {model_dir}/confusion_{result.split}.png", flush=True)
