"""Bottlenecks: a backbone's pooled features of each image, computed once and cached on disk.

Training a new head over a frozen backbone only needs each image's bottleneck vector (D
floats: 1280 for EfficientNet-Lite0), so the expensive forward pass is paid once per image and
reused by every later epoch and run.  The cache is a directory per

    (backbone name, timm architecture, SHA-256 of its weights, preprocessing)

— change any of them and a new directory is used, so a stale vector is never read — holding
one safetensors file per image, named by the SHA-256 of the image file's bytes:

    CACHE/efficientnet_lite0-1f2e3d4c5b6a7988/ab/ab54…e1.safetensors   {"bottleneck": (D,) float32}

Keying by content rather than path means renaming or moving a folder keeps its cache, editing
an image recomputes just that image, and identical files share one entry.  Files are written
atomically, so concurrent runs and killed runs leave only complete entries.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from torch import nn

from ..core.cache import default_cache_dir
from ..core.fsio import atomic_write, atomic_write_text
from ..data.imagefolder import ImageFile, SkipHandler, decode_image, warn_skipped
from ..errors import InputError
from ..models.backbones import Backbone
from ..models.pretrained import Weights
from ..preprocessing import Preprocessing

CACHE_FORMAT = 1
TENSOR = "bottleneck"


def default_bottleneck_dir() -> Path:
    """$VISIONFLOW_CACHE/bottlenecks (default ~/.cache/visionflow/bottlenecks)."""
    return default_cache_dir() / "bottlenecks"


class BottleneckCache:
    """The cached bottlenecks of one backbone with one set of weights and one preprocessing."""

    def __init__(self, root: str | Path, backbone: Backbone, weights: Weights, preprocessing: Preprocessing) -> None:
        self.identity = {"format": CACHE_FORMAT, "backbone": backbone.name, "architecture": backbone.architecture,
                         "weights_sha256": weights.sha256, "preprocessing": asdict(preprocessing)}
        key = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()
        self.directory = Path(root) / f"{backbone.name.replace('/', '_')}-{key[:16]}"

    def path_for(self, content_sha256: str) -> Path:
        return self.directory / content_sha256[:2] / f"{content_sha256}.safetensors"

    def get(self, content_sha256: str) -> np.ndarray | None:
        """The cached (D,) float32 vector, or None when absent or unreadable (then recomputed)."""
        path = self.path_for(content_sha256)
        try:
            vector = load_file(str(path))[TENSOR]
        except (FileNotFoundError, KeyError, SafetensorError, OSError):
            return None
        return vector if vector.ndim == 1 and vector.dtype == np.float32 else None

    def put(self, content_sha256: str, vector: np.ndarray) -> None:
        if not (self.directory / "cache.json").exists():
            atomic_write_text(self.directory / "cache.json", json.dumps(self.identity, indent=2, sort_keys=True) + "\n")
        data = {TENSOR: np.ascontiguousarray(vector, dtype=np.float32)}
        atomic_write(self.path_for(content_sha256), lambda p: save_file(data, str(p)))


@dataclass
class BottleneckStats:
    """What producing the bottlenecks of a run cost: images found in the cache, images computed,
    backbone forward passes (batches) run, and wall-clock seconds."""

    cached: int = 0
    computed: int = 0
    forward_passes: int = 0
    seconds: float = 0.0


@dataclass
class Bottlenecks:
    """(N, D) float32 bottlenecks of the N `files` that could be read, in the order given."""

    features: np.ndarray
    files: list[ImageFile]
    stats: BottleneckStats

    @property
    def labels(self) -> np.ndarray:
        return np.array([f.label for f in self.files], dtype=np.int64)


@torch.inference_mode()
def compute_bottlenecks(files: Sequence[ImageFile], backbone: nn.Module, preprocessing: Preprocessing,
                        cache: BottleneckCache | None, device: torch.device, batch_size: int = 32,
                        on_skip: SkipHandler = warn_skipped) -> Bottlenecks:
    """Bottlenecks of `files` from `cache`, computing (and caching) the missing ones with `backbone`.

    `backbone` maps normalised images (N, C, H, W) to pooled features (N, D); it is run in eval
    mode in batches of `batch_size` images.  Unreadable files are passed to `on_skip` and left out.
    """
    started = time.perf_counter()
    stats = BottleneckStats()
    vectors: dict[int, np.ndarray] = {}
    pending: list[tuple[int, str, np.ndarray]] = []  # (index, content hash, decoded pixels)
    backbone.eval()

    def flush() -> None:
        x = preprocessing.normalize(torch.from_numpy(np.stack([p for _, _, p in pending])).to(device))
        features = backbone(x).float().cpu().numpy()
        stats.forward_passes += 1
        if features.ndim != 2 or len(features) != len(pending):
            raise InputError(f"backbone returned features of shape {features.shape}; expected ({len(pending)}, D)")
        for (index, digest, _), vector in zip(pending, features):
            vectors[index] = vector
            if cache is not None:
                cache.put(digest, vector)
        stats.computed += len(pending)
        pending.clear()

    for index, f in enumerate(files):
        try:
            data = f.path.read_bytes()
        except OSError as e:
            on_skip(f.path, e.strerror or str(e))
            continue
        digest = hashlib.sha256(data).hexdigest()
        cached = cache.get(digest) if cache is not None else None
        if cached is not None:
            vectors[index] = cached
            stats.cached += 1
            continue
        try:
            pending.append((index, digest, decode_image(data, preprocessing, str(f.path))))
        except InputError as e:
            on_skip(f.path, str(e).split(": ", 1)[-1])
            continue
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    kept = sorted(vectors)
    dim = len(vectors[kept[0]]) if kept else 0
    features = np.stack([vectors[i] for i in kept]) if kept else np.zeros((0, dim), np.float32)
    stats.seconds = time.perf_counter() - started
    return Bottlenecks(features.astype(np.float32, copy=False), [files[i] for i in kept], stats)
