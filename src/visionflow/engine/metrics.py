"""Classification metrics from a confusion matrix (rows: true class, columns: predicted)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EvalResult:
    """Metrics of one evaluation; `loss` is mean cross-entropy in nats per example."""

    loss: float
    accuracy: float
    count: int
    confusion: np.ndarray
    class_names: tuple[str, ...]
    global_step: int = 0
    split: str = "test"
    predicted: np.ndarray | None = field(default=None, repr=False)  # (N,) class per example, in data order
    probabilities: np.ndarray | None = field(default=None, repr=False)  # (N, K) softmax per example

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(np.diag(self.confusion), predicted, out=np.zeros(len(predicted)), where=predicted > 0)

    @property
    def recall(self) -> np.ndarray:
        actual = self.confusion.sum(axis=1)
        return np.divide(np.diag(self.confusion), actual, out=np.zeros(len(actual)), where=actual > 0)

    def to_dict(self) -> dict:
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
