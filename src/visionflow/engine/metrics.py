"""Evaluation metrics: a classification's from its confusion matrix (rows: true class, columns:
predicted), a regression's from its errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EvalResult:
    """Metrics of one evaluation; `loss` is mean cross-entropy in nats per example.

    A regression (float targets) has `regression` — rmse, mae, r2 (the coefficient of
    determination, 1 - SSE/SST) — its `loss` is the mean squared error, and `accuracy` is 0 with an
    empty confusion matrix; `predicted` then holds the predicted values."""

    loss: float
    accuracy: float
    count: int
    confusion: np.ndarray
    class_names: tuple[str, ...]
    global_step: int = 0
    split: str = "test"
    predicted: np.ndarray | None = field(default=None, repr=False)  # (N,) class per example, in data order
    probabilities: np.ndarray | None = field(default=None, repr=False)  # (N, K) softmax per example
    regression: dict[str, float] | None = None

    def headline(self) -> str:
        """The result in a few words: "accuracy 97.22%", or a regression's "RMSE 0.41  MAE 0.30  R² 0.87"."""
        if self.regression is not None:
            r = self.regression
            return f"RMSE {r['rmse']:.4g}  MAE {r['mae']:.4g}  R² {r['r2']:.4f}"
        return f"accuracy {self.accuracy:.2%}"

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.zeros(len(predicted)), where=predicted > 0)

    @property
    def recall(self) -> np.ndarray:
        actual = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), actual, out=np.zeros(len(actual)), where=actual > 0)

    def to_dict(self) -> dict:
        if self.regression is not None:
            return {"split": self.split, "global_step": self.global_step, "loss": self.loss, "count": self.count,
                    "target": self.class_names[0] if self.class_names else "", **self.regression}
        return {
            "split": self.split,
            "global_step": self.global_step,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "count": self.count,
            "per_class": [
                {"class": i, "label": name, "precision": float(p), "recall": float(r), "support": int(s)}
                for i, (name, p, r, s) in enumerate(
                    zip(self.class_names, self.precision, self.recall, self.confusion.sum(axis=1)))
            ],
            "confusion_matrix": self.confusion.tolist(),
        }
