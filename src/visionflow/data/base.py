"""What every reader produces: uint8 image arrays split the way `read_data_sets` splits them.

Every dataset comes out as a `Dataset`: train / validation / test `Split`s of images shaped
(N, H, W, C) uint8 and labels shaped (N,) int64, plus class names.  Readers live beside this
module (one per source) and are found by name through `catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Images (N, H, W, C) uint8 and labels (N,) int64 of one split (or, for a head trained over
    precomputed features, feature vectors (N, D) float32)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    validation: Split
    test: Split
    class_names: tuple[str, ...]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one image."""
        return tuple(self.train.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r} (choose train, validation or test)")
        return getattr(self, name)


#: Makes one serialised `tf.train.Example`; None when its source turned out unreadable (and was reported).
RecordMaker = Callable[[], "bytes | None"]


@dataclass(frozen=True)
class EncodedSplits:
    """A dataset as encoded records for `convert`: class names and one maker per example and split.

    Readers whose sources are encoded already (TFRecord shards, image files) provide this so
    `convert` copies their bytes; the others are converted from their arrays.
    """

    class_names: tuple[str, ...]
    makers: dict[str, list[RecordMaker]]


def dataset_from_arrays(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    class_names: Sequence[str] | None = None,
    name: str = "arrays",
) -> Dataset:
    """Wrap in-memory arrays (images (N,H,W) or (N,H,W,C); uint8 0–255 or float 0–1)."""
    tr = split_from_arrays(*train, name=f"{name} train")
    num_classes = len(class_names) if class_names else int(tr.labels.max()) + 1 if len(tr) else 0
    names = tuple(class_names) if class_names else tuple(str(i) for i in range(num_classes))
    empty = Split(tr.images[:0], tr.labels[:0])
    te = split_from_arrays(*test, name=f"{name} test") if test is not None else empty
    va = split_from_arrays(*validation, name=f"{name} validation") if validation is not None else empty
    for split_name, split in (("train", tr), ("test", te), ("validation", va)):
        check_labels(split.labels, len(names), f"{name} {split_name}")
    return Dataset(name, tr, va, te, names)


def split_from_arrays(images: np.ndarray, labels: np.ndarray, name: str = "arrays") -> Split:
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise InputError(f"{name}: images must be (N,H,W) or (N,H,W,C), got shape {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise InputError(f"{name}: labels must be (N,) with N={len(images)}, got shape {labels.shape}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating):
            raise InputError(f"{name}: images must be uint8 (0-255) or float (0-1), got {images.dtype}")
        images = np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{name}: labels must be integers, got {labels.dtype}")
    return Split(np.ascontiguousarray(images), labels.astype(np.int64))


def check_labels(labels: np.ndarray, num_classes: int, name: str) -> None:
    """InputError naming `name` and the first record whose label is outside 0..num_classes-1."""
    if len(labels) == 0:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise InputError(f"{name}: label {int(labels[i])} at record {i} out of range 0..{num_classes - 1}")


def hold_out(train: Split, size: int, name: str) -> tuple[Split, Split]:
    """(train without its last `size` examples, those examples as the validation split)."""
    if not 0 <= size < len(train):
        raise InputError(f"{name}: validation size {size} must be between 0 and {len(train) - 1}")
    cut = len(train) - size
    return (Split(train.images[:cut], train.labels[:cut]), Split(train.images[cut:], train.labels[cut:]))
