"""Turn a TFRecord image dataset into an image folder (one sub-folder per category).

The usual TFRecord layout of an image classification set — `image/encoded` (JPEG/PNG bytes)
and `image/class/label` (class index) per `tf.train.Example`, as in the CIFAR-10 and
flowers TFRecords — becomes the folder `visionflow retrain` reads:

    OUT/airplane/train-00000-of-00005-00003.jpg
    OUT/ship/...

File names are `<shard>-<record index>` and therefore stable: writing the same records again
gives the same names, and so the same train/validation/test split.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InputError
from .shards import iter_image_records


def export_image_folder(tfrecords: Iterable[str | os.PathLike], out_dir: str | os.PathLike,
                        class_names: Sequence[str], categories: Sequence[str], per_category: int,
                        size: int | None = None) -> dict[str, int]:
    """Write the first `per_category` images of each of `categories` found in `tfrecords`.

    `class_names[label]` names the category of a record.  With `size`, each image is re-encoded
    as a size×size JPEG (bicubic; quality 95), else its bytes are written as they are.  Returns
    the number of images written per category (fewer than asked when the records run out).
    """
    unknown = [c for c in categories if c not in class_names]
    if unknown:
        raise InputError(f"unknown categories {', '.join(unknown)} (the records have: {', '.join(class_names)})")
    out = Path(out_dir)
    counts = dict.fromkeys(categories, 0)
    for shard in map(Path, tfrecords):
        for index, record in iter_image_records(shard):
            if not 0 <= record.label < len(class_names):
                raise InputError(f"{record.source}: label {record.label} out of range 0..{len(class_names) - 1}")
            name = class_names[record.label]
            if name not in counts or counts[name] >= per_category:
                continue
            target = out / name / f"{shard.stem}-{index:05d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(record.encoded if size is None else _resized_jpeg(record.encoded, size))
            counts[name] += 1
            if all(n >= per_category for n in counts.values()):
                return counts
    return counts


def _resized_jpeg(data: bytes, size: int) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        resized = image.convert("RGB").resize((size, size), Image.BICUBIC)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
