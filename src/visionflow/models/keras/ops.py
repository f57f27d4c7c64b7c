"""Keras' named activations and weight initializers, on torch."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ...errors import InputError

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": F.relu,
    "relu6": F.relu6,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "log_softmax": lambda x: torch.log_softmax(x, dim=-1),
    "elu": F.elu,
    "selu": F.selu,
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "softplus": F.softplus,
    "softsign": F.softsign,
    "hard_sigmoid": lambda x: F.hardtanh(x / 6 + 0.5, 0.0, 1.0),
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
    "exponential": torch.exp,
}


def activation(spec: Any) -> tuple[str | None, Callable[[torch.Tensor], torch.Tensor]]:
    """A Keras activation argument (a name, None or a function) → (name to save, function)."""
    if spec is None:
        return None, ACTIVATIONS["linear"]
    if isinstance(spec, str):
        if spec not in ACTIVATIONS:
            raise InputError(f"unknown activation {spec!r} (choose one of: {', '.join(sorted(ACTIVATIONS))})")
        return spec, ACTIVATIONS[spec]
    if callable(spec):
        return getattr(spec, "__name__", "custom"), spec
    raise InputError(f"activation must be a name or a function, not {type(spec).__name__}")


def initialize(tensor: torch.Tensor, name: str, fan_in: int, fan_out: int) -> None:
    """Fill `tensor` as Keras' initializer `name` would (fans in weights, not in units of shape)."""
    with torch.no_grad():
        if name == "zeros":
            tensor.zero_()
        elif name == "ones":
            tensor.fill_(1.0)
        elif name in ("glorot_uniform", "he_uniform", "lecun_uniform"):
            n = {"glorot_uniform": (fan_in + fan_out) / 2, "he_uniform": fan_in / 2, "lecun_uniform": fan_in}[name]
            limit = math.sqrt(3.0 / max(n, 1))
            tensor.uniform_(-limit, limit)
        elif name in ("glorot_normal", "he_normal", "lecun_normal"):
            n = {"glorot_normal": (fan_in + fan_out) / 2, "he_normal": fan_in / 2, "lecun_normal": fan_in}[name]
            std = math.sqrt(1.0 / max(n, 1)) / 0.87962566103423978  # Keras' truncated-normal correction
            torch.nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)
        elif name == "random_normal":
            tensor.normal_(0.0, 0.05)
        elif name in ("random_uniform", "uniform"):
            tensor.uniform_(-0.05, 0.05)
        elif name == "orthogonal":
            torch.nn.init.orthogonal_(tensor)
        else:
            raise InputError(f"unknown initializer {name!r}")


def pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
        raise InputError(f"{name} must be an int or two ints, not {value!r}")
    return value  # type: ignore[return-value]


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis: (before, after), the odd pixel after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def conv_output(size: int | None, kernel: int, stride: int, padding: str, dilation: int = 1) -> int | None:
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    return (size - (kernel - 1) * dilation - 1) // stride + 1
