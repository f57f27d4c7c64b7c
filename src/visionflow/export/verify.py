"""Verifying an export before it is published: onnxruntime must answer what PyTorch answers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..engine.config import RunConfig
from ..engine.run_data import dataset_for_run
from .exportdir import INPUT_NAME, OUTPUT_NAMES, check_onnx_model

DEFAULT_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| over all probabilities of the check
VERIFY_EXAMPLES = 256


@dataclass(frozen=True)
class Verification:
    """How onnxruntime compared with PyTorch on `examples` inputs drawn from `source`."""

    examples: int
    source: str
    max_abs_diff: float
    tolerance: float
    batch_sizes: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"examples": self.examples, "source": self.source, "max_abs_diff": self.max_abs_diff,
                "tolerance": self.tolerance, "batch_sizes": list(self.batch_sizes)}


def verification_images(run: RunConfig, count: int = VERIFY_EXAMPLES) -> tuple[np.ndarray, str]:
    """Up to `count` test-split images (N, H, W, C) uint8 of the run's dataset, and where they came from.

    Real inputs exercise the model where it matters (confident and borderline predictions);
    random pixels are the fallback when the dataset is not on this machine (no download is
    attempted) or does not fit the model.  Image folders are read at the run's input size.
    """
    pre, dataset = run.preprocessing, run.train.dataset
    shape = (pre.height, pre.width, pre.channels)
    try:
        images = dataset_for_run(run, download=False, split="test").test.images[:count]
    except InputError as e:
        problem = f"dataset {dataset} is not available ({e})"
    else:
        problem = "" if len(images) and images.shape[1:] == shape else f"dataset {dataset} has no test images of {shape}"
    if not problem:
        return np.ascontiguousarray(images), f"{dataset} test split"
    return np.random.default_rng(0).integers(0, 256, (count, *shape), dtype=np.uint8), f"random pixels: {problem}"


def verify_export(onnx_path: Path, graph: nn.Module, images: np.ndarray, source: str,
                  tolerance: float = DEFAULT_TOLERANCE) -> Verification:
    """Check `onnx_path` structurally and numerically against `graph` (PyTorch) on `images`.

    Compared at batch size 1 and at the full batch, since a server runs both.  Raises
    InputError when onnx.checker fails, probabilities differ by more than `tolerance`, the
    outputs are not finite, or a class differs where PyTorch's top two are not within
    2×tolerance of each other (a genuine tie may break either way).
    """
    import onnxruntime as ort

    check_onnx_model(onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        want_p, want_c = (t.numpy() for t in graph(torch.from_numpy(images)))
    if not np.isfinite(want_p).all():
        raise InputError("refusing to export: PyTorch's probabilities are not finite (diverged weights?)")
    got_p, got_c = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
    one_p, _ = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images[:1]})
    diff = float(max(np.abs(got_p - want_p).max(initial=0.0), np.abs(one_p - want_p[:1]).max(initial=0.0)))
    if not diff <= tolerance:  # also catches NaN
        raise InputError(f"onnxruntime differs from PyTorch by {diff:.3g} > {tolerance:g} on {source}; not published")
    top2 = np.sort(want_p, axis=1)[:, -2:] if want_p.shape[1] > 1 else np.zeros((len(want_p), 2))
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * tolerance
    flips = np.flatnonzero(decisive & (got_c != want_c))
    if len(flips):
        raise InputError(f"onnxruntime predicts another class than PyTorch for {len(flips)} of {len(images)} "
                         f"examples of {source} (first: example {int(flips[0])}); not published")
    return Verification(len(images), source, diff, tolerance, (1, len(images)))
