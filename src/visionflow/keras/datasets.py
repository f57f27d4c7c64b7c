"""`keras.datasets.*.load_data()`: NumPy arrays as Keras returns them, read by visionflow's own
dataset readers (same files, checksums, cache and downloads as `visionflow train --dataset`).

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()

MNIST and Fashion-MNIST: x (N, 28, 28) uint8, y (N,) uint8.  CIFAR-10/100: x (N, 32, 32, 3)
uint8, y (N, 1) uint8 (CIFAR-100's fine labels; coarse ones are not read).  `data_dir` (ours)
points at local files instead of the cache, e.g. "../shared/data/mnist".
"""

from __future__ import annotations

import os
import types
from typing import Optional

import numpy as np

from ..errors import InputError


def _load(name: str, data_dir: Optional[str | os.PathLike], flat_channels: bool, column_labels: bool):
    from ..data.catalog import load_dataset

    dataset = load_dataset(name, data_dir, validation_size=0)
    train, test = dataset.train, dataset.test

    def images(split) -> np.ndarray:
        x = split.images
        return x[..., 0] if flat_channels and x.shape[-1] == 1 else x

    def labels(split) -> np.ndarray:
        y = split.labels.astype(np.uint8)
        return y[:, None] if column_labels else y

    return (images(train), labels(train)), (images(test), labels(test))


def _module(name: str, dataset: str, flat: bool, column: bool) -> types.SimpleNamespace:
    def load_data(path: Optional[str] = None, data_dir: Optional[str | os.PathLike] = None, label_mode: str = "fine"):
        if label_mode != "fine":
            raise InputError(f"{name}.load_data: only label_mode='fine' is read")
        return _load(dataset, data_dir, flat, column)

    load_data.__doc__ = f"((x_train, y_train), (x_test, y_test)) of {dataset}, as Keras returns them."
    return types.SimpleNamespace(load_data=load_data, __name__=name)


mnist = _module("mnist", "mnist", True, False)
fashion_mnist = _module("fashion_mnist", "fashion-mnist", True, False)
cifar10 = _module("cifar10", "cifar10", False, True)
cifar100 = _module("cifar100", "cifar100", False, True)
