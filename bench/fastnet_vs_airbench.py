"""Benchmark: `fastnet` through visionflow vs airbench94 (PyPI `airbench` 0.1.8) and airbench's record
script (airbench94_muon.py), time to their accuracy.

Same data for both: CIFAR-10 as visionflow reads it from `--data-dir` (the cifar10-jpeg TFRecord
shards: 50,000 training images, no validation hold-out, and the 10,000 test images), handed to
airbench as its own `cifar10/train.pt` / `test.pt` tensor files (a dict of `images` (N, 32, 32, 3)
uint8, `labels` int64 and `classes`), so it downloads nothing.

For each seed, one after the other on the same GPU:
  airbench    `airbench.train94(verbose=False)` then `airbench.evaluate(model, test_loader, tta_level=2)`;
  record      the record script's own `main(seed, model)` on its compiled model (`--record-script`):
              its time is the one it measures itself (CUDA events around training and the final TTA
              evaluation, its per-epoch evaluations left out);
  fastnet     `visionflow.train()` with the `fastnet` recipe: training, the final TTA evaluation of
              the test split, and the engine's checkpoint and logging, all counted.
GPU seconds are measured as airbench measures them: CUDA events recorded before and after the work
(idle gaps between them count), synchronised once at the end; wall-clock seconds are reported
beside them.  A warm-up run of each comes first (cuDNN autotuning, compilation): its time is
reported separately as `warmup_seconds`.  Reported: accuracy and seconds per seed, mean ± std, and
whether fastnet's mean accuracy reaches each peer's mean TTA accuracy and in how much time.

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
from visionflow.data.catalog import load_dataset  # noqa: E402
from visionflow.engine.recipes import config_from_recipe, default_config  # noqa: E402
from visionflow.models.fastnet import SGD_RECIPE  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class GpuTimer:
    """Seconds of GPU timeline between entering and leaving (CUDA events), and of wall clock.

    On a CPU device `gpu_seconds` is the wall-clock time (there is no other timeline)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.gpu_seconds = self.wall_seconds = 0.0

    def __enter__(self) -> "GpuTimer":
        if self.device.type == "cuda":
            self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            self._events[0].record()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self._events[1].record()
            torch.cuda.synchronize(self.device)
        self.wall_seconds = time.perf_counter() - self._started
        self.gpu_seconds = (self._events[0].elapsed_time(self._events[1]) / 1000 if self.device.type == "cuda"
                            else self.wall_seconds)


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
               "compile": args.compile, "precision": args.precision}
    if args.recipe == "sgd":
        config = config_from_recipe(config, SGD_RECIPE)
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.smoke:
        changes.update(batch_size=128, epochs=args.epochs or 2.0, lookahead_start_epoch=1)
    return dataclasses.replace(config, **changes)


def run_fastnet(ds: Dataset, args, seed: int, device: torch.device, workdir: Path) -> dict:
    """One `visionflow.train()`: training, then its evaluation of the test split with the recipe's TTA."""
    config = fastnet_config(args, seed, device)
    _sync(device)
    with open(os.devnull, "w") as quiet, GpuTimer(device) as timer:
        outcome = visionflow.train(config, workdir / f"fastnet-{seed}-{time.monotonic_ns()}", dataset=ds,
                                   progress_stream=quiet)
    return {"seed": seed, "accuracy": outcome.test.accuracy, "seconds": timer.gpu_seconds,
            "wall_seconds": timer.wall_seconds, "train_loop_seconds": outcome.result.seconds,
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
        with GpuTimer(device) as timer:
            model = airbench.train94(verbose=False)
            accuracy = airbench.evaluate(model, test_loader, tta_level=2)
    return {"seed": seed, "accuracy": accuracy, "seconds": timer.gpu_seconds, "wall_seconds": timer.wall_seconds}


class RecordScript:
    """airbench's record script (airbench94_muon.py), loaded as a module and run through its own
    `main(run, model)` on the model it compiles once (as its `__main__` does)."""

    def __init__(self, path: Path, device: torch.device, workdir: Path) -> None:
        spec = importlib.util.spec_from_file_location("airbench94_muon", path)
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)
        self.device, self.workdir = device, workdir
        self.model = self.module.CifarNet().to(device).to(memory_format=torch.channels_last)
        self.model.compile(mode="max-autotune")

    def run(self, seed: int | str) -> dict:
        """Its TTA accuracy and its own seconds, read from the last row it prints."""
        import io

        torch.manual_seed(seed if isinstance(seed, int) else 0)
        out = io.StringIO()
        with _cwd(self.workdir), contextlib.redirect_stdout(out), GpuTimer(self.device) as timer:
            accuracy = self.module.main(seed, self.model)
        own = record_seconds(out.getvalue())
        return {"seed": seed, "accuracy": float(accuracy), "seconds": own if own is not None else timer.gpu_seconds,
                "gpu_seconds_with_its_epoch_evals": timer.gpu_seconds, "wall_seconds": timer.wall_seconds}


def record_seconds(printed: str) -> float | None:
    """The time_seconds column of the record script's final ("eval") table row, if printed."""
    for line in reversed(printed.splitlines()):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and cells[1] == "eval":
            try:
                return float(cells[-1])
            except ValueError:
                return None
    return None


