"""Sharded TFRecord image datasets: find the shards, stream them shuffled, or load them as arrays.

A dataset is a set of TFRecord files of `tf.train.Example`s in the common image layout
(tfexample.py), given as a directory, a glob or one file.  Shards belong to a split by their
name — `train-00000-of-00005.tfrecord` is train, `validation-…`/`val-…` validation, `test-…`
test (anything else counts as train) — and class names come from a `labels.txt` beside them,
else from the records' `image/class/text`.

`stream_image_records` reads examples from disk one at a time in an order that is a pure
function of (seed, epoch): shard order permuted, then records passed through a shuffle buffer,
as tf.data's `list_files(shuffle) → TFRecordDataset → shuffle(buffer)` does.  `load_split`
decodes whole splits into (N, H, W, C) uint8 arrays for the device-resident pipeline, keeping
a cache of the decoded pixels per shard (keyed by the shard's path, size and mtime) so only the
first load pays for JPEG decoding.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..core.cache import default_cache_dir
from ..core.fsio import publish_dir, remove_stale_temps, staging_dir
from ..core.progress import Progress
from ..errors import InputError
from ..formats.imagecodec import decode_images
from ..formats.tfexample import ImageRecord, image_record
from ..formats.tfrecord import read_records
from .base import SPLITS, Dataset, EncodedSplits, RecordMaker, Split, hold_out
from .catalog import DataRequest, DatasetReader, register_reader

SPLIT_PREFIXES = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation",
                  "dev": "validation", "eval": "test", "test": "test"}
#: File names taken for TFRecord shards when a directory is given.
SHARD_PATTERN = re.compile(r"(\.tfrecords?$)|(-\d+-of-\d+$)", re.IGNORECASE)
DEFAULT_BUFFER = 10_000
#: Bump when decoding changes, so stale cached arrays are never used.
CACHE_VERSION = 1


def find_shards(spec: str | os.PathLike) -> list[Path]:
    """The TFRecord files named by `spec`, sorted: a directory's shards, a glob's matches, or one file."""
    return find_files(spec, SHARD_PATTERN, "TFRecord shards (*.tfrecord or NAME-00000-of-00010)")


def find_files(spec: str | os.PathLike, pattern: re.Pattern, kind: str) -> list[Path]:
    """The files `spec` names, sorted: a directory's files whose names match `pattern`, a glob's
    matches, or one file; `kind` describes the wanted files in the error when there are none."""
    text = os.fspath(spec)
    path = Path(text)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and pattern.search(p.name))
        if not found:
            raise InputError(f"{path}: no {kind} in this directory")
        return found
    if path.is_file():
        return [path]
    if glob.has_magic(text):
        found = sorted(Path(p) for p in glob.glob(text) if Path(p).is_file())
        if not found:
            raise InputError(f"{text}: no files match this pattern")
        return found
    raise InputError(f"{path}: no such file or directory")


def split_of(shard: Path) -> str:
    """"train", "validation" or "test" from the shard's name (train when the name says neither)."""
    head = re.split(r"[-_.]", shard.name.lower(), maxsplit=1)[0]
    return SPLIT_PREFIXES.get(head, "train")


def shards_by_split(shards: Sequence[Path]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {"train": [], "validation": [], "test": []}
    for shard in shards:
        out[split_of(shard)].append(shard)
    return out


def read_labels_file(path: Path) -> tuple[str, ...]:
    """Class names, one per line (blank lines and surrounding spaces ignored)."""
    try:
        return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (expected one class name per line)") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from None


def labels_file_for(spec: str | os.PathLike, shards: Sequence[Path]) -> Path | None:
    """The `labels.txt` of a shard set: in the directory given, else beside the first shard."""
    path = Path(spec)
    for directory in ((path,) if path.is_dir() else ()) + ((shards[0].parent,) if shards else ()):
        if (directory / "labels.txt").is_file():
            return directory / "labels.txt"
    return None


def iter_image_records(shard: Path) -> Iterator[tuple[int, ImageRecord]]:
    """(record index, ImageRecord) of every record of one shard, in file order."""
    for index, data in enumerate(read_records(shard)):
        yield index, image_record(data, f"{shard}: record {index}")


def stream_image_records(shards: Sequence[Path], seed: int = 0, epoch: int = 0,
                         buffer_size: int = DEFAULT_BUFFER, shuffle: bool = True) -> Iterator[ImageRecord]:
    """The records of `shards`, streamed from disk, shuffled as a pure function of (seed, epoch).

    Shards are visited in a permuted order; each record enters a buffer of `buffer_size`
    records and a uniformly chosen buffered record leaves it (a buffer as large as the dataset
    gives a uniform shuffle; 1 keeps file order within shards).  Memory: `buffer_size` records.
    """
    if not shuffle:
        for shard in shards:
            for _, record in iter_image_records(shard):
                yield record
        return
    if buffer_size < 1:
        raise InputError(f"shuffle buffer size must be at least 1, got {buffer_size}")
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(shards))
    buffer: list[ImageRecord] = []
    for shard_index in order:
        for _, record in iter_image_records(shards[shard_index]):
            if len(buffer) < buffer_size:
                buffer.append(record)
                continue
            pick = int(rng.integers(buffer_size))
            yield buffer[pick]
            buffer[pick] = record
    for pick in rng.permutation(len(buffer)):
        yield buffer[pick]


