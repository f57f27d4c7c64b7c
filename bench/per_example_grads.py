"""Benchmark: per-example gradient norms by torch.func.vmap (what `visionflow inspect gradients`
runs) vs the tutorial's loop over batches of one — same model, same examples, same numbers.

Models: the tutorial `cnn` (28×28×1, 3.3 M parameters) and `resnet20` (32×32×3, 0.27 M), at their
initialisation (gradient cost does not depend on the weights), eval mode, float32, on `--count`
random images per model.  Reported: examples/s of each method, the ratio, and the largest relative
difference between their norms.

    python bench/per_example_grads.py --count 256
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from visionflow.inspection.gradients import norms_loop, norms_vmap  # noqa: E402
from visionflow.models import ModelSpec, build_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--json")
    args = parser.parse_args()
    results: dict = {"machine": f"{cpu_model()}, {torch.get_num_threads()} threads",
                     "torch": torch.__version__, "count": args.count}
    for name, shape in (("cnn", (1, 28, 28)), ("resnet20", (3, 32, 32))):
        torch.manual_seed(0)
        model = build_model(ModelSpec(name, 10, shape)).eval()
        x = torch.randn(args.count, *shape).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (args.count,))
        norms_vmap(model, x[:8], y[:8])  # warm-up
        t = time.perf_counter()
        fast = norms_vmap(model, x, y)
        vmap_s = time.perf_counter() - t
        t = time.perf_counter()
        slow = norms_loop(model, x, y)
        loop_s = time.perf_counter() - t
        diff = float(((fast - slow).abs() / slow.abs().clamp_min(1e-12)).max())
        results[name] = {"vmap_examples_per_sec": args.count / vmap_s, "loop_examples_per_sec": args.count / loop_s,
                         "ratio": loop_s / vmap_s, "max_relative_difference": diff}
        print(f"{name:>9}: vmap {args.count / vmap_s:8,.0f} examples/s, loop {args.count / loop_s:8,.0f} examples/s "
              f"({loop_s / vmap_s:.2f}x), max relative difference {diff:.1e}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
