"""CIFAR-10 and CIFAR-100 in every form they come in, read without trusting the files.

The official forms (https://www.cs.toronto.edu/~kriz/cifar.html), as their archives unpack:

- binary (`cifar-10-batches-bin/data_batch_{1..5}.bin`, `test_batch.bin`, `batches.meta.txt`;
  `cifar-100-binary/train.bin`, `test.bin`, `fine_label_names.txt`): fixed-length records of
  1 label byte (CIFAR-100: 2, coarse then fine) and 3,072 pixel bytes — the 32×32 red plane,
  then green, then blue.
- python (`cifar-10-batches-py/data_batch_{1..5}`, `test_batch`, `batches.meta`;
  `cifar-100-python/train`, `test`, `meta`): pickled dicts with `data`, a (N, 3072) uint8 array
  in the same plane order, and the labels.  Pickles can run arbitrary code, so they are read by
  formats.safe_pickle's restricted unpickler and then checked to be exactly the expected dict of
  bytes, ints and arrays.

plus TFRecord shards of the common image layout (such as ../shared/data/cifar10-jpeg).  A data
directory is recognised by what it holds: shards, the binary or python files (directly or in
the archive's folder), or a downloaded archive, which is checked against its published MD5 and
unpacked (safely: nothing may land outside the target) into the cache.  Without a directory the
binary archive is downloaded into ~/.cache/visionflow/NAME.  CIFAR-100 is read with its 100 fine
labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.cache import default_cache_dir
from ..core.fsio import open_input
from ..errors import InputError
from ..formats.safe_pickle import load_plain
from .base import Dataset, EncodedSplits, Split, hold_out
from .catalog import DataRequest, DatasetReader, register_reader
from .download import check_md5, download_checked, extract_archive, md5_problem
from .shards import SHARD_PATTERN, load_tfrecord_dataset, read_labels_file, shard_records

PIXELS = 32 * 32 * 3
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Archive:
    """A published archive: file name, MD5 from the dataset's page, and the folder it unpacks to."""

    name: str
    md5: str
    folder: str


@dataclass(frozen=True)
class Form:
    """Where one form keeps its data: train files, test file and the class-names file."""

    archive: Archive
    train: tuple[str, ...]
    test: str
    meta: str


@dataclass(frozen=True)
class CifarSpec:
    name: str
    title: str
    num_classes: int
    label_bytes: int
    binary: Form
    python: Form
    label_key: str  # of a python batch
    names_key: str  # of the python meta dict
    optional_keys: tuple[str, ...]  # of a python batch, besides data and label_key
    default_names: tuple[str, ...]


CIFAR: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        "cifar10", "CIFAR-10", 10, 1,
        binary=Form(Archive("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530", "cifar-10-batches-bin"),
                    tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", "batches.meta.txt"),
        python=Form(Archive("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", "cifar-10-batches-py"),
                    tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
        label_key="labels", names_key="label_names", optional_keys=("batch_label", "filenames"),
        default_names=CIFAR10_CLASSES),
    "cifar100": CifarSpec(
        "cifar100", "CIFAR-100", 100, 2,
        binary=Form(Archive("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8", "cifar-100-binary"),
                    ("train.bin",), "test.bin", "fine_label_names.txt"),
        python=Form(Archive("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", "cifar-100-python"),
                    ("train",), "test", "meta"),
        label_key="fine_labels", names_key="fine_label_names",
        optional_keys=("batch_label", "filenames", "coarse_labels"),
        default_names=tuple(str(i) for i in range(100))),
}


def load_cifar(name: str, data_dir: str | os.PathLike | None = None, validation_size: int = 5000,
               cache_dir: str | os.PathLike | None = None, mirrors: Sequence[str] | None = None,
               download: bool = True) -> Dataset:
    """CIFAR-10/100 from `data_dir` (any form, see the module doc) or the cache, as a `Dataset`.

    Train is the five training batches (CIFAR-100: the train file) in order, less the last
    `validation_size` images, which become validation; test is the test batch.  Images are
    (N, 32, 32, 3) uint8.
    """
    spec = CIFAR[name]
    form, where = locate(name, data_dir, cache_dir, mirrors, download)
    if form == "tfrecord":
        dataset = load_tfrecord_dataset(where, validation_size, name, _shard_class_names(spec, where))
        if dataset.image_shape != (32, 32, 3):
            raise InputError(f"{where}: {spec.title} shards hold images of {dataset.image_shape} (H, W, C), "
                             "expected (32, 32, 3)")
        return dataset
    reader = read_binary_batch if form == "binary" else read_python_batch
    layout = getattr(spec, form)
    parts = [reader(where / f, spec) for f in layout.train]
    train = Split(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))
    test = reader(where / layout.test, spec)
    train, validation = hold_out(train, validation_size, name)
    return Dataset(name, train, validation, test, _class_names(spec, form, where / layout.meta))


