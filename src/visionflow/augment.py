"""Training distortions with TensorFlow's semantics, batched on the training device.

The CIFAR-10 tutorial's `distorted_inputs` (random 24×24 crop, random left-right flip, random
brightness, random contrast, per-image standardization), ResNet-style pad-and-crop, cutout and
the fast recipes' "alternating flip", applied to a whole batch at once where the images live
(GPU or CPU) instead of image by image in loader workers.

Every random number of an epoch is drawn up front on the CPU from the pipeline's per-epoch
generators (`pipeline.epoch_generator`), one value per *training image* (not per batch
position), so the distortions an image gets are a pure function of (seed, epoch, image): a run
resumed at any step replays exactly what an uninterrupted run would have seen, on any device.

Pixel units: images arrive as uint8 0–255 (N, H, W, C).  Spatial steps (crop, translate, flip)
are one gather on the uint8 pixels; the photometric steps run on float32 in 0–255 units, as the
tutorial's float32 image, without saturation (TF's float path does not clip).  Images of another
size than the model's are resized before they get here (`Preprocessing.fit_image`, at predict).

On the CPU too this beats DataLoader workers distorting image by image: on the project's 2-core
machine it turns out ~41,000 distorted, standardized 24×24 CIFAR training images/s, against
~3,200/s for torchvision v2 transforms in 2 DataLoader workers (bench/train_cifar_cnn.py), and no
worker processes compete with the training step for the cores; so visionflow uses no workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

FLIPS = ("none", "random", "alternating")
PAD_MODES = ("zeros", "reflect")
STANDARDIZATIONS = ("channel", "per_image")
TTA_LEVELS = (0, 1, 2)

#: Generator streams of the per-epoch draws (stream 0 is the data order, 1 `augment_shift`).
_STREAM_CROP, _STREAM_FLIP, _STREAM_BRIGHTNESS, _STREAM_CONTRAST, _STREAM_CUTOUT = 101, 102, 103, 104, 105


@dataclass(frozen=True)
class Augment:
    """How training images are distorted, and the two evaluation-time choices tied to them.

    Training (per image, per epoch):
      `crop`        side of a random square crop (TF `random_crop`), 0 for none.  Evaluation,
                    prediction and export then take the central `crop`×`crop` window.
      `pad`         pad by this many pixels (`pad_mode` zeros or reflect) before cropping back to
                    the crop size (or the full size): pad-and-crop, i.e. a random translation.
      `flip`        "random": left-right mirror with probability 1/2 (TF `random_flip_left_right`);
                    "alternating": each image gets a fixed random mirror bit and the bit inverts
                    every epoch, so over any 2 consecutive epochs it is seen both ways (airbench).
      `brightness`  TF `random_brightness` max_delta, in units of the full pixel range (0–1 scale;
                    the tutorial's 63 on its 0–255 float image is 63/255); delta ~ U[-max, max).
      `contrast`    (lower, upper) of TF `random_contrast`: factor ~ U[lower, upper), applied per
                    image and channel as (x - mean) * factor + mean; (1, 1) is off.
      `cutout`      side of a square set to 0 after standardization (DeVries & Taylor), placed
                    fully inside the image at random; 0 is off.
    Training and evaluation:
      `standardize` "channel": fixed per-channel mean/std of the training set (Preprocessing);
                    "per_image": TF `per_image_standardization`, (x - mean) / max(std, 1/sqrt(N)).
      `tta`         test-time augmentation when evaluating and serving: 0 none, 1 mean of the image
                    and its mirror, 2 also two 1-pixel translations of both (airbench's level 2).
    """

    crop: int = 0
    pad: int = 0
    pad_mode: str = "zeros"
    flip: str = "none"
    brightness: float = 0.0
    contrast: tuple[float, float] = (1.0, 1.0)
    cutout: int = 0
    standardize: str = "channel"
    tta: int = 0

    @property
    def distorts(self) -> bool:
        """True when training images are changed at all (else the plain pipeline is used)."""
        return bool(self.crop or self.pad or self.flip != "none" or self.brightness
                    or tuple(self.contrast) != (1.0, 1.0) or self.cutout)

    def problems(self, height: int | None = None, width: int | None = None) -> list[str]:
        """What is wrong with these settings (for images of height×width when given), as flag messages."""
        out = []
        lower, upper = self.contrast
        checks = [
            (self.crop >= 0, "--crop must be 0 or more"),
            (self.pad >= 0, "--pad must be 0 or more"),
            (self.pad_mode in PAD_MODES, f"--pad-mode must be one of {', '.join(PAD_MODES)}"),
            (self.flip in FLIPS, f"--flip must be one of {', '.join(FLIPS)}"),
            (0 <= self.brightness, "--brightness must be 0 or more"),
            (0 <= lower <= upper, "--contrast needs 0 <= LOWER <= UPPER"),
            (self.cutout >= 0, "--cutout must be 0 or more"),
            (self.standardize in STANDARDIZATIONS, f"--standardize must be one of {', '.join(STANDARDIZATIONS)}"),
            (self.tta in TTA_LEVELS, "--tta must be 0, 1 or 2"),
        ]
        if height is not None and width is not None:
            side = min(height, width)
            checks += [
                (self.crop <= side + 2 * self.pad, f"--crop {self.crop} is larger than the {height}x{width} images"),
                (self.pad_mode != "reflect" or self.pad < side,
                 f"--pad {self.pad} with reflect padding needs images larger than {self.pad} pixels"),
                (self.cutout <= (self.crop or side), f"--cutout {self.cutout} is larger than the training crop"),
            ]
        for ok, message in checks:
            if not ok:
                out.append(message)
        return out


@dataclass
class Draws:
    """One epoch's random numbers, one row per training image (tensors on the training device).

    `top`, `left`: (N,) int64 crop corner in the padded image; `flip`: (N,) bool; `brightness`:
    (N,) float32 delta in 0–255 units; `contrast`: (N,) float32 factor; `cut_top`, `cut_left`:
    (N,) int64 cutout corner.  Absent draws are None.
    """

    top: torch.Tensor | None = None
    left: torch.Tensor | None = None
    flip: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    cut_top: torch.Tensor | None = None
    cut_left: torch.Tensor | None = None

    def take(self, index: torch.Tensor) -> "Draws":
        """The rows of the images in `index` (a batch)."""
        return Draws(*(None if t is None else t[index] for t in
                       (self.top, self.left, self.flip, self.brightness, self.contrast, self.cut_top, self.cut_left)))


def output_size(augment: Augment, height: int, width: int) -> tuple[int, int]:
    """(H, W) of a training image after the spatial distortions: the crop, else unchanged."""
    return (augment.crop, augment.crop) if augment.crop else (height, width)


def draw_epoch(augment: Augment, n: int, height: int, width: int, seed: int, epoch: int,
               device: torch.device | str = "cpu") -> Draws:
    """Draw every random number of epoch `epoch` for `n` images of height×width.

    Draws come from `pipeline.epoch_generator(seed, epoch, stream)` on the CPU, one stream per
    kind, so switching one distortion on or off does not change the others.  The alternating
    flip's fixed bit per image comes from epoch 0's flip stream and is inverted on odd epochs.
    """
    from .pipeline import epoch_generator

    def generator_for(stream: int) -> torch.Generator:
        return epoch_generator(seed, epoch, stream)

    out_h, out_w = output_size(augment, height, width)
    draws = Draws()
    if augment.crop or augment.pad:
        span_h = height + 2 * augment.pad - out_h + 1
        span_w = width + 2 * augment.pad - out_w + 1
        g = generator_for(_STREAM_CROP)
        draws.top = torch.randint(0, span_h, (n,), generator=g)
        draws.left = torch.randint(0, span_w, (n,), generator=g)
    if augment.flip == "random":
        draws.flip = torch.rand(n, generator=generator_for(_STREAM_FLIP)) < 0.5
    elif augment.flip == "alternating":
        fixed = torch.rand(n, generator=epoch_generator(seed, 0, _STREAM_FLIP)) < 0.5
        draws.flip = fixed ^ bool(epoch % 2)
    if augment.brightness:
        u = torch.rand(n, generator=generator_for(_STREAM_BRIGHTNESS))
        draws.brightness = (2 * u - 1) * (augment.brightness * 255.0)
    lower, upper = augment.contrast
    if (lower, upper) != (1.0, 1.0):
        draws.contrast = lower + (upper - lower) * torch.rand(n, generator=generator_for(_STREAM_CONTRAST))
    if augment.cutout:
        g = generator_for(_STREAM_CUTOUT)
        draws.cut_top = torch.randint(0, out_h - augment.cutout + 1, (n,), generator=g)
        draws.cut_left = torch.randint(0, out_w - augment.cutout + 1, (n,), generator=g)
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


def per_image_standardization(x: torch.Tensor) -> torch.Tensor:
    """TF `per_image_standardization` of (B, C, H, W) floats: (x - mean) / max(std, 1/sqrt(C·H·W)).

    Mean and (population) standard deviation are over all C·H·W values of each image, in the
    units given (the tutorial feeds 0–255 floats; the 1/sqrt(N) floor is in those units too).
    """
    n = x.shape[1] * x.shape[2] * x.shape[3]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = (x - mean).square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return (x - mean) / std.clamp(min=1.0 / math.sqrt(n))


def cutout(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Zero a size×size square of each (B, C, H, W) image with its corner at (top, left)."""
    rows = torch.arange(x.shape[2], device=x.device) - top[:, None]
    cols = torch.arange(x.shape[3], device=x.device) - left[:, None]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return x.masked_fill(inside[:, None], 0.0)


def center_crop(images: torch.Tensor, height: int, width: int, channels_last: bool = True) -> torch.Tensor:
    """The central height×width window (TF `resize_image_with_crop_or_pad` when cropping, as the
    tutorial's evaluation input: offsets (H - height) // 2 and (W - width) // 2)."""
    h, w = (images.shape[1], images.shape[2]) if channels_last else (images.shape[2], images.shape[3])
    if (h, w) == (height, width):
        return images
    top, left = (h - height) // 2, (w - width) // 2
    if channels_last:
        return images[:, top:top + height, left:left + width, :]
    return images[:, :, top:top + height, left:left + width]


def photometric(x: torch.Tensor, draws: Draws) -> torch.Tensor:
    """Brightness then contrast (the tutorial's order) on (B, C, H, W) float32 in 0–255 units."""
    if draws.brightness is not None:
        x = adjust_brightness(x, draws.brightness)
    if draws.contrast is not None:
        x = adjust_contrast(x, draws.contrast)
    return x


def tta_logits(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, level: int) -> torch.Tensor:
    """Logits of `model` averaged over test-time views of normalised inputs `x` (B, C, H, W).

    Level 0: x itself.  1: mean of x and its mirror image.  2: half the level-1 logits plus half the
    mean of level 1 on two copies of x translated by one pixel (up-left and down-right, reflect
    padded) — airbench's `infer_mirror_translate`.
    """
    if level <= 0:
        return model(x)

    def mirror(inputs: torch.Tensor) -> torch.Tensor:
        return 0.5 * model(inputs) + 0.5 * model(inputs.flip(-1))

    logits = mirror(x)
    if level == 1:
        return logits
    h, w = x.shape[2], x.shape[3]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = [padded[:, :, 0:h, 0:w], padded[:, :, 2:h + 2, 2:w + 2]]
    translated = 0.5 * mirror(shifted[0].contiguous(memory_format=torch.channels_last)) + \
        0.5 * mirror(shifted[1].contiguous(memory_format=torch.channels_last))
    return 0.5 * logits + 0.5 * translated


#: Command-line flags (dests) that set `Augment` fields; `visionflow train` gathers them into one
#: partial "augment" override (see `training.resolve_config`).
AUGMENT_FLAGS = ("crop", "pad", "pad_mode", "flip", "brightness", "contrast", "cutout", "standardize", "tta")


def add_augment_arguments(parser, default) -> None:
    """The `--crop … --tta` flags of `visionflow train` (argparse; `default` is argparse.SUPPRESS)."""
    group = parser.add_argument_group("input pipeline (defaults come from the model's recipe)")
    group.add_argument("--crop", type=int, default=default, help="random N×N training crop; evaluation takes the central N×N")
    group.add_argument("--pad", type=int, default=default, help="pad by N pixels before cropping (random translation)")
    group.add_argument("--pad-mode", choices=PAD_MODES, default=default)
    group.add_argument("--flip", choices=FLIPS, default=default, help="left-right flips: random, or alternating by epoch")
    group.add_argument("--brightness", type=float, default=default, help="max brightness delta, fraction of the pixel range")
    group.add_argument("--contrast", type=float, nargs=2, metavar=("LOWER", "UPPER"), default=default,
                       help="random contrast factor range (TF random_contrast)")
    group.add_argument("--cutout", type=int, default=default, help="zero a random N×N square of each training image")
    group.add_argument("--standardize", choices=STANDARDIZATIONS, default=default,
                       help="channel: dataset mean/std; per_image: TF per_image_standardization")
    group.add_argument("--tta", type=int, choices=TTA_LEVELS, default=default,
                       help="test-time augmentation: 0 none, 1 flip, 2 flip + 1-pixel translations")


def gather_augment_flags(flags: dict) -> dict:
    """Move the `AUGMENT_FLAGS` entries of parsed flags into one partial "augment" dict."""
    partial = {k: flags.pop(k) for k in AUGMENT_FLAGS if k in flags}
    if "contrast" in partial:
        partial["contrast"] = tuple(partial["contrast"])
    if partial:
        flags["augment"] = partial
    return flags
