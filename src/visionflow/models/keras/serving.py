"""The registered model "keras": a Keras-style architecture saved in a model directory's
`ModelSpec.options["architecture"]`, rebuilt for `visionflow export` and serving.

Built for serving, it takes what every exported image model takes — (N, C, H, W) images scaled
to 0–1 by the directory's preprocessing — and returns logits (the log of the probabilities when
the model ends in a softmax), so the served probabilities are the model's own.
"""

from __future__ import annotations

from typing import Any

from ..registry import register_model
from .network import Network, network_from_config


@register_model("keras")
def keras_model(num_classes: int, input_shape: tuple[int, int, int], architecture: dict[str, Any]) -> Network:
    network = network_from_config(architecture)
    return network.for_serving()
