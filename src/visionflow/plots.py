"""Pictures people look at before reading numbers: the confusion matrix, sample grids."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .fsio import atomic_write_bytes
from .metrics import EvalResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_confusion_png(result: EvalResult, path: Path) -> None:
    """A confusion matrix heat map with counts, row-normalised colours, accuracy in the title."""
    plt = _pyplot()
    matrix = result.confusion
    k = len(result.class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), result.class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), result.class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result.split}: accuracy {result.accuracy:.2%} at step {result.global_step}")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if shares[i, j] > 0.5 else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
