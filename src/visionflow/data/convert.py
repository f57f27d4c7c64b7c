"""`visionflow convert`: write any dataset visionflow reads as TFRecord shards of image Examples
(or as CSV files).

The output directory gets, per split, `SPLIT-0000K-of-0000N.tfrecord` files of `tf.train.Example`s
in the common image layout (`image/encoded`, `image/format`, `image/height`, `image/width`,
`image/class/label`, `image/class/text`) and a `labels.txt` with one class name per line — the
layout `--dataset tfrecord` (and TensorFlow's own image pipelines) read back.

What goes into `image/encoded` keeps the source's pixels: arrays (MNIST, digits, the CIFAR
binary/python batches) become PNG, which is lossless; image-folder JPEGs and PNGs are copied
byte for byte (other formats become PNG); records of TFRecord shards are copied unchanged.
Records are shuffled by a seeded permutation before they are cut into shards, so every shard
holds a fair sample of the classes, and each shard is written atomically.

`fmt="csv"` writes `SPLIT.csv` (or `.csv.gz`) per split instead, in the layout `--dataset csv`
reads back: a header, the label, then one column per pixel in row-major (H, W, C) order
(`pixel0…`) — the MNIST CSV exports' layout — or per feature of a tabular dataset (`feature0…`).
"""

from __future__ import annotations

import math
import re
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.fsio import atomic_write_text
from ..errors import InputError
from ..formats.csv_table import CsvOptions, write_csv_columns
from ..formats.imagecodec import encode_png
from ..formats.tfexample import image_example
from ..formats.tfrecord import write_records
from .base import SPLITS, Dataset, EncodedSplits, RecordMaker
from .catalog import DataRequest, encoded_splits, load
from .csvfiles import CSV_FILES
from .shards import SHARD_PATTERN


@dataclass
class ConvertResult:
    """What `convert` wrote: records and shard files per split, and the class names."""

    output: Path
    class_names: tuple[str, ...]
    records: dict[str, int] = field(default_factory=dict)
    shards: dict[str, list[Path]] = field(default_factory=dict)


