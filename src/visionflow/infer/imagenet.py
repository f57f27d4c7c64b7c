"""`visionflow classify-image`: a pretrained backbone's own ImageNet predictions, with class names.

The 1,000 human-readable ImageNet names ("military uniform", "sports car, sport car", ...) come
from the label files timm ships (`timm.data.ImageNetInfo`), matched to the classifier's size by
`infer_imagenet_subset`, so no label file has to be downloaded.
"""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch import nn

from ..core.devices import resolve_device
from ..errors import InputError
from ..models.backbones import DEFAULT_BACKBONE, Backbone, get_backbone
from ..models.pretrained import Weights, load_pretrained
from .labeling import Labeled, rank
from .predict import predict_probabilities, read_inputs


def imagenet_classifier(backbone: str = DEFAULT_BACKBONE, weights: str | os.PathLike | None = None
                        ) -> tuple[nn.Module, Backbone, Weights, tuple[str, ...]]:
    """The pretrained network with its ImageNet classifier, in eval mode, and its class names."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    chosen = get_backbone(backbone)
    model = chosen.build(num_classes=1000)
    used = load_pretrained(model, chosen, weights)
    subset = infer_imagenet_subset(model)
    if subset is None:
        raise InputError(f"backbone {chosen.name!r}: its classifier is not an ImageNet one")
    info = ImageNetInfo(subset)
    names = tuple(info.index_to_description(i) for i in range(info.num_classes()))
    return model.eval(), chosen, used, names


def classify_images(inputs: Sequence[str], backbone: str = DEFAULT_BACKBONE, weights: str | os.PathLike | None = None,
                    k: int = 5, device: str = "auto") -> list[Labeled]:
    """ImageNet top-`k` names and probabilities of each image file (or .npy batch) in `inputs`."""
    model, chosen, _, names = imagenet_classifier(backbone, weights)
    pre = chosen.preprocessing
    batch, sources = read_inputs(inputs, pre)
    model.to(resolve_device(device))
    probabilities = predict_probabilities(model, pre.normalize(torch.from_numpy(batch)), batch_size=64)
    return rank(probabilities.cpu().numpy(), sources, names, k)
