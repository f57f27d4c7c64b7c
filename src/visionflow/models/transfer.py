"""The transfer-learning model: a pretrained backbone with a new classification layer.

`TransferClassifier` is one module for training, evaluation, prediction and export, registered
as "transfer" (options: the backbone's name and the head's dropout), so a model directory
written by `visionflow retrain` rebuilds and loads like any other.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import get_backbone
from .registry import register_model

#: `visionflow retrain`'s defaults: a head over cached bottlenecks is cheap to train for many
#: epochs (whole-network fine-tuning lowers lr and epochs: see transfer.retrain).
RECIPE = {"epochs": 30, "batch_size": 64, "lr": 1e-3, "label_smoothing": 0.1, "dropout": 0.2,
          "log_every": 20, "checkpoint_every": 500, "keep_checkpoints": 2}


class TransferClassifier(nn.Module):
    """images (N, C, H, W) → backbone → bottleneck (N, D) → dropout → linear → logits (N, K).

    `forward` also accepts bottlenecks (N, D) directly and then skips the backbone: a head is
    trained over cached bottlenecks with the very module (and checkpoint layout) that later
    classifies images, so no weights are ever copied between two models.

    The backbone starts frozen: its parameters do not train and it stays in eval mode while the
    head trains (BatchNorm keeps its ImageNet statistics, the ones the bottlenecks were computed
    with).  `set_fine_tune(True)` trains the whole network instead.
    """

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.logits = nn.Linear(num_features, num_classes)
        self.fine_tune = False
        self.set_fine_tune(False)

    def set_fine_tune(self, enabled: bool) -> "TransferClassifier":
        """Train the backbone too (True), or only the new layer (False, the default)."""
        self.fine_tune = enabled
        self.backbone.requires_grad_(enabled)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "TransferClassifier":
        super().train(mode)
        if not self.fine_tune:
            self.backbone.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x if x.dim() == 2 else self.backbone(x)
        return self.logits(self.dropout(features))


@register_model("transfer", recipes={"*": RECIPE})
def transfer_classifier(num_classes: int, input_shape: tuple[int, int, int], backbone: str,
                        dropout: float = 0.0) -> nn.Module:
    """`visionflow retrain`'s model: pretrained `backbone` (a name, see backbones.py) with a new
    linear layer over its pooled features.  Built with random weights: a checkpoint, or retrain's
    pretrained backbone weights, fill them in."""
    net = get_backbone(backbone).build()
    return TransferClassifier(net, net.num_features, num_classes, dropout)
