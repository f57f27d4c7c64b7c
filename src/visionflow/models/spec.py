"""What a saved model is: the registered name and arguments that rebuild its architecture."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to rebuild a registered model: `input_shape` is (C, H, W).

    A model directory and every export store the spec; the same spec always builds the same
    architecture, so weights load back by name.  Custom modules are stored as "custom:NAME".
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    options: dict[str, Any] = field(default_factory=dict)
