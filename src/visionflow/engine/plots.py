"""Pictures people look at before reading numbers: the confusion matrix, sample grids."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..core.fsio import atomic_write_bytes
from .metrics import EvalResult


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_png(plt, fig, path: Path, tight: bool = True) -> None:
    """Lay out (unless placed by hand), render to PNG in memory, write atomically, free the figure."""
    if tight:
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
    """The first `limit` misclassified examples, each captioned "true → predicted"; False if none.

    The tiles are laid into one mosaic image drawn on one axes: a grid of 48 sub-axes took
    ~2 s of layout per evaluation, this takes ~0.2 s.
    """
    if result.predicted is None:
        return False
    wrong = np.flatnonzero(result.predicted != labels)[:limit]
    if len(wrong) == 0:
        return False
    cols = min(8, len(wrong))
    rows = -(-len(wrong) // cols)
    tiles = _upscaled(images[wrong])  # (n, t, t, 3) uint8, t ≥ 48
    t = tiles.shape[1]
    gap, caption = t // 8, t // 3  # pixels between tiles, and below each for its caption
    cell_w, cell_h = t + gap, t + caption
    mosaic = np.full((rows * cell_h, cols * cell_w - gap, 3), 255, np.uint8)
    names = result.class_names
    plt = _pyplot()
    fig = plt.figure(figsize=(1.6 * cols, 1.6 * rows * cell_h / cell_w + 0.4))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - 0.4 / fig.get_figheight()))
    for k, i in enumerate(wrong):
        top, left = (k // cols) * cell_h, (k % cols) * cell_w
        mosaic[top : top + t, left : left + t] = tiles[k]
        ax.text(left + t / 2, top + t + caption * 0.15, f"{names[labels[i]]} → {names[result.predicted[i]]}",
                ha="center", va="top", fontsize=7)
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(f"{result.split}: {int((result.predicted != labels).sum())} mistakes of {result.count} "
                 "(true → predicted)", fontsize=9)
    _save_png(plt, fig, path, tight=False)
    return True


def _upscaled(images: np.ndarray, at_least: int = 48) -> np.ndarray:
    """(n, h, w, c) uint8 → (n, s, s, 3): pixel-repeated to at least `at_least` pixels, padded square, RGB."""
    n, h, w, c = images.shape
    factor = max(1, -(-at_least // max(h, w)))
    big = images.repeat(factor, axis=1).repeat(factor, axis=2)
    if c == 1:
        big = big.repeat(3, axis=3)
    side = max(big.shape[1], big.shape[2])
    out = np.full((n, side, side, 3), 255, np.uint8)
    out[:, : big.shape[1], : big.shape[2]] = big[..., :3]
    return out


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
