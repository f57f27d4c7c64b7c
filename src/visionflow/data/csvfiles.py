"""`csv`: datasets in CSV files — images as pixel columns, or tabular numeric features.

`--data-dir` names one file, a directory or a glob of `.csv` / `.csv.gz` files (or a URL of
them).  Files belong to splits by name as TFRecord shards do (`train*.csv`, `test*.csv`,
`validation*.csv`/`val*`, anything else train); a split without files is carved out of train by
a seeded permutation of its records — `--testing-percentage` (10) for test, then
`--validation-size` records or `--validation-percentage` (10) of train for validation — so one
file is split train / validation / test the same way on every read.

Each record is a label and D feature columns (formats/csv_table.py reads them with decode_csv's
rules).  The features are:
- pixels, when `--image-shape H,W[,C]` is given, or when it is left to `auto` and D is a square
  of at least 8×8 whose first records hold integers 0–255 (the "label,pixel0,…,pixel783" layout
  of MNIST and Fashion-MNIST CSV exports): row-major (H, W, C) uint8 images, which every image
  model and command takes;
- tabular features otherwise (`--image-shape none` forces it): float32 rows shaped (N, 1, 1, D),
  a 1×1 "image" of D channels, so the per-channel standardization every run fits is per-feature
  standardization; the `dense` model (an MLP) classifies them.

Labels: with `regression`, numbers to predict (float32 targets; the one "class" is the label
column's name).  Otherwise integers are class numbers (class names from a `labels.txt` beside the files, else the
numbers 0..max); any other text names classes, sorted (or in `labels.txt`'s order).  A label
outside the classes is an error naming its file and line.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError
from ..formats.csv_table import CsvColumns, CsvOptions, line_of_record, peek_records, read_csv_columns
from .base import SPLITS, Dataset, Split
from .catalog import DataRequest, DatasetReader, register_reader
from .shards import find_files, read_labels_file, shards_by_split

CSV_FILES = re.compile(r"\.csv(\.gz)?$", re.IGNORECASE)
#: Percent of train carved out for a split that has no files of its own.
DEFAULT_PERCENT = 10.0
#: Records looked at to decide whether `auto` columns are pixels.
PEEK_RECORDS = 200
#: Smallest square image `auto` takes pixel columns for (the 8×8 digits).
MIN_AUTO_SIDE = 8


def load_csv(request: DataRequest) -> Dataset:
    if request.data_dir is None:
        raise InputError("--dataset csv needs --data-dir FILE, DIR, GLOB or URL of .csv/.csv.gz files")
    options = request.csv or CsvOptions()
    files = find_files(request.data_dir, CSV_FILES, "CSV files (*.csv, *.csv.gz)")
    by_split = shards_by_split(files)
    if not by_split["train"]:
        if Path(request.data_dir).is_dir():
            raise InputError(f"{request.data_dir}: no training files among {', '.join(f.name for f in files)}")
        by_split = {"train": files, "validation": [], "test": []}
    shape = image_shape(by_split["train"][0], options)
    read = {split: [read_csv_columns(f, options, pixels=bool(shape)) for f in by_split[split]] for split in SPLITS}
    _check_columns(read)
    names, labels = (_targets(read, options) if options.regression
                     else _classes(read, options, _labels_file(request.data_dir, files)))
    splits = {}
    for split in SPLITS:
        features = [part.features for part in read[split]]
        width = len(read["train"][0].feature_names)
        x = np.concatenate(features) if features else np.zeros((0, width), read["train"][0].features.dtype)
        y = np.concatenate(labels[split]) if labels[split] else np.zeros(0, np.float32 if options.regression else np.int64)
        splits[split] = Split(np.ascontiguousarray(x.reshape(len(x), *(_full(shape) if shape else (1, 1, width)))), y)
    _carve(splits, request, {split: bool(by_split[split]) for split in SPLITS})
    return Dataset("csv", splits["train"], splits["validation"], splits["test"], names)


def image_shape(path: Path, options: CsvOptions) -> tuple[int, ...]:
    """(H, W, C) of the pixel columns of the files like `path`, or () when they are tabular."""
    names, label, records = peek_records(path, options, PEEK_RECORDS)
    width = len(names) - 1
    if options.image_shape == ():
        return ()
    if options.image_shape:
        shape = _full(options.image_shape)
        if math.prod(shape) != width:
            raise InputError(f"{path}: --image-shape {','.join(map(str, options.image_shape))} is "
                             f"{math.prod(shape):,} pixels, but the file has {width:,} feature columns")
        return shape
    side = math.isqrt(width)
    if side * side != width or side < MIN_AUTO_SIDE:
        return ()
    for fields in records:
        for i, field in enumerate(fields):
            if i == label or field == "":
                continue
            if not (field.strip().isdigit() and int(field) <= 255):  # "14.0" is a float column, not pixels
                return ()
    return (side, side, 1)


def _full(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)


def _check_columns(read: dict[str, list[CsvColumns]]) -> None:
    """Every file has the first training file's feature columns — by name when both have a header
    (a file with its columns in another order would be read misaligned)."""
    first = read["train"][0]
    for part in (p for parts in read.values() for p in parts):
        if len(part.feature_names) != len(first.feature_names):
            raise InputError(f"{part.path}: {len(part.feature_names)} feature columns, but {first.path} has "
                             f"{len(first.feature_names)}")
        if first.header and part.header and part.feature_names != first.feature_names:
            at = next(i for i, (a, b) in enumerate(zip(part.feature_names, first.feature_names)) if a != b)
            raise InputError(f"{part.path}: feature column {at + 1} is {part.feature_names[at]!r}, but in {first.path} "
                             f"it is {first.feature_names[at]!r} (the files' columns must match)")


def _labels_file(data_dir: str, files: list[Path]) -> Optional[Path]:
    for directory in ((Path(data_dir),) if Path(data_dir).is_dir() else ()) + (files[0].parent,):
        if (directory / "labels.txt").is_file():
            return directory / "labels.txt"
    return None


def _classes(read: dict[str, list[CsvColumns]], options: CsvOptions,
             labels_file: Optional[Path]) -> tuple[tuple[str, ...], dict[str, list[np.ndarray]]]:
    """The class names and each file's labels as class numbers (checked against the names)."""
    given = read_labels_file(labels_file) if labels_file is not None else None
    parts = [p for split in SPLITS for p in read[split]]
    numbers = [_integers(p.labels) for p in parts]
    if all(n is not None for n in numbers):
        top = max(int(n.max()) for n in numbers if n is not None and len(n))
        names = given or tuple(str(i) for i in range(top + 1))
        out = dict(zip(map(id, parts), numbers))
    else:
        names = given or tuple(sorted({str(t) for p in parts for t in np.unique(p.labels)}))
        index = {name: i for i, name in enumerate(names)}
        out = {id(p): np.array([index.get(str(t), -1) for t in p.labels], dtype=np.int64) for p in parts}
    for p in parts:
        bad = np.flatnonzero((out[id(p)] < 0) | (out[id(p)] >= len(names)))
        if len(bad):
            i = int(bad[0])
            line = line_of_record(Path(p.path), options, i)
            raise InputError(f"{p.path}: line {line}, column {p.label_name!r}: label {str(p.labels[i])!r} is not one of the "
                             f"{len(names)} classes ({'labels.txt' if given else 'numbered from 0'}"
                             f"{': ' + ', '.join(names[:5]) + (', ...' if len(names) > 5 else '') if given else ''})")
    return names, {split: [out[id(p)] for p in read[split]] for split in SPLITS}


