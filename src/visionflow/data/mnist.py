"""MNIST and Fashion-MNIST: the four IDX files of each, found locally or downloaded and verified.

The files are read from `--data-dir`, from a known local copy (Debian's dataset-fashion-mnist),
or from the cache, and downloaded into the cache from their canonical mirrors when missing.  A
download is accepted when it is the published .gz, or any gzip whose decompressed content has
the canonical MD5 (mirrors recompress).  Train keeps its first 55,000 images; the last 5,000 are
the validation split, as `read_data_sets` does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..core.cache import default_cache_dir
from ..errors import InputError
from ..formats.idx import gunzip_bounded, parse_idx, read_idx
from .base import Dataset, Split, check_labels, hold_out
from .catalog import DataRequest, DatasetReader, register_reader
from .download import download_checked


@dataclass(frozen=True)
class IdxFile:
    """One file of an IDX dataset with the checksums that prove a download is genuine.

    `gz_md5` is the MD5 published with the original .gz; `content_md5` is that of the
    decompressed bytes, which stays valid when a mirror recompresses the file.
    """

    name: str
    gz_md5: str
    content_md5: str


@dataclass(frozen=True)
class IdxDatasetSpec:
    name: str
    mirrors: tuple[str, ...]
    files: dict[str, IdxFile]  # keys: train_images, train_labels, test_images, test_labels
    class_names: tuple[str, ...]
    local_dirs: tuple[str, ...] = ()


def _mnist_files(content: Sequence[str], gz: Sequence[str]) -> dict[str, IdxFile]:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    return {k: IdxFile(n, g, c) for k, n, g, c in zip(keys, names, gz, content)}


IDX_DATASETS: dict[str, IdxDatasetSpec] = {
    "mnist": IdxDatasetSpec(
        name="mnist",
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        files=_mnist_files(
            content=("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                     "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
            gz=("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
        class_names=tuple(str(i) for i in range(10)),
    ),
    "fashion-mnist": IdxDatasetSpec(
        name="fashion-mnist",
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        files=_mnist_files(
            content=("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                     "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
            gz=("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        local_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


def load_idx_dataset(spec: IdxDatasetSpec, request: DataRequest) -> Dataset:
    """The dataset of `spec` from `request.data_dir`, a local copy or the cache (downloading into it)."""
    if request.data_dir is not None:
        directory = Path(request.data_dir)
        if not directory.is_dir():
            raise InputError(f"{directory}: data directory not found")
    else:
        cache = Path(request.cache_dir) if request.cache_dir else default_cache_dir() / spec.name
        directory = _find_or_download(spec, cache, request.mirrors or spec.mirrors, request.download)
    paths = {key: _locate(directory, f.name) for key, f in spec.files.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    train = _make_split(arrays, paths, "train", spec)
    test = _make_split(arrays, paths, "test", spec)
    train, validation = hold_out(train, request.validation_size or 0, spec.name)
    return Dataset(spec.name, train, validation, test, spec.class_names)


def _make_split(arrays: dict[str, np.ndarray], paths: dict[str, Path], part: str, spec: IdxDatasetSpec) -> Split:
    images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
    image_file, label_file = paths[f"{part}_images"], paths[f"{part}_labels"]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise InputError(f"{image_file}: expected uint8 images of 3 dimensions (N,H,W), got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise InputError(f"{label_file}: expected labels of 1 dimension, got shape {labels.shape}")
    if len(labels) != len(images):
        raise InputError(f"{label_file}: {len(labels)} labels for {len(images)} images in {image_file.name}")
    labels = labels.astype(np.int64)
    check_labels(labels, len(spec.class_names), str(label_file))
    return Split(images[..., None], labels)


def _locate(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise InputError(f"{directory / stem}: file not found (also looked for {stem}.gz)")


def _has_all(directory: Path, spec: IdxDatasetSpec) -> bool:
    return all((directory / f.name).is_file() or (directory / f"{f.name}.gz").is_file() for f in spec.files.values())


def _find_or_download(spec: IdxDatasetSpec, cache: Path, mirrors: Sequence[str], download: bool) -> Path:
    for local in (*spec.local_dirs, str(cache)):
        if _has_all(Path(local), spec):
            return Path(local)
    if not download:
        raise InputError(f"{spec.name}: not in {cache} and downloads are off; pass --data-dir DIR with the four IDX files")
    for f in spec.files.values():
        target = cache / f"{f.name}.gz"
        if not target.is_file():
            download_verified(f, mirrors, target)
    return cache


def verify_idx_download(data: bytes, f: IdxFile) -> bool:
    """True when `data` is the published .gz, or any gzip whose content has the canonical MD5."""
    if hashlib.md5(data).hexdigest() == f.gz_md5:
        return True
    try:
        content = gunzip_bounded(data, f.name)
    except InputError:
        return False
    return hashlib.md5(content).hexdigest() == f.content_md5


def download_verified(f: IdxFile, mirrors: Sequence[str], target: Path,
                      fetch: Callable[[str], bytes] | None = None) -> None:
    """Fetch `f` from the first mirror that serves a verified copy; write it atomically."""

    def problem(data: bytes, url: str) -> str | None:
        if not verify_idx_download(data, f):
            return f"checksum mismatch (expected md5 {f.gz_md5} of the .gz or {f.content_md5} of its content)"
        parse_idx(gunzip_bounded(data, url), url)
        return None

    download_checked(f.name + ".gz", mirrors, target, problem, fetch)


for _name in IDX_DATASETS:
    # The spec is looked up at each load, so IDX_DATASETS stays the one place its files and checksums live.
    register_reader(DatasetReader(_name, lambda request, name=_name: load_idx_dataset(IDX_DATASETS[name], request),
                                  default_validation=5000))
