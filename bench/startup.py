"""Benchmark: how long the `visionflow` command takes to answer, beside `python -c "import torch"`.

Measured in fresh interpreters, each command run `--repeats` times alternating between the
contenders (the median is reported, so a noisy neighbour moves every contender alike):

  help          `python -m visionflow --help`
  CMD --help    `python -m visionflow CMD --help` for every command
  first step    `python -m visionflow train --steps 1 --log-every 1` on the embedded digits, from
                process start to its "step 1/1" line (data, model, summaries, first optimizer step)
  import torch  `python -c "import torch"`, and the same making one optimizer — which imports
                torch._dynamo (torch's optimizers are wrapped by `torch._disable_dynamo`): the floor
                of any PyTorch training script

`--baseline-src DIR` runs the same commands against another source tree (e.g. a checkout of an
earlier commit) in the same run, for a before/after comparison.

    python bench/startup.py --repeats 7 --json startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZER = "import torch; torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)"
COMMANDS = ("train", "retrain", "evaluate", "predict", "label-image", "classify-image", "board", "export", "serve",
            "convert")


def _env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one run to completion (it must succeed)."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return seconds


def time_to_line(argv: list[str], env: dict[str, str], marker: str) -> float:
    """Seconds from process start to the first line (stdout or stderr) starting with `marker`:
    what a user waits for, without the interpreter's exit (which unloading torch makes slow)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seconds = None
    for line in proc.stdout:
        if seconds is None and line.startswith(marker):
            seconds = time.perf_counter() - start
    proc.wait()
    if seconds is None or proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: no line starting {marker!r} (exit {proc.returncode})")
    return seconds


def first_step(src: Path) -> float:
    """Seconds from process start to the first training step's log line."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "visionflow", "train", "--model-dir", f"{tmp}/run", "--steps", "1",
                "--log-every", "1", "--device", "cpu"]
        return time_to_line(argv, _env(src), "step 1/1")


def measure(sources: dict[str, Path], repeats: int) -> dict[str, dict[str, float]]:
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in sources}
    samples["peer"] = {}
    for _ in range(repeats):
        for peer, code in (("import torch", "import torch"), ("torch + optimizer", OPTIMIZER)):
            samples["peer"].setdefault(peer, []).append(
                time_to_line([sys.executable, "-c", code + "; print('ready', flush=True)"], _env(ROOT / "src"), "ready"))
        for name, src in sources.items():
            env = _env(src)
            samples[name].setdefault("help", []).append(timed([sys.executable, "-m", "visionflow", "--help"], env))
            for command in COMMANDS:
                samples[name].setdefault(f"{command} --help", []).append(
                    timed([sys.executable, "-m", "visionflow", command, "--help"], env))
            samples[name].setdefault("first step", []).append(first_step(src))
    return {name: {key: statistics.median(values) for key, values in rows.items()} for name, rows in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, default=None, help="another tree's src/ to compare with")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    sources = {"visionflow": ROOT / "src"}
    if args.baseline_src is not None:
        sources["baseline"] = args.baseline_src
    results = measure(sources, args.repeats)
    torch_s, floor_s = results["peer"]["import torch"], results["peer"]["torch + optimizer"]
    print(f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}; median of {args.repeats}")
    print(f"import torch: {torch_s:.3f} s; import torch + make an optimizer: {floor_s:.3f} s")
    for name in sources:
        rows = results[name]
        slowest = max((k for k in rows if k.endswith("--help") and k != "help"), key=rows.get)
        print(f"{name}: --help {rows['help']:.3f} s; slowest CMD --help ({slowest}) {rows[slowest]:.3f} s; "
              f"first training step {rows['first step']:.2f} s ({rows['first step'] / floor_s:.2f}× torch + optimizer, "
              f"{rows['first step'] - floor_s:+.2f} s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": platform.machine(), "cores": os.cpu_count(),
                                         "python": platform.python_version(), "repeats": args.repeats,
                                         "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
