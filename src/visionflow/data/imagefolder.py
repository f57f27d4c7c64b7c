"""A folder of images, one sub-folder per category, split into train / validation / test.

    flower_photos/daisy/100080576_f52e8ee070_n.jpg
    flower_photos/roses/...

Category names are the sub-folder names, in sorted order.  Each image goes to a split chosen
by hashing its file name, as TensorFlow's `retrain.py` does (`which_set`), so the split of a
file never changes when images are added or removed, and a file named `x_nohash_2.jpg` lands
with `x.jpg` (variants of one picture stay in one split).  JPEG, PNG and WebP files are read;
other files are listed as ignored, and image files that cannot be decoded are skipped with a
warning — both end up in the run log.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError
from ..formats.imagecodec import GREY_MODES, decode_images, encode_png, open_image
from ..formats.tfexample import image_example
from ..preprocessing import Preprocessing
from .base import SPLITS, Dataset, EncodedSplits, Split
from .catalog import DataRequest, DatasetReader, register_reader

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: Formats of image files copied into records unchanged by `convert` (PIL's name → image/format).
KEPT_FORMATS = {"JPEG": "jpeg", "PNG": "png"}
DEFAULT_VALIDATION_PERCENTAGE = 10.0
DEFAULT_TESTING_PERCENTAGE = 10.0
MIN_IMAGES_PER_CATEGORY = 2
RECOMMENDED_IMAGES_PER_CATEGORY = 20
# retrain.py's constant: hashes are taken modulo this, so a category may hold up to ~134M images.
MAX_NUM_IMAGES_PER_CLASS = 2**27 - 1

SkipHandler = Callable[[Path, str], None]


def which_set(file_name: str, validation_percentage: float, testing_percentage: float) -> str:
    """"train", "validation" or "test" for an image file name, stable across runs and machines.

    The name's SHA-1 (with anything from `_nohash_` on removed) picks a point in [0, 100]; the
    first `validation_percentage` of the range is validation, the next `testing_percentage` test.
    """
    hash_name = re.sub(r"_nohash_.*$", "", os.path.basename(file_name))
    hashed = int(hashlib.sha1(hash_name.encode("utf-8")).hexdigest(), 16)
    percentage_hash = (hashed % (MAX_NUM_IMAGES_PER_CLASS + 1)) * (100.0 / MAX_NUM_IMAGES_PER_CLASS)
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < validation_percentage + testing_percentage:
        return "test"
    return "train"


@dataclass(frozen=True)
class ImageFile:
    """One image of the folder: its path, category index and split."""

    path: Path
    label: int
    split: str


@dataclass
class ImageFolder:
    """The images found under `root`, in category then file-name order, and the files ignored."""

    root: Path
    class_names: tuple[str, ...]
    files: list[ImageFile]
    ignored: list[Path] = field(default_factory=list)

    def split(self, name: str) -> list[ImageFile]:
        return [f for f in self.files if f.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """{category: {split: number of images}}."""
        out = {name: dict.fromkeys(SPLITS, 0) for name in self.class_names}
        for f in self.files:
            out[self.class_names[f.label]][f.split] += 1
        return out

    def without(self, paths: set[Path]) -> "ImageFolder":
        """The same folder with `paths` (unreadable images) dropped."""
        return ImageFolder(self.root, self.class_names, [f for f in self.files if f.path not in paths], self.ignored)

    def check_enough(self) -> None:
        """Raise InputError (one line) unless there are 2+ categories, each with images to train on."""
        if len(self.class_names) < 2:
            raise InputError(f"{self.root}: found {len(self.class_names)} category folder(s) with images; "
                             "need at least 2 (one sub-folder of images per category)")
        for name, per_split in self.counts().items():
            total = sum(per_split.values())
            if total < MIN_IMAGES_PER_CATEGORY:
                raise InputError(f"{self.root / name}: {total} readable image(s); each category needs at least "
                                 f"{MIN_IMAGES_PER_CATEGORY} ({RECOMMENDED_IMAGES_PER_CATEGORY}+ recommended)")
            if per_split["train"] == 0:
                raise InputError(f"{self.root / name}: none of its {total} images falls in the training split "
                                 f"(add images; each category needs {RECOMMENDED_IMAGES_PER_CATEGORY}+)")


def scan_image_folder(root: str | os.PathLike, validation_percentage: float | None = None,
                      testing_percentage: float | None = None) -> ImageFolder:
    """List the categories and images of `root` and assign each image its split (nothing is decoded)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: image directory not found")
    validation = DEFAULT_VALIDATION_PERCENTAGE if validation_percentage is None else validation_percentage
    testing = DEFAULT_TESTING_PERCENTAGE if testing_percentage is None else testing_percentage
    class_names: list[str] = []
    files: list[ImageFile] = []
    ignored: list[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(entry)
            continue
        images = []
        for path in sorted(entry.iterdir()):
            if path.name.startswith("."):
                continue
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                ignored.append(path)
        if not images:
            continue
        if "\n" in entry.name or "\r" in entry.name:
            raise InputError(f"{entry}: a category name may not contain a line break")
        label = len(class_names)
        class_names.append(entry.name)
        files += [ImageFile(p, label, which_set(p.name, validation, testing)) for p in images]
    return ImageFolder(root, tuple(class_names), files, ignored)


def decode_image(data: bytes, pre: Preprocessing, name: str) -> np.ndarray:
    """Encoded image bytes → (H, W, C) uint8 as `pre` says; InputError naming `name` when unreadable."""
    with open_image(data, name) as image:
        return pre.fit_image(image)


def warn_skipped(path: Path, reason: str) -> None:
    """The default report of an unreadable image: one warning line on stderr."""
    print(f"visionflow: warning: skipping {path}: {reason}", file=sys.stderr, flush=True)


def read_images(files: Sequence[ImageFile], pre: Preprocessing,
                on_skip: SkipHandler = warn_skipped) -> tuple[np.ndarray, list[ImageFile]]:
    """Decode `files` → ((N, H, W, C) uint8, the N files that could be read); others go to `on_skip`."""
    arrays, kept = [], []
    for f in files:
        try:
            arrays.append(decode_image(f.path.read_bytes(), pre, str(f.path)))
        except (InputError, OSError) as e:
            on_skip(f.path, _reason(e))
            continue
        kept.append(f)
    images = np.stack(arrays) if arrays else np.zeros((0, pre.height, pre.width, pre.channels), np.uint8)
    return images, kept


def load_image_folder(root: str | os.PathLike | None, pre: Preprocessing, validation_percentage: float | None = None,
                      testing_percentage: float | None = None, on_skip: SkipHandler = warn_skipped,
                      splits: Sequence[str] = SPLITS) -> Dataset:
    """The folder as a `Dataset` of decoded images (N, H, W, C) uint8 sized by `pre`, split by `which_set`.

    Only the named `splits` are decoded; the others are left empty.
    """
    if root is None:
        raise InputError("an image-folder dataset needs its directory (--data-dir DIR)")
    return _decode_folder(scan_image_folder(root, validation_percentage, testing_percentage), pre, on_skip, splits)


def _decode_folder(folder: ImageFolder, pre: Preprocessing, on_skip: SkipHandler,
                   splits: Sequence[str] = SPLITS) -> Dataset:
    loaded = {}
    for name in SPLITS:
        images, kept = read_images(folder.split(name) if name in splits else [], pre, on_skip)
        loaded[name] = Split(images, np.array([f.label for f in kept], dtype=np.int64))
    return Dataset(f"image-folder {folder.root}", loaded["train"], loaded["validation"], loaded["test"],
                   folder.class_names)


def load_image_folder_as_is(root: str | os.PathLike | None, validation_percentage: float | None = None,
                            testing_percentage: float | None = None, on_skip: SkipHandler = warn_skipped) -> Dataset:
    """The folder as a training `Dataset` at its images' own size (N, H, W, C) uint8, split by `which_set`.

    All images must share one size (`visionflow retrain` resizes photos of any size for its
    backbone instead); C is 1 when every image is greyscale, else 3.  Only image headers are
    read to decide that; unreadable files are skipped through `on_skip`.
    """
    if root is None:
        raise InputError("an image-folder dataset needs its directory (--data-dir DIR)")
    folder = scan_image_folder(root, validation_percentage, testing_percentage)
    headers: dict[Path, tuple[tuple[int, int], bool]] = {}
    for f in folder.files:
        try:
            with open_image(f.path, str(f.path)) as image:
                headers[f.path] = (image.size, image.mode in GREY_MODES)
        except InputError as e:
            on_skip(f.path, _reason(e))
    folder = folder.without({f.path for f in folder.files if f.path not in headers})
    folder.check_enough()
    first = folder.files[0].path
    (width, height), _ = headers[first]
    for f in folder.files:
        (w, h), _ = headers[f.path]
        if (w, h) != (width, height):
            raise InputError(f"{f.path}: {w}×{h} pixels, but {first} is {width}×{height}: training on an image folder "
                             "reads images at their own size, so all must have one (resize them, or use "
                             "`visionflow retrain`, which fits any size to its backbone)")
    channels = 1 if all(grey for _, grey in headers.values()) else 3
    pre = Preprocessing(channels, height, width, (0.0,) * channels, (1.0,) * channels)
    return _decode_folder(folder, pre, on_skip)


def _reason(error: Exception) -> str:
    text = str(error)
    if isinstance(error, InputError) and ": " in text:
        return text.split(": ", 1)[1]
    return getattr(error, "strerror", None) or text


def folder_records(root: str | os.PathLike | None, validation_percentage: float | None = None,
                   testing_percentage: float | None = None, on_skip: SkipHandler = warn_skipped) -> EncodedSplits:
    """The folder's images as records for `convert`, split by `which_set`; files are read when written."""
    if root is None:
        raise InputError("converting an image folder needs it: --data-dir DIR")
    folder = scan_image_folder(root, validation_percentage, testing_percentage)
    folder.check_enough()
    names = folder.class_names

    def maker(path: Path, label: int) -> Callable[[], bytes | None]:
        return lambda: file_example(path, label, names[label], on_skip)

    return EncodedSplits(names, {split: [maker(f.path, f.label) for f in folder.split(split)] for split in SPLITS})


def file_example(path: Path, label: int, text: str, on_skip: SkipHandler = warn_skipped) -> bytes | None:
    """An image file as a serialised Example: its own bytes when JPEG or PNG, else its pixels as PNG.

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


def _load(request: DataRequest) -> Dataset:
    """At the images' own size for a new run; at a trained model's input size (`request.fit`) for
    evaluating or exporting it (then only `request.splits` are decoded)."""
    if request.fit is not None:
        return load_image_folder(request.data_dir, request.fit, request.validation_percentage,
                                 request.testing_percentage, splits=request.splits)
    return load_image_folder_as_is(request.data_dir, request.validation_percentage, request.testing_percentage)


def _encoded(request: DataRequest) -> EncodedSplits:
    return folder_records(request.data_dir, request.validation_percentage, request.testing_percentage)


#: Split by file-name hash (10% validation, 10% test by default), not by a held-out count.
register_reader(DatasetReader("image-folder", _load, default_validation=None, encoded=_encoded))
