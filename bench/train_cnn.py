"""Benchmark: training the tutorial `cnn` on Fashion-MNIST — visionflow vs the loops people write.

Contenders, same model (visionflow's TutorialCNN), batch size, optimizer and learning-rate
schedule, in one run on one machine:
  visionflow  the product path: `visionflow.train()` (checkpoints, summaries and per-epoch
              validation included in its time)
  dataloader  pytorch/examples mnist style: a Dataset doing per-item ToTensor + Normalize,
              a DataLoader, a plain NCHW model and the default Adam
  keras       the same network in Keras 3 on TensorFlow, when `tensorflow` is importable

Reports examples/s over the first `--epochs` epochs, wall time and final test accuracy, the
ratios to visionflow, and (CPU) the fraction of the measured fp32 matrix-multiply rate reached.

    python bench/train_cnn.py --data-dir /usr/share/datasets/fashion-mnist --epochs 1
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import visionflow  # noqa: E402
from visionflow.data.catalog import load_dataset  # noqa: E402
from visionflow.models import ModelSpec, build_model  # noqa: E402

FLOPS_PER_EXAMPLE = 3 * 2 * (28 * 28 * 32 * 25 + 14 * 14 * 64 * 32 * 25 + 3136 * 1024 + 1024 * 10)  # fwd+bwd


def matmul_gflops(device: torch.device, n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return reps * 2 * n**3 / (time.perf_counter() - t) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def lr_at(step: int, total: int, peak: float, warm: float = 0.15) -> float:
    p = step / total
    return peak * p / warm if p < warm else peak * 0.5 * (1 + math.cos(math.pi * (p - warm) / (1 - warm)))


def run_visionflow(ds, args, device, compile: bool = False, mode: str = "default") -> dict:
    config = visionflow.default_config("cnn", ds.name)
    config.epochs, config.batch_size, config.device, config.seed = args.epochs, args.batch_size, str(device), args.seed
    config.compile, config.compile_mode = compile, mode
    config.checkpoint_every = 10**9  # one checkpoint at the end, as a finished run always writes
    config.log_every = 200
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        outcome = visionflow.train(config, Path(tmp) / "run", dataset=ds)
        wall = time.perf_counter() - t
    return {"examples_per_sec": outcome.result.examples_per_sec, "train_seconds": outcome.result.seconds,
            "wall_seconds": wall, "accuracy": outcome.test.accuracy}


class _PerItemDataset(torch.utils.data.Dataset):
    """What pytorch/examples does: one PIL image at a time through ToTensor and Normalize."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        from torchvision import transforms

        self.images, self.labels = images[..., 0], labels
        self.transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def run_dataloader(ds, args, device) -> dict:
    torch.manual_seed(args.seed)
    model = build_model(ModelSpec("cnn", 10, (1, 28, 28))).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    workers = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = torch.utils.data.DataLoader(_PerItemDataset(ds.train.images, ds.train.labels), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True, **workers)
    total = int(args.epochs * len(loader))
    step, seen = 0, 0
    model.train()
    t = time.perf_counter()
    while step < total:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, total, 2e-3)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            loss.backward()
            optimizer.step()
            step, seen = step + 1, seen + len(y)
            if step >= total:
                break
    _sync(device)
    seconds = time.perf_counter() - t
    model.eval()
    test = _PerItemDataset(ds.test.images, ds.test.labels)
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test, batch_size=1000):
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    return {"examples_per_sec": seen / seconds, "train_seconds": seconds, "accuracy": correct / len(test)}


