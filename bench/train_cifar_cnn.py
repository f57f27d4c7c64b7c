"""Benchmark: training `cifar-cnn` (the CIFAR-10 tutorial) — visionflow vs a plain DataLoader loop.

Both contenders, in one run on one machine, train the same registered model (`cifar-cnn`, 24×24
crops) with the same batch size, optimizer (momentum SGD, weight decay 0.004 on the dense layers
only, the recipe's cosine learning rate) and moving average of the weights (decay 0.9999 with
TF's num_updates warm-up), on the same CIFAR-10 images with the same distortions (TF semantics:
random 24×24 crop, left-right flip, brightness ±63/255, contrast 0.2–1.8, per-image
standardization):

  visionflow  the product path, `visionflow.train()`: uint8 images resident on the device, every
              distortion batched there, channels-last; its time includes its checkpoint/summary work.
  dataloader  the loop people write: a map-style Dataset distorting one image at a time with
              torchvision.transforms.v2 (RandomCrop, RandomHorizontalFlip, ToDtype) plus TF's
              brightness / contrast / per_image_standardization as per-image tensor functions,
              a DataLoader with `--workers` worker processes, the same model in plain NCHW.

Reported: examples/s over the whole run (start-up included) and in steady state (the median of
20-step windows after the first), their ratio, and — without any model — the input pipeline
alone in images/s (distorted, standardized batches).

    python bench/train_cifar_cnn.py --data-dir ../shared/data/cifar10-jpeg --steps 120
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import visionflow  # noqa: E402
from visionflow.data.base import Dataset, Split  # noqa: E402
from visionflow.data.batches import TensorBatches  # noqa: E402
from visionflow.data.catalog import load_dataset  # noqa: E402
from visionflow.engine.config import TrainConfig  # noqa: E402
from visionflow.engine.optim import lr_at  # noqa: E402
from visionflow.engine.recipes import default_config  # noqa: E402
from visionflow.engine.training import make_run_config  # noqa: E402
from visionflow.models import ModelSpec, build_model  # noqa: E402

WINDOW = 20


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    """The machine's fp32 matmul rate right now (the CPU may be shared: this says how busy it is)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return reps * 2 * n**3 / (time.perf_counter() - t) / 1e9


def recipe(steps: int, batch_size: int, seed: int, device: str = "cpu") -> TrainConfig:
    config = default_config("cifar-cnn", "cifar10")
    return dataclasses.replace(config, steps=steps, epochs=None, batch_size=batch_size, seed=seed, device=device,
                               checkpoint_every=10**9, log_every=WINDOW)


class _Windows:
    """visionflow callback: examples/s of each logged window."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_log(self, step: int, metrics: dict) -> None:
        self.rates.append(metrics["examples_per_sec"])


def run_visionflow(ds: Dataset, args) -> dict:
    config = recipe(args.steps, args.batch_size, args.seed, args.device)
    windows = _Windows()
    with tempfile.TemporaryDirectory() as tmp:
        outcome = visionflow.train(config, Path(tmp) / "run", dataset=ds, callbacks=[windows],
                                   progress_stream=open("/dev/null", "w"))
    steady = statistics.median(windows.rates[1:]) if len(windows.rates) > 1 else outcome.result.examples_per_sec
    return {"examples_per_sec": outcome.result.examples_per_sec, "steady_examples_per_sec": steady,
            "train_seconds": outcome.result.seconds, "test_accuracy": outcome.test.accuracy if outcome.test else None}


# ---- the peer: per-image distortions in DataLoader workers -------------------------------------------------

def random_brightness(image: torch.Tensor, max_delta: float = 63.0) -> torch.Tensor:
    """tf.image.random_brightness on a float image in 0–255: x + U[-max_delta, max_delta)."""
    return image + (torch.rand(()) * 2 - 1) * max_delta


def random_contrast(image: torch.Tensor, lower: float = 0.2, upper: float = 1.8) -> torch.Tensor:
    """tf.image.random_contrast: (x - mean) * f + mean per channel, f ~ U[lower, upper)."""
    mean = image.mean(dim=(1, 2), keepdim=True)
    return (image - mean) * (lower + (upper - lower) * torch.rand(())) + mean


def per_image_standardization(image: torch.Tensor) -> torch.Tensor:
    """tf.image.per_image_standardization of one (C, H, W) image."""
    return (image - image.mean()) / image.std(unbiased=False).clamp(min=1.0 / math.sqrt(image.numel()))


class DistortedCifar(torch.utils.data.Dataset):
    """One image at a time: uint8 (3, 32, 32) → distorted, standardized float (3, 24, 24)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        from torchvision.transforms import v2

        self.images = torch.from_numpy(images).permute(0, 3, 1, 2)  # (N, 3, 32, 32) uint8 view
        self.labels = torch.from_numpy(labels)
        self.transform = v2.Compose([v2.RandomCrop(24), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32),
                                     random_brightness, random_contrast, per_image_standardization])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])