def convert(dataset: str, output: str | os.PathLike, shards: int = 1, data_dir: str | os.PathLike | None = None,
            seed: int = 0, validation_size: int | None = None, validation_percentage: float | None = None,
            testing_percentage: float | None = None, download: bool = True, fmt: str = "tfrecord",
            csv: CsvOptions | None = None, compress: bool = False) -> ConvertResult:
    """Write `dataset` (a name of the catalog) into `output` as TFRecord shards (or CSV files).

    The training split is cut into `shards` files and the other splits into proportionally
    many (at least one each; an empty split gets none).  `validation_size` holds examples out
    of train for datasets without a validation split of their own (default: none, so train and
    test are the dataset's official splits); the percentages split an image folder.  `csv` says
    how a CSV source is read; `compress` gzips CSV output.
    """
    if shards < 1:
        raise InputError(f"--shards must be at least 1, got {shards}")
    if fmt not in ("tfrecord", "csv"):
        raise InputError(f"--format must be tfrecord or csv, got {fmt!r}")
    if fmt == "csv" and shards != 1:
        raise InputError("--shards is for TFRecord output; --format csv writes one file per split")
    if fmt == "tfrecord" and compress:
        raise InputError("--compress is for --format csv (TFRecord shards are written uncompressed)")
    request = DataRequest(data_dir=os.fspath(data_dir) if data_dir is not None else None,
                          validation_size=validation_size or 0, validation_percentage=validation_percentage,
                          testing_percentage=testing_percentage, download=download, csv=csv)
    if fmt == "csv":
        return _write_csv(load(dataset, request), Path(output), compress)
    source = _sources(dataset, request)
    names, makers = source.class_names, source.makers
    out = Path(output)
    plan = _plan(makers, shards)
    _check_output(out, [path for split in plan for path in _shard_paths(out, split, plan[split])])
    result = ConvertResult(out, names)
    for index, split in enumerate(SPLITS):
        records = makers[split]
        count = plan.get(split, 0)
        if not count:
            continue
        order = np.random.default_rng([seed, index]).permutation(len(records))
        paths = _shard_paths(out, split, count)
        written = 0
        for j, path in enumerate(paths):
            chunk = order[j * len(records) // count : (j + 1) * len(records) // count]
            made = (records[int(i)]() for i in chunk)
            written += write_records(path, (data for data in made if data is not None))
        result.records[split] = written
        result.shards[split] = paths
    atomic_write_text(out / "labels.txt", "".join(f"{name}\n" for name in names))
    return result


def _plan(makers: dict[str, list[RecordMaker]], shards: int) -> dict[str, int]:
    """Shard count per split: `shards` for train, the same records per shard for the others."""
    per_shard = max(1, math.ceil(len(makers["train"]) / shards)) if makers["train"] else None
    plan = {}
    for split in SPLITS:
        n = len(makers[split])
        if n:
            plan[split] = shards if split == "train" else max(1, math.ceil(n / per_shard)) if per_shard else 1
            plan[split] = min(plan[split], n)
    return plan


def _shard_paths(out: Path, split: str, count: int) -> list[Path]:
    return [out / f"{split}-{j:05d}-of-{count:05d}.tfrecord" for j in range(count)]


def _check_output(out: Path, planned: Sequence[Path], pattern: re.Pattern = SHARD_PATTERN,
                  kind: str = "TFRecord shards") -> None:
    """Refuse to mix with other data files (`pattern`): a reader of `out` would take them for part
    of the dataset."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if not out.is_dir():
        return
    others = sorted(p.name for p in out.iterdir() if pattern.search(p.name) and p not in set(planned))
    if others:
        raise InputError(f"{out}: already holds other {kind} ({', '.join(others[:3])}"
                         f"{', ...' if len(others) > 3 else ''}); write to an empty directory")


def _sources(dataset: str, request: DataRequest) -> EncodedSplits:
    """The dataset to convert as records: the reader's own encoded records when its source has them,
    else its arrays encoded as PNG (official splits; `validation_size` examples held out, default none)."""
    encoded = encoded_splits(dataset, request)
    if encoded is not None:
        return encoded
    data = load(dataset, request)
    if data.train.images.dtype != np.uint8:
        raise InputError(f"{request.data_dir}: tabular features are not images: TFRecord image records cannot hold "
                         "them (convert --format csv writes them as CSV)")
    names = tuple(data.class_names)
    return EncodedSplits(names, {split: _array_makers(data.split(split).images, data.split(split).labels, names)
                                 for split in SPLITS})


def _write_csv(data: Dataset, out: Path, compress: bool) -> ConvertResult:
    """Each non-empty split as OUT/SPLIT.csv[.gz], and labels.txt."""
    suffix = ".csv.gz" if compress else ".csv"
    planned = {split: out / f"{split}{suffix}" for split in SPLITS if len(data.split(split))}
    _check_output(out, list(planned.values()), CSV_FILES, "CSV files")
    result = ConvertResult(out, tuple(data.class_names))
    pixels = data.train.images.dtype == np.uint8
    for split, path in planned.items():
        part = data.split(split)
        features = part.images.reshape(len(part), -1)
        names = [f"{'pixel' if pixels else 'feature'}{j}" for j in range(features.shape[1])]
        write_csv_columns(path, part.labels, features, names)
        result.records[split] = len(part)
        result.shards[split] = [path]
    atomic_write_text(out / "labels.txt", "".join(f"{name}\n" for name in data.class_names))
    return result


def _array_makers(images: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> list[RecordMaker]:
    h, w = images.shape[1:3]

    def maker(i: int) -> RecordMaker:
        return lambda: image_example(encode_png(images[i]), int(labels[i]), "png", h, w, names[int(labels[i])])

    return [maker(i) for i in range(len(labels))]
