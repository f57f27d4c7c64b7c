"""The one description of training distortions: what each setting does, in which units.

`Augment` is saved in every model directory's config and set by recipes and flags; the
distortions themselves run in data.distort, batched on the training device.  Its evaluation-time
choices (central crop, standardization, test-time augmentation) become part of the model's
input contract (`Preprocessing`) when a run starts.

Units, once: spatial sizes are pixels of the stored image; `brightness` is a fraction of the
full pixel range (TensorFlow's 0–1 float scale: 63/255 is the CIFAR tutorial's 63); `contrast`,
`zoom` and `brightness_factor` are unitless factors or fractions.  Every random value is drawn
per training image and epoch from a named stream (data.streams), so resuming replays them exactly.

This module imports neither torch nor numpy: the CLI builds its flags from it.
"""

from __future__ import annotations

from dataclasses import dataclass

FLIPS = ("none", "random", "alternating")
PAD_MODES = ("zeros", "reflect")
STANDARDIZATIONS = ("channel", "per_image")
TTA_LEVELS = (0, 1, 2)


@dataclass(frozen=True)
class Augment:
    """How training images are distorted, and the evaluation-time choices tied to that.

    Training (per image, per epoch; applied in this order):
      `crop`        side of a random square crop (TF `random_crop`), 0 for none.  Evaluation,
                    prediction and export then take the central `crop`×`crop` window.
      `pad`         pad by this many pixels (`pad_mode` zeros or reflect) before cropping back to
                    the crop size (or the full size): pad-and-crop, i.e. a random translation by
                    up to `pad` pixels each way (`--augment-shift N` is `--pad N`).
      `flip`        "random": left-right mirror with probability 1/2 (TF `random_flip_left_right`);
                    "alternating": each image gets a fixed random mirror bit and the bit inverts
                    every epoch, so over any 2 consecutive epochs it is seen both ways (airbench).
      `zoom`        cut away up to this fraction of each side: a window (1 - u·zoom) of the width
                    and height, u ~ U[0, 1), centred at random, is scaled back to the full size
                    (bilinear, edge pixels repeated) — retrain.py's `--random_crop` percentage / 100.
      `brightness`  TF `random_brightness`: add delta ~ U[-max, max) (no clipping, as TF's float path).
      `contrast`    (lower, upper) of TF `random_contrast`: factor ~ U[lower, upper), applied per
                    image and channel as (x - mean) * factor + mean; (1, 1) is off.
      `brightness_factor`  multiply every pixel by a factor ~ U[1 - b, 1 + b), then clip to the
                    pixel range — retrain.py's `--random_brightness` percentage / 100.
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
    zoom: float = 0.0
    brightness_factor: float = 0.0

    @property
    def distorts(self) -> bool:
        """True when training images are changed at all (else the plain pipeline is used)."""
        return bool(self.crop or self.pad or self.flip != "none" or self.brightness or self.zoom
                    or tuple(self.contrast) != (1.0, 1.0) or self.brightness_factor or self.cutout)

    def problems(self, height: int | None = None, width: int | None = None, flags: bool = True) -> list[str]:
        """What is wrong with these settings (for images of height×width when given), named as
        command-line flags (`--crop`) or, with `flags` False, as Python fields (`augment.crop`)."""
        lower, upper = self.contrast
        checks = [
            (self.crop >= 0, "{crop} must be 0 or more"),
            (self.pad >= 0, "{pad} must be 0 or more"),
            (self.pad_mode in PAD_MODES, f"{{pad_mode}} must be one of {', '.join(PAD_MODES)}"),
            (self.flip in FLIPS, f"{{flip}} must be one of {', '.join(FLIPS)}"),
            (0 <= self.brightness, "{brightness} must be 0 or more"),
            (0 <= lower <= upper, "{contrast} needs 0 <= LOWER <= UPPER"),
            (self.cutout >= 0, "{cutout} must be 0 or more"),
            (self.standardize in STANDARDIZATIONS, f"{{standardize}} must be one of {', '.join(STANDARDIZATIONS)}"),
            (self.tta in TTA_LEVELS, "{tta} must be 0, 1 or 2"),
            (0 <= self.zoom < 1, "{zoom} must be in [0, 1)"),
            (0 <= self.brightness_factor < 1, "{brightness_factor} must be in [0, 1)"),
        ]
        if height is not None and width is not None:
            side = min(height, width)
            checks += [
                (self.crop <= side + 2 * self.pad, f"{{crop}} {self.crop} is larger than the {height}x{width} images"),
                (self.pad_mode != "reflect" or self.pad < side,
                 f"{{pad}} {self.pad} with reflect padding needs images larger than {self.pad} pixels"),
                (self.cutout <= (self.crop or side), f"{{cutout}} {self.cutout} is larger than the training crop"),
            ]
        names = _Names(flags)
        return [message.format_map(names) for ok, message in checks if not ok]


class _Names(dict):
    def __init__(self, flags: bool) -> None:
        super().__init__()
        self.flags = flags

    def __missing__(self, key: str) -> str:
        return "--" + key.replace("_", "-") if self.flags else f"augment.{key}"


#: `visionflow retrain --distortions`: retrain.py's distortions at 10% — zoom into up to 10% of
#: each side, mirror half of the images, scale brightness by up to ±10%.
RETRAIN_DISTORTIONS = Augment(zoom=0.1, flip="random", brightness_factor=0.1)