def locate(name: str, data_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
           mirrors: Sequence[str] | None = None, download: bool = True) -> tuple[str, Path]:
    """(form, folder of its files) of CIFAR data: "tfrecord", "binary" or "python".

    Looks in `data_dir` (unpacking an archive found there into the cache), else in the cache
    (`cache_dir`, default ~/.cache/visionflow/NAME), downloading the binary archive when missing.
    """
    spec = CIFAR[name]
    cache = Path(cache_dir) if cache_dir else default_cache_dir() / name
    if data_dir is None:
        return _locate_cached(spec, cache, mirrors or MIRRORS, download)
    directory = Path(data_dir)
    if not directory.is_dir():
        raise InputError(f"{directory}: data directory not found")
    return _locate(spec, directory, cache)


def read_binary_batch(path: Path, spec: CifarSpec) -> Split:
    """One binary batch file → Split of (N, 32, 32, 3) uint8 images and (N,) int64 labels.

    Every record's label byte(s) are range-checked; CIFAR-100's fine label (the second byte)
    becomes the label.
    """
    data = _read_bytes(path)
    size = spec.label_bytes + PIXELS
    if not data or len(data) % size:
        raise InputError(f"{path}: {len(data)} bytes is not a whole number of {size}-byte {spec.title} records "
                         f"({spec.label_bytes} label byte{'s' if spec.label_bytes > 1 else ''} + {PIXELS:,} pixel bytes)")
    records = np.frombuffer(data, np.uint8).reshape(-1, size)
    limits = (20, 100) if spec.label_bytes == 2 else (spec.num_classes,)
    for column, limit in enumerate(limits):
        bad = np.flatnonzero(records[:, column] >= limit)
        if len(bad):
            i = int(bad[0])
            raise InputError(f"{path}: label {records[i, column]} at record {i} out of range 0..{limit - 1} "
                             f"(is this a {spec.title} binary file?)")
    return Split(_planes_to_nhwc(records[:, spec.label_bytes:]), records[:, spec.label_bytes - 1].astype(np.int64))


def read_python_batch(path: Path, spec: CifarSpec) -> Split:
    """One python batch file → Split; the pickle is loaded without trusting it, then checked key by key."""
    batch = _expect_dict(_unpickle(path), path, ("data", spec.label_key), spec.optional_keys)
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise InputError(f"{path}: 'data' is a {what}, expected a uint8 array of shape (N, {PIXELS})")
    count = len(data)
    labels = _int_list(batch[spec.label_key], path, spec.label_key, count, spec.num_classes)
    if "coarse_labels" in batch:
        _int_list(batch["coarse_labels"], path, "coarse_labels", count, 20)
    if "filenames" in batch:
        _text_list(batch["filenames"], path, "filenames", count)
    if "batch_label" in batch and not isinstance(batch["batch_label"], (bytes, str)):
        raise InputError(f"{path}: 'batch_label' is a {type(batch['batch_label']).__name__}, expected text")
    return Split(_planes_to_nhwc(data), labels)


def read_python_meta(path: Path, spec: CifarSpec) -> tuple[str, ...]:
    """Class names from `batches.meta` / `meta` (checked like a batch)."""
    optional = ("num_cases_per_batch", "num_vis") if spec.label_bytes == 1 else ("coarse_label_names",)
    meta = _expect_dict(_unpickle(path), path, (spec.names_key,), optional)
    for key in optional:
        if key in meta and not isinstance(meta[key], (int, list)):
            raise InputError(f"{path}: {key!r} is a {type(meta[key]).__name__}, expected an int or a list")
    return _text_list(meta[spec.names_key], path, spec.names_key, spec.num_classes)


def _locate(spec: CifarSpec, directory: Path, cache: Path) -> tuple[str, Path]:
    """(form, directory of its files) for a user's data directory; archives are unpacked into `cache`."""
    found = _find_form(spec, directory)
    if found:
        return found
    for form in ("binary", "python"):
        archive = getattr(spec, form).archive
        if (directory / archive.name).is_file():
            check_md5(directory / archive.name, archive.md5)
            extract_archive(directory / archive.name, cache)
            found = _find_form(spec, cache)
            if found:
                return found
            raise InputError(f"{directory / archive.name}: does not unpack to {archive.folder}/")
    raise InputError(
        f"{directory}: no {spec.title} data here: expected TFRecord shards (train-*.tfrecord), the binary batches "
        f"({', '.join(spec.binary.train[:1])} ... {spec.binary.test}, optionally in {spec.binary.archive.folder}/), "
        f"the python batches ({spec.python.train[0]} ... {spec.python.test}, optionally in "
        f"{spec.python.archive.folder}/) or {spec.binary.archive.name} / {spec.python.archive.name}")


def _locate_cached(spec: CifarSpec, cache: Path, mirrors: Sequence[str], download: bool) -> tuple[str, Path]:
    found = _find_form(spec, cache) if cache.is_dir() else None
    if found:
        return found
    archive = spec.binary.archive
    target = cache / archive.name
    if not target.is_file():
        if not download:
            raise InputError(f"{spec.name}: not in {cache} and downloads are off; pass --data-dir DIR with the "
                             f"{spec.title} files")
        download_checked(archive.name, mirrors, target, md5_problem(archive.md5))
    return _locate(spec, cache, cache)


