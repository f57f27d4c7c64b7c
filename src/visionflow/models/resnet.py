"""CIFAR ResNets of He et al. as TensorFlow's cifar10_estimator builds them.

`resnet20`, `resnet32`, `resnet44`, `resnet56`, `resnet110`: 6n + 2 layers — a 3×3 conv of 16
channels, then 3 stages of n basic blocks of 16 / 32 / 64 channels (stride 2 entering stages 2
and 3), global average pooling and a dense layer.  The `-v2` names are the pre-activation
variants (He et al., "Identity Mappings in Deep Residual Networks").

Shortcuts where the shape changes are "A" by default, as the estimator's `_residual_v1`/`_v2`:
2×2 average pooling with stride 2 and zero channels padded on both sides, so the shortcut has
no parameters (ResNet-20: 0.27 M parameters, ResNet-56: 0.85 M); "B" uses a 1×1 projection.

Differences from the estimator, on purpose: convolutions are He-initialised (the estimator's
`tf.layers.conv2d` uses Glorot); v2 follows the paper (the stem is a bare conv and a final
BatchNorm + ReLU precedes pooling; the estimator also activates the stem and has no final
activation); BatchNorm uses PyTorch's momentum 0.1 (decay 0.9) rather than 0.997, which needs
long runs to settle.  The estimator's 11-logit quirk is not copied.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model

DEPTHS = (20, 32, 44, 56, 110)
WIDTHS = (16, 32, 64)

#: cifar10_estimator's ResNet training: momentum SGD, lr 0.1, weight decay 2e-4, batch 128,
#: 4-pixel zero padding + random 32×32 crop + flip; cosine decay over 160 epochs (He et al.'s
#: 64k steps) after a 1% warm-up.
RECIPE = {"epochs": 160, "batch_size": 128, "optimizer": "momentum", "momentum": 0.9, "lr": 0.1,
          "weight_decay": 2e-4, "schedule": "cosine", "warmup": 0.01, "augment": {"pad": 4, "flip": "random"},
          "log_every": 100, "checkpoint_every": 1000}
#: SVHN: the same without the mirror flip (a mirrored digit is another symbol) and over 40 epochs
#: (its 68k training images and easy classes need fewer passes than CIFAR-10).
SVHN_RECIPE = {**RECIPE, "epochs": 40, "augment": {"pad": 4}}


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class Shortcut(nn.Module):
    """Identity, or for a change of shape: option A (avg-pool + zero channels) or B (1×1 conv)."""

    def __init__(self, c_in: int, c_out: int, stride: int, option: str, batch_norm: bool) -> None:
        super().__init__()
        self.c_in, self.c_out, self.stride, self.option = c_in, c_out, stride, option
        self.identity = c_in == c_out and stride == 1
        self.project = None
        if not self.identity and option == "B":
            layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            self.project = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        if self.project is not None:
            return self.project(x)
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride, self.stride)
        extra = self.c_out - self.c_in
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


class BasicBlockV1(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU (post-activation)."""

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(c_in, c_out, stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv3x3(c_out, c_out), nn.BatchNorm2d(c_out)
        self.shortcut = Shortcut(c_in, c_out, stride, shortcut, batch_norm=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class BasicBlockV2(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv plus the shortcut (pre-activation; nothing after the sum).

    A projection shortcut (B) reads the activated input, as in the paper's implementation.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), _conv3x3(c_in, c_out, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), _conv3x3(c_out, c_out)
        self.shortcut = Shortcut(c_in, c_out, stride, shortcut, batch_norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        skip = self.shortcut(activated if self.shortcut.project is not None else x)
        out = self.conv1(activated)
        return self.conv2(F.relu(self.bn2(out))) + skip


class CifarResNet(nn.Module):
    """A 6n + 2 layer CIFAR ResNet; `version` 1 (post-activation) or 2 (pre-activation)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], depth: int = 20, version: int = 1,
                 shortcut: str = "A") -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise TypeError(f"depth {depth} is not 6n + 2")
        if version not in (1, 2) or shortcut not in ("A", "B"):
            raise TypeError("version must be 1 or 2 and shortcut 'A' or 'B'")
        n = (depth - 2) // 6
        self.version = version
        block = BasicBlockV1 if version == 1 else BasicBlockV2
        self.stem = _conv3x3(input_shape[0], WIDTHS[0])
        self.stem_bn = nn.BatchNorm2d(WIDTHS[0]) if version == 1 else nn.Identity()
        blocks: list[nn.Module] = []
        c_in = WIDTHS[0]
        for stage, width in enumerate(WIDTHS):
            for i in range(n):
                blocks.append(block(c_in, width, 2 if stage > 0 and i == 0 else 1, shortcut))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.final_bn = nn.BatchNorm2d(c_in) if version == 2 else nn.Identity()
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.version == 1:
            x = F.relu(self.stem_bn(x))
        x = self.blocks(x)
        if self.version == 2:
            x = F.relu(self.final_bn(x))
        return self.fc(x.mean(dim=(2, 3)))


def _factory(depth: int, default_version: int):
    def build(num_classes: int, input_shape: tuple[int, int, int], version: int = default_version,
              shortcut: str = "A") -> CifarResNet:
        return CifarResNet(num_classes, input_shape, depth, version, shortcut)

    build.__doc__ = f"ResNet-{depth} for CIFAR (v{default_version} unless `version` says otherwise)."
    return build


for _depth in DEPTHS:
    register_model(f"resnet{_depth}", recipes={"*": RECIPE, "svhn": SVHN_RECIPE})(_factory(_depth, 1))
    register_model(f"resnet{_depth}-v2", recipes={"*": RECIPE, "svhn": SVHN_RECIPE})(_factory(_depth, 2))
