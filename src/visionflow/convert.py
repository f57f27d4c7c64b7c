"""`visionflow convert`: write any dataset visionflow reads as TFRecord shards of image Examples.

The output directory gets, per split, `SPLIT-0000K-of-0000N.tfrecord` files of `tf.train.Example`s
in the common image layout (`image/encoded`, `image/format`, `image/height`, `image/width`,
`image/class/label`, `image/class/text`) and a `labels.txt` with one class name per line — the
layout `--dataset tfrecord` (and TensorFlow's own image pipelines) read back.

What goes into `image/encoded` keeps the source's pixels: arrays (MNIST, digits, the CIFAR
binary/python batches) become PNG, which is lossless; image-folder JPEGs and PNGs are copied
byte for byte (other formats become PNG); records of TFRecord shards are copied unchanged.
Records are shuffled by a seeded permutation before they are cut into shards, so every shard
holds a fair sample of the classes, and each shard is written atomically.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import InputError
from .fsio import atomic_write_text
from .imagecodec import decode_images, encode_png, open_image
from .tfexample import image_example, image_record
from .tfrecord import read_records, write_records

SPLITS = ("train", "validation", "test")
#: Formats of image-folder files copied into records unchanged (PIL's name → image/format).
KEPT_FORMATS = {"JPEG": "jpeg", "PNG": "png"}

#: Makes one serialised Example; None when its source turned out unreadable (and was reported).
RecordMaker = Callable[[], "bytes | None"]


@dataclass
class ConvertResult:
    """What `convert` wrote: records and shard files per split, and the class names."""

    output: Path
    class_names: tuple[str, ...]
    records: dict[str, int] = field(default_factory=dict)
    shards: dict[str, list[Path]] = field(default_factory=dict)


def convert(dataset: str, output: str | os.PathLike, shards: int = 1, data_dir: str | os.PathLike | None = None,
            seed: int = 0, validation_size: int | None = None, validation_percentage: float | None = None,
            testing_percentage: float | None = None, download: bool = True) -> ConvertResult:
    """Write `dataset` (a name `load_dataset` knows) into `output` as TFRecord shards.

    The training split is cut into `shards` files and the other splits into proportionally
    many (at least one each; an empty split gets none).  `validation_size` holds examples out
    of train for datasets without a validation split of their own (default: none, so train and
    test are the dataset's official splits); the percentages split an image folder.
    """
    if shards < 1:
        raise InputError(f"--shards must be at least 1, got {shards}")
    names, makers = _sources(dataset, data_dir, validation_size, validation_percentage, testing_percentage, download)
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


def _check_output(out: Path, planned: Sequence[Path]) -> None:
    """Refuse to mix with other shards: a reader of `out` would take them for part of the dataset."""
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if not out.is_dir():
        return
    from .shards import SHARD_PATTERN

    others = sorted(p.name for p in out.iterdir() if SHARD_PATTERN.search(p.name) and p not in set(planned))
    if others:
        raise InputError(f"{out}: already holds other TFRecord shards ({', '.join(others[:3])}"
                         f"{', ...' if len(others) > 3 else ''}); write to an empty directory")


def _sources(dataset: str, data_dir: str | os.PathLike | None, validation_size: int | None,
             validation_percentage: float | None, testing_percentage: float | None,
             download: bool) -> tuple[tuple[str, ...], dict[str, list[RecordMaker]]]:
    """(class names, {split: one record maker per example}) of the dataset to convert."""
    from .datasets import CIFAR_NAMES, IMAGE_FOLDER, TFRECORD, load_dataset

    if dataset == TFRECORD:
        if data_dir is None:
            raise InputError("converting TFRecord shards needs them: --data-dir DIR, GLOB or FILE")
        return _from_shards(data_dir, None)
    if dataset in CIFAR_NAMES and data_dir is not None:
        from .cifar import CIFAR, locate

        form, where = locate(dataset, data_dir)
        if form == "tfrecord":
            return _from_shards(where, CIFAR[dataset].num_classes)
    if dataset == IMAGE_FOLDER:
        return _from_image_folder(data_dir, validation_percentage, testing_percentage)
    data = load_dataset(dataset, data_dir, validation_size or 0, download=download)
    names = tuple(data.class_names)
    return names, {split: _array_makers(data.split(split).images, data.split(split).labels, names)
                   for split in SPLITS}


def _array_makers(images: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> list[RecordMaker]:
    h, w = images.shape[1:3]

    def maker(i: int) -> RecordMaker:
        return lambda: image_example(encode_png(images[i]), int(labels[i]), "png", h, w, names[int(labels[i])])

    return [maker(i) for i in range(len(labels))]


def _from_shards(spec: str | os.PathLike, num_classes: int | None
                 ) -> tuple[tuple[str, ...], dict[str, list[RecordMaker]]]:
    """Records of existing shards, split by shard name, each checked to be an image Example."""
    from .shards import find_shards, labels_file_for, read_labels_file, shards_by_split

    shards = find_shards(spec)
    by_split = shards_by_split(shards)
    if not by_split["train"] and not Path(spec).is_dir():
        by_split = {"train": shards, "validation": [], "test": []}
    makers: dict[str, list[RecordMaker]] = {}
    texts: dict[int, str] = {}
    top = -1
    for split in SPLITS:
        makers[split] = []
        for shard in by_split[split]:
            for index, data in enumerate(read_records(shard)):
                record = image_record(data, f"{shard}: record {index}")
                top = max(top, record.label)
                if record.text is not None:
                    texts.setdefault(record.label, record.text)
                makers[split].append(lambda data=data: data)
    labels_file = labels_file_for(spec, shards)
    if labels_file is not None:
        names = read_labels_file(labels_file)
    else:
        names = tuple(texts.get(i, str(i)) for i in range(max(top + 1, num_classes or 0)))
    if top >= len(names):
        raise InputError(f"{labels_file}: {len(names)} class names, but the records have label {top}")
    return names, makers


def _from_image_folder(root: str | os.PathLike | None, validation_percentage: float | None,
                       testing_percentage: float | None) -> tuple[tuple[str, ...], dict[str, list[RecordMaker]]]:
    from .imagefolder import scan_image_folder, warn_skipped as on_skip

    if root is None:
        raise InputError("converting an image folder needs it: --data-dir DIR")
    folder = scan_image_folder(root, validation_percentage, testing_percentage)
    folder.check_enough()
    names = folder.class_names

    def maker(path: Path, label: int) -> RecordMaker:
        return lambda: _file_example(path, label, names[label], on_skip)

    return names, {split: [maker(f.path, f.label) for f in folder.split(split)] for split in SPLITS}


def _file_example(path: Path, label: int, text: str, on_skip: Callable[[Path, str], None]) -> bytes | None:
    """An image file as an Example: its own bytes when JPEG or PNG, else its pixels as PNG.

    An unreadable file is reported to `on_skip` and left out (None), as `retrain` does.
    """
    try:
        data = path.read_bytes()
        with open_image(data, str(path)) as image:
            fmt, (width, height) = image.format, image.size
            image.load()
        if fmt in KEPT_FORMATS:
            return image_example(data, label, KEPT_FORMATS[fmt], height, width, text)
        return image_example(encode_png(decode_images([data], lambda i: str(path))[0]), label, "png", height, width, text)
    except InputError as e:
        on_skip(path, str(e).split(": ", 1)[-1])
    except OSError as e:
        on_skip(path, f"cannot read ({e.strerror or e})")
    return None