def _targets(read: dict[str, list[CsvColumns]],
             options: CsvOptions) -> tuple[tuple[str, ...], dict[str, list[np.ndarray]]]:
    """Regression: each file's labels as float32 numbers; the one "class" is the label column."""
    out: dict[str, list[np.ndarray]] = {}
    for split in SPLITS:
        out[split] = []
        for p in read[split]:
            try:
                values = (p.labels.astype(np.float64) if p.labels.dtype.kind in "fi" else
                          np.asarray([float(t) for t in p.labels], dtype=np.float64))
                bad = np.flatnonzero(~np.isfinite(values))
            except ValueError:
                bad = np.asarray([i for i, t in enumerate(p.labels) if not _is_float(t)])
            if len(bad):
                i = int(bad[0])
                raise InputError(f"{p.path}: line {line_of_record(Path(p.path), options, i)}, column {p.label_name!r}: "
                                 f"regression target {str(p.labels[i])!r} is not a finite number")
            out[split].append(values.astype(np.float32))
    return (read["train"][0].label_name,), out


def _is_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _integers(labels: np.ndarray) -> Optional[np.ndarray]:
    """Label text as int64 class numbers, or None when any label is not an integer."""
    if labels.dtype.kind == "i":
        return labels.astype(np.int64, copy=False)
    try:
        return np.asarray([int(t) for t in labels], dtype=np.int64)
    except (ValueError, TypeError):
        return None


def _carve(splits: dict[str, Split], request: DataRequest, has_files: dict[str, bool]) -> None:
    """Give each split without files its records out of train, by a permutation seeded 0."""
    train = splits["train"]
    order = np.random.default_rng(0).permutation(len(train))
    cuts: dict[str, np.ndarray] = {}
    if not has_files["test"]:
        count = round(len(train) * (request.testing_percentage if request.testing_percentage is not None
                                    else DEFAULT_PERCENT) / 100)
        cuts["test"], order = order[:count], order[count:]
    if not has_files["validation"]:
        if request.validation_size is not None:
            count = request.validation_size
        else:
            count = round(len(order) * (request.validation_percentage if request.validation_percentage is not None
                                        else DEFAULT_PERCENT) / 100)
        if not 0 <= count < len(order):
            raise InputError(f"csv: validation size {count} must be between 0 and {len(order) - 1}")
        cuts["validation"], order = order[:count], order[count:]
    if not cuts:
        return
    keep = np.sort(order)
    for split, rows in cuts.items():
        rows = np.sort(rows)
        splits[split] = Split(train.images[rows], train.labels[rows])
    splits["train"] = Split(train.images[keep], train.labels[keep])


register_reader(DatasetReader("csv", load_csv, default_validation=None))
