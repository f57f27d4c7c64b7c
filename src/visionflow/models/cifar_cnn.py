"""`cifar-cnn`: the deep CNN of TensorFlow's CIFAR-10 tutorial (cifar10.py `inference`).

    conv 5×5 64 → ReLU → max-pool 3×3/2 (SAME) → LRN → conv 5×5 64 → ReLU → LRN → max-pool 3×3/2
    → dense 384 → ReLU → dense 192 → ReLU → logits

on 24×24 crops, with the tutorial's initialisers (truncated normals of its standard deviations,
its bias constants) and weight decay on the two hidden dense layers' weights only
(`optimizer_groups`).  The tutorial evaluates moving-average weights: its recipe sets
`ema_decay` 0.9999.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model


class LocalResponseNorm(nn.Module):
    """TensorFlow's `tf.nn.lrn`: x / (bias + alpha · Σ x²)^beta, Σ over channels c-r..c+r.

    TF's `alpha` multiplies the plain sum of squares.  `torch.nn.LocalResponseNorm(size, a)`
    divides its alpha by `size`, so the same function there is LocalResponseNorm(2r + 1,
    alpha·(2r + 1), beta, bias) — 0.001 for the tutorial's alpha 0.001/9 and r = 4.

    The windowed sum is a 1×1 convolution of x² with a fixed 0/1 band matrix: one small matrix
    product per pixel, fast in channels-last memory and exported to ONNX as a plain Conv.
    """

    def __init__(self, channels: int, depth_radius: int = 4, bias: float = 1.0, alpha: float = 0.001 / 9.0,
                 beta: float = 0.75) -> None:
        super().__init__()
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta
        c = torch.arange(channels)
        band = ((c[:, None] - c[None, :]).abs() <= depth_radius).float()
        self.register_buffer("band", band.view(channels, channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sums = F.conv2d(x * x, self.band.to(x.dtype))
        # d**-beta as exp(-beta·log d): d >= bias > 0, and on CPU pow with a fractional exponent
        # is several times slower than exp and log (measured: 36 vs 26 ms per 128×64×12×12 fwd+bwd).
        return x * torch.exp(torch.log(self.bias + self.alpha * sums) * -self.beta)


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """TF max-pool 3×3 stride 2 with SAME padding: ceil(n / 2) outputs; the window that runs past
    the bottom/right edge sees only real pixels, which is what ceil_mode does."""
    return F.max_pool2d(x, kernel_size=3, stride=2, ceil_mode=True)


def _truncated_normal_(tensor: torch.Tensor, std: float) -> torch.Tensor:
    """TF's truncated_normal_initializer: normal(0, std) redrawn outside ±2 std."""
    return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


#: The CIFAR-10 tutorial's input pipeline (cifar10_input.py `distorted_inputs`): random 24×24
#: crop, flip, brightness ±63/255, contrast 0.2–1.8, per-image standardization (evaluation: the
#: central 24×24, standardized).
TUTORIAL_DISTORTIONS = {"crop": 24, "flip": "random", "brightness": 63 / 255, "contrast": (0.2, 1.8),
                        "standardize": "per_image"}

#: cifar10_train.py: batch 128, weight decay 0.004 on the dense layers (`optimizer_groups`),
#: moving-average weights for evaluation (decay 0.9999 with TF's num_updates warm-up).  Momentum
#: SGD with a cosine schedule instead of plain SGD decayed 10x every 350 epochs, to finish in
#: tens rather than thousands of epochs.
RECIPE = {"epochs": 40, "batch_size": 128, "optimizer": "momentum", "momentum": 0.9, "lr": 0.02,
          "weight_decay": 0.004, "schedule": "cosine", "warmup": 0.02, "ema_decay": 0.9999,
          "augment": TUTORIAL_DISTORTIONS, "log_every": 100, "checkpoint_every": 1000}


#: SVHN: the tutorial's distortions less the mirror flip (a mirrored digit is another symbol).
SVHN_RECIPE = {**RECIPE, "augment": {**RECIPE["augment"], "flip": "none"}}


@register_model("cifar-cnn", recipes={"*": RECIPE, "svhn": SVHN_RECIPE})
class CifarCNN(nn.Module):
    """The CIFAR-10 tutorial's network; `input_shape` is (C, H, W) of the crops (3, 24, 24)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], local3: int = 384,
                 local4: int = 192) -> None:
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 64, 5, padding=2)
        self.norm1 = LocalResponseNorm(64)
        self.conv2 = nn.Conv2d(64, 64, 5, padding=2)
        self.norm2 = LocalResponseNorm(64)
        pooled_h, pooled_w = math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2)
        self.local3 = nn.Linear(64 * pooled_h * pooled_w, local3)
        self.local4 = nn.Linear(local3, local4)
        self.logits = nn.Linear(local4, num_classes)
        for layer, std, bias in ((self.conv1, 5e-2, 0.0), (self.conv2, 5e-2, 0.1), (self.local3, 0.04, 0.1),
                                 (self.local4, 0.04, 0.1), (self.logits, 1.0 / local4, 0.0)):
            _truncated_normal_(layer.weight.data, std)
            nn.init.constant_(layer.bias.data, bias)

    def optimizer_groups(self, config: object = None) -> list[dict]:
        """Weight decay on local3's and local4's weights only (the tutorial's wd=0.004 layers), whatever the optimizer."""
        decayed = [self.local3.weight, self.local4.weight]
        chosen = {id(p) for p in decayed}
        rest = [p for p in self.parameters() if id(p) not in chosen]
        return [{"params": decayed, "weight_decay_scale": 1.0}, {"params": rest, "weight_decay_scale": 0.0}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ReLU after the max-pool: the two commute (ReLU is monotonic) and it touches 4x fewer values.
        x = self.norm1(F.relu(_max_pool_same(self.conv1(x))))
        x = _max_pool_same(self.norm2(F.relu(self.conv2(x))))
        # Flattened in (H, W, C) order, TF's NHWC reshape: a free view of channels-last activations.
        x = F.relu(self.local3(x.permute(0, 2, 3, 1).flatten(1)))
        x = F.relu(self.local4(x))
        return self.logits(x)
