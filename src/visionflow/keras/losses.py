"""Keras' losses: `loss(y_true, y_pred)` → the batch's mean loss (weighted by `sample_weight`).

A loss with `from_logits=False` (Keras' default) takes probabilities, clipped to [1e-7, 1 - 1e-7]
as Keras does; `from_logits=True` takes raw scores and uses the stable log-softmax/log-sigmoid.
Targets: sparse losses take class indices (N,) or (N, 1); categorical ones one-hot (N, K).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from ..errors import InputError

EPSILON = 1e-7


class Loss:
    """Base: `per_example(y_true, y_pred)` → (N,) losses; calling reduces them like Keras
    ("sum_over_batch_size": the weighted sum divided by the batch size)."""

    name = "loss"

    def __init__(self, name: Optional[str] = None, reduction: str = "sum_over_batch_size") -> None:
        if reduction not in ("sum_over_batch_size", "sum", "none", "mean"):
            raise InputError(f"reduction must be sum_over_batch_size, sum, mean or none, not {reduction!r}")
        self.name = name or self.name
        self.reduction = reduction

    def per_example(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> torch.Tensor:
        y_pred = torch.as_tensor(y_pred)
        y_true = torch.as_tensor(y_true, device=y_pred.device)
        losses = self.per_example(y_true, y_pred)
        if sample_weight is not None:
            weights = torch.as_tensor(sample_weight, device=losses.device, dtype=losses.dtype)
            losses = losses * weights.reshape(weights.shape[:1] + (1,) * (losses.dim() - 1))
        if self.reduction == "none":
            return losses
        if self.reduction == "sum":
            return losses.sum()
        return losses.sum() / max(losses.numel(), 1)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction}


def _mean_rest(losses: torch.Tensor) -> torch.Tensor:
    """Keras averages a per-element loss over every axis but the batch."""
    return losses.reshape(len(losses), -1).mean(1) if losses.dim() > 1 else losses


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, ignore_class: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_logits, self.ignore_class = from_logits, ignore_class

    def per_example(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        if y_true.dim() == y_pred.dim():
            y_true = y_true.squeeze(-1)
        if y_true.is_floating_point():
            y_true = y_true.long()
        log_probs = (torch.log_softmax(y_pred.float(), -1) if self.from_logits
                     else torch.log(y_pred.float().clamp(EPSILON, 1 - EPSILON)))
        ignore = -100 if self.ignore_class is None else self.ignore_class
        losses = F.nll_loss(log_probs.movedim(-1, 1) if log_probs.dim() > 2 else log_probs, y_true,
                            reduction="none", ignore_index=ignore)
        return _mean_rest(losses)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits, "ignore_class": self.ignore_class}


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_logits, self.label_smoothing = from_logits, float(label_smoothing)

    def per_example(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        if y_true.shape != y_pred.shape:
            raise InputError(f"categorical_crossentropy: targets {tuple(y_true.shape)} and outputs "
                             f"{tuple(y_pred.shape)} differ — one-hot targets are needed (or use "
                             "sparse_categorical_crossentropy for class indices)")
        y_true = y_true.float()
        if self.label_smoothing:
            y_true = y_true * (1 - self.label_smoothing) + self.label_smoothing / y_true.shape[-1]
        if self.from_logits:
            log_probs = torch.log_softmax(y_pred.float(), -1)
        else:
            probs = y_pred.float()
            probs = probs / probs.sum(-1, keepdim=True)  # Keras renormalises probabilities
            log_probs = torch.log(probs.clamp(EPSILON, 1 - EPSILON))
        return _mean_rest(-(y_true * log_probs).sum(-1))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_logits, self.label_smoothing = from_logits, float(label_smoothing)

    def per_example(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        y_true = y_true.float().reshape(y_pred.shape)
        if self.label_smoothing:
            y_true = y_true * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        if self.from_logits:
            losses = F.binary_cross_entropy_with_logits(y_pred.float(), y_true, reduction="none")
        else:
            p = y_pred.float().clamp(EPSILON, 1 - EPSILON)
            losses = -(y_true * torch.log(p) + (1 - y_true) * torch.log(1 - p))
        return _mean_rest(losses)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def per_example(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        return _mean_rest((y_pred.float() - y_true.float().reshape(y_pred.shape)) ** 2)


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def per_example(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        return _mean_rest((y_pred.float() - y_true.float().reshape(y_pred.shape)).abs())


class Huber(Loss):
    name = "huber_loss"

    def __init__(self, delta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delta = float(delta)

    def per_example(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        return _mean_rest(F.huber_loss(y_pred.float(), y_true.float().reshape(y_pred.shape), reduction="none",
                                       delta=self.delta))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "delta": self.delta}


class LossFunctionWrapper(Loss):
    """A user's function `fn(y_true, y_pred)` → per-example (N,) or scalar loss."""

    def __init__(self, fn: Callable[..., torch.Tensor], name: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__(name=name or getattr(fn, "__name__", "loss"), **kwargs)
        self.fn = fn

    def per_example(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        out = self.fn(y_true, y_pred)
        return out.reshape(1) if out.dim() == 0 else _mean_rest(out)


ALIASES: dict[str, type[Loss]] = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
    "huber": Huber, "huber_loss": Huber,
}


def get(identifier: Any) -> Loss:
    """A loss from a name, a Loss, or a function of (y_true, y_pred)."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = ALIASES.get(identifier)
        if cls is None:
            raise InputError(f"unknown loss {identifier!r} (choose one of: {', '.join(sorted(ALIASES))})")
        return cls()
    if callable(identifier):
        return LossFunctionWrapper(identifier)
    raise InputError(f"loss must be a name, a keras Loss or a function, not {type(identifier).__name__}")


def sparse_categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False) -> torch.Tensor:
    return SparseCategoricalCrossentropy(from_logits=from_logits, reduction="none")(y_true, y_pred)


def categorical_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False) -> torch.Tensor:
    return CategoricalCrossentropy(from_logits=from_logits, reduction="none")(y_true, y_pred)


def binary_crossentropy(y_true: Any, y_pred: Any, from_logits: bool = False) -> torch.Tensor:
    return BinaryCrossentropy(from_logits=from_logits, reduction="none")(y_true, y_pred)


def mean_squared_error(y_true: Any, y_pred: Any) -> torch.Tensor:
    return MeanSquaredError(reduction="none")(y_true, y_pred)


def mean_absolute_error(y_true: Any, y_pred: Any) -> torch.Tensor:
    return MeanAbsoluteError(reduction="none")(y_true, y_pred)


mse, mae = mean_squared_error, mean_absolute_error
