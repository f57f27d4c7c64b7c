"""Top-k labels of images: `visionflow label-image` (a retrained model) and `classify-image` (ImageNet).

Both print one format, classify_image.py's: `name (score = 0.12345)` per line, best first; with
several images each block is headed by the image's path.  `--json` prints one object per image:
{"input": PATH, "top_k": [{"label": ..., "class": ..., "score": ...}, ...]}.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.devices import resolve_device
from ..errors import InputError
from ..engine.evaluation import load_model
from ..engine.modeldir import ModelDir
from .predict import predict_probabilities, read_inputs


@dataclass(frozen=True)
class Ranked:
    """One of an image's top labels: name, class index and probability."""

    label: str
    class_id: int
    score: float


@dataclass(frozen=True)
class Labeled:
    """The top labels of one input image (`index` counts images within a .npy batch)."""

    source: str
    index: int
    top: tuple[Ranked, ...]

    def to_dict(self) -> dict:
        return {"input": self.source, "index": self.index,
                "top_k": [{"label": r.label, "class": r.class_id, "score": round(r.score, 6)} for r in self.top]}


def rank(probabilities: np.ndarray, sources: Sequence[str], class_names: Sequence[str], k: int) -> list[Labeled]:
    """The `k` most probable classes of each row of `probabilities` (N, K), best first."""
    if k < 1:
        raise InputError("--top-k must be at least 1")
    k = min(k, probabilities.shape[1])
    out, seen = [], {}
    for row, source in zip(probabilities, sources):
        order = np.argsort(-row, kind="stable")[:k]
        index = seen.get(source, 0)
        seen[source] = index + 1
        out.append(Labeled(source, index, tuple(Ranked(class_names[i], int(i), float(row[i])) for i in order)))
    return out


def label_lines(results: Sequence[Labeled], as_json: bool = False) -> list[str]:
    """Printable lines: `label (score = 0.12345)` per class, or one JSON object per image."""
    if as_json:
        return [json.dumps(r.to_dict()) for r in results]
    lines: list[str] = []
    counts = Counter(r.source for r in results)
    for r in results:
        if len(results) > 1:
            lines.append(f"{r.source}:" if counts[r.source] == 1 else f"{r.source}[{r.index}]:")
        for item in r.top:
            lines.append(f"{item.label} (score = {item.score:.5f})")
    return lines


def label_with_model_dir(model_dir: str | os.PathLike, inputs: Sequence[str], k: int = 5,
                         device: str = "auto") -> list[Labeled]:
    """Top-k labels of image files (or .npy batches) by the latest checkpoint of a model directory."""
    directory = ModelDir(model_dir)
    run = directory.load_config()
    batch, sources = read_inputs(inputs, run.preprocessing)
    run, model, _ = load_model(directory, resolve_device(device))
    x = run.preprocessing.normalize(torch.from_numpy(batch))
    probabilities = predict_probabilities(model, x, run.train.precision, batch_size=64).cpu().numpy()
    return rank(probabilities, sources, run.class_names, k)


def label_with_export(version_dir: str | os.PathLike, inputs: Sequence[str], k: int = 5) -> list[Labeled]:
    """Top-k labels by an exported version directory (model.onnx + signature.json, onnxruntime on CPU)."""
    import importlib.util

    from ..export.exportdir import INPUT_NAME, Signature, onnx_session

    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        raise InputError("onnxruntime and onnx not installed: pip install 'visionflow[serve]'")
    directory = Path(version_dir)
    signature = Signature.load(directory / "signature.json")
    batch, sources = read_inputs(inputs, signature.preprocessing)
    session = onnx_session(directory / "model.onnx", signature)
    (probabilities,) = session.run(["probabilities"], {INPUT_NAME: batch})
    return rank(probabilities, sources, signature.class_names, k)

