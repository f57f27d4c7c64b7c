"""Turning user inputs (image files, .npy batches) into model inputs and predictions.

Used by `visionflow predict` (local and `--server`), `label-image`, `classify-image` and the
Python API; it needs only the model's input contract, so the serving client can use it too.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..core.devices import autocast_for
from ..errors import InputError
from ..formats.imagecodec import GREY_MODES, open_image
from ..formats.npy import read_npy_file
from ..preprocessing import Preprocessing, pixel_batch, tta_logits

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class Prediction:
    source: str
    index: int
    class_id: int
    label: str
    probabilities: list[float]

    def to_dict(self) -> dict:
        return {"input": self.source, "index": self.index, "class": self.class_id, "label": self.label,
                "probabilities": self.probabilities}


def read_image(path: Path, pre: Preprocessing) -> np.ndarray:
    """One image file → (H, W, C) uint8, converted and resized (or cropped) as `pre` says.

    A greyscale image given to a colour model (or the other way round) is converted, with a
    warning on stderr: the answer is rarely what was meant.
    """
    with open_image(path, str(path)) as image:
        grey = image.mode in GREY_MODES
        pixels = pre.fit_image(image)
    if grey != (pre.channels == 1):  # after the image was read: a broken one is an error, not a warning too
        have, want = ("greyscale", "RGB") if grey else ("in colour", "greyscale")
        print(f"visionflow: warning: {path} is {have} but the model takes {want} images; converted",
              file=sys.stderr, flush=True)
    return pixels


def read_npy(path: Path, pre: Preprocessing) -> np.ndarray:
    """A .npy batch → (N, H, W, C) uint8, N ≥ 1.

    Accepts (H,W), (H,W,C), (N,H,W), (N,H,W,C) or flat (N, H*W*C) arrays; uint8 means 0–255 and
    floats mean 0–1 (the tutorials' `mnist.test.images`).  Read without pickle, its header checked
    against the file and the limits before anything is allocated (`formats.npy`).
    """
    batch = pixel_batch(read_npy_file(path), pre, str(path))
    if not len(batch):
        raise InputError(f"{path}: holds no images (shape {tuple(batch.shape)})")
    return batch


def read_inputs(paths: Sequence[str | Path], pre: Preprocessing) -> tuple[np.ndarray, list[str]]:
    """All inputs as one (N, H, W, C) uint8 batch, with the source name of each row."""
    arrays, sources = [], []
    for raw in paths:
        path = Path(raw)
        if path.suffix.lower() == ".npy":
            batch = read_npy(path, pre)
        elif path.suffix.lower() in IMAGE_SUFFIXES or path.exists():
            batch = read_image(path, pre)[None]
        else:
            raise InputError(f"{path}: file not found")
        arrays.append(batch)
        sources.extend([str(path)] * len(batch))
    if not arrays:
        raise InputError("no inputs given")
    return np.concatenate(arrays), sources


def to_predictions(probabilities: torch.Tensor, sources: Sequence[str], class_names: Sequence[str]) -> list[Prediction]:
    probs = probabilities.cpu().numpy()
    out, seen = [], {}
    for row, source in zip(probs, sources):
        index = seen.get(source, 0)
        seen[source] = index + 1
        k = int(row.argmax())
        out.append(Prediction(source, index, k, class_names[k], [round(float(p), 6) for p in row]))
    return out


def prediction_lines(predictions: Sequence[Prediction], sources: Sequence[str], as_json: bool) -> list[str]:
    """What `visionflow predict` prints: one JSON object, or `INPUT[index]: label (probability)`, per image."""
    counts = Counter(sources)
    if as_json:
        return [json.dumps(p.to_dict()) for p in predictions]
    return [f"{p.source if counts[p.source] == 1 else f'{p.source}[{p.index}]'}: {p.label} "
            f"({p.probabilities[p.class_id]:.4f})" for p in predictions]



@torch.no_grad()
def predict_probabilities(model: nn.Module, x: torch.Tensor, precision: str = "auto",
                          batch_size: int = 1024, tta: int = 0) -> torch.Tensor:
    """Softmax probabilities (N, classes) for normalised inputs (N, C, H, W), averaging the
    logits over `tta`'s test-time views (see `preprocessing.tta_logits`)."""
    model.eval()
    device = next(model.parameters()).device
    autocast = autocast_for(device, precision)
    out = []
    for i in range(0, len(x), batch_size):
        with autocast():
            out.append(torch.softmax(tta_logits(model, x[i : i + batch_size].to(device), tta).float(), dim=1))
    return torch.cat(out) if out else torch.zeros(0)
