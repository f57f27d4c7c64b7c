"""The catalog of datasets: every name `--dataset` takes, and the reader that loads it.

`DATASETS` below is the one list of dataset names and the reader module of each.  A reader
module registers a `DatasetReader` per name when it is imported, declaring its default
validation size and how to load (and, optionally, re-encode) its data; its canonical URLs and
checksums sit beside it in the same module.  Modules are imported only when their dataset is
asked for, so listing names (`visionflow --help`) imports no reader, numpy or torch.

`load_dataset` (train, evaluate, the Python API) and `encoded_splits` (`convert`) both go
through the reader, so a new dataset lands in one module plus one line here.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from ..errors import InputError

if TYPE_CHECKING:
    from ..formats.csv_table import CsvOptions
    from ..preprocessing import Preprocessing
    from .base import Dataset, EncodedSplits

#: name → (reader module, one line for --help), in the order --help lists them.
DATASETS: dict[str, tuple[str, str]] = {
    "digits": ("visionflow.data.digits", "embedded, offline: scikit-learn's 8×8 handwritten digits (the default)"),
    "mnist": ("visionflow.data.mnist", "MNIST (IDX files; downloaded, checksummed)"),
    "fashion-mnist": ("visionflow.data.mnist", "Fashion-MNIST (IDX files; downloaded, checksummed)"),
    "cifar10": ("visionflow.data.cifar", "CIFAR-10: TFRecord shards, binary or python batches, or their archive"),
    "cifar100": ("visionflow.data.cifar", "CIFAR-100, in the same forms"),
    "svhn": ("visionflow.data.svhn", "SVHN house-number digits, 32×32 colour (MATLAB .mat files; downloaded, checksummed)"),
    "tfrecord": ("visionflow.data.shards", "any image TFRecord shards (--data-dir DIR, GLOB or FILE)"),
    "image-folder": ("visionflow.data.imagefolder", "a folder of same-sized images, one sub-folder per class"),
    "csv": ("visionflow.data.csvfiles", "CSV files: pixel columns (label,pixel0,...) or tabular numeric features "
                                        "(--data-dir FILE, DIR, GLOB or URL; .csv or .csv.gz)"),
}


@dataclass(frozen=True)
class DataRequest:
    """What a caller asks of a reader.  `validation_size` None means the reader's default.

    `validation_percentage` / `testing_percentage` split image folders; `fit` decodes an image
    folder at a trained model's input size, and `splits` limits decoding to those splits (the
    others come back empty).  `csv` says how CSV files are read.  `cache_dir`, `mirrors` and `download` steer downloads.
    """

    data_dir: Optional[str] = None
    validation_size: Optional[int] = None
    validation_percentage: Optional[float] = None
    testing_percentage: Optional[float] = None
    cache_dir: Optional[str] = None
    mirrors: Optional[tuple[str, ...]] = None
    download: bool = True
    fit: Optional["Preprocessing"] = None
    splits: tuple[str, ...] = ("train", "validation", "test")
    csv: Optional["CsvOptions"] = None


@dataclass(frozen=True)
class DatasetReader:
    """How one named dataset is read.

    `default_validation`: training examples held out as the validation split when the request
    names no size (None: the reader splits by its own rule, such as a folder's percentages).
    `load` builds the `Dataset`; `encoded` gives its examples as encoded records for `convert`
    when the source holds encoded images already (None, or returning None: convert re-encodes
    the arrays `load` gives).
    """

    name: str
    load: Callable[[DataRequest], "Dataset"]
    default_validation: Optional[int] = 0
    encoded: Optional[Callable[[DataRequest], Optional["EncodedSplits"]]] = field(default=None)


_READERS: dict[str, DatasetReader] = {}


def register_reader(reader: DatasetReader) -> DatasetReader:
    """Called by a reader module at import; the name must be one of `DATASETS`."""
    if reader.name not in DATASETS:
        raise ValueError(f"dataset {reader.name!r} is not in the catalog (add it to data/catalog.py)")
    _READERS[reader.name] = reader
    return reader


def dataset_names() -> list[str]:
    return list(DATASETS)


def get_reader(name: str) -> DatasetReader:
    """The reader of dataset `name`, importing its module on first use."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r} (choose one of: {', '.join(DATASETS)})")
    if name not in _READERS:
        importlib.import_module(DATASETS[name][0])
    return _READERS[name]


def load(name: str, request: DataRequest) -> "Dataset":
    """Dataset `name` as `request` asks, with the reader's default validation size filled in."""
    reader = get_reader(name)
    if request.validation_size is None and reader.default_validation is not None:
        request = replace(request, validation_size=reader.default_validation)
    return reader.load(_local(request))


def _local(request: DataRequest) -> DataRequest:
    """A request whose `data_dir` is a URL (s3://, gs://, https://, …) reads a local copy of it."""
    from .remote import is_url, localize

    if not is_url(request.data_dir):
        return request
    cache = Path(request.cache_dir) if request.cache_dir else None
    return replace(request, data_dir=str(localize(str(request.data_dir), cache)))


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    validation_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    download: bool = True,
    csv: Optional["CsvOptions"] = None,
) -> "Dataset":
    """Load a named dataset and split it into train / validation / test.

    `validation_size` examples are held out of the end of the training set (5,000 for the
    MNIST and CIFAR families, 179 of the 1,438 `digits` when None), as the tutorials'
    `read_data_sets` does; TFRecord shards with a validation split, and image folders (split by
    file-name hash), bring their own.  Missing IDX and CIFAR files are downloaded into the cache.
    `csv` says how `"csv"` files are read (label column, header, defaults, image shape, regression).
    """
    return load(name, DataRequest(
        data_dir=os.fspath(data_dir) if data_dir is not None else None, validation_size=validation_size,
        cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
        mirrors=tuple(mirrors) if mirrors else None, download=download, csv=csv))


def encoded_splits(name: str, request: DataRequest) -> Optional["EncodedSplits"]:
    """Dataset `name`'s examples as encoded records (None: re-encode the arrays of `load`)."""
    reader = get_reader(name)
    return reader.encoded(_local(request)) if reader.encoded is not None else None
