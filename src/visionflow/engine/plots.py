"""Pictures people look at before reading numbers: the confusion matrix, the mistakes, the curves."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import numpy as np

from ..core.fsio import atomic_write_bytes
from .metrics import EvalResult


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(plt, fig, path: Path, tight: bool = True) -> bytes:
    """Lay out (unless placed by hand), render to PNG in memory, write atomically, free the figure;
    returns the PNG."""
    if tight:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return buffer.getvalue()


def save_confusion_png(result: EvalResult, path: Path) -> bytes:
    """The confusion matrix, normalised per true class, with the counts written in the cells.

    Colours are each row's shares on a square-root scale, so that 1% of a class's 1,000 test
    images misread as another class still shows; the diagonal is coloured apart (green) so the
    errors are what the eye finds.  Returns the PNG.
    """
    from matplotlib.colors import PowerNorm

    plt = pyplot()
    matrix = result.confusion
    k = len(result.class_names)
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    off = np.ma.masked_where(np.eye(k, dtype=bool), shares)
    diagonal = np.ma.masked_where(~np.eye(k, dtype=bool), shares)
    size = max(4.5, 0.6 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    errors = ax.imshow(off, cmap="Reds", norm=PowerNorm(0.5, vmin=0, vmax=max(float(off.max() or 0), 0.05)))
    ax.imshow(diagonal, cmap="Greens", vmin=0, vmax=1)
    labels = [textwrap.shorten(name, 18, placeholder="…") for name in result.class_names]
    ax.set_xticks(range(k), labels, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result.split}: accuracy {result.accuracy:.2%} of {result.count:,} at step {result.global_step}\n"
                 "colour: share of the true class (errors red, √ scale); numbers: counts", fontsize=9)
    fig.colorbar(errors, ax=ax, fraction=0.046, pad=0.04, label="share of the true class misread")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                if matrix[i, j] or i == j:
                    dark = shares[i, j] > (0.5 if i == j else 0.35 * max(float(off.max() or 0), 0.05))
                    ax.text(j, i, f"{matrix[i, j]:,}", ha="center", va="center", fontsize=7 if k > 10 else 8,
                            color="white" if dark else "black")
    return save_png(plt, fig, path)


def save_regression_png(result: EvalResult, targets: np.ndarray, path: Path) -> bytes:
    """Predicted against true values of a regression, one dot per example, with the y = x line
    every dot would sit on were the model exact.  Returns the PNG."""
    assert result.predicted is not None and result.regression is not None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    ax.scatter(targets, result.predicted, s=9, alpha=0.5 if len(targets) > 200 else 0.8, edgecolors="none")
    both = np.concatenate([targets, result.predicted]) if len(targets) else np.zeros(2)
    lo, hi = float(both.min()), float(both.max())
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8, label="exact (y = x)")
    target = result.class_names[0] if result.class_names else "target"
    ax.set_xlabel(f"true {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(f"{result.split}: {result.headline()}\n{result.count:,} examples at step {result.global_step}",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(plt, fig, path)


def save_mistakes_grid(images: np.ndarray, labels: np.ndarray, result: EvalResult, path: Path,
                       limit: int = 48) -> bool:
    """The first `limit` misclassified examples, each captioned "true → predicted" and the
    model's confidence in its (wrong) answer; False (nothing written) if there are none, or if
    the examples are not pictures (tabular rows, feature vectors)."""
    if result.predicted is None or result.regression is not None or images.dtype != np.uint8 or images.ndim != 4:
        return False
    every = np.flatnonzero(result.predicted != labels)
    wrong = every[:limit]
    if len(wrong) == 0:
        return False
    names = [textwrap.shorten(n, 12, placeholder="…") for n in result.class_names]
    captions = []
    for i in wrong:
        line = f"{names[labels[i]]} → {names[result.predicted[i]]}"
        if result.probabilities is not None:
            line += f"\n{result.probabilities[i, result.predicted[i]]:.0%} sure"
        captions.append(line)
    shown = f"showing {len(wrong)} of {len(every):,}" if len(every) > len(wrong) else f"all {len(every):,}"
    save_captioned_grid(images[wrong], captions, path, f"{result.split} mistakes at step {result.global_step}: "
                        f"{shown} of {result.count:,} images (true → predicted)")
    return True


def save_captioned_grid(images: np.ndarray, captions: list[str], path: Path, title: str) -> None:
    """(n, h, w, c) uint8 images in rows of 8, each with a caption of up to two lines under it.

    The tiles are laid into one mosaic image drawn on one axes: a grid of 48 sub-axes took
    ~2 s of layout per evaluation, this takes ~0.2 s.
    """
    cols = min(8, len(images))
    rows = -(-len(images) // cols)
    tiles = _upscaled(images)  # (n, t, t, 3) uint8, t ≥ 48
    t = tiles.shape[1]
    gap, caption = t // 8, t // 2  # pixels between tiles, and below each for its two caption lines
    cell_w, cell_h = t + gap, t + caption
    mosaic = np.full((rows * cell_h, cols * cell_w - gap, 3), 255, np.uint8)
    plt = pyplot()
    fig = plt.figure(figsize=(1.7 * cols, 1.7 * rows * cell_h / cell_w + 0.5))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - 0.5 / fig.get_figheight()))
    for n, line in enumerate(captions):
        top, left = (n // cols) * cell_h, (n % cols) * cell_w
        mosaic[top : top + t, left : left + t] = tiles[n]
        ax.text(left + t / 2, top + t + caption * 0.08, line, ha="center", va="top", fontsize=6.5, linespacing=1.1)
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    fig.suptitle(title, fontsize=9)
    save_png(plt, fig, path, tight=False)


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


def save_training_curves(model_dir: Path, path: Path, test: EvalResult | None = None) -> bool:
    """Loss and accuracy against global step: training beside validation, and the test result as
    a point at its step.  Read from the event files; runs of few points get markers.

    Returns False (and writes nothing) when there is nothing to plot yet.
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def scalars(directory: Path, tag: str) -> tuple[list[int], list[float]]:
        if not directory.is_dir():
            return [], []
        events = EventAccumulator(str(directory), size_guidance={"scalars": 0, "histograms": 1, "images": 1,
                                                                  "tensors": 1, "compressedHistograms": 1})
        events.Reload()
        if tag not in events.Tags().get("scalars", []):
            return [], []
        points = {e.step: e.value for e in events.Scalars(tag)}  # the last write of a step wins
        steps = sorted(points)
        return steps, [points[s] for s in steps]

    train_dir = model_dir / "train" if (model_dir / "train").is_dir() else model_dir  # before 0.2: events at the top
    train_loss = scalars(train_dir, "loss")
    if not train_loss[0]:
        return False
    plt = pyplot()
    tags = ("loss",) if test is not None and test.regression is not None else ("loss", "accuracy")
    fig, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.8), squeeze=False)
    for ax, tag in zip(axes[0], tags):
        for label, directory in (("train", train_dir), ("validation", model_dir / "eval_validation")):
            steps, values = scalars(directory, tag)
            if steps:
                few = len(steps) <= 12
                ax.plot(steps, values, label=label, marker="o" if few or label == "validation" else None,
                        markersize=3.5 if few else 3)
        if test is not None:
            value = test.loss if tag == "loss" else test.accuracy
            ax.plot([test.global_step], [value], marker="*", markersize=11, linestyle="none", color="black",
                    label=f"test {value:.2%}" if tag == "accuracy" else f"test {value:.3g}")
        ax.set_xlabel("global step")
        ax.set_title(tag)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    axes[0][0].set_yscale("log")
    if len(tags) > 1:
        axes[0][1].yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.0%}"))
    save_png(plt, fig, path)
    return True
