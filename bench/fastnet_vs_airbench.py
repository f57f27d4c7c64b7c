"""Benchmark: `fastnet` through visionflow vs airbench94 (PyPI `airbench` 0.1.8), time to airbench's accuracy.

Same data for both: CIFAR-10 as visionflow reads it from `--data-dir` (the cifar10-jpeg TFRecord
shards: 50,000 training images, no validation hold-out, and the 10,000 test images), handed to
airbench as its own `cifar10/train.pt` / `test.pt` tensor files (a dict of `images` (N, 32, 32, 3)
uint8, `labels` int64 and `classes`), so it downloads nothing.

For each seed, one after the other on the same GPU:
  airbench    `airbench.train94(verbose=False)` then `airbench.evaluate(model, test_loader, tta_level=2)`;
  fastnet     `visionflow.train()` with the `fastnet` recipe (its time: the engine's training loop,
              checkpoint and logging included) then visionflow's evaluation with the recipe's TTA.
Time is wall-clock with the GPU synchronised, training plus the final TTA evaluation (as airbench
counts it); a warm-up run of each comes first and is not counted (cuDNN autotuning, compilation).
Reported: accuracy and seconds per seed, mean ± std, and whether fastnet's mean accuracy reaches
airbench's mean TTA accuracy (the target) and in how much time.

    python bench/fastnet_vs_airbench.py --data-dir ../shared/data/cifar10-jpeg --seeds 5      # on a GPU
    python bench/fastnet_vs_airbench.py --smoke                                               # CPU, tiny data, seconds

airbench is skipped (with a note) when it is not installed or there is no CUDA device: it moves
its data to `cuda:0` itself.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import visionflow  # noqa: E402
from visionflow.core.devices import resolve_device  # noqa: E402
from visionflow.data.base import Dataset, dataset_from_arrays  # noqa: E402
from visionflow.data.batches import TensorBatches  # noqa: E402
from visionflow.data.catalog import load_dataset  # noqa: E402
from visionflow.engine.evaluation import evaluate  # noqa: E402
from visionflow.engine.recipes import default_config  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_data(args) -> Dataset:
    """All of CIFAR-10's training images (no validation hold-out) and its test images; tiny with --smoke."""
    if args.smoke:
        if (Path(args.data_dir) / "test-00000-of-00001.tfrecord").exists():
            from visionflow.data.shards import load_tfrecord_dataset

            data = load_tfrecord_dataset(Path(args.data_dir) / "test-00000-of-00001.tfrecord", 0, "cifar10")
            images, labels = data.train.images, data.train.labels
        else:  # no real data here: random pixels, enough to run every code path
            rng = np.random.default_rng(0)
            images, labels = rng.integers(0, 256, (768, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 768)
        return dataset_from_arrays((images[:512], labels[:512]), test=(images[512:768], labels[512:768]),
                                   class_names=[str(i) for i in range(10)], name="cifar10")
    return load_dataset("cifar10", args.data_dir, validation_size=0)


def write_airbench_files(ds: Dataset, directory: Path) -> None:
    """airbench's CifarLoader reads `cifar10/{train,test}.pt` relative to the working directory."""
    target = directory / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", ds.train), ("test", ds.test)):
        torch.save({"images": torch.from_numpy(split.images), "labels": torch.from_numpy(split.labels),
                    "classes": list(ds.class_names)}, target / f"{name}.pt")


def fastnet_config(args, seed: int, device: torch.device) -> visionflow.TrainConfig:
    config = default_config("fastnet", "cifar10")
    changes = {"seed": seed, "device": str(device), "checkpoint_every": 10**9, "log_every": 10**9,
               "compile": args.compile}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.smoke:
        changes.update(batch_size=128, epochs=args.epochs or 2.0, lookahead_start_epoch=1)
    return dataclasses.replace(config, **changes)


def run_fastnet(ds: Dataset, args, seed: int, device: torch.device, workdir: Path) -> dict:
    config = fastnet_config(args, seed, device)
    _sync(device)
    with open(os.devnull, "w") as quiet:
        outcome = visionflow.train(config, workdir / f"fastnet-{seed}-{time.monotonic_ns()}", dataset=ds,
                                   progress_stream=quiet)
    _sync(device)
    # the final TTA evaluation, timed on its own (train() also evaluated the test split: same result)
    batches = TensorBatches(ds.test, outcome.run.preprocessing, 2000, device)
    t = time.perf_counter()
    result = evaluate(outcome.model, batches, outcome.run.class_names, device, config.precision, outcome.result.global_step)
    _sync(device)
    eval_seconds = time.perf_counter() - t
    return {"seed": seed, "accuracy": result.accuracy, "train_seconds": outcome.result.seconds,
            "eval_seconds": eval_seconds, "seconds": outcome.result.seconds + eval_seconds,
            "steps": outcome.result.global_step}


def airbench_unavailable(device: torch.device) -> str | None:
    if importlib.util.find_spec("airbench") is None:
        return "airbench is not installed (pip install airbench==0.1.8)"
    if device.type != "cuda":
        return "airbench runs only on CUDA (it loads its data to cuda:0)"
    return None


@contextlib.contextmanager
def _cwd(path: Path):
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_airbench(seed: int, device: torch.device, workdir: Path, warmup: bool = False) -> dict:
    with _cwd(workdir):  # its default loaders open ./cifar10/*.pt, at import time too
        import airbench

        if warmup:
            airbench.warmup94()
            return {}
        torch.manual_seed(seed)
        test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        _sync(device)
        t = time.perf_counter()
        model = airbench.train94(verbose=False)
        _sync(device)
        train_seconds = time.perf_counter() - t
        accuracy = airbench.evaluate(model, test_loader, tta_level=2)
        _sync(device)
        seconds = time.perf_counter() - t
    return {"seed": seed, "accuracy": accuracy, "train_seconds": train_seconds, "eval_seconds": seconds - train_seconds,
            "seconds": seconds}


def summary(runs: list[dict]) -> dict:
    def mean_std(key: str) -> tuple[float, float]:
        values = [r[key] for r in runs]
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    acc, acc_std = mean_std("accuracy")
    sec, sec_std = mean_std("seconds")
    return {"runs": runs, "accuracy_mean": acc, "accuracy_std": acc_std, "seconds_mean": sec, "seconds_std": sec_std}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=float, default=None, help="fastnet epochs (default: the recipe's 9.9)")
    parser.add_argument("--compile", action="store_true", help="torch.compile fastnet (compilation in the warm-up)")
    parser.add_argument("--smoke", action="store_true", help="tiny data on any device: check the script runs")
    parser.add_argument("--skip-airbench", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    ds = load_data(args)
    versions = {"torch": torch.__version__, "python": platform.python_version(), "visionflow": visionflow.__version__}
    if importlib.util.find_spec("airbench"):
        versions["airbench"] = importlib.metadata.version("airbench")
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    results: dict = {"device": str(device), "machine": machine, "versions": versions, "smoke": args.smoke,
                     "train_images": len(ds.train), "test_images": len(ds.test)}
    print(f"{machine} · " + " · ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    skip = "skipped by --skip-airbench" if args.skip_airbench else airbench_unavailable(device)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if skip is None:
            write_airbench_files(ds, workdir)
            run_airbench(0, device, workdir, warmup=True)
        else:
            print(f"airbench: {skip}", flush=True)
            results["airbench_skipped"] = skip
        warm = dataclasses.replace(fastnet_config(args, 0, device), steps=min(20, len(ds.train) // 128), epochs=None)
        with open(os.devnull, "w") as quiet:
            visionflow.train(warm, workdir / "warmup", dataset=ds, progress_stream=quiet)
        fastnet_runs, airbench_runs = [], []
        for seed in range(args.seeds):
            if skip is None:
                airbench_runs.append(run_airbench(seed, device, workdir))
                a = airbench_runs[-1]
                print(f"seed {seed}  airbench: {a['accuracy']:.2%} in {a['seconds']:.2f} s", flush=True)
            fastnet_runs.append(run_fastnet(ds, args, seed, device, workdir))
            f = fastnet_runs[-1]
            print(f"seed {seed}  fastnet:  {f['accuracy']:.2%} in {f['seconds']:.2f} s "
                  f"(train {f['train_seconds']:.2f} + TTA eval {f['eval_seconds']:.2f})", flush=True)
    results["fastnet"] = summary(fastnet_runs)
    f = results["fastnet"]
    print(f"fastnet:  {f['accuracy_mean']:.2%} ± {f['accuracy_std']:.2%}  in {f['seconds_mean']:.2f} ± "
          f"{f['seconds_std']:.2f} s over {args.seeds} seeds")
    if airbench_runs:
        results["airbench"] = summary(airbench_runs)
        a = results["airbench"]
        reached = f["accuracy_mean"] >= a["accuracy_mean"]
        results["target_accuracy"] = a["accuracy_mean"]
        results["fastnet_reaches_target"] = reached
        results["time_ratio"] = a["seconds_mean"] / f["seconds_mean"]
        print(f"airbench: {a['accuracy_mean']:.2%} ± {a['accuracy_std']:.2%}  in {a['seconds_mean']:.2f} ± "
              f"{a['seconds_std']:.2f} s")
        print(f"fastnet {'reaches' if reached else 'does NOT reach'} airbench's {a['accuracy_mean']:.2%} "
              f"({f['accuracy_mean'] - a['accuracy_mean']:+.2%}); time: airbench / fastnet = {results['time_ratio']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