def make_loader(ds: Dataset, args) -> torch.utils.data.DataLoader:
    workers = {"num_workers": args.workers, "persistent_workers": True, "prefetch_factor": 4} if args.workers else {}
    return torch.utils.data.DataLoader(DistortedCifar(ds.train.images, ds.train.labels), batch_size=args.batch_size,
                                       shuffle=True, drop_last=True, pin_memory=args.device != "cpu", **workers)


def run_dataloader(ds: Dataset, args) -> dict:
    config = recipe(args.steps, args.batch_size, args.seed)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = build_model(ModelSpec("cifar-cnn", 10, (3, 24, 24))).to(device)
    groups = [{"params": g["params"], "weight_decay": config.weight_decay * g.get("weight_decay_scale", 1.0)}
              for g in model.optimizer_groups()]
    optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    params = list(model.parameters())
    average = [p.detach().clone() for p in params]
    loader = make_loader(ds, args)
    step, marks = 0, []
    model.train()
    started = time.perf_counter()
    while step < args.steps:
        for x, y in loader:
            lr = lr_at(config, step, args.steps)
            for g in optimizer.param_groups:
                g["lr"] = lr
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            with torch.no_grad():
                torch._foreach_lerp_(average, params, 1.0 - min(config.ema_decay, (1 + step) / (10 + step)))
            if step % WINDOW == 0:
                float(loss.detach())
                marks.append(time.perf_counter())
            if step >= args.steps:
                break
    float(loss.detach())  # the queued GPU work, finished
    seconds = time.perf_counter() - started
    windows = [WINDOW * args.batch_size / (b - a) for a, b in zip(marks, marks[1:])]
    return {"examples_per_sec": step * args.batch_size / seconds,
            "steady_examples_per_sec": statistics.median(windows) if windows else step * args.batch_size / seconds,
            "train_seconds": seconds, "workers": args.workers}


# ---- the input pipeline alone ----------------------------------------------------------------------------------

def pipeline_rates(ds: Dataset, args, batches: int) -> dict:
    """Images/s of distorted, standardized training batches, without any model."""
    config = recipe(args.steps, args.batch_size, args.seed)
    run = make_run_config(config, ds)
    ours = TensorBatches(ds.train, run.preprocessing, args.batch_size, args.device, shuffle=True, seed=args.seed,
                         drop_last=True, augment=config.augment)
    t = time.perf_counter()
    for i, (x, _) in enumerate(ours.epoch(0)):
        if i + 1 >= batches:
            break
    float(x[0, 0, 0, 0])  # the queued GPU work, finished
    visionflow_rate = batches * args.batch_size / (time.perf_counter() - t)
    loader = make_loader(ds, args)
    iterator = iter(loader)
    next(iterator)  # start the workers
    t = time.perf_counter()
    for _ in range(batches - 1):
        next(iterator)
    peer_rate = (batches - 1) * args.batch_size / (time.perf_counter() - t)
    return {"visionflow_images_per_sec": visionflow_rate, "dataloader_images_per_sec": peer_rate,
            "ratio": visionflow_rate / peer_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg"))
    parser.add_argument("--steps", type=int, default=120, help="training steps per contender")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes of the peer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: both contenders train there")
    parser.add_argument("--pipeline-batches", type=int, default=60, help="batches timed for the pipeline-only rate")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    full = load_dataset("cifar10", args.data_dir)
    # test on 1,000 images only: the benchmark is about training speed
    ds = Dataset(full.name, full.train, Split(full.validation.images[:0], full.validation.labels[:0]),
                 Split(full.test.images[:1000], full.test.labels[:1000]), full.class_names)
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                     "torch": torch.__version__, "steps": args.steps, "batch_size": args.batch_size,
                     "train_images": len(ds.train), "matmul_gflops_before": matmul_gflops()}
    results["pipeline"] = pipeline_rates(ds, args, args.pipeline_batches)
    p = results["pipeline"]
    print(f"input pipeline only: visionflow {p['visionflow_images_per_sec']:,.0f} images/s, DataLoader "
          f"({args.workers} workers) {p['dataloader_images_per_sec']:,.0f} images/s: {p['ratio']:.1f}x", flush=True)
    for name, fn in (("visionflow", run_visionflow), ("dataloader", run_dataloader)):
        out = fn(ds, args)
        results[name] = out
        print(f"{name:>10}: {out['examples_per_sec']:7,.0f} examples/s over {args.steps} steps "
              f"({out['train_seconds']:.1f} s), steady state {out['steady_examples_per_sec']:7,.0f}", flush=True)
    results["matmul_gflops_after"] = matmul_gflops()
    for key in ("examples_per_sec", "steady_examples_per_sec"):
        results[f"ratio_{key}"] = results["visionflow"][key] / results["dataloader"][key]
    print(f"visionflow / dataloader: {results['ratio_examples_per_sec']:.2f}x overall, "
          f"{results['ratio_steady_examples_per_sec']:.2f}x steady state  (fp32 matmul "
          f"{results['matmul_gflops_before']:.0f} → {results['matmul_gflops_after']:.0f} GFLOP/s: machine load)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
