"""The model's input contract: how raw pixels become model input, saved with every model.

Training, evaluation, prediction, export and serving all turn raw uint8 pixels into model
input through one `Preprocessing`, whose settings are saved in the model directory and in
every exported signature, so a model is always fed exactly the way it was trained.  The
evaluation-time operations that contract names — the central crop, TensorFlow's per-image
standardization and the test-time augmentation views — live here too: training distortions
(data.distort) build on them, export and serving apply them, and none of those import each other.

torch and numpy are imported by the functions that use them, not by this module: reading a
saved contract (config.json, signature.json) must not cost a torch import.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model input.

    `height`×`width`×`channels` is the size of the raw images (what `predict` and a served model
    take).  `mean` and `std` are per channel in pixel units scaled to 0–1; `resize` names the PIL
    filter used when an image of another size is given to `predict`.  `crop` is the fraction
    of the resized image a central crop keeps (ImageNet-style evaluation, e.g. 0.875: resize
    the shorter side to 256, keep the central 224×224); None stretches the whole image to
    height×width, which is what models trained on fixed-size arrays expect.

    `center_crop` (H, W) is the central window of the raw image the model sees, for models
    trained on random crops (the CIFAR-10 tutorial's 24×24 of 32×32).  `standardize` is
    "channel" (the fixed per-channel mean/std) or "per_image" (TF's `per_image_standardization`
    of each image).  `tta` is the test-time augmentation level (see `tta_logits`) used
    by evaluation, prediction and export (`tta_logits`).  All three travel with the model to serving.
    `dtype` is the raw input's: "uint8" pixels, or "float32" tabular features (a CSV's numeric
    columns as a 1×1 image of D channels, whose mean and std are in units of value / 255).
    """

    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: str = "bilinear"
    crop: Optional[float] = None
    center_crop: Optional[tuple[int, int]] = None
    standardize: str = "channel"
    tta: int = 0
    dtype: str = "uint8"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one model input (the central crop when there is one)."""
        if self.center_crop:
            return (self.channels, self.center_crop[0], self.center_crop[1])
        return (self.channels, self.height, self.width)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) uint8 on any device → (N, C, h, w) float32 model input in channels-last memory.

        The central crop (when set) is a view, and a permuted NHWC tensor *is* a channels-last
        NCHW tensor, so with per-channel standardization this costs one fused multiply-add.
        """
        if self.center_crop:
            images = center_crop(images, *self.center_crop)
        return self.standardize_floats(images.permute(0, 3, 1, 2).float())

    def standardize_floats(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None,
                           shift: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N, C, H, W) float32 pixels in 0–255 units → standardized model input, channels-last.

        `scale` and `shift` are the per-channel constants as (1, C, 1, 1) tensors when the caller
        holds them (the export graph keeps them as buffers); by default they are made once per device.
        """
        import torch

        if self.standardize == "per_image":
            return per_image_standardization(x).contiguous(memory_format=torch.channels_last)
        if scale is None or shift is None:
            # While torch.export / torch.compile trace, tensors made here are fake: never cache those.
            affine = _make_affine if torch.compiler.is_compiling() else _affine
            scale, shift = affine(self.mean, self.std, x.device)
        return torch.addcmul(-shift, x, scale).contiguous(memory_format=torch.channels_last)

    def fit_image(self, image: Image.Image) -> np.ndarray:
        """A decoded PIL image of any size → (H, W, C) uint8 with this model's size and channels.

        Without `crop` the image is stretched to width×height.  With `crop` it is scaled,
        keeping its aspect ratio, until it covers (width/crop)×(height/crop) (rounded down, as
        timm's evaluation transform does), and the central width×height is kept.
        """
        import numpy as np

        image = image.convert("L" if self.channels == 1 else "RGB")
        resample = resample_filter(self.resize)
        if self.crop is None:
            if image.size != (self.width, self.height):
                image = image.resize((self.width, self.height), resample)
        else:
            w, h = image.size
            scale = max(math.floor(self.width / self.crop) / w, math.floor(self.height / self.crop) / h)
            size = (max(self.width, round(w * scale)), max(self.height, round(h * scale)))
            if size != image.size:
                image = image.resize(size, resample)
            left = int(round((size[0] - self.width) / 2.0))
            top = int(round((size[1] - self.height) / 2.0))
            image = image.crop((left, top, left + self.width, top + self.height))
        return np.asarray(image, dtype=np.uint8).reshape(self.height, self.width, self.channels)


def pixel_batch(array: np.ndarray, pre: Preprocessing, name: str = "array") -> np.ndarray:
    """Images in any accepted layout → (N, H, W, C) uint8 for the model `pre` describes.

    Layouts: one image (H, W), (H, W, C), (C, H, W) or flat (H·W·C,); a batch (N, H, W),
    (N, H, W, C), (N, C, H, W) — PyTorch's — or (N, H·W·C).  Values: uint8 0–255, other integers
    0–255, floats 0–1 (the tutorials' `mnist.test.images`); anything outside is refused rather
    than clipped (floats 0–16 are scikit-learn's digits, not pixels), with the range found.
    """
    import numpy as np

    from .errors import InputError

    array = np.asarray(array)
    h, w, c = pre.height, pre.width, pre.channels
    one = {(h, w, c): (h, w, c), (h * w * c,): (h, w, c)} | ({(h, w): (h, w, 1)} if c == 1 else {})
    if (c, h, w) != (h, w, c):
        one[(c, h, w)] = "nchw"
    if array.shape in one:
        array = array[None]
    if array.ndim >= 2 and array.shape[1:] in one:
        layout = one[array.shape[1:]]
        array = array.transpose(0, 2, 3, 1) if layout == "nchw" else array.reshape(len(array), h, w, c)
    else:
        raise InputError(f"{name}: array of shape {array.shape} does not hold {h}x{w}x{c} images "
                         "(N, H, W[, C]) or (N, C, H, W)")
    return np.ascontiguousarray(to_uint8(array, name))


def to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    """Pixel values → uint8: uint8 as is, other integers 0–255, floats 0–1 (× 255, rounded);
    InputError naming `name` and the range found for anything else (refused, not clipped: out of
    range nearly always means the values were scaled differently)."""
    import numpy as np

    from .errors import InputError

    kind = array.dtype.kind
    if kind == "u" and array.dtype.itemsize == 1:
        return array
    if kind == "f":
        if not np.isfinite(array).all():
            raise InputError(f"{name}: pixels contain NaN or infinity")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise InputError(f"{name}: float pixels must be in 0-1, got {array.min():g}..{array.max():g} "
                             "(pass integers 0-255, or scale the floats to 0-1)")
        return np.rint(array * 255.0).astype(np.uint8)
    if kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise InputError(f"{name}: integer pixels must be in 0-255, got {array.min()}..{array.max()}")
        return array.astype(np.uint8)
    raise InputError(f"{name}: pixels must be numbers, not {array.dtype}")


def resample_filter(name: str) -> int:
    """The PIL filter named by `Preprocessing.resize` (bilinear for an unknown name)."""
    from PIL import Image

    return {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
            "lanczos": Image.LANCZOS}.get(name, Image.BILINEAR)


def _make_affine(mean: tuple[float, ...], std: tuple[float, ...],
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) as (1, C, 1, 1) tensors, made once per device.

    Building them per batch would cost two blocking host-to-device copies per step on a GPU,
    each of which stalls the host until all queued kernels finish.
    """
    import torch

    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=device).view(1, -1, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], device=device).view(1, -1, 1, 1)
    return scale, shift


def fit_preprocessing(images: np.ndarray) -> Preprocessing:
    """Per-channel mean/std of (N, H, W, C) uint8 training images (in 0–1 units).

    Exact, from each channel's histogram of the 256 byte values, counted in blocks: a float64 copy
    of CIFAR-10's 150 M values took 13 s on a 2-core host (most of a GPU run's fixed cost); the
    histograms take well under a second and never hold more than one block's counts.

    Tabular features (float32 rows shaped (N, 1, 1, D): a CSV's numeric columns) get each
    feature's mean and std in the same units — the raw value divided by 255 — so that
    `normalize` standardizes every feature to mean 0, std 1.
    """
    import numpy as np

    n, h, w, c = images.shape
    if images.dtype != np.uint8:
        values = images.reshape(-1, c).astype(np.float64) / 255.0
        mean, std = values.mean(axis=0), values.std(axis=0)
        # a (nearly) constant feature carries nothing: scale it by 1 raw unit, as scikit-learn's
        # StandardScaler does, instead of blowing float32 rounding noise up to huge values
        std = np.where(std <= 1e-7 * np.maximum(np.abs(mean), 1.0 / 255.0), 1.0 / 255.0, std)
        return Preprocessing(channels=c, height=h, width=w, mean=tuple(float(m) for m in mean),
                             std=tuple(float(s) for s in std), dtype="float32")
    flat = images.reshape(-1, c)
    counts = np.zeros((c, 256), dtype=np.int64)
    block = 1 << 21
    for start in range(0, len(flat), block):
        part = flat[start:start + block]
        for channel in range(c):
            counts[channel] += np.bincount(part[:, channel], minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = max(len(flat), 1)
    mean = counts @ values / total
    variance = (counts * (values[None, :] - mean[:, None]) ** 2).sum(axis=1) / total
    std = np.maximum(np.sqrt(variance), 1e-3)
    return Preprocessing(channels=c, height=h, width=w,
                         mean=tuple(round(float(m), 6) for m in mean),
                         std=tuple(round(float(s), 6) for s in std))


_affine = functools.lru_cache(maxsize=64)(_make_affine)


def center_crop(images: torch.Tensor, height: int, width: int, channels_last: bool = True) -> torch.Tensor:
    """The central height×width window (TF `resize_image_with_crop_or_pad` when cropping, as the
    tutorial's evaluation input: offsets (H - height) // 2 and (W - width) // 2).

    `images` is (N, H, W, C) when `channels_last`, else (N, C, H, W); the result is a view.
    """
    h, w = (images.shape[1], images.shape[2]) if channels_last else (images.shape[2], images.shape[3])
    if (h, w) == (height, width):
        return images
    top, left = (h - height) // 2, (w - width) // 2
    if channels_last:
        return images[:, top:top + height, left:left + width, :]
    return images[:, :, top:top + height, left:left + width]


def per_image_standardization(x: torch.Tensor) -> torch.Tensor:
    """TF `per_image_standardization` of (B, C, H, W) floats: (x - mean) / max(std, 1/sqrt(C·H·W)).

    Mean and (population) standard deviation are over all C·H·W values of each image, in the
    units given (the tutorial feeds 0–255 floats; the 1/sqrt(N) floor is in those units too).
    """
    n = x.shape[1] * x.shape[2] * x.shape[3]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = (x - mean).square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    return (x - mean) / std.clamp(min=1.0 / math.sqrt(n))


def tta_logits(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, level: int) -> torch.Tensor:
    """Logits of `model` averaged over test-time views of normalised inputs `x` (B, C, H, W).

    Level 0: x itself.  1: mean of x and its mirror image.  2: half the level-1 logits plus half the
    mean of level 1 on two copies of x translated by one pixel (up-left and down-right, reflect
    padded) — airbench's `infer_mirror_translate`.
    """
    if level <= 0:
        return model(x)
    import torch
    import torch.nn.functional as F

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