def _find_form(spec: CifarSpec, directory: Path) -> tuple[str, Path] | None:
    if any(SHARD_PATTERN.search(p.name) and p.name.startswith("train") for p in directory.iterdir() if p.is_file()):
        return "tfrecord", directory
    for form in ("binary", "python"):
        layout: Form = getattr(spec, form)
        for place in (directory, directory / layout.archive.folder):
            if (place / layout.train[0]).is_file():
                for name in (*layout.train, layout.test):
                    if not (place / name).is_file():
                        raise InputError(f"{place / name}: file not found (the {spec.title} {form} form has "
                                         f"{', '.join(layout.train)} and {layout.test})")
                return form, place
    return None


def _class_names(spec: CifarSpec, form: str, meta: Path) -> tuple[str, ...]:
    if not meta.is_file():
        return spec.default_names
    names = read_labels_file(meta) if form == "binary" else read_python_meta(meta, spec)
    if len(names) != spec.num_classes:
        raise InputError(f"{meta}: {len(names)} class names, {spec.title} has {spec.num_classes}")
    return names


def _shard_class_names(spec: CifarSpec, directory: Path) -> tuple[str, ...]:
    """labels.txt when present (checked to name num_classes classes), else the built-in names."""
    labels = directory / "labels.txt"
    if not labels.is_file():
        return spec.default_names
    names = read_labels_file(labels)
    if len(names) != spec.num_classes:
        raise InputError(f"{labels}: {len(names)} class names, {spec.title} has {spec.num_classes}")
    return names


def _planes_to_nhwc(data: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of R, G, B 32×32 planes → (N, 32, 32, 3) uint8, C-contiguous."""
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _unpickle(path: Path) -> Any:
    return load_plain(_read_bytes(path), str(path), "a CIFAR python batch", "a dict of bytes, ints and numpy arrays")


def _read_bytes(path: Path) -> bytes:
    with open_input(path, f"a {path.name} batch file") as handle:
        try:
            return handle.read()
        except OSError as e:
            raise InputError(f"{path}: cannot read ({e.strerror})") from None


def _expect_dict(obj: Any, path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    """`obj` as a dict with str keys, holding all of `required` and nothing outside `optional`."""
    if not isinstance(obj, dict):
        raise InputError(f"{path}: holds a {type(obj).__name__}, expected a dict")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if not isinstance(key, str):
            raise InputError(f"{path}: unexpected key {key!r} (keys are names)")
        out[key] = value
    unexpected = sorted(set(out) - set(required) - set(optional))
    if unexpected:
        raise InputError(f"{path}: unexpected key(s) {', '.join(map(repr, unexpected))} "
                         f"(expected {', '.join(map(repr, required + optional))})")
    missing = [k for k in required if k not in out]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(map(repr, missing))}")
    return out


def _int_list(values: Any, path: Path, key: str, count: int, limit: int) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.ndim == 1 and np.issubdtype(values.dtype, np.integer):
        labels = values.astype(np.int64)
    elif isinstance(values, (list, tuple)) and all(type(v) is int for v in values):
        labels = np.array(values, dtype=np.int64) if values else np.zeros(0, np.int64)
    else:
        raise InputError(f"{path}: {key!r} must be a list of ints")
    if len(labels) != count:
        raise InputError(f"{path}: {len(labels)} {key} for {count} images")
    bad = np.flatnonzero((labels < 0) | (labels >= limit))
    if len(bad):
        i = int(bad[0])
        raise InputError(f"{path}: {key} {int(labels[i])} at record {i} out of range 0..{limit - 1}")
    return labels


def _text_list(values: Any, path: Path, key: str, count: int) -> tuple[str, ...]:
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, (bytes, str)) for v in values):
        raise InputError(f"{path}: {key!r} must be a list of names")
    if len(values) != count:
        raise InputError(f"{path}: {len(values)} {key} for {count} entries")
    return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values)


def _encoded(name: str, request: DataRequest) -> EncodedSplits | None:
    """CIFAR shards are copied record by record; the binary and python forms are re-encoded from arrays."""
    if request.data_dir is None:
        return None
    form, where = locate(name, request.data_dir)
    return shard_records(where, CIFAR[name].num_classes) if form == "tfrecord" else None


def _reader(name: str) -> DatasetReader:
    def load(request: DataRequest) -> Dataset:
        return load_cifar(name, request.data_dir, request.validation_size or 0, request.cache_dir, request.mirrors,
                          request.download)

    # As cifar10_estimator: 45,000 training and 5,000 validation images.
    return DatasetReader(name, load, default_validation=5000, encoded=lambda request: _encoded(name, request))


for _name in CIFAR:
    register_reader(_reader(_name))
