"""`visionflow inspect variables | filters | activations | gradients`: look inside a model directory."""

from __future__ import annotations

import argparse
import json

from .common import Parser


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="variables, filters, feature maps and per-example gradients of a model")
    kinds = p.add_subparsers(dest="inspect_command", metavar="WHAT", parser_class=Parser, required=True)

    v = kinds.add_parser("variables", help="every parameter and buffer: shape, dtype, trainable, statistics")
    v.add_argument("--match", default=None, help="a glob on the names ('conv*', 'groups.0.*'); no wildcard: a prefix")
    f = kinds.add_parser("filters", help="a PNG grid of a convolution layer's kernels")
    f.add_argument("--layer", default=None, help="the conv layer [default: the first one]")
    a = kinds.add_parser("activations", help="a PNG of the feature maps one image makes, and its top-k classes")
    a.add_argument("image", help="an image file (or a .npy batch; its first image)")
    a.add_argument("--layer", default=None, help="comma-separated globs of layer names [default: the conv layers]")
    a.add_argument("--top-k", type=int, default=5)
    g = kinds.add_parser("gradients", help="per-example gradient norms over a split; the largest as a PNG grid")
    g.add_argument("--split", default="test", choices=("train", "validation", "test"))
    g.add_argument("--limit", type=int, default=1000, help="examples from the split's start")
    g.add_argument("--top", type=int, default=16, help="how many of the largest to list and draw")
    g.add_argument("--method", default="vmap", choices=("vmap", "loop"), help="torch.func.vmap or one at a time")
    g.add_argument("--data-dir", default=None, help="where the run's dataset lives now")
    for each in (v, f, a, g):
        each.add_argument("--model-dir", required=True, help="the model directory")
        each.add_argument("--step", type=int, default=None, help="checkpoint [default: the latest]")
        each.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    what = args.inspect_command
    if what == "variables":
        from ..inspection.variables import variable_lines, variables_of

        step, found = variables_of(args.model_dir, args.match, args.step)
        if args.json:
            print(json.dumps({"global_step": step, "variables": [v.to_dict() for v in found]}))
        else:
            print("\n".join(variable_lines(found)))
    elif what == "filters":
        from ..inspection.pictures import save_filters

        path = save_filters(args.model_dir, args.layer, args.step)
        print(json.dumps({"png": str(path)}) if args.json else f"filters: {path}")
    elif what == "activations":
        from ..inspection.pictures import save_activations

        layers = [p.strip() for p in args.layer.split(",") if p.strip()] if args.layer else None
        result = save_activations(args.model_dir, args.image, layers, args.top_k, args.step)
        if args.json:
            print(json.dumps(result.to_dict()))
        else:
            for a in result.layers:
                print(f"{a.layer:<24} {str(list(a.shape)):<16} mean {a.mean:8.4f}  std {a.std:8.4f}  zeros {a.zero_fraction:6.1%}")
            print("top: " + ", ".join(f"{label} ({p:.4f})" for label, p in result.top))
            print(f"feature maps: {result.path}")
    else:
        from ..inspection.gradients import gradient_report

        report = gradient_report(args.model_dir, args.split, args.limit, args.top, args.method, args.data_dir, args.step)
        if args.json:
            print(json.dumps(report.to_dict()))
        else:
            d = report.to_dict()
            print(f"{report.split}: {report.count:,} per-example gradients ({report.method}), norm mean "
                  f"{d['norm_mean']:.4g}, median {d['norm_median']:.4g}, max {d['norm_max']:.4g}")
            for row in report.top:
                print(f"  #{row['index']:<6} |g| {row['norm']:<10.4g} {row['label']} → {row['predicted']}")
            print(f"grid: {report.path}")
    return 0