def run_keras(ds, args) -> dict | None:
    try:
        import keras
        from keras import layers
    except ImportError:
        return None
    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 5, padding="same"), layers.MaxPooling2D(2), layers.ReLU(),
        layers.Conv2D(64, 5, padding="same"), layers.MaxPooling2D(2), layers.ReLU(),
        layers.Flatten(), layers.Dense(1024, activation="relu"), layers.Dropout(0.4), layers.Dense(10),
    ])
    steps = int(args.epochs * (len(ds.train) // args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(0.0, steps - int(0.15 * steps), warmup_target=2e-3,
                                                      warmup_steps=int(0.15 * steps))
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                  metrics=["accuracy"])
    x = ((ds.train.images.astype("float32") / 255.0) - 0.2860) / 0.3530
    y = keras.utils.to_categorical(ds.train.labels, 10)
    n = (len(x) // args.batch_size) * args.batch_size
    t = time.perf_counter()
    model.fit(x[:n], y[:n], batch_size=args.batch_size, epochs=max(1, round(args.epochs)), verbose=0, shuffle=True)
    seconds = time.perf_counter() - t
    xt = ((ds.test.images.astype("float32") / 255.0) - 0.2860) / 0.3530
    _, accuracy = model.evaluate(xt, keras.utils.to_categorical(ds.test.labels, 10), verbose=0)
    return {"examples_per_sec": n * max(1, round(args.epochs)) / seconds, "train_seconds": seconds,
            "accuracy": float(accuracy), "keras": keras.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--dataset", choices=("fashion-mnist", "mnist"), default="fashion-mnist",
                        help="the catalog name of the IDX files in --data-dir")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="also time visionflow with --compile")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="also time visionflow with its step captured in CUDA graphs (--compile-mode reduce-overhead)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N training and test images")
    parser.add_argument("--skip", nargs="*", default=[], help="contenders to leave out")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    ds = load_dataset(args.dataset, args.data_dir)
    if args.limit:
        from visionflow.data.base import Dataset, Split

        cut = lambda s: Split(s.images[: args.limit], s.labels[: args.limit])  # noqa: E731
        ds = Dataset(ds.name, cut(ds.train), cut(ds.validation), cut(ds.test), ds.class_names)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    results: dict = {"device": str(device), "machine": machine, "torch": torch.__version__,
                     "epochs": args.epochs, "batch_size": args.batch_size,
                     "matmul_gflops": matmul_gflops(device)}
    contenders = {"visionflow": lambda: run_visionflow(ds, args, device),
                  "dataloader": lambda: run_dataloader(ds, args, device)}
    if args.compile:
        contenders["visionflow+compile"] = lambda: run_visionflow(ds, args, device, compile=True)
    if args.cuda_graph:
        contenders["visionflow+cudagraph"] = lambda: run_visionflow(ds, args, device, True, "reduce-overhead")
    if device.type == "cpu":
        contenders["keras"] = lambda: run_keras(ds, args)
    for name, fn in contenders.items():
        if name in args.skip:
            continue
        out = fn()
        if out is None:
            print(f"{name}: not installed, skipped", flush=True)
            continue
        results[name] = out
        print(f"{name:>18}: {out['examples_per_sec']:8,.0f} examples/s  {out['train_seconds']:7.1f} s  "
              f"test accuracy {out['accuracy']:.2%}", flush=True)
    ours = results["visionflow"]["examples_per_sec"]
    if "visionflow+cudagraph" in results:
        results["ratio_cudagraph_vs_dataloader"] = results["visionflow+cudagraph"]["examples_per_sec"] / \
            results["dataloader"]["examples_per_sec"] if "dataloader" in results else None
    for name in ("dataloader", "keras"):
        if name in results:
            results[f"ratio_vs_{name}"] = ours / results[name]["examples_per_sec"]
            print(f"visionflow / {name}: {results[f'ratio_vs_{name}']:.2f}x examples/s")
    achieved = ours * FLOPS_PER_EXAMPLE / 1e9
    results["fraction_of_matmul"] = achieved / results["matmul_gflops"]
    print(f"visionflow reaches {achieved:.0f} GFLOP/s = {results['fraction_of_matmul']:.0%} of the "
          f"{results['matmul_gflops']:.0f} GFLOP/s fp32 2048² matmul on {machine}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
