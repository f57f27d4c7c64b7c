"""keras.utils: seeds, one-hot labels, and the helpers Keras scripts reach for."""

from __future__ import annotations

import random
from typing import Any, Optional

import numpy as np
import torch

from ..errors import InputError


def set_random_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators: with it, `fit` on the CPU gives bit-identical
    weights run after run (the data order is drawn from torch's generator too)."""
    if not isinstance(seed, int) or seed < 0:
        raise InputError(f"set_random_seed: seed must be an int ≥ 0, not {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_categorical(y: Any, num_classes: Optional[int] = None, dtype: str = "float32") -> np.ndarray:
    """Class indices (any shape; a trailing axis of 1 is dropped) → one-hot, classes last."""
    y = np.asarray(y, dtype="int64")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.size and y.min() < 0:
        raise InputError(f"to_categorical: class indices must be ≥ 0 (found {y.min()})")
    n = int(num_classes if num_classes is not None else (y.max() + 1 if y.size else 0))
    if y.size and y.max() >= n:
        raise InputError(f"to_categorical: class index {y.max()} with num_classes={n}")
    return np.eye(n, dtype=dtype)[y]


def normalize(x: Any, axis: int = -1, order: int = 2) -> np.ndarray:
    x = np.asarray(x, dtype="float32")
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / np.where(norm == 0, 1, norm)


def pad_sequences(sequences: Any, maxlen: Optional[int] = None, dtype: str = "int32", padding: str = "pre",
                  truncating: str = "pre", value: float = 0.0) -> np.ndarray:
    """Lists of ids → one (N, maxlen) array, padded and truncated as Keras does ("pre" by default)."""
    if padding not in ("pre", "post") or truncating not in ("pre", "post"):
        raise InputError("pad_sequences: padding and truncating must be 'pre' or 'post'")
    sequences = [list(s) for s in sequences]
    maxlen = maxlen if maxlen is not None else max((len(s) for s in sequences), default=0)
    out = np.full((len(sequences), maxlen), value, dtype=dtype)
    for i, s in enumerate(sequences):
        s = (s[-maxlen:] if truncating == "pre" else s[:maxlen]) if maxlen else []
        if s:
            if padding == "post":
                out[i, :len(s)] = s
            else:
                out[i, -len(s):] = s
    return out
