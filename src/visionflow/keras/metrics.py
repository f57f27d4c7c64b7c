"""Streaming metrics with Keras' names and `update_state / result / reset_state`.

The accumulation is torchmetrics' (`MeanMetric`, `SumMetric`, `BinaryAUROC`,
`MulticlassConfusionMatrix`): state stays on the device, and torchmetrics synchronises it across
processes under torch.distributed.  What is ours is Keras' meaning of each metric — which
predictions count as right, how sample weights enter, Keras' thresholds and IoU over the classes
present — and `result()` is the value over everything seen since the last reset.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
import torchmetrics

from ..errors import InputError


def _tensor(value: Any, device: torch.device | None = None) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    return tensor.detach().to(device) if device is not None else tensor.detach()


class Metric:
    """Base of every metric: `update_state(y_true, y_pred, sample_weight=None)`, `result()`,
    `reset_state()`; `name` is the key it has in logs and History."""

    name = "metric"

    def __init__(self, name: Optional[str] = None, dtype: Any = None) -> None:
        self.name = name or self.name
        self.device: torch.device | None = None

    def _to(self, device: torch.device) -> None:
        if self.device != device:
            for value in vars(self).values():
                if isinstance(value, torchmetrics.Metric):
                    value.to(device)
            self.device = device

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_pred = _tensor(y_pred)
        self._to(y_pred.device)
        y_true = _tensor(y_true, y_pred.device)
        weights = None if sample_weight is None else _tensor(sample_weight, y_pred.device).float()
        self.update(y_true, y_pred, weights)

    def update(self, y_true: torch.Tensor, y_pred: torch.Tensor, weights: torch.Tensor | None) -> None:
        raise NotImplementedError

    def result(self) -> torch.Tensor:
        raise NotImplementedError

    def reset_state(self) -> None:
        for value in vars(self).values():
            if isinstance(value, torchmetrics.Metric):
                value.reset()

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


class Mean(Metric):
    """The (weighted) mean of the values given: `update_state(values, sample_weight=None)`;
    weights are per example (the first axis) or per value."""

    name = "mean"

    def __init__(self, name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(name, dtype)
        self.total = torchmetrics.SumMetric(nan_strategy="disable")
        self.count = torchmetrics.SumMetric(nan_strategy="disable")

    def _add(self, values: torch.Tensor, weights: torch.Tensor | None) -> None:
        values = values.float()
        if values.dim() == 0:
            values = values.reshape(1)
        if weights is None:
            weights = torch.ones(values.shape[:1], device=values.device)
        weights = weights.float().reshape(weights.shape + (1,) * (values.dim() - weights.dim())).expand_as(values)
        self.total.update((values * weights).sum())
        self.count.update(weights.sum())

    def update_state(self, values: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        values = _tensor(values)
        self._to(values.device)
        self._add(values, None if sample_weight is None else _tensor(sample_weight, values.device))

    def update(self, y_true: torch.Tensor, y_pred: torch.Tensor, weights: torch.Tensor | None) -> None:
        self._add(y_pred, weights)

    def result(self) -> torch.Tensor:
        if not self.count.update_called:
            return torch.tensor(0.0)
        count = self.count.compute()
        return self.total.compute() / count if count > 0 else torch.zeros((), device=count.device)


class MeanMetricWrapper(Mean):
    """The mean over examples of a per-example value `values(y_true, y_pred)` (N,)."""

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, y_true: torch.Tensor, y_pred: torch.Tensor, weights: torch.Tensor | None) -> None:
        self._add(self.values(y_true, y_pred), weights)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:  # type: ignore[override]
        Metric.update_state(self, y_true, y_pred, sample_weight)


def _labels(y_true: torch.Tensor) -> torch.Tensor:
    """Class indices from (N,) or (N, 1) targets."""
    return (y_true.squeeze(-1) if y_true.dim() > 1 and y_true.shape[-1] == 1 else y_true).long()


class SparseCategoricalAccuracy(MeanMetricWrapper):
    name = "sparse_categorical_accuracy"

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        return (y_pred.argmax(-1) == _labels(y_true)).float()


class CategoricalAccuracy(MeanMetricWrapper):
    name = "categorical_accuracy"

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        return (y_pred.argmax(-1) == y_true.argmax(-1)).float()


class BinaryAccuracy(MeanMetricWrapper):
    name = "binary_accuracy"

    def __init__(self, name: Optional[str] = None, dtype: Any = None, threshold: float = 0.5) -> None:
        super().__init__(name, dtype)
        self.threshold = threshold

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        right = ((y_pred > self.threshold) == (y_true.reshape(y_pred.shape) > 0.5)).float()
        return right.reshape(len(right), -1).mean(1)


class Accuracy(MeanMetricWrapper):
    """Keras' plain `Accuracy`: predictions equal to targets, element by element."""

    name = "accuracy"

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        right = (y_pred == y_true.reshape(y_pred.shape)).float()
        return right.reshape(len(right), -1).mean(1)


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    name = "sparse_top_k_categorical_accuracy"

    def __init__(self, k: int = 5, name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(name, dtype)
        self.k = k

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        top = y_pred.topk(min(self.k, y_pred.shape[-1]), dim=-1).indices
        return (top == _labels(y_true).unsqueeze(-1)).any(-1).float()


class TopKCategoricalAccuracy(SparseTopKCategoricalAccuracy):
    name = "top_k_categorical_accuracy"

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        return super().values(y_true.argmax(-1), y_pred)


class MeanSquaredError(MeanMetricWrapper):
    name = "mean_squared_error"

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        d = (y_pred.float() - y_true.float().reshape(y_pred.shape)) ** 2
        return d.reshape(len(d), -1).mean(1)


class MeanAbsoluteError(MeanMetricWrapper):
    name = "mean_absolute_error"

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        d = (y_pred.float() - y_true.float().reshape(y_pred.shape)).abs()
        return d.reshape(len(d), -1).mean(1)


class RootMeanSquaredError(MeanSquaredError):
    name = "root_mean_squared_error"

    def result(self) -> torch.Tensor:
        return super().result().sqrt()


class _Counts(Metric):
    """Weighted true/false positive and false negative counts at `thresholds` (Keras' 0.5)."""

    def __init__(self, thresholds: Optional[float] = None, top_k: Optional[int] = None,
                 class_id: Optional[int] = None, name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(name, dtype)
        self.threshold = 0.5 if thresholds is None else float(thresholds)
        self.class_id = class_id
        self.tp, self.fp, self.fn = (torchmetrics.SumMetric(nan_strategy="disable") for _ in range(3))

    def update(self, y_true: torch.Tensor, y_pred: torch.Tensor, weights: torch.Tensor | None) -> None:
        if self.class_id is not None:
            y_true, y_pred = y_true[..., self.class_id], y_pred[..., self.class_id]
        pred = (y_pred > self.threshold).float()
        true = (y_true.reshape(y_pred.shape) > 0.5).float()
        w = torch.ones_like(pred) if weights is None else weights.reshape(weights.shape[:1] + (1,) * (pred.dim() - 1)
                                                                          ).expand_as(pred)
        self.tp.update((pred * true * w).sum())
        self.fp.update((pred * (1 - true) * w).sum())
        self.fn.update(((1 - pred) * true * w).sum())

    @staticmethod
    def _ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a / b if b > 0 else torch.zeros((), device=a.device)

    def _totals(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(m.compute() if m.update_called else torch.tensor(0.0) for m in (self.tp, self.fp, self.fn))  # type: ignore[return-value]


class Precision(_Counts):
    name = "precision"

    def result(self) -> torch.Tensor:
        tp, fp, _ = self._totals()
        return self._ratio(tp, tp + fp)


class Recall(_Counts):
    name = "recall"

    def result(self) -> torch.Tensor:
        tp, _, fn = self._totals()
        return self._ratio(tp, tp + fn)


class AUC(Metric):
    """Area under the ROC curve of binary (or multi-label, flattened) predictions, from
    `num_thresholds` evenly spaced thresholds as Keras computes it (None: exact)."""

    name = "auc"

    def __init__(self, num_thresholds: Optional[int] = 200, curve: str = "ROC", from_logits: bool = False,
                 name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(name, dtype)
        if curve not in ("ROC", "PR"):
            raise InputError(f"AUC: curve must be 'ROC' or 'PR', not {curve!r}")
        self.curve, self.from_logits = curve, from_logits
        self.curve_metric = (torchmetrics.classification.BinaryAUROC(thresholds=num_thresholds) if curve == "ROC"
                             else torchmetrics.classification.BinaryAveragePrecision(thresholds=num_thresholds))

    def update(self, y_true: torch.Tensor, y_pred: torch.Tensor, weights: torch.Tensor | None) -> None:
        if weights is not None:  # 0/1 weights select examples; others have no meaning for the curve here
            weights = weights.reshape(len(weights))
            if not bool(((weights == 0) | (weights == 1)).all()):
                raise InputError("AUC takes sample weights of 0 or 1 only (which examples count)")
            keep = weights > 0
            y_true, y_pred = y_true[keep], y_pred[keep]
        scores = torch.sigmoid(y_pred.float()) if self.from_logits else y_pred.float().clamp(0, 1)
        self.curve_metric.update(scores.reshape(-1), (y_true.reshape(y_pred.shape) > 0.5).long().reshape(-1))

    def result(self) -> torch.Tensor:
        return self.curve_metric.compute() if self.curve_metric.update_called else torch.tensor(0.0)


class ConfusionMatrix(Metric):
    """The (num_classes, num_classes) counts of (true class, predicted class); predictions are
    class scores (argmax taken) or class indices."""

    name = "confusion_matrix"

    def __init__(self, num_classes: int, name: Optional[str] = None, dtype: Any = None) -> None:
        super().__init__(name, dtype)
        self.num_classes = int(num_classes)
        self.matrix = torchmetrics.classification.MulticlassConfusionMatrix(self.num_classes)

    def update(self, y_true: torch.Tensor, y_pred: torch.Tensor, weights: torch.Tensor | None) -> None:
        if weights is not None:
            raise InputError(f"{type(self).__name__} does not take sample weights here")
        pred = y_pred.argmax(-1) if y_pred.is_floating_point() and y_pred.dim() > y_true.dim() - (
            1 if y_true.dim() > 1 and y_true.shape[-1] == 1 else 0) else y_pred
        true = _labels(y_true) if y_true.dim() <= pred.dim() + 1 else y_true.argmax(-1)
        self.matrix.update(pred.long().reshape(-1), true.reshape(-1))

    def result(self) -> torch.Tensor:
        return self.matrix.compute() if self.matrix.update_called else torch.zeros(self.num_classes, self.num_classes)


class MeanIoU(ConfusionMatrix):
    """Keras' MeanIoU: per-class intersection over union from the confusion matrix, averaged over
    the classes that occur (in targets or predictions)."""

    name = "mean_io_u"

    def result(self) -> torch.Tensor:
        cm = super().result().double()
        inter = cm.diag()
        union = cm.sum(0) + cm.sum(1) - inter
        present = union > 0
        return (inter[present] / union[present]).mean().float() if present.any() else torch.tensor(0.0)


ALIASES: dict[str, type[Metric]] = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy, "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy, "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "rmse": RootMeanSquaredError, "root_mean_squared_error": RootMeanSquaredError,
    "precision": Precision, "recall": Recall, "auc": AUC,
}


def get(identifier: Any, loss_name: str = "", output_shape: Sequence[Any] = ()) -> Metric:
    """A metric from a name ("accuracy" picks the variant the loss implies, as Keras does) or an instance."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            if "sparse" in loss_name:
                cls: type[Metric] = SparseCategoricalAccuracy
            elif "binary" in loss_name or (output_shape and output_shape[-1] == 1):
                cls = BinaryAccuracy
            else:
                cls = CategoricalAccuracy
            return cls(name=identifier)
        if identifier not in ALIASES:
            raise InputError(f"unknown metric {identifier!r} (choose one of: accuracy, {', '.join(sorted(ALIASES))})")
        return ALIASES[identifier](name=identifier)
    if callable(identifier):
        return _FunctionMetric(identifier)
    raise InputError(f"metric must be a name, a keras Metric or a function, not {type(identifier).__name__}")


class _FunctionMetric(MeanMetricWrapper):
    def __init__(self, fn: Any) -> None:
        super().__init__(name=getattr(fn, "__name__", "metric"))
        self.fn = fn

    def values(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        out = self.fn(y_true, y_pred)
        return out.reshape(len(y_pred), -1).mean(1) if out.dim() else out.reshape(1).expand(len(y_pred))
