"""Data-parallel scaling: `visionflow train` on 1 process vs N processes under torchrun, same
global batch, same steps, one run; examples/s of the whole job and the per-step all-reduce size.

On this project's 2-core CI machine the processes share two cores, so CPU "scaling" cannot speed
anything up: what it measures is the cost of the gradient all-reduce (gloo over loopback) and of
the process machinery per step.  GPU scaling (NCCL, 1 → 8 GPUs) needs a multi-GPU machine.

    python bench/scaling.py --model resnet20 --dataset cifar10 --data-dir ../shared/data/cifar10-jpeg \\
        --processes 1 2 --steps 40 --batch-size 128 --markdown out.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]


def run(processes: int, args: argparse.Namespace, directory: Path) -> dict:
    cores = os.cpu_count() or 1
    command = [sys.executable, "-m", "visionflow", "train", "--model", args.model, "--dataset", args.dataset,
               "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--model-dir",
               str(directory / f"p{processes}"), "--log-every", str(args.steps), "--precision", "fp32", "--json"]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    if processes > 1:
        command += ["--nproc-per-node", str(processes)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(max(1, cores // processes))}
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if out.returncode:
        raise SystemExit(f"{processes} process(es) failed: {out.stderr.strip().splitlines()[-1]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"processes": processes, "threads_each": max(1, cores // processes),
            "examples_per_sec": result["examples_per_sec"], "train_seconds": result["train_seconds"],
            "test_accuracy": result.get("accuracy")}


def all_reduce_megabytes(model: str, dataset_classes: int = 10) -> float:
    sys.path.insert(0, str(ROOT / "src"))
    from visionflow.models import ModelSpec, build_model

    net = build_model(ModelSpec(model, dataset_classes, (3, 32, 32)))
    return sum(p.numel() for p in net.parameters() if p.requires_grad) * 4 / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"))
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None)
    args = p.parse_args()
    machine = describe()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(n, args, Path(tmp)) for n in args.processes]
    base = rows[0]["examples_per_sec"]
    megabytes = all_reduce_megabytes(args.model)
    lines = [f"{args.model} on {args.dataset}, global batch {args.batch_size}, {args.steps} steps; {machine}; "
             f"gradient all-reduce {megabytes:.2f} MB per step", "",
             "| processes | threads each | examples/s (job) | vs 1 process |", "|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['processes']} | {row['threads_each']} | {row['examples_per_sec']:,.0f} | "
                     f"{row['examples_per_sec'] / base:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "all_reduce_mb": megabytes, "rows": rows}, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
