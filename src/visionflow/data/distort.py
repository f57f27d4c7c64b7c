"""Training distortions with TensorFlow's semantics, batched on the training device.

The CIFAR-10 tutorial's `distorted_inputs` (random 24×24 crop, random left-right flip, random
brightness, random contrast, per-image standardization), ResNet-style pad-and-crop, cutout, the
fast recipes' "alternating flip" and retrain.py's zoom and brightness scaling — as `augment.Augment`
describes them — applied to a whole batch at once where the images live (GPU or CPU) instead of
image by image in loader workers.

Every random number of an epoch is drawn up front on the CPU from its named stream
(`streams.Stream`), one value per *training image* (not per batch position), so the distortions
an image gets are a pure function of (seed, epoch, image): a run resumed at any step replays
exactly what an uninterrupted run would have seen, on any device.

Pixel units: images arrive as uint8 0–255 (N, H, W, C).  Spatial steps (crop, translate, flip)
are one gather on the uint8 pixels; zoom and the photometric steps run on float32 in 0–255
units, as the tutorial's float32 image, without saturation (TF's float path does not clip) except
where retrain.py clips (`brightness_factor`).  Images of another size than the model's are
resized before they get here (`Preprocessing.fit_image`, at predict).

On the CPU too this beats DataLoader workers distorting image by image: on the project's 2-core
machine it turns out ~41,000 distorted, standardized 24×24 CIFAR training images/s, against
~3,200/s for torchvision v2 transforms in 2 DataLoader workers (bench/train_cifar_cnn.py), and no
worker processes compete with the training step for the cores; so visionflow uses no workers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from .augment import Augment
from .streams import Stream, epoch_generator


@dataclass
class Draws:
    """One epoch's random numbers, one row per training image (tensors on the training device).

    `top`, `left`: (N,) int64 crop corner in the padded image; `flip`: (N,) bool; `brightness`:
    (N,) float32 delta in 0–255 units; `contrast`: (N,) float32 factor; `cut_top`, `cut_left`:
    (N,) int64 cutout corner; `zoom`: (N, 3) float32 kept fraction of each side and the window
    centre (x, y) in [-1, 1] units; `factor`: (N,) float32 brightness factor.  Absent draws are None.
    """

    top: torch.Tensor | None = None
    left: torch.Tensor | None = None
    flip: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    cut_top: torch.Tensor | None = None
    cut_left: torch.Tensor | None = None
    zoom: torch.Tensor | None = None
    factor: torch.Tensor | None = None

    def take(self, index: torch.Tensor) -> "Draws":
        """The rows of the images in `index` (a batch)."""
        return Draws(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                        for f in fields(self)})


def output_size(augment: Augment, height: int, width: int) -> tuple[int, int]:
    """(H, W) of a training image after the spatial distortions: the crop, else unchanged."""
    return (augment.crop, augment.crop) if augment.crop else (height, width)


def draw_epoch(augment: Augment, n: int, height: int, width: int, seed: int, epoch: int,
               device: torch.device | str = "cpu") -> Draws:
    """Draw every random number of epoch `epoch` for `n` images of height×width.

    Draws come from `streams.epoch_generator(seed, epoch, stream)` on the CPU, one stream per
    kind, so switching one distortion on or off does not change the others.  The alternating
    flip's fixed bit per image comes from epoch 0's flip stream and is inverted on odd epochs.
    """

    def generator_for(stream: Stream) -> torch.Generator:
        return epoch_generator(seed, epoch, stream)

    out_h, out_w = output_size(augment, height, width)
    draws = Draws()
    if augment.crop or augment.pad:
        span_h = height + 2 * augment.pad - out_h + 1
        span_w = width + 2 * augment.pad - out_w + 1
        g = generator_for(Stream.CROP)
        draws.top = torch.randint(0, span_h, (n,), generator=g)
        draws.left = torch.randint(0, span_w, (n,), generator=g)
    if augment.flip == "random":
        draws.flip = torch.rand(n, generator=generator_for(Stream.FLIP)) < 0.5
    elif augment.flip == "alternating":
        fixed = torch.rand(n, generator=epoch_generator(seed, 0, Stream.FLIP)) < 0.5
        draws.flip = fixed ^ bool(epoch % 2)
    if augment.brightness:
        u = torch.rand(n, generator=generator_for(Stream.BRIGHTNESS))
        draws.brightness = (2 * u - 1) * (augment.brightness * 255.0)
    lower, upper = augment.contrast
    if (lower, upper) != (1.0, 1.0):
        draws.contrast = lower + (upper - lower) * torch.rand(n, generator=generator_for(Stream.CONTRAST))
    if augment.cutout:
        g = generator_for(Stream.CUTOUT)
        draws.cut_top = torch.randint(0, out_h - augment.cutout + 1, (n,), generator=g)
        draws.cut_left = torch.randint(0, out_w - augment.cutout + 1, (n,), generator=g)
    if augment.zoom:
        u = torch.rand(n, 3, generator=generator_for(Stream.ZOOM))
        kept = 1.0 - augment.zoom * u[:, 0]
        draws.zoom = torch.stack([kept, (2 * u[:, 1] - 1) * (1 - kept), (2 * u[:, 2] - 1) * (1 - kept)], dim=1)
    if augment.brightness_factor:
        u = torch.rand(n, generator=generator_for(Stream.BRIGHTNESS_FACTOR))
        draws.factor = 1.0 + augment.brightness_factor * (2 * u - 1)
    for name, value in vars(draws).items():
        if value is not None:
            setattr(draws, name, value.to(device, non_blocking=True))
    return draws


def source_index(start: torch.Tensor, size: int, length: int, pad: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows (or columns) of the original image read by windows starting at `start` in the padded image.

    `start` (B,) are corners in an image padded by `pad` on both sides.  Returns (B, size) int64
    indices into 0..length-1 and a (B, size) bool mask of those that fall on real pixels: with
    "reflect" every index is real (mirrored about the edge pixel, as F.pad's reflect); with
    "zeros" the masked-out ones read as 0.
    """
    idx = start[:, None] - pad + torch.arange(size, device=start.device)
    if mode == "reflect":
        idx = idx.abs()
        idx = torch.where(idx >= length, 2 * (length - 1) - idx, idx)
        return idx, torch.ones_like(idx, dtype=torch.bool)
    valid = (idx >= 0) & (idx < length)
    return idx.clamp(0, length - 1), valid