def stream_decoded_batches(shards: Sequence[Path], batch_size: int, seed: int = 0, epoch: int = 0,
                           buffer_size: int = DEFAULT_BUFFER, channels: int | None = None
                           ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled batches of (images (B, H, W, C) uint8, labels (B,) int64), decoded as they stream."""
    batch: list[ImageRecord] = []
    for record in stream_image_records(shards, seed, epoch, buffer_size):
        batch.append(record)
        if len(batch) == batch_size:
            yield _decode_batch(batch, channels)
            batch = []
    if batch:
        yield _decode_batch(batch, channels)


def _decode_batch(batch: list[ImageRecord], channels: int | None) -> tuple[np.ndarray, np.ndarray]:
    images = decode_images([r.encoded for r in batch], lambda i: batch[i].source or "record", channels)
    return images, np.array([r.label for r in batch], dtype=np.int64)


@dataclass(frozen=True)
class LoadedShards:
    """A split decoded to arrays: images (N, H, W, C) uint8, labels (N,) int64, the
    `image/class/text` seen for each label (empty when the records carry none), and how many
    records came from each shard (to name the record behind an array index)."""

    images: np.ndarray
    labels: np.ndarray
    texts: dict[int, str]
    counts: tuple[tuple[Path, int], ...] = ()

    def where(self, index: int) -> str:
        """"SHARD: record N" of array index `index`."""
        for shard, count in self.counts:
            if index < count:
                return f"{shard}: record {index}"
            index -= count
        return f"record {index}"


def load_split(shards: Sequence[Path], channels: int | None = None, cache_dir: Path | None = None) -> LoadedShards:
    """Decode every record of `shards` (in file order) into arrays; errors name shard and record.

    With `cache_dir`, each shard's decoded arrays are kept there (as .npy, published atomically)
    and reused while the shard's path, size and mtime stay the same.
    """
    parts = []
    progress = None
    try:
        for n, shard in enumerate(shards):
            cached = _cached(shard, channels, cache_dir)
            if cached is not None:
                parts.append(cached)
                continue
            if progress is None:  # decoding is the slow part (~25 s for CIFAR-10 on 2 cores): show it
                progress = Progress(len(shards), n, desc="decoding shards", unit="shard")
            started = time.perf_counter()
            parts.append(_load_shard(shard, channels, cache_dir))
            progress.advance(1)
            progress.log(f"decoded {shard.name}: {len(parts[-1].labels):,} images in "
                         f"{time.perf_counter() - started:.1f} s" + (" (cached for next time)" if cache_dir else ""))
    finally:
        if progress is not None:
            progress.close()
    shapes = [(shard, p.images.shape[1:]) for shard, p in zip(shards, parts) if len(p.labels)]
    if not shapes:
        return LoadedShards(np.zeros((0, 0, 0, channels or 3), np.uint8), np.zeros(0, np.int64), {})
    for shard, shape in shapes:
        if shape != shapes[0][1]:
            raise InputError(f"{shard}: images are {shape} (H, W, C), those of {shapes[0][0]} "
                             f"{shapes[0][1]} (an image dataset loaded as arrays needs one shape)")
    texts: dict[int, str] = {}
    for part in parts:
        texts.update(part.texts)
    return LoadedShards(np.concatenate([p.images for p in parts if len(p.labels)]),
                        np.concatenate([p.labels for p in parts]), texts,
                        tuple((shard, len(p.labels)) for shard, p in zip(shards, parts)))


def load_tfrecord_dataset(spec: str | os.PathLike, validation_size: int | None = None, name: str = "tfrecord",
                          class_names: Sequence[str] | None = None, cache: bool = True) -> Dataset:
    """The image TFRecord shards named by `spec` (directory, glob or file) as a `Dataset`.

    Splits come from the shard names (see `split_of`) — except that a glob or file naming no
    training shard is all training data.  When there are no validation shards,
    `validation_size` examples (0 when None) are held out of the end of train; otherwise it is
    ignored.  Class names: `class_names`, else labels.txt beside the shards, else the records'
    `image/class/text`, else the label numbers.  Every label must index a class name.  Decoded
    pixels are cached under ~/.cache/visionflow/decoded unless `cache` is False.
    """
    shards = find_shards(spec)
    by_split = shards_by_split(shards)
    if not by_split["train"]:
        if Path(spec).is_dir():
            raise InputError(f"{spec}: no training shards among {', '.join(s.name for s in shards)} "
                             "(names starting with test-/validation- belong to those splits)")
        by_split = {"train": shards, "validation": [], "test": []}
    cache_dir = default_cache_dir() / "decoded" if cache else None
    train = load_split(by_split["train"], None, cache_dir)
    channels = train.images.shape[3]
    loaded = {"train": train, **{split: load_split(by_split[split], channels, cache_dir)
                                 for split in ("validation", "test")}}
    if class_names is None:
        labels_file = labels_file_for(spec, shards)
        if labels_file is not None:
            class_names = read_labels_file(labels_file)
        else:
            texts = {k: v for part in loaded.values() for k, v in part.texts.items()}
            top = max(int(part.labels.max()) for part in loaded.values() if len(part.labels))
            class_names = tuple(texts.get(i, str(i)) for i in range(top + 1))
    names = tuple(class_names)
    for part in loaded.values():
        bad = np.flatnonzero(part.labels >= len(names))
        if len(bad):
            i = int(bad[0])
            raise InputError(f"{part.where(i)}: label {int(part.labels[i])} out of range 0..{len(names) - 1} "
                             f"({len(names)} class names)")
    shape = train.images.shape[1:]
    for split, part in loaded.items():
        if len(part.labels) and part.images.shape[1:] != shape:
            raise InputError(f"{by_split[split][0]}: images are {part.images.shape[1:]} (H, W, C), the training "
                             f"images {shape} (an image dataset loaded as arrays needs one shape)")
    splits = {k: Split(v.images if len(v.labels) else np.zeros((0, *shape), np.uint8), v.labels)
              for k, v in loaded.items()}
    if not by_split["validation"]:
        splits["train"], splits["validation"] = hold_out(splits["train"], validation_size or 0, name)
    return Dataset(name, splits["train"], splits["validation"], splits["test"], names)


def _cached(shard: Path, channels: int | None, cache_dir: Path | None) -> LoadedShards | None:
    return _read_cache(_cache_entry(shard, channels, cache_dir)) if cache_dir is not None else None


def _load_shard(shard: Path, channels: int | None, cache_dir: Path | None) -> LoadedShards:
    entry = _cache_entry(shard, channels, cache_dir) if cache_dir is not None else None
    encoded, labels, texts = [], [], {}
    for index, record in iter_image_records(shard):
        if record.label < 0:
            raise InputError(f"{shard}: record {index}: negative label {record.label}")
        encoded.append(record.encoded)
        labels.append(record.label)
        if record.text is not None:
            texts.setdefault(record.label, record.text)
    images = decode_images(encoded, lambda i: f"{shard}: record {i}", channels)
    loaded = LoadedShards(images, np.array(labels, dtype=np.int64), texts)
    if entry is not None:
        _write_cache(entry, loaded)
    return loaded


def _cache_entry(shard: Path, channels: int | None, cache_dir: Path) -> Path:
    stat = shard.stat()
    key = f"{shard.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{channels}\0{CACHE_VERSION}"
    return cache_dir / f"{shard.name[:60]}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def _read_cache(entry: Path) -> LoadedShards | None:
    try:
        images = np.load(entry / "images.npy", allow_pickle=False)
        labels = np.load(entry / "labels.npy", allow_pickle=False)
        texts = {int(k): str(v) for k, v in json.loads((entry / "texts.json").read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or labels.shape != (len(images),):
        return None
    return LoadedShards(images, labels, texts)


def _write_cache(entry: Path, loaded: LoadedShards) -> None:
    """Publish the entry as one directory rename; a cache that cannot be written is skipped."""
    try:
        remove_stale_temps(entry.parent)
        staging = staging_dir(entry.parent, entry.name)
    except OSError:
        return
    try:
        np.save(staging / "images.npy", loaded.images, allow_pickle=False)
        np.save(staging / "labels.npy", loaded.labels, allow_pickle=False)
        (staging / "texts.json").write_text(json.dumps({str(k): v for k, v in loaded.texts.items()}))
        publish_dir(staging, entry)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)


def shard_records(spec: str | os.PathLike, num_classes: int | None = None) -> EncodedSplits:
    """The records of existing shards for `convert`, split by shard name, each checked to be an image
    Example (copied unchanged).  Class names: labels.txt, else the records' texts, else numbers."""
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
    return EncodedSplits(names, makers)


def _load(request: DataRequest) -> Dataset:
    if request.data_dir is None:
        raise InputError("the tfrecord dataset needs its shards: --data-dir DIR, GLOB or FILE")
    return load_tfrecord_dataset(request.data_dir, request.validation_size)


def _encoded(request: DataRequest) -> EncodedSplits:
    if request.data_dir is None:
        raise InputError("converting TFRecord shards needs them: --data-dir DIR, GLOB or FILE")
    return shard_records(request.data_dir)


#: Held out of train only when there are no validation shards (default: none).
register_reader(DatasetReader("tfrecord", _load, default_validation=0, encoded=_encoded))
