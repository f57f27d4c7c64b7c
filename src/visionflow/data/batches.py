"""The input pipeline: batches cut from uint8 images that live where the model runs.

In-memory arrays, files read from disk and standard datasets all become a `Split` of uint8
images; `TensorBatches` puts that split on the training device once (a GPU holds all of
MNIST in 47 MB) and shuffles, distorts, and normalises there, so there is no per-step
host-to-device copy and no per-item Python work.

Data order is a pure function of (seed, epoch) (`streams.Stream.ORDER`): resuming at global
step s replays exactly the batches an uninterrupted run would have seen, with no loader state
to save.  So are the distortions of `augment.Augment`, drawn per image and epoch and applied
to whole batches on the device.
"""

from __future__ import annotations

from typing import Iterator, Optional

import torch

from ..core.distributed import part_of
from ..errors import InputError
from ..preprocessing import Preprocessing
from .augment import Augment
from .base import Split
from .distort import Draws, cutout, draw_epoch, photometric, spatial, zoom
from .streams import Stream, epoch_generator


class TensorBatches:
    """Batches of (model inputs, labels (B,) int64) on `device`.

    With a `preprocessing`, the split holds uint8 images (N, H, W, C) and batches are normalised
    (B, C, h, w) float32, distorted first when `augment` distorts; with None, the split holds
    model inputs already (bottleneck vectors (N, D)) and batches are those rows as they are.
    """

    def __init__(
        self,
        split: Split,
        preprocessing: Optional[Preprocessing],
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        augment: Augment | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise InputError(f"batch size {batch_size} (the global batch) does not divide among {world_size} processes")
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device)
        self.images = torch.from_numpy(split.images).to(self.device)
        self.labels = torch.from_numpy(split.labels).to(self.device)
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last and len(self.labels) >= batch_size
        self.augment = augment if augment is not None and augment.distorts and preprocessing is not None else None

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    @property
    def steps_per_epoch(self) -> int:
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    @property
    def tta(self) -> int:
        """The test-time augmentation level evaluation applies to these inputs."""
        return self.preprocessing.tta if self.preprocessing is not None else 0

    def inputs(self, count: int) -> torch.Tensor:
        """The first `count` inputs as the model sees them at evaluation (no distortion)."""
        return self._normalize(self.images[:count])

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        return self.preprocessing.normalize(images) if self.preprocessing is not None else images

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of `epoch`, beginning with batch number `start`."""
        n, b = self.num_examples, self.batch_size
        order = None
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, epoch, Stream.ORDER)).to(self.device)
        draws = None
        if self.augment is not None:
            _, h, w, _ = self.images.shape
            draws = draw_epoch(self.augment, n, h, w, self.seed, epoch, self.device)
        for i in range(start, self.steps_per_epoch):
            lo, hi = part_of(i * b, min((i + 1) * b, n), self.rank, self.world_size)
            index = order[lo:hi] if order is not None else slice(lo, hi)
            images = self.images[index]
            if draws is not None:
                rows = index if order is not None else torch.arange(lo, hi, device=self.device)
                yield self.distort(images, draws.take(rows)), self.labels[index]
            else:
                yield self._normalize(images), self.labels[index]

    def shard(self, rank: int, world_size: int) -> "TensorBatches":
        """The same batches over this rank's contiguous share of the examples (for evaluation)."""
        lo, hi = part_of(0, self.num_examples, rank, world_size)
        part = TensorBatches.__new__(TensorBatches)
        part.__dict__.update(self.__dict__)
        part.images, part.labels = self.images[lo:hi], self.labels[lo:hi]
        part.rank, part.world_size = 0, 1
        return part

    def distort(self, images: torch.Tensor, draws: Draws) -> torch.Tensor:
        """(B, H, W, C) uint8 → distorted, standardized model input (B, C, h, w) float32, channels-last.

        Crop, translation and flip are one gather on the uint8 pixels (4x less memory traffic
        than on floats); zoom, brightness and contrast run on 0–255 floats; standardization is
        the model's own (`Preprocessing`), and cutout zeroes a square of the standardized image.
        """
        augment, preprocessing = self.augment, self.preprocessing
        assert augment is not None and preprocessing is not None
        if draws.top is not None or draws.flip is not None:
            images = spatial(images, augment, draws)
        x = images.permute(0, 3, 1, 2).float()
        if draws.zoom is not None:
            x = zoom(x, draws.zoom)
        x = preprocessing.standardize_floats(photometric(x, draws))
        if draws.cut_top is not None:
            x = cutout(x, draws.cut_top, draws.cut_left, augment.cutout).contiguous(memory_format=torch.channels_last)
        return x
