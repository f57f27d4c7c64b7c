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


def _save_png(plt, fig, path: Path) -> None:
    """Lay out, render to PNG in memory, write atomically, free the figure."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


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
    _save_png(plt, fig, path)


def save_mistakes_grid(images: np.ndarray, labels: np.ndarray, result: EvalResult, path: Path,
                       limit: int = 48) -> bool:
    """The first `limit` misclassified examples, each titled "true → predicted"; False if none."""
    if result.predicted is None:
        return False
    wrong = np.flatnonzero(result.predicted != labels)[:limit]
    if len(wrong) == 0:
        return False
    plt = _pyplot()
    cols = min(8, len(wrong))
    rows = -(-len(wrong) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows + 0.4), squeeze=False)
    names = result.class_names
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        image = images[i]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                  vmin=0, vmax=255)
        ax.set_title(f"{names[labels[i]]} → {names[result.predicted[i]]}", fontsize=7)
    fig.suptitle(f"{result.split}: {int((result.predicted != labels).sum())} mistakes of {result.count} "
                 "(true → predicted)", fontsize=9)
    _save_png(plt, fig, path)
    return True


def save_training_curves(model_dir: Path, path: Path) -> bool:
    """Loss and accuracy against global step, training beside validation, read from the event files.

    Returns False (and writes nothing) when there is nothing to plot yet.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(directory: Path, tag: str) -> tuple[list[int], list[float]]:
        if not directory.is_dir():
            return [], []
        events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "histograms": 1, "images": 1,
                                                                  "tensors": 1, "compressedHistograms": 1})
        events.Reload()
        if tag not in events.Tags().get("scalars", []):
            return [], []
        points = {e.step: e.value for e in events.Scalars(tag)}  # the last write of a step wins (resumed runs)
        steps = sorted(points)
        return steps, [points[s] for s in steps]

    train_loss = scalars(model_dir, "loss")
    if not train_loss[0]:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, tag in zip(axes, ("loss", "accuracy")):
        for label, directory in (("train", model_dir), ("validation", model_dir / "eval_validation")):
            steps, values = scalars(directory, tag)
            if steps:
                ax.plot(steps, values, label=label, marker="o" if label == "validation" else None, markersize=3)
        ax.set_xlabel("global step")
        ax.set_title(tag)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    _save_png(plt, fig, path)
    return True
