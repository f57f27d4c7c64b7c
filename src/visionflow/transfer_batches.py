"""Training batches for transfer learning, on top of the pipeline's `TensorBatches`.

Both kinds keep `TensorBatches`' data order — a pure function of (seed, epoch), so a resumed
run sees exactly the batches an uninterrupted one would:

* `feature_batches`: cached bottleneck vectors (B, D) float32, fed to the model as they are;
* `DistortedBatches`: uint8 images, each randomly cropped, mirrored and brightened anew every
  epoch (retrain.py's `--random_crop`, `--flip_left_right`, `--random_brightness`), then
  normalised by the backbone's preprocessing.  The random draws of batch i of epoch e come
  from their own generator, so they too replay exactly on resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .datasets import Split
from .pipeline import TensorBatches, epoch_generator
from .preprocessing import Preprocessing


class PassThrough:
    """The 'preprocessing' of inputs that are model inputs already (bottleneck vectors)."""

    def normalize(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs


def feature_batches(features: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device,
                    shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> TensorBatches:
    """Batches of (bottlenecks (B, D) float32, labels (B,) int64) on `device`."""
    return TensorBatches(Split(features, labels), PassThrough(), batch_size, device,  # type: ignore[arg-type]
                         shuffle=shuffle, seed=seed, drop_last=drop_last)


@dataclass(frozen=True)
class Distortions:
    """How much each training image is changed, per image and epoch.

    `crop`: up to this fraction of the width and height is cut away (the kept window, placed at
    random, is scaled back to full size); `flip`: mirror left-right half of the time;
    `brightness`: pixel values are multiplied by a factor drawn from [1 - b, 1 + b].
    """

    crop: float = 0.1
    flip: bool = True
    brightness: float = 0.1


class DistortedBatches(TensorBatches):
    """Shuffled batches of randomly distorted images (B, C, H, W), normalised by `preprocessing`."""

    #: generator streams 0 and 1 belong to TensorBatches (order, shifts); batch i uses FIRST_STREAM + i.
    FIRST_STREAM = 2

    def __init__(self, split: Split, preprocessing: Preprocessing, batch_size: int, device: torch.device,
                 seed: int = 0, distortions: Distortions = Distortions(), drop_last: bool = True) -> None:
        super().__init__(split, PassThrough(), batch_size, device, shuffle=True, seed=seed,  # type: ignore[arg-type]
                         drop_last=drop_last)
        self.target = preprocessing
        self.distortions = distortions

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i, (images, labels) in enumerate(super().epoch(epoch, start), start):
            generator = epoch_generator(self.seed, epoch, self.FIRST_STREAM + i)
            yield self.target.normalize(distort(images, generator, self.distortions)), labels


def distort(images: torch.Tensor, generator: torch.Generator, distortions: Distortions) -> torch.Tensor:
    """(B, H, W, C) uint8 → (B, H, W, C) float32 in 0–255, each image cropped, flipped and brightened.

    One affine resampling (bilinear, edges repeated) does crop, rescale and flip together; the
    random numbers are drawn on the CPU from `generator`, so every device gets the same images.
    """
    b = len(images)
    kept = 1.0 - distortions.crop * torch.rand(b, generator=generator)  # fraction of each side kept
    shift_x = (2 * torch.rand(b, generator=generator) - 1) * (1 - kept)  # window centre, in [-1, 1] units
    shift_y = (2 * torch.rand(b, generator=generator) - 1) * (1 - kept)
    mirror = torch.rand(b, generator=generator) < 0.5 if distortions.flip else torch.zeros(b, dtype=torch.bool)
    factor = 1 + distortions.brightness * (2 * torch.rand(b, generator=generator) - 1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.where(mirror, -kept, kept)
    theta[:, 0, 2] = shift_x
    theta[:, 1, 1] = kept
    theta[:, 1, 2] = shift_y
    x = images.permute(0, 3, 1, 2).float()
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = (x * factor.to(x.device).view(b, 1, 1, 1)).clamp_(0, 255)
    return x.permute(0, 2, 3, 1)
