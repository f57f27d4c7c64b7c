"""Benchmark: the CIFAR-10 input pipeline alone — TFRecord shards → decoded, distorted batches —
against torchvision's ImageFolder + DataLoader on the same JPEGs, in one run.

Data: the 10,000 JPEG records of ../shared/data/cifar10-jpeg's test shard; for the peer the very
same JPEG bytes are written as an image folder (one sub-folder per class).  Distortions: the
tutorial's (random 24×24 crop, random flip, brightness ±63, contrast 0.2–1.8, per-image
standardization), float (B, 3, 24, 24) batches of `--batch-size` out.  No model: images/s of
finished batches, over two epochs (the first includes start-up: workers, shard opening).

Contenders:
  visionflow stream    `shards.stream_decoded_batches` (shards in a seeded order, a shuffle
                       buffer, JPEGs decoded a batch at a time with libjpeg-turbo) and
                       `augment`'s batched distortions, all in this process
  visionflow cached    the training path: the decoded-array cache (`shards.load_split`, after its
                       first run) and `pipeline.TensorBatches` with the same distortions
  ImageFolder          `torchvision.datasets.ImageFolder` (PIL decode) + `transforms.v2` per image
                       with TF's brightness/contrast/standardization, in `--workers` DataLoader
                       workers (persistent, prefetch 4), shuffled

    python bench/input_pipeline.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from train_cifar_cnn import per_image_standardization as peer_standardize  # noqa: E402
from train_cifar_cnn import random_brightness, random_contrast  # noqa: E402
from visionflow.data.augment import Augment  # noqa: E402
from visionflow.data.base import Split  # noqa: E402
from visionflow.data.batches import TensorBatches  # noqa: E402
from visionflow.data.distort import draw_epoch  # noqa: E402
from visionflow.data.shards import load_split, read_labels_file, stream_decoded_batches  # noqa: E402
from visionflow.data.tfrecord_images import export_image_folder  # noqa: E402
from visionflow.models.cifar_cnn import TUTORIAL_DISTORTIONS  # noqa: E402
from visionflow.preprocessing import Preprocessing  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"
AUGMENT = Augment(**TUTORIAL_DISTORTIONS)


def stream_epoch(shard: Path, count: int, batches: TensorBatches, epoch: int) -> int:
    """One epoch of batches streamed from `shard`, distorted as `batches` distorts its resident ones;
    returns the images delivered."""
    draws = draw_epoch(AUGMENT, count, 32, 32, batches.seed, epoch)
    done = 0
    for images, _ in stream_decoded_batches([shard], batches.batch_size, batches.seed, epoch):
        x = batches.distort(torch.from_numpy(images), draws.take(torch.arange(done, done + len(images))))
        done += len(x)
    return done


def cached_batches(shard: Path, batch_size: int, seed: int, cache: Path) -> TensorBatches:
    loaded = load_split([shard], cache_dir=cache)
    pre = Preprocessing(height=32, width=32, channels=3, mean=(0.0,) * 3, std=(1.0,) * 3,
                        center_crop=AUGMENT.crop, standardize=AUGMENT.standardize)
    return TensorBatches(Split(loaded.images, loaded.labels), pre, batch_size, "cpu", shuffle=True, seed=seed,
                         augment=AUGMENT)


def folder_loader(folder: Path, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    transform = v2.Compose([v2.PILToTensor(), v2.RandomCrop(24), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32), random_brightness, random_contrast, peer_standardize])
    extra = {"num_workers": workers, "persistent_workers": True, "prefetch_factor": 4} if workers else {}
    return torch.utils.data.DataLoader(ImageFolder(str(folder), transform=transform), batch_size=batch_size,
                                       shuffle=True, **extra)


def timed_epochs(run_epoch, epochs: int = 2) -> list[float]:
    """Images/s of each epoch; `run_epoch(epoch)` returns the images it delivered."""
    rates = []
    for epoch in range(epochs):
        started = time.perf_counter()
        count = run_epoch(epoch)
        rates.append(count / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the peer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    shard = CIFAR / "test-00000-of-00001.tfrecord"
    if not shard.exists():
        raise SystemExit(f"{shard} not found (../shared is not in a user checkout)")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "folder", Path(tmp) / "cache"
        names = read_labels_file(CIFAR / "labels.txt")
        export_image_folder([shard], folder, names, names, 10**6)  # the same JPEG bytes, as files
        count = sum(1 for _ in folder.rglob("*.jpg"))
        load_split([shard], cache_dir=cache)  # fill the decoded-array cache, as a first training run does

        batches = cached_batches(shard, args.batch_size, args.seed, cache)
        stream = timed_epochs(lambda e: stream_epoch(shard, count, batches, e))
        cached = timed_epochs(lambda e: sum(len(x) for x, _ in batches.epoch(e)))
        loader = folder_loader(folder, args.batch_size, args.workers)
        peer = timed_epochs(lambda e: sum(len(x) for x, _ in loader))
    results = {"images": count, "batch_size": args.batch_size, "workers": args.workers,
               "visionflow_stream": stream, "visionflow_cached": cached, "imagefolder_dataloader": peer,
               "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "torch": torch.__version__,
               "python": platform.python_version()}
    print(f"{count:,} CIFAR-10 JPEGs, batch {args.batch_size}; images/s, epoch 1 (with start-up) / epoch 2:")
    for name, rates in (("visionflow stream (TFRecord)", stream), ("visionflow cached (training path)", cached),
                        (f"ImageFolder + DataLoader ({args.workers} workers)", peer)):
        print(f"  {name:<40} {rates[0]:>9,.0f} / {rates[1]:>9,.0f}   {rates[1] / peer[1]:5.2f}x the peer (epoch 2)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