def spatial(images: torch.Tensor, augment: Augment, draws: Draws, channels_last: bool = True) -> torch.Tensor:
    """Crop / translate / flip a batch in one gather; dtype (uint8 or float) is kept.

    `images` is (B, H, W, C) when `channels_last`, else (B, C, H, W); the result has the same
    layout with the output size of `output_size`.
    """
    if channels_last:
        b, h, w, _ = images.shape
    else:
        b, _, h, w = images.shape
    out_h, out_w = output_size(augment, h, w)
    device = images.device
    if draws.top is not None:
        rows, row_ok = source_index(draws.top, out_h, h, augment.pad, augment.pad_mode)
        cols, col_ok = source_index(draws.left, out_w, w, augment.pad, augment.pad_mode)
    else:
        rows = torch.arange(h, device=device).expand(b, h)
        cols = torch.arange(w, device=device).expand(b, w)
        row_ok = col_ok = None
    if draws.flip is not None:
        cols = torch.where(draws.flip[:, None], cols.flip(1), cols)
        if col_ok is not None:
            col_ok = torch.where(draws.flip[:, None], col_ok.flip(1), col_ok)
    batch = torch.arange(b, device=device)[:, None, None]
    if channels_last:
        out = images[batch, rows[:, :, None], cols[:, None, :]]  # (B, out_h, out_w, C)
    else:
        out = images[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if row_ok is not None and augment.pad_mode == "zeros" and augment.pad:
        mask = row_ok[:, :, None] & col_ok[:, None, :]
        out = out * (mask[..., None] if channels_last else mask[:, None]).to(out.dtype)
    return out


def adjust_brightness(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """TF `adjust_brightness` on a float image: x + delta, per image; `x` (B, C, H, W), `delta` (B,)."""
    return x + delta.to(x.dtype).view(-1, 1, 1, 1)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """TF `adjust_contrast`: (x - mean) * factor + mean, the mean taken per image and channel over H×W."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return torch.addcmul(mean, x - mean, factor.to(x.dtype).view(-1, 1, 1, 1))


def cutout(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a size×size square of each (B, C, H, W) image with its corner at (top, left)."""
    rows = torch.arange(x.shape[2], device=x.device) - top[:, None]
    cols = torch.arange(x.shape[3], device=x.device) - left[:, None]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return x.masked_fill(inside[:, None], 0.0)


def photometric(x: torch.Tensor, draws: Draws) -> torch.Tensor:
    """Brightness then contrast (the tutorial's order), then retrain's brightness factor (clipped
    to 0–255), on (B, C, H, W) float32 in 0–255 units."""
    if draws.brightness is not None:
        x = adjust_brightness(x, draws.brightness)
    if draws.contrast is not None:
        x = adjust_contrast(x, draws.contrast)
    if draws.factor is not None:
        x = (x * draws.factor.to(x.dtype).view(-1, 1, 1, 1)).clamp_(0.0, 255.0)
    return x


def zoom(x: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Scale a window of each (B, C, H, W) float image back to full size: one affine resampling.

    `windows` (B, 3): the fraction of each side kept and the window centre (x, y) in [-1, 1]
    units.  Bilinear, edge pixels repeated outside the image (retrain.py's crop-and-resize).
    """
    b = len(x)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    kept = windows[:, 0].to(x.dtype)
    theta[:, 0, 0] = kept
    theta[:, 1, 1] = kept
    theta[:, 0, 2] = windows[:, 1].to(x.dtype)
    theta[:, 1, 2] = windows[:, 2].to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
