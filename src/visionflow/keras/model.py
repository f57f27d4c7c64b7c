"""`keras.Model` and `keras.Sequential`: Keras-style networks (models/keras) with training."""

from __future__ import annotations

from typing import Any

from ..models.keras.network import Network, Stack
from .saving import Saving
from .training import Training


class Model(Training, Saving, Network):
    """`Model(inputs, outputs)` for a functional graph, or subclass it and write `call(inputs)`."""


class Sequential(Training, Saving, Stack):
    """`Sequential([layer, …])` or `.add(layer)`: layers one after another."""

    def __init__(self, layers: Any = None, name: str | None = None, **kwargs: Any) -> None:
        Stack.__init__(self, layers, name=name, **kwargs)