def summary(runs: list[dict]) -> dict:
    def mean_std(key: str) -> tuple[float, float]:
        values = [r[key] for r in runs]
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    acc, acc_std = mean_std("accuracy")
    sec, sec_std = mean_std("seconds")
    return {"runs": runs, "accuracy_mean": acc, "accuracy_std": acc_std, "seconds_mean": sec, "seconds_std": sec_std}


def _line(name: str, r: dict) -> str:
    return f"{name:9s} {r['accuracy']:.2%} in {r['seconds']:.2f} s (wall {r['wall_seconds']:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=float, default=None, help="fastnet epochs (default: the recipe's)")
    parser.add_argument("--precision", default="auto", help="bf16 makes a CPU run ~4x faster on AMX/AVX-512 cores")
    parser.add_argument("--recipe", choices=("muon", "sgd"), default="muon",
                        help="fastnet's default (Muon) recipe or airbench94's SGD one (fastnet.SGD_RECIPE)")
    parser.add_argument("--compile", action="store_true", help="torch.compile fastnet (compilation in the warm-up)")
    parser.add_argument("--record-script", type=Path, help="airbench94_muon.py, run as a second peer when given")
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
                     "recipe": args.recipe, "train_images": len(ds.train), "test_images": len(ds.test),
                     "warmup_seconds": {}}
    print(f"{machine} · " + " · ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    skip = "skipped by --skip-airbench" if args.skip_airbench else airbench_unavailable(device)
    record_skip = ("not given (--record-script)" if args.record_script is None else
                   f"{args.record_script} not found" if not args.record_script.exists() else
                   "runs only on CUDA" if device.type != "cuda" else None)
    runs: dict[str, list[dict]] = {"fastnet": [], "airbench": [], "record": []}

    def report() -> None:
        """Summaries of every finished seed, into results (and --json): a run stopped at any point,
        as the GPU suite stops a part at its cap, keeps what it measured."""
        if runs["fastnet"]:
            results["fastnet"] = summary(runs["fastnet"])
        for peer in ("airbench", "record"):
            if runs[peer] and runs["fastnet"]:
                a = results[peer] = summary(runs[peer])
                a["fastnet_reaches_its_accuracy"] = results["fastnet"]["accuracy_mean"] >= a["accuracy_mean"]
                a["time_ratio"] = a["seconds_mean"] / results["fastnet"]["seconds_mean"]
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))

    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if skip is None or record_skip is None:
            write_airbench_files(ds, workdir)
        if skip is None:
            with GpuTimer(device) as timer:
                run_airbench(0, device, workdir, warmup=True)
            results["warmup_seconds"]["airbench"] = timer.wall_seconds
        else:
            print(f"airbench: {skip}", flush=True)
            results["airbench_skipped"] = skip
        warm = dataclasses.replace(fastnet_config(args, 0, device), steps=min(20, len(ds.train) // 128), epochs=None)
        with open(os.devnull, "w") as quiet, GpuTimer(device) as timer:
            visionflow.train(warm, workdir / "warmup", dataset=ds, progress_stream=quiet)
        results["warmup_seconds"]["fastnet"] = timer.wall_seconds
        for seed in seeds:
            if skip is None:
                runs["airbench"].append(run_airbench(seed, device, workdir))
                print(f"seed {seed}  " + _line("airbench", runs["airbench"][-1]), flush=True)
            runs["fastnet"].append(run_fastnet(ds, args, seed, device, workdir))
            print(f"seed {seed}  " + _line("fastnet", runs["fastnet"][-1]), flush=True)
            report()
        # The record script last: its max-autotune compilation can take minutes, and fastnet's and
        # airbench94's seeds are already kept when a time cap stops it.
        if record_skip is None:
            with GpuTimer(device) as timer:
                record = RecordScript(args.record_script, device, workdir)
                record.run("warmup")
            results["warmup_seconds"]["record"] = timer.wall_seconds
            for seed in seeds:
                runs["record"].append(record.run(seed))
                print(f"seed {seed}  " + _line("record", runs["record"][-1]), flush=True)
                report()
        else:
            results["record_skipped"] = record_skip
    report()
    f = results["fastnet"]
    print(f"fastnet:  {f['accuracy_mean']:.2%} ± {f['accuracy_std']:.2%}  in {f['seconds_mean']:.2f} ± "
          f"{f['seconds_std']:.2f} s over {args.seeds} seeds")
    for peer in ("airbench", "record"):
        if peer not in results:
            continue
        a = results[peer]
        print(f"{peer}: {a['accuracy_mean']:.2%} ± {a['accuracy_std']:.2%}  in {a['seconds_mean']:.2f} ± "
              f"{a['seconds_std']:.2f} s")
        print(f"fastnet {'reaches' if a['fastnet_reaches_its_accuracy'] else 'does NOT reach'} {peer}'s "
              f"{a['accuracy_mean']:.2%} ({f['accuracy_mean'] - a['accuracy_mean']:+.2%}); "
              f"time: {peer} / fastnet = {a['time_ratio']:.2f}x")


if __name__ == "__main__":
    main()
