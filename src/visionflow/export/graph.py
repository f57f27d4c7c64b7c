"""What an exported version computes: the serving graph, pixels in, probabilities out.

The export writes it to ONNX; the server's PyTorch runtime rebuilds it from model.safetensors;
verification runs it beside onnxruntime.  It imports only the model's input contract and torch,
so serving can use it without the training engine.
"""

from __future__ import annotations

import torch
from torch import nn

from ..preprocessing import Preprocessing, center_crop, tta_logits


class ServingGraph(nn.Module):
    """What an exported version computes, end to end.

    (N, H, W, C) uint8 pixels → central crop (if the model was trained on crops) → normalised
    (N, C, h, w) float32 (per-channel or per-image standardization) → the model, its logits
    averaged over the test-time augmentation views (if any) → probabilities (N, K) float32 and
    classes (N,) int64.  Exporting this module rather than the bare network puts all of the
    preprocessing inside the ONNX graph, so no client can feed the model differently from how it
    was trained and evaluated.

    The normalisation is `Preprocessing.normalize` itself, given its per-channel scale and
    shift as buffers of this module: module state is what torch.export captures as graph
    constants, whereas tensors made inside `normalize` would be traced as fake tensors (and
    `normalize`'s per-device cache would keep them).  Tests check both give equal results.
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.model = model
        self.preprocessing = preprocessing
        scale = [1.0 / (255.0 * s) for s in preprocessing.std]
        shift = [m / s for m, s in zip(preprocessing.mean, preprocessing.std)]
        device = next(model.parameters()).device
        self.register_buffer("scale", torch.tensor(scale, device=device).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift, device=device).view(1, -1, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        pre = self.preprocessing
        if pre.center_crop:
            images = center_crop(images, *pre.center_crop)
        return pre.standardize_floats(images.permute(0, 3, 1, 2).float(), self.scale, self.shift)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = tta_logits(self.model, self.normalize(images), self.preprocessing.tta)
        probabilities = torch.softmax(logits.float(), dim=1)
        return probabilities, probabilities.argmax(dim=1)
