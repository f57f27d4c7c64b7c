"""The input pipeline: batches cut from uint8 images that live where the model runs.

In-memory arrays, files read from disk and standard datasets all become a `Split` of uint8
images; `TensorBatches` puts that split on the training device once (a GPU holds all of
MNIST in 47 MB) and shuffles, augments, and normalises there, so there is no per-step
host-to-device copy and no per-item Python work.

Data order is a pure function of (seed, epoch): resuming at global step s replays exactly
the batches an uninterrupted run would have seen, with no loader state to save.  So are the
distortions of `augment.Augment` (random crop, flip, brightness, contrast, cutout), drawn per
image and epoch and applied to whole batches on the device.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from .augment import Augment, Draws, cutout, draw_epoch, photometric, spatial
from .datasets import Split
from .preprocessing import Preprocessing


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one epoch's randomness, identical on every device and resume."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch * 7919 + stream) % (2**63))
    return g


class TensorBatches:
    """Batches of (normalised images (B,C,H,W) float, labels (B,) int64) on `device`."""

    def __init__(
        self,
        split: Split,
        preprocessing: Preprocessing,
        batch_size: int,
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        seed: int = 0,
        augment_shift: int = 0,
        drop_last: bool = False,
        augment: Augment | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.images = torch.from_numpy(split.images).to(self.device)
        self.labels = torch.from_numpy(split.labels).to(self.device)
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment_shift = augment_shift
        self.drop_last = drop_last and len(self.labels) >= batch_size
        self.augment = augment if augment is not None and augment.distorts else None

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    @property
    def steps_per_epoch(self) -> int:
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def inputs(self, count: int) -> torch.Tensor:
        """The first `count` images as the model sees them at evaluation (no distortion), (B, C, h, w)."""
        return self.preprocessing.normalize(self.images[:count])

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield the batches of `epoch`, beginning with batch number `start`."""
        n, b = self.num_examples, self.batch_size
        order = shifts = None
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, epoch)).to(self.device)
        if self.augment_shift:
            span = 2 * self.augment_shift + 1
            shifts = torch.randint(0, span, (n, 2), generator=epoch_generator(self.seed, epoch, 1)).to(self.device)
        draws = None
        if self.augment is not None:
            _, h, w, _ = self.images.shape
            draws = draw_epoch(self.augment, n, h, w, self.seed, epoch, self.device)
        for i in range(start, self.steps_per_epoch):
            index = order[i * b : (i + 1) * b] if order is not None else slice(i * b, (i + 1) * b)
            images = self.images[index]
            if shifts is not None:
                images = shift_images(images, shifts[i * b : i * b + len(images)], self.augment_shift)
            if draws is not None:
                rows = index if order is not None else torch.arange(i * b, i * b + len(images), device=self.device)
                yield self.distort(images, draws.take(rows)), self.labels[index]
            else:
                yield self.preprocessing.normalize(images), self.labels[index]

    def distort(self, images: torch.Tensor, draws: Draws) -> torch.Tensor:
        """(B, H, W, C) uint8 → distorted, standardized model input (B, C, h, w) float32, channels-last.

        Crop, translation and flip are one gather on the uint8 pixels (4x less memory traffic
        than on floats); brightness and contrast run on 0–255 floats; standardization is the
        model's own (`Preprocessing`), and cutout zeroes a square of the standardized image.
        """
        augment = self.augment
        assert augment is not None
        if draws.top is not None or draws.flip is not None:
            images = spatial(images, augment, draws)
        x = photometric(images.permute(0, 3, 1, 2).float(), draws)
        x = self.preprocessing.standardize_floats(x)
        if draws.cut_top is not None:
            x = cutout(x, draws.cut_top, draws.cut_left, augment.cutout).contiguous(memory_format=torch.channels_last)
        return x


def shift_images(images: torch.Tensor, offsets: torch.Tensor, pad: int) -> torch.Tensor:
    """Translate each (H, W, C) uint8 image by its own offset in [-pad, pad] pixels, zero-filled.

    `offsets` is (B, 2) in [0, 2*pad]: the top-left corner of the crop in the padded image.
    """
    b, h, w, _ = images.shape
    padded = F.pad(images, (0, 0, pad, pad, pad, pad))
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)
    cols = offsets[:, 1:2] + torch.arange(w, device=images.device)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]
