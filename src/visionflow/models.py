"""Model registry: the tutorials' networks by name, rebuilt from a stored `ModelSpec`.

A model directory stores the spec (name, number of classes, input shape and options); the
same spec always builds the same architecture, so weights can be loaded back by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
import torch.nn.functional as F

from .errors import InputError


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a registered model: `input_shape` is (C, H, W)."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    options: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make `factory(num_classes=, input_shape=, **options)` buildable by name."""

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return add


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def build_model(spec: ModelSpec) -> nn.Module:
    if spec.name not in _REGISTRY:
        raise InputError(f"unknown model {spec.name!r} (choose one of: {', '.join(model_names())})")
    try:
        return _REGISTRY[spec.name](num_classes=spec.num_classes, input_shape=tuple(spec.input_shape), **spec.options)
    except TypeError as e:
        raise InputError(f"model {spec.name!r}: bad options {spec.options}: {e}") from None


@register_model("mlp")
class MLP(nn.Module):
    """"TensorFlow Mechanics 101": flatten → hidden1 (128) ReLU → hidden2 (32) ReLU → logits."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], hidden: tuple[int, ...] = (128, 32)) -> None:
        super().__init__()
        sizes = [input_shape[0] * input_shape[1] * input_shape[2], *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@register_model("cnn")
class TutorialCNN(nn.Module):
    """"A Guide to TF Layers": conv5x5(32) → pool → conv5x5(64) → pool → dense 1024 → dropout → logits.

    ReLU is applied after max-pooling rather than before: max-pool and ReLU commute (ReLU is
    monotonic), so the function is the same, and the activation touches 4x fewer values.
    """

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], dropout: float = 0.4) -> None:
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.dense = nn.Linear(64 * (h // 4) * (w // 4), 1024)
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.dense(x.flatten(1)))
        return self.logits(self.dropout(x))


@register_model("transfer")
def transfer_classifier(num_classes: int, input_shape: tuple[int, int, int], backbone: str,
                        dropout: float = 0.0) -> nn.Module:
    """`visionflow retrain`'s model: pretrained `backbone` (a name, see backbones.py) with a new
    linear layer over its pooled features.  Built with random weights: a checkpoint, or retrain's
    pretrained backbone weights, fill them in."""
    from .backbones import get_backbone
    from .transfer import TransferClassifier

    net = get_backbone(backbone).build()
    return TransferClassifier(net, net.num_features, num_classes, dropout)


# The CIFAR-10 models register themselves on import (they need `register_model` defined above).
from . import cifar_cnn, fastnet, resnet  # noqa: E402,F401
