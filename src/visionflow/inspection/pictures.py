"""Pictures of a network's insides: convolution filters, and the feature maps one image makes.

Both are mosaics drawn on one axes (fast), written into the model directory; layers are named by
their module paths (`conv1`, `groups.0.conv2`), the names `inspect variables` lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..core.devices import resolve_device
from ..engine.evaluation import load_model
from ..engine.modeldir import ModelDir
from ..engine.monitor import matching_modules
from ..engine.plots import pyplot, save_png
from ..errors import InputError
from ..infer.predict import read_inputs

MAX_KERNELS, MAX_CHANNELS, MAX_MAPS = 64, 16, 16


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _file_name(kind: str, layer: str) -> str:
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_.-]', '_', layer)}.png"


def _tile(a: np.ndarray, size: int) -> np.ndarray:
    """(h, w[, 3]) floats → (size, size[, 3]), top-left aligned: small maps enlarged by pixel
    repetition, large ones (a 112×112 feature map) sampled down to the nearest pixels."""
    if max(a.shape[0], a.shape[1]) > size:
        scale = size / max(a.shape[0], a.shape[1])
        rows = np.minimum((np.arange(max(1, round(a.shape[0] * scale))) / scale).astype(int), a.shape[0] - 1)
        cols = np.minimum((np.arange(max(1, round(a.shape[1] * scale))) / scale).astype(int), a.shape[1] - 1)
        a = a[rows][:, cols]
    f = max(1, size // max(a.shape[0], a.shape[1]))
    big = a.repeat(f, 0).repeat(f, 1)
    out = np.full((size, size) + a.shape[2:], np.nan, dtype=np.float64)
    out[: big.shape[0], : big.shape[1]] = big[:size, :size]
    return out


def save_filters(model_dir: str | Path, layer: str | None = None, step: int | None = None) -> Path:
    """A grid of a conv layer's kernels (the first conv layer by default): RGB kernels of a
    3-channel input as colour tiles, otherwise each kernel's input channels as a row of small
    multiples on a diverging scale (blue negative, red positive, white zero)."""
    directory = ModelDir(model_dir)
    run, model, at = load_model(directory, resolve_device("cpu"), step)
    convs = conv_layers(model)
    if not convs:
        raise InputError(f"{directory.location}: its model ({run.model.name}) has no convolution layers")
    if layer is None:
        name, conv = convs[0]
    else:
        found = dict(convs)
        if layer not in found:
            raise InputError(f"--layer {layer!r}: not a convolution layer of {run.model.name} "
                             f"(they are: {', '.join(n for n, _ in convs[:12])})")
        name, conv = layer, found[layer]
    w = conv.weight.detach().float().cpu().numpy()[:MAX_KERNELS]  # (out, in, kh, kw)
    out_c, in_c = w.shape[:2]
    plt = pyplot()
    size = max(16, 4 * max(w.shape[2:]))
    if in_c == 3:
        cols = min(8, out_c)
        rows = -(-out_c // cols)
        mosaic = np.ones((rows * (size + 2), cols * (size + 2), 3))
        for k in range(out_c):
            kernel = w[k].transpose(1, 2, 0)
            lo, hi = kernel.min(), kernel.max()
            tile = _tile((kernel - lo) / (hi - lo if hi > lo else 1.0), size)
            r, c = divmod(k, cols)
            mosaic[r * (size + 2): r * (size + 2) + size, c * (size + 2): c * (size + 2) + size] = np.nan_to_num(tile, nan=1.0)
        fig = plt.figure(figsize=(1.2 * cols + 0.4, 1.2 * rows + 0.7))
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.96 - 0.5 / fig.get_figheight()))
        ax.imshow(mosaic, interpolation="nearest")
    else:
        # One greyscale channel: the kernels in a grid; several: a row of small multiples per kernel
        # (the first MAX_CHANNELS kernels, so the picture stays square).
        if in_c > 1:
            w, out_c = w[:MAX_CHANNELS], min(out_c, MAX_CHANNELS)
        shown = min(in_c, MAX_CHANNELS)
        cols = min(8, out_c) if in_c == 1 else shown
        rows = -(-out_c // cols) if in_c == 1 else out_c
        mosaic = np.full((rows * (size + 2), cols * (size + 2)), np.nan)
        tiles = [(k, 0) for k in range(out_c)] if in_c == 1 else [(k, c) for k in range(out_c) for c in range(shown)]
        for n, (k, c) in enumerate(tiles):
            r, col = divmod(n, cols)
            mosaic[r * (size + 2): r * (size + 2) + size, col * (size + 2): col * (size + 2) + size] = _tile(w[k, c], size)
        limit = float(np.nanmax(np.abs(mosaic))) or 1.0
        fig = plt.figure(figsize=(0.5 * cols * size / 16 + 1.2, 0.5 * rows * size / 16 + 0.8))
        ax = fig.add_axes((0.02, 0.02, 0.86, 0.96 - 0.5 / fig.get_figheight()))
        image = ax.imshow(np.ma.masked_invalid(mosaic), cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.04)
        if in_c > 1:
            ax.set_xlabel(f"input channel (first {shown} of {in_c})" if in_c > shown else "input channel")
            ax.set_ylabel("kernel")
    ax.set_xticks([])
    ax.set_yticks([])
    more = f", first {out_c} of {conv.weight.shape[0]}" if conv.weight.shape[0] > out_c else ""
    fig.suptitle(f"{run.model.name} {name}: {tuple(conv.weight.shape)} kernels{more}, step {at}", fontsize=9)
    path = directory.path / _file_name("filters", name)
    save_png(plt, fig, path, tight=False)
    directory.sync()
    return path


@dataclass(frozen=True)
class LayerActivation:
    layer: str
    shape: tuple[int, ...]
    mean: float
    std: float
    max: float
    zero_fraction: float

    def to_dict(self) -> dict:
        return {"layer": self.layer, "shape": list(self.shape), "mean": self.mean, "std": self.std, "max": self.max,
                "zero_fraction": self.zero_fraction}


@dataclass(frozen=True)
class Activations:
    image: str
    path: Path
    layers: list[LayerActivation]
    top: list[tuple[str, float]]
    global_step: int

    def to_dict(self) -> dict:
        return {"image": self.image, "png": str(self.path), "global_step": self.global_step,
                "layers": [a.to_dict() for a in self.layers],
                "top": [{"label": label, "probability": p} for label, p in self.top]}


def chosen_modules(model: nn.Module, patterns: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    """Modules whose paths match any glob of `patterns`; by default the first six conv layers."""
    if not patterns:
        return conv_layers(model)[:6]
    return matching_modules(model, list(patterns), "--layer")


def save_activations(model_dir: str | Path, image: str, layers: Sequence[str] | None = None, top_k: int = 5,
                     step: int | None = None) -> Activations:
    """The feature maps `image` makes in the chosen layers (up to 16 channels each) as one PNG, each
    layer's output statistics, and the top-k classes."""
    directory = ModelDir(model_dir)
    run = directory.load_config()
    batch, _ = read_inputs([image], run.preprocessing)
    run, model, at = load_model(directory, resolve_device("cpu"), step)
    modules = chosen_modules(model, layers)
    outputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: outputs.__setitem__(n, out)) for n, m in modules]
    try:
        with torch.no_grad():
            logits = model(run.preprocessing.normalize(torch.from_numpy(batch[:1])).contiguous(memory_format=torch.channels_last))
    finally:
        for hook in hooks:
            hook.remove()
    probs = torch.softmax(logits.float(), 1)[0]
    top = [(run.class_names[int(i)], float(probs[i])) for i in probs.argsort(descending=True)[:top_k]]
    stats, rows = [], []
    for name, _ in modules:
        out = outputs.get(name)
        if not isinstance(out, torch.Tensor):
            continue
        t = out.detach().float()[0]
        stats.append(LayerActivation(name, tuple(out.shape[1:]), float(t.mean()), float(t.std(unbiased=False)),
                                     float(t.max()), float((t == 0).float().mean())))
        maps = t if t.dim() == 3 else t.reshape(1, 1, -1)
        rows.append((name, maps[:MAX_MAPS].cpu().numpy()))
    if not rows:
        raise InputError("--layer: the chosen layers produced no tensors")
    size = 48
    plt = pyplot()
    cols = MAX_MAPS
    mosaic = np.full((len(rows) * (size + 14), cols * (size + 2)), np.nan)
    for r, (_, maps) in enumerate(rows):
        for c, m in enumerate(maps):
            span = m.max() - m.min()
            mosaic[r * (size + 14) + 12: r * (size + 14) + 12 + size, c * (size + 2): c * (size + 2) + size] = \
                _tile((m - m.min()) / (span if span > 0 else 1.0), size)
    fig = plt.figure(figsize=(cols * 0.7 + 0.3, len(rows) * 0.85 + 0.8))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - 0.6 / fig.get_figheight()))
    ax.imshow(np.ma.masked_invalid(mosaic), cmap="viridis", interpolation="nearest", vmin=0, vmax=1)
    for r, (name, maps) in enumerate(rows):
        ax.text(0, r * (size + 14) + 10, f"{name}  {tuple(outputs[name].shape[1:])}", fontsize=7, va="bottom")
    ax.axis("off")
    fig.suptitle(f"{Path(image).name}: {', '.join(f'{label} {p:.0%}' for label, p in top[:3])} (step {at})", fontsize=9)
    path = directory.path / _file_name("activations", Path(image).stem)
    save_png(plt, fig, path, tight=False)
    directory.sync()
    return Activations(image, path, stats, top, at)
