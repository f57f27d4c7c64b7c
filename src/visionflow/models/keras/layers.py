"""The built-in layers, with Keras' arguments, defaults and (channels-last) shapes."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from .core import Layer, Shape
from .ops import activation, conv_output, initialize, pair, same_padding


def _check_padding(padding: str) -> str:
    padding = padding.lower()
    if padding not in ("valid", "same"):
        raise InputError(f"padding must be 'valid' or 'same', not {padding!r}")
    return padding


def _check_channels_last(data_format: Optional[str]) -> None:
    if data_format not in (None, "channels_last"):
        raise InputError("only data_format='channels_last' (Keras' default) is supported; inputs are (N, H, W, C)")


class Dense(Layer):
    """`units` outputs from the last axis: activation(inputs @ kernel + bias)."""

    def __init__(self, units: int, activation: Any = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(units, int) or units < 1:
            raise InputError(f"Dense: units must be a positive int, not {units!r}")
        self.units, self.use_bias = units, use_bias
        self.activation_name, self.activation = _activation(activation)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, input_shape: Shape) -> None:
        fan_in = input_shape[-1]
        if fan_in is None:
            raise InputError(f"{self.name}: the last axis of the input must be known")
        self.linear = nn.Linear(fan_in, self.units, bias=self.use_bias)
        initialize(self.linear.weight, self.kernel_initializer, fan_in, self.units)
        if self.use_bias:
            initialize(self.linear.bias, self.bias_initializer, fan_in, self.units)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "activation": self.activation_name,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer}


def _activation(spec: Any) -> tuple[str | None, Callable[[torch.Tensor], torch.Tensor]]:
    return activation(spec)


class Activation(Layer):
    def __init__(self, activation: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activation_name, self.activation = _activation(activation)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation_name}


class ReLU(Activation):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("activation", None)
        super().__init__("relu", **kwargs)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("activation")
        return config


class Softmax(Layer):
    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=self.axis)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Dropout(Layer):
    """Zeroes a fraction `rate` of the inputs while training (and scales the rest by 1/(1-rate))."""

    def __init__(self, rate: float, noise_shape: Any = None, seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= rate < 1:
            raise InputError(f"Dropout: rate must be in [0, 1), not {rate!r}")
        self.rate = float(rate)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, self.rate, self.training) if self.rate else x

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate}


class Flatten(Layer):
    """(N, d1, d2, …) → (N, d1·d2·…), in Keras' (channels-last) order."""

    def __init__(self, data_format: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_channels_last(data_format)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)  # not len(x): an exported graph keeps its batch size free

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if any(d is None for d in input_shape):
            return (None,)
        return (math.prod(input_shape),)  # type: ignore[arg-type]


