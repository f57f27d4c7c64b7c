"""`dense`: a multilayer perceptron over tabular features (the numeric columns of a CSV file).

Its input is the standardized feature vector, shaped (N, D, 1, 1) — the tabular rows of
`--dataset csv` are 1×1 images of D channels, standardized per feature by the run's
preprocessing — or any image, flattened.  Each hidden layer is Linear → BatchNorm → ReLU →
dropout: BatchNorm keeps deep stacks trainable at Adam's default rate on raw-scale features.

As a regressor (one output) it answers in the target's units but learns the standardized
target: its last layer's output is scaled by `target_std` and shifted by `target_mean` (the
training targets' statistics, which the engine passes in), so a target in the hundreds is not
hundreds of steps away from a fresh network's outputs near 0.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_model


@register_model("dense", recipes={"csv": {"epochs": 60, "batch_size": 16, "log_every": 100}})
class DenseNet(nn.Module):
    """flatten → [Linear(h) → BatchNorm → ReLU → Dropout] for h in `hidden` → Linear(num_classes)."""

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], hidden: tuple[int, ...] = (128, 64),
                 dropout: float = 0.1, target_mean: float = 0.0, target_std: float = 1.0) -> None:
        super().__init__()
        self.target_mean, self.target_std = float(target_mean), float(target_std)
        width = input_shape[0] * input_shape[1] * input_shape[2]
        layers: list[nn.Module] = [nn.Flatten()]
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        if self.target_std != 1.0 or self.target_mean != 0.0:
            out = out * self.target_std + self.target_mean
        return out
