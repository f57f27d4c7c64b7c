"""Standard datasets as uint8 arrays, split the way `read_data_sets` splits them.

Every dataset comes out as a `Dataset`: train / validation / test `Split`s of images shaped
(N, H, W, C) uint8 and labels shaped (N,) int64, plus class names.  The IDX datasets (MNIST,
Fashion-MNIST) are read from `--data-dir`, from a known local copy, or from the cache, and are
downloaded into the cache from their canonical mirrors when missing.  `digits` is the embedded
default: scikit-learn's real 8x8 handwritten digits, which need no network at all.  CIFAR-10/100
(any of their official forms or TFRecord shards) are read by cifar.py, any image TFRecord shards
(`tfrecord`) by shards.py, and a folder of same-sized images (`image-folder`) by imagefolder.py.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from .errors import InputError
from .fsio import atomic_write_bytes
from .idx import parse_idx, read_idx

if TYPE_CHECKING:
    from .config import RunConfig


@dataclass(frozen=True)
class Split:
    """Images (N, H, W, C) uint8 and labels (N,) int64 of one split."""

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
        if name not in ("train", "validation", "test"):
            raise InputError(f"unknown split {name!r} (choose train, validation or test)")
        return getattr(self, name)


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

#: A folder of images, one sub-folder per category (see imagefolder.py); `train` reads same-sized
#: images at their own size, `visionflow retrain` at its backbone's input size.
IMAGE_FOLDER = "image-folder"
#: Image TFRecord shards given by --data-dir (a directory, glob or file; see shards.py).
TFRECORD = "tfrecord"
CIFAR_NAMES = ("cifar10", "cifar100")
DATASET_NAMES = ("digits", *IDX_DATASETS, *CIFAR_NAMES, TFRECORD, IMAGE_FOLDER)
#: Held out of train when --validation-size is not given (CIFAR: as the cifar10_estimator tutorial, 45k/5k).
DEFAULT_VALIDATION = {"mnist": 5000, "fashion-mnist": 5000, "cifar10": 5000, "cifar100": 5000}


def default_cache_dir() -> Path:
    """Where downloads go: $VISIONFLOW_CACHE, else ~/.cache/visionflow."""
    return Path(os.environ.get("VISIONFLOW_CACHE", Path.home() / ".cache" / "visionflow"))


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    validation_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    download: bool = True,
) -> Dataset:
    """Load a named dataset and split it into train / validation / test.

    `validation_size` examples are held out of the end of the training set (5,000 for the
    MNIST and CIFAR families, 10% for `digits` when None), as the tutorials' `read_data_sets`
    does; TFRecord shards with a validation split, and image folders (split by file-name hash),
    bring their own.
    """
    if name == "digits":
        return _load_digits(validation_size)
    if name in CIFAR_NAMES:
        from .cifar import load_cifar

        return load_cifar(name, data_dir, DEFAULT_VALIDATION[name] if validation_size is None else validation_size,
                          cache_dir, mirrors, download)
    if name == TFRECORD:
        from .shards import load_tfrecord_dataset

        if data_dir is None:
            raise InputError("the tfrecord dataset needs its shards: --data-dir DIR, GLOB or FILE")
        return load_tfrecord_dataset(data_dir, validation_size)
    if name == IMAGE_FOLDER:
        from .imagefolder import load_image_folder_as_is

        return load_image_folder_as_is(data_dir)
    if name not in IDX_DATASETS:
        raise InputError(f"unknown dataset {name!r} (choose one of: {', '.join(DATASET_NAMES)})")
    spec = IDX_DATASETS[name]
    if data_dir is not None:
        directory = Path(data_dir)
        if not directory.is_dir():
            raise InputError(f"{directory}: data directory not found")
    else:
        directory = _find_or_download(spec, Path(cache_dir) if cache_dir else default_cache_dir() / name,
                                      mirrors or spec.mirrors, download)
    paths = {key: _locate(directory, f.name) for key, f in spec.files.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    train = _make_split(arrays, paths, "train", spec)
    test = _make_split(arrays, paths, "test", spec)
    if validation_size is None:
        validation_size = DEFAULT_VALIDATION.get(name, 0)
    train, validation = hold_out(train, validation_size, name)
    return Dataset(name, train, validation, test, spec.class_names)


def dataset_for_run(run: "RunConfig", data_dir: str | os.PathLike | None = None, download: bool = True,
                    split: str | None = None) -> Dataset:
    """The dataset `run` was trained on, split as it was (`data_dir` overrides where it lives).

    Image folders are re-read and sized by the run's own preprocessing — only `split` when one
    is named (the others are then empty: decoding photos is the slow part); named datasets load
    as `load_dataset` loads them.
    """
    config = run.train
    if config.dataset == IMAGE_FOLDER:
        from .imagefolder import SPLITS, load_image_folder

        return load_image_folder(data_dir or config.data_dir, run.preprocessing, config.validation_percentage,
                                 config.testing_percentage, splits=(split,) if split else SPLITS)
    return load_dataset(config.dataset, data_dir or config.data_dir, config.validation_size, download=download)


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
        _check_labels(split.labels, len(names), f"{name} {split_name}")
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


def _check_labels(labels: np.ndarray, num_classes: int, name: str) -> None:
    if len(labels) == 0:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise InputError(f"{name}: label {int(labels[i])} at record {i} out of range 0..{num_classes - 1}")


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
    _check_labels(labels, len(spec.class_names), str(label_file))
    return Split(images[..., None], labels)


def hold_out(train: Split, size: int, name: str) -> tuple[Split, Split]:
    """(train without its last `size` examples, those examples as the validation split)."""
    if not 0 <= size < len(train):
        raise InputError(f"{name}: validation size {size} must be between 0 and {len(train) - 1}")
    cut = len(train) - size
    return (Split(train.images[:cut], train.labels[:cut]), Split(train.images[cut:], train.labels[cut:]))


def _load_digits(validation_size: int | None) -> Dataset:
    """scikit-learn's 1,797 real 8x8 digits (UCI), scaled 0–16 → 0–255, split 70/10/20 by a fixed shuffle."""
    pixels, labels = _digits_arrays()
    images = np.clip(np.rint(pixels * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    order = np.random.default_rng(20161).permutation(len(labels))
    images, labels = images[order], labels[order]
    n_test = len(labels) // 5
    test = Split(images[:n_test], labels[:n_test])
    train = Split(images[n_test:], labels[n_test:])
    if validation_size is None:
        validation_size = len(train) // 8
    train, validation = hold_out(train, validation_size, "digits")
    return Dataset("digits", train, validation, test, tuple(str(i) for i in range(10)))


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
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target.astype(np.int64)


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
        content = gzip.decompress(data)
    except (OSError, EOFError):
        return False
    return hashlib.md5(content).hexdigest() == f.content_md5


def download_verified(f: IdxFile, mirrors: Sequence[str], target: Path,
                      fetch: Callable[[str], bytes] | None = None) -> None:
    """Fetch `f` from the first mirror that serves a verified copy; write it atomically."""

    def problem(data: bytes, url: str) -> str | None:
        if not verify_idx_download(data, f):
            return f"checksum mismatch (expected md5 {f.gz_md5} of the .gz or {f.content_md5} of its content)"
        parse_idx(gzip.decompress(data), url)
        return None

    download_checked(f.name + ".gz", mirrors, target, problem, fetch)


def download_checked(file_name: str, mirrors: Sequence[str], target: Path,
                     problem: Callable[[bytes, str], str | None], fetch: Callable[[str], bytes] | None = None) -> None:
    """Fetch `file_name` from the first mirror whose copy `problem(data, url)` accepts (returns None).

    The accepted copy is written to `target` atomically; when no mirror serves one, the
    InputError lists each mirror's problem (unreachable, checksum mismatch, ...).
    """
    fetch = fetch or _fetch_url
    problems = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + file_name
        try:
            data = fetch(url)
        except (urllib.error.URLError, OSError, ValueError) as e:
            problems.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        reason = problem(data, url)
        if reason is None:
            atomic_write_bytes(target, data)
            return
        problems.append(f"{url}: {reason}")
    raise InputError(f"could not download {file_name}: {'; '.join(problems)}; "
                     f"put the file in {target.parent} or pass --data-dir DIR")


def _fetch_url(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "visionflow"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()