class Reshape(Layer):
    def __init__(self, target_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in self.target_shape) > 1:
            raise InputError("Reshape: at most one dimension of target_shape may be -1")

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape((x.shape[0],) + self.target_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        if -1 not in self.target_shape or any(d is None for d in input_shape):
            return self.target_shape
        total, known = math.prod(input_shape), -math.prod(self.target_shape)  # type: ignore[arg-type]
        if total % known:
            raise InputError(f"{self.name}: cannot reshape {tuple(input_shape)} to {self.target_shape}")
        return tuple(total // known if d == -1 else d for d in self.target_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": list(self.target_shape)}


class Rescaling(Layer):
    """inputs · scale + offset (e.g. scale=1/255 for 0–255 pixels)."""

    def __init__(self, scale: float, offset: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale, self.offset = float(scale), float(offset)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.scale + self.offset

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class Conv2D(Layer):
    """2-D convolution of (N, H, W, C) inputs with `filters` kernels of `kernel_size`.

    The kernel runs on the channels-last memory the input already has (a permuted view, no copy);
    "same" padding is TensorFlow's (the odd pixel at the bottom/right).
    """

    def __init__(self, filters: int, kernel_size: Any, strides: Any = (1, 1), padding: str = "valid",
                 data_format: Optional[str] = None, dilation_rate: Any = (1, 1), groups: int = 1,
                 activation: Any = None, use_bias: bool = True, kernel_initializer: str = "glorot_uniform",
                 bias_initializer: str = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_channels_last(data_format)
        self.filters, self.groups, self.use_bias = int(filters), int(groups), use_bias
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        self.padding = _check_padding(padding)
        self.activation_name, self.activation = _activation(activation)
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer

    def build(self, input_shape: Shape) -> None:
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise InputError(f"{self.name}: Conv2D takes (height, width, channels) inputs, not {tuple(input_shape)}")
        channels = int(input_shape[-1])
        self.conv = nn.Conv2d(channels, self.filters, self.kernel_size, self.strides, 0, self.dilation_rate,
                              self.groups, bias=self.use_bias)
        receptive = self.kernel_size[0] * self.kernel_size[1]
        initialize(self.conv.weight, self.kernel_initializer, receptive * channels // self.groups,
                   receptive * self.filters)
        if self.use_bias:
            initialize(self.conv.bias, self.bias_initializer, 1, 1)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear_part(x))

    def linear_part(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution without its activation (a graph may apply that later: network.py)."""
        self._ensure_built(tuple(x.shape[1:]))
        x = x.permute(0, 3, 1, 2)
        if self.padding == "same":
            top, bottom = same_padding(x.shape[2], self.kernel_size[0], self.strides[0], self.dilation_rate[0])
            left, right = same_padding(x.shape[3], self.kernel_size[1], self.strides[1], self.dilation_rate[1])
            if top or bottom or left or right:
                x = F.pad(x, (left, right, top, bottom))
        return self.conv(x).permute(0, 2, 3, 1)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w, _ = input_shape
        return (conv_output(h, self.kernel_size[0], self.strides[0], self.padding, self.dilation_rate[0]),
                conv_output(w, self.kernel_size[1], self.strides[1], self.padding, self.dilation_rate[1]),
                self.filters)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "dilation_rate": list(self.dilation_rate),
                "groups": self.groups, "activation": self.activation_name, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer}


class _Pooling2D(Layer):
    reduce = "max"

    def __init__(self, pool_size: Any = (2, 2), strides: Any = None, padding: str = "valid",
                 data_format: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_channels_last(data_format)
        self.pool_size = pair(pool_size, "pool_size")
        self.strides = pair(strides, "strides") if strides is not None else self.pool_size
        self.padding = _check_padding(padding)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        pads = (0, 0, 0, 0)
        if self.padding == "same":
            top, bottom = same_padding(x.shape[2], self.pool_size[0], self.strides[0])
            left, right = same_padding(x.shape[3], self.pool_size[1], self.strides[1])
            pads = (left, right, top, bottom)
        if self.reduce == "max":
            if any(pads):
                x = F.pad(x, pads, value=float("-inf"))
            out = F.max_pool2d(x, self.pool_size, self.strides)
        elif any(pads):  # TensorFlow averages over the pixels inside the image only
            ones = F.pad(torch.ones_like(x[:1, :1]), pads)
            out = F.avg_pool2d(F.pad(x, pads), self.pool_size, self.strides) / F.avg_pool2d(ones, self.pool_size,
                                                                                          self.strides)
        else:
            out = F.avg_pool2d(x, self.pool_size, self.strides)
        return out.permute(0, 2, 3, 1)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        h, w, c = input_shape
        return (conv_output(h, self.pool_size[0], self.strides[0], self.padding),
                conv_output(w, self.pool_size[1], self.strides[1], self.padding), c)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    reduce = "max"


class AveragePooling2D(_Pooling2D):
    reduce = "mean"


class _GlobalPooling2D(Layer):
    def __init__(self, data_format: Optional[str] = None, keepdims: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _check_channels_last(data_format)
        self.keepdims = keepdims

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (1, 1, input_shape[-1]) if self.keepdims else (input_shape[-1],)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    def call(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 2), keepdim=self.keepdims)


class GlobalMaxPooling2D(_GlobalPooling2D):
    def call(self, x: torch.Tensor) -> torch.Tensor:
        # max with indices, not amax: compiled amax after a bf16 activation gives NaN gradients
        values = x.flatten(1, 2).max(dim=1).values
        return values[:, None, None, :] if self.keepdims else values


class BatchNormalization(Layer):
    """Normalises the last axis with batch statistics while training and moving averages after
    (Keras' momentum 0.99 = torch's 0.01; epsilon 1e-3)."""

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if axis != -1:
            raise InputError("BatchNormalization: only axis=-1 (the channels of channels-last inputs) is supported")
        self.axis, self.momentum, self.epsilon, self.center, self.scale = axis, momentum, epsilon, center, scale

    def build(self, input_shape: Shape) -> None:
        channels = int(input_shape[-1])  # type: ignore[arg-type]
        self.gamma = nn.Parameter(torch.ones(channels)) if self.scale else None
        self.beta = nn.Parameter(torch.zeros(channels)) if self.center else None
        self.register_buffer("moving_mean", torch.zeros(channels))
        self.register_buffer("moving_variance", torch.ones(channels))

    def call(self, x: torch.Tensor) -> torch.Tensor:
        moved = x.movedim(-1, 1) if x.dim() > 2 else x  # channels-last images: a view, no copy
        out = F.batch_norm(moved, self.moving_mean, self.moving_variance, self.gamma, self.beta, self.training,
                           1.0 - self.momentum, self.epsilon)
        return out.movedim(1, -1) if x.dim() > 2 else out

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}


class Embedding(Layer):
    """Integer ids (N, T) → vectors (N, T, output_dim)."""

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer: str = "uniform",
                 mask_zero: bool = False, input_length: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shape: Shape) -> None:
        self.embeddings = nn.Parameter(torch.empty(self.input_dim, self.output_dim))
        initialize(self.embeddings, self.embeddings_initializer, self.input_dim, self.output_dim)

    def call(self, x: torch.Tensor) -> torch.Tensor:
        return F.embedding(x.long(), self.embeddings)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": self.embeddings_initializer}


class LSTM(Layer):
    """Long short-term memory over (N, T, F) sequences: the last output (N, units), or every
    step's (N, T, units) with `return_sequences`.  Runs torch's fused LSTM; Keras' initial
    weights (Glorot kernel, orthogonal recurrent kernel, forget-gate bias 1)."""

    def __init__(self, units: int, activation: str = "tanh", recurrent_activation: str = "sigmoid",
                 use_bias: bool = True, return_sequences: bool = False, unit_forget_bias: bool = True,
                 go_backwards: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if activation != "tanh" or recurrent_activation != "sigmoid":
            raise InputError("LSTM runs torch's fused kernel: activation must be 'tanh' and recurrent_activation "
                             "'sigmoid' (Keras' defaults)")
        self.units, self.use_bias, self.return_sequences = int(units), use_bias, return_sequences
        self.unit_forget_bias, self.go_backwards = unit_forget_bias, go_backwards

    def build(self, input_shape: Shape) -> None:
        features = int(input_shape[-1])  # type: ignore[arg-type]
        self.lstm = nn.LSTM(features, self.units, batch_first=True, bias=self.use_bias)
        u = self.units
        initialize(self.lstm.weight_ih_l0, "glorot_uniform", features, 4 * u)
        recurrent = torch.empty(u, 4 * u)
        torch.nn.init.orthogonal_(recurrent)
        with torch.no_grad():
            self.lstm.weight_hh_l0.copy_(recurrent.t())
            if self.use_bias:
                self.lstm.bias_ih_l0.zero_()
                self.lstm.bias_hh_l0.zero_()
                if self.unit_forget_bias:
                    self.lstm.bias_ih_l0[u:2 * u] = 1.0  # torch's gate order is Keras': i, f, g, o

    def call(self, x: torch.Tensor) -> torch.Tensor:
        if self.go_backwards:
            x = x.flip(1)
        out, _ = self.lstm(x.float())
        return out if self.return_sequences else out[:, -1]

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "return_sequences": self.return_sequences, "unit_forget_bias": self.unit_forget_bias,
                "go_backwards": self.go_backwards}


class _Merge(Layer):
    """Layers of several inputs (a list), e.g. the join of a residual branch."""

    def _check(self, shapes: Any) -> list[Shape]:
        if not isinstance(shapes, list) or len(shapes) < 2:
            raise InputError(f"{self.name}: {type(self).__name__} takes a list of at least two inputs")
        return shapes

    def compute_output_shape(self, input_shape: Any) -> Shape:
        shapes = self._check(input_shape)
        if any(tuple(s) != tuple(shapes[0]) for s in shapes):
            raise InputError(f"{self.name}: inputs must have the same shape, not {', '.join(map(str, shapes))}")
        return tuple(shapes[0])


class Add(_Merge):
    def call(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Subtract(_Merge):
    def call(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return xs[0] - xs[1]


class Multiply(_Merge):
    def call(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Average(_Merge):
    def call(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(xs).mean(0)


class Concatenate(_Merge):
    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.axis = axis

    def call(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis)

    def compute_output_shape(self, input_shape: Any) -> Shape:
        shapes = [list(s) for s in self._check(input_shape)]
        axis = self.axis if self.axis < 0 else self.axis - 1  # Keras counts the batch axis
        rest = [s[:axis] + s[axis + 1:] if axis != -1 else s[:-1] for s in shapes]
        if any(r != rest[0] for r in rest):
            raise InputError(f"{self.name}: inputs differ outside the concatenation axis: {shapes}")
        sizes = [s[axis] for s in shapes]
        out = list(shapes[0])
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Lambda(Layer):
    """Any function of the input as a layer.  Saved by name only: loading needs the function in
    `custom_objects` (a pickled function would be code from the file — never loaded)."""

    def __init__(self, function: Callable[..., torch.Tensor], output_shape: Any = None,
                 arguments: Optional[dict] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not callable(function):
            raise InputError(f"Lambda: function must be callable, not {type(function).__name__}")
        self.function, self.arguments = function, dict(arguments or {})
        self.output_shape_arg = tuple(output_shape) if output_shape is not None else None

    def call(self, x: Any) -> torch.Tensor:
        return self.function(x, **self.arguments)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.output_shape_arg if self.output_shape_arg is not None else super().compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "function": getattr(self.function, "__name__", "lambda"),
                  "arguments": self.arguments}
        if self.output_shape_arg is not None:
            config["output_shape"] = list(self.output_shape_arg)
        return config


class TorchModuleWrapper(Layer):
    """Any `torch.nn.Module` as a layer (its output shape is found by running it once)."""

    def __init__(self, module: nn.Module, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(module, nn.Module):
            raise InputError(f"TorchModuleWrapper takes a torch.nn.Module, not {type(module).__name__}")
        self.module = module

    def call(self, x: Any) -> Any:
        return self.module(x)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "module": type(self.module).__name__}


class _RandomAffine(Layer):
    """Random flips, shifts and rotations of (N, H, W, C) images while training; identity after."""

    def __init__(self, fill_mode: str = "reflect", interpolation: str = "bilinear", seed: Optional[int] = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if fill_mode not in ("reflect", "constant", "nearest"):
            raise InputError(f"fill_mode must be 'reflect', 'constant' or 'nearest', not {fill_mode!r}")
        self.fill_mode, self.interpolation = fill_mode, interpolation

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def _warp(self, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        images = x.permute(0, 3, 1, 2).float()
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        padding = {"reflect": "reflection", "constant": "zeros", "nearest": "border"}[self.fill_mode]
        mode = "nearest" if self.interpolation == "nearest" else "bilinear"
        return F.grid_sample(images, grid, mode=mode, padding_mode=padding, align_corners=False).permute(0, 2, 3, 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fill_mode": self.fill_mode, "interpolation": self.interpolation}


def _factor_range(factor: Any, name: str) -> tuple[float, float]:
    low, high = (-factor, factor) if isinstance(factor, (int, float)) else tuple(factor)
    if low > high:
        raise InputError(f"{name}: lower bound {low} above upper bound {high}")
    return float(low), float(high)


class RandomFlip(Layer):
    def __init__(self, mode: str = "horizontal_and_vertical", seed: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise InputError(f"RandomFlip: mode must be horizontal, vertical or horizontal_and_vertical, not {mode!r}")
        self.mode = mode

    def call(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n = len(x)
        for axis, wanted in ((2, "horizontal"), (1, "vertical")):
            if wanted in self.mode:
                flip = (torch.rand(n, device=x.device) < 0.5).view(n, 1, 1, 1)
                x = torch.where(flip, x.flip(axis), x)
        return x

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


class RandomTranslation(_RandomAffine):
    """Shifts by up to `height_factor`·H and `width_factor`·W pixels (fractions, or (low, high))."""

    def __init__(self, height_factor: Any, width_factor: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._h, self._w = _factor_range(height_factor, "height_factor"), _factor_range(width_factor, "width_factor")

    def call(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n = len(x)
        dy = torch.empty(n, device=x.device).uniform_(*self._h) * 2
        dx = torch.empty(n, device=x.device).uniform_(*self._w) * 2
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2], theta[:, 1, 2] = -dx, -dy
        return self._warp(x, theta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor}


class RandomRotation(_RandomAffine):
    """Rotates by up to `factor`·2π radians (a fraction of a full turn, or (low, high))."""

    def __init__(self, factor: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = factor
        self._range = _factor_range(factor, "factor")

    def call(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n = len(x)
        angle = torch.empty(n, device=x.device).uniform_(*self._range) * 2 * math.pi
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
        return self._warp(x, theta)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


#: Activations that never decrease, so they commute with max-pooling (network.Network._pool_first).
MONOTONIC = frozenset({"relu", "relu6", "sigmoid", "tanh", "elu", "selu", "softplus", "leaky_relu", "hard_sigmoid",
                       "linear", "exponential"})

#: Every built-in layer by class name (what a saved architecture refers to).
LAYERS: dict[str, type[Layer]] = {cls.__name__: cls for cls in (
    Dense, Activation, ReLU, Softmax, Dropout, Flatten, Reshape, Rescaling, Conv2D, MaxPooling2D, AveragePooling2D,
    GlobalAveragePooling2D, GlobalMaxPooling2D, BatchNormalization, Embedding, LSTM, Add, Subtract, Multiply,
    Average, Concatenate, Lambda, RandomFlip, RandomTranslation, RandomRotation)}
