"""The Keras-style layer machinery: `Layer`, symbolic `KerasTensor`s and the nodes between them.

A layer is a `torch.nn.Module` whose weights are made by `build(input_shape)` the first time it
sees an input, so only the first layer of a model needs to be told its input shape.  Called on
a `KerasTensor` (from `Input`), a layer records a node of the graph and returns the symbolic
output; called on a tensor, it computes.  Shapes at this API are Keras' — channels last, batch
first, `None` for the batch — and so are the tensors layers take and return: a (N, H, W, C)
tensor that a convolution permutes to (N, C, H, W) *is* a channels-last NCHW tensor, so the
fast kernel runs with no copy either way.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from ...errors import InputError

Shape = tuple[Optional[int], ...]  # without the batch dimension

_NAME_COUNTERS: dict[str, itertools.count] = defaultdict(itertools.count)


def unique_name(base: str) -> str:
    """Keras' automatic names: "dense", "dense_1", "dense_2", … per process (`clear_session` resets)."""
    n = next(_NAME_COUNTERS[base])
    return base if n == 0 else f"{base}_{n}"


def clear_session() -> None:
    """Forget the automatic-name counters (Keras' `keras.backend.clear_session`)."""
    _NAME_COUNTERS.clear()


def snake_case(name: str) -> str:
    """Keras' layer-name style: Conv2D → conv2d, MaxPooling2D → max_pooling2d."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


@dataclass(eq=False)
class Node:
    """One call of `layer` on symbolic `inputs` (a KerasTensor, or a list of them for merges)."""

    layer: "Layer"
    inputs: Any

    @property
    def input_tensors(self) -> list["KerasTensor"]:
        return list(self.inputs) if isinstance(self.inputs, (list, tuple)) else [self.inputs]


class KerasTensor:
    """A symbolic tensor: its Keras shape (batch first, None for the batch) and the node that makes it."""

    def __init__(self, shape: Shape, dtype: str = "float32", node: Node | None = None) -> None:
        self._shape = tuple(shape)
        self.dtype = dtype
        self.node = node

    @property
    def shape(self) -> tuple[Optional[int], ...]:
        return (None,) + self._shape

    def __repr__(self) -> str:
        origin = f", from {self.node.layer.name}" if self.node is not None else ""
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}{origin}>"


def _symbolic(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, KerasTensor) for v in value)
    return isinstance(value, KerasTensor)


def shapes_of(value: Any) -> Any:
    """The Keras shape(s) (without batch) of a tensor, KerasTensor or list of them."""
    if isinstance(value, (list, tuple)):
        return [shapes_of(v) for v in value]
    if isinstance(value, KerasTensor):
        return value._shape
    return tuple(value.shape[1:])


class Layer(nn.Module):
    """Base of every layer: Keras' `name`, `trainable`, `input_shape`, lazy `build`, `call`.

    Subclasses make weights in `build(input_shape)` (shape without batch, or a list of shapes
    for layers with several inputs), compute in `call(inputs)` (self.training tells training
    from inference) and say what they make in `compute_output_shape`.  `get_config()` returns
    the constructor's arguments, so `type(layer)(**layer.get_config())` is the same layer, unbuilt.
    """

    def __init__(self, name: str | None = None, trainable: bool = True, input_shape: Sequence[int] | None = None,
                 dtype: Any = None, **unknown: Any) -> None:
        super().__init__()
        if unknown:
            raise InputError(f"{type(self).__name__}: unknown argument(s) {', '.join(sorted(unknown))}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.built = False
        self.input_shape_arg = tuple(input_shape) if input_shape is not None else None
        self._trainable = trainable
        self.dtype_name = dtype if isinstance(dtype, str) or dtype is None else str(dtype)
        self.output_shape_: Any = None

    # -- Keras' properties ---------------------------------------------------------------------
    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = bool(value)
        for p in self.parameters():
            p.requires_grad_(self._trainable)

    @property
    def weights(self) -> list[torch.Tensor]:
        return list(self.parameters()) + [b for b in self.buffers() if b.is_floating_point()]

    @property
    def trainable_weights(self) -> list[torch.Tensor]:
        return [p for p in self.parameters() if p.requires_grad]

    def count_params(self) -> int:
        return sum(p.numel() for p in self.parameters()) + sum(b.numel() for b in self.buffers()
                                                               if b.is_floating_point())

    def get_weights(self) -> list[Any]:
        return [w.detach().cpu().numpy() for w in self.weights]

    def set_weights(self, arrays: Sequence[Any]) -> None:
        mine = self.weights
        if len(arrays) != len(mine):
            raise InputError(f"layer {self.name}: {len(arrays)} arrays given for {len(mine)} weights")
        with torch.no_grad():
            for w, a in zip(mine, arrays):
                value = torch.as_tensor(a)
                if tuple(value.shape) != tuple(w.shape):
                    raise InputError(f"layer {self.name}: weight of shape {tuple(w.shape)} given {tuple(value.shape)}")
                w.copy_(value)

    # -- what subclasses write ---------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        """Make the weights for inputs of `input_shape` (no batch dimension)."""

    def call(self, inputs: Any) -> Any:
        raise NotImplementedError

    def compute_output_shape(self, input_shape: Any) -> Any:
        """The output's shape without batch; by default found by running the layer on zeros."""
        def zeros(shape: Any) -> Any:
            if isinstance(shape, list):
                return [zeros(s) for s in shape]
            return torch.zeros((2,) + tuple(d or 1 for d in shape))
        was = self.training
        self.eval()
        with torch.no_grad():
            out = self.call(zeros(input_shape))
        self.train(was)
        return tuple(out.shape[1:])

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"name": self.name, "trainable": self.trainable}
        if self.input_shape_arg is not None:
            config["input_shape"] = list(self.input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Layer":
        return cls(**config)

    # -- calling -------------------------------------------------------------------------------------
    def _ensure_built(self, input_shape: Any) -> None:
        if not self.built:
            self.build(input_shape)
            self.built = True
            if not self._trainable:
                for p in self.parameters():
                    p.requires_grad_(False)

    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if _symbolic(inputs):
            shapes = shapes_of(inputs)
            self._ensure_built(shapes)
            out_shape = self.compute_output_shape(shapes)
            self.output_shape_ = out_shape
            return KerasTensor(out_shape, node=Node(self, inputs))
        return super().__call__(inputs, *args, **kwargs)

    def forward(self, inputs: Any, training: bool | None = None) -> Any:
        self._ensure_built(shapes_of(inputs))
        return in_mode(self, training, self.call, inputs)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def in_mode(module: nn.Module, training: bool | None, fn: Callable[[Any], Any], inputs: Any) -> Any:
    """`fn(inputs)` with `module` in training mode `training` (Keras' `training=` argument; None:
    as it is), the mode restored afterwards."""
    if training is None or training == module.training:
        return fn(inputs)
    was = module.training
    module.train(training)
    try:
        return fn(inputs)
    finally:
        module.train(was)


def Input(shape: Sequence[Optional[int]], batch_size: int | None = None, name: str | None = None,
          dtype: str = "float32") -> KerasTensor:
    """A symbolic model input of `shape` (without the batch dimension), e.g. (28, 28, 1)."""
    if isinstance(shape, int):
        shape = (shape,)
    tensor = KerasTensor(tuple(shape), dtype=dtype)
    tensor.name = name or unique_name("input_layer")  # type: ignore[attr-defined]
    return tensor

