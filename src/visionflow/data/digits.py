"""`digits`: the embedded default dataset — scikit-learn's 1,797 real 8×8 handwritten digits (UCI).

Needs no network and no --data-dir: the file ships inside scikit-learn.  Pixels 0–16 are
scaled to 0–255; a fixed shuffle splits 20% off as test and 179 of the remaining 1,438 (1/8)
as validation.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .base import Dataset, Split, hold_out
from .catalog import DataRequest, DatasetReader, register_reader

CLASS_NAMES = tuple(str(i) for i in range(10))
SHUFFLE_SEED = 20161


def load_digits(request: DataRequest) -> Dataset:
    pixels, labels = _digits_arrays()
    images = np.clip(np.rint(pixels * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(labels))
    images, labels = images[order], labels[order]
    n_test = len(labels) // 5
    test = Split(images[:n_test], labels[:n_test])
    train = Split(images[n_test:], labels[n_test:])
    train, validation = hold_out(train, request.validation_size or 0, "digits")
    return Dataset("digits", train, validation, test, CLASS_NAMES)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) float pixels 0–16 and int64 labels, read from the file scikit-learn ships.

    Read directly rather than through `sklearn.datasets.load_digits`, whose import costs ~1.7 s
    of every command's start-up; the loader is the fallback should the file move.
    """
    spec = importlib.util.find_spec("sklearn")
    data = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if data is not None and data.is_file():
        table = np.loadtxt(data, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return bunch.images, bunch.target.astype(np.int64)


#: 1,797 images: 359 test, and 1/8 of the 1,438 others held out as validation.
register_reader(DatasetReader("digits", load_digits, default_validation=179))
