"""Request values → model input: (N, H, W, C) uint8 pixels, checked strictly.

Two kinds of value carry images:
  numbers   nested lists (or a typed tensor) of pixels: integers 0–255, or floats 0–1 as
            `visionflow predict` takes them.  Out-of-range values are refused rather than
            clipped, since they almost always mean the client scaled its pixels differently.
  encoded   PNG / JPEG / … bytes, converted to the model's channels (greyscale or RGB) and
            resized (or cropped) to its H×W by `Preprocessing.fit_image`, as `visionflow
            predict` does with image files.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import re
from typing import Any

import numpy as np

from ..errors import InputError
from ..formats.imagecodec import open_image
from ..preprocessing import Preprocessing
from ..preprocessing import to_uint8 as pixels_to_uint8
from .errors import bad_request

_B64_SPACE = re.compile(rb"\s+")


@functools.lru_cache(maxsize=64)
def image_shapes(pre: Preprocessing) -> frozenset[tuple[int, ...]]:
    """The shapes one image may come in: (H, W) when greyscale, (H, W, C) and flat (H*W*C,)."""
    h, w, c = pre.height, pre.width, pre.channels
    return frozenset({(h, w, c), (h * w * c,)} | ({(h, w)} if c == 1 else set()))


def to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    """Integers 0–255 or floats 0–1 → uint8 (`preprocessing.to_uint8`); anything else is a 400."""
    if array.dtype.kind not in "iuf":
        raise bad_request(f"{where}: pixels must be numbers, not {_kind_name(array)}")
    try:
        return pixels_to_uint8(array, where)
    except InputError as e:
        raise bad_request(str(e)) from None


def numbers_array(value: Any, where: str) -> np.ndarray:
    """JSON nested lists → a rectangular numeric array (400 when ragged or not numbers).

    The dtype is NumPy's choice for the values (bool, int64 or float64), except that pixel
    lists of integers 0–255 (the usual request) come back as uint8 straight away.
    """
    fast = _pixel_bytes(value)
    if fast is not None:
        return fast
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise bad_request(f"{where}: not a rectangular array of numbers") from None
    if array.dtype.kind not in "iuf":
        raise bad_request(f"{where}: pixels must be numbers, not {_kind_name(array)}")
    return array


def _pixel_bytes(value: Any) -> np.ndarray | None:
    """Rectangular nested lists of ints 0–255 → uint8 array; None for anything else.

    `np.asarray` discovers a dtype over every value, then `to_uint8` range-checks and casts;
    `bytes(...)` converts, type- and range-checks in one C pass (a one-image 28×28 `:predict`
    body parses in 35 µs; 59 with `np.asarray`, 48 with `array.array("B")`).  Every other input
    goes the general way, so results and error messages are NumPy's.  A first value that is a
    bool goes that way too: NumPy calls an all-bool list booleans, and only a list led by a bool
    can be all bools.
    """
    level, shape = [value], []
    while type(level[0]) is list:
        lengths = set(map(len, level)) if set(map(type, level)) == {list} else None
        if lengths is None or len(lengths) != 1 or not (length := lengths.pop()):
            return None
        shape.append(length)
        level = list(itertools.chain.from_iterable(level))
    if type(level[0]) is not int:
        return None
    try:
        pixels = bytes(level)  # raises for anything but ints 0-255 (bools pass as 0/1, as in NumPy)
    except (TypeError, ValueError):
        return None
    return np.frombuffer(pixels, dtype=np.uint8).reshape(shape)


def one_image(array: np.ndarray, pre: Preprocessing, where: str) -> np.ndarray:
    """One image's pixels → (1, H, W, C) uint8."""
    if array.shape not in image_shapes(pre):
        raise bad_request(f"{where}: an image of shape {list(array.shape)} does not fit the model's "
                          f"{pre.height}x{pre.width}x{pre.channels} input")
    return to_uint8(array, where).reshape(1, pre.height, pre.width, pre.channels)


def image_batch(array: np.ndarray, pre: Preprocessing, where: str) -> np.ndarray:
    """A batch (N, then one image's shape) → (N, H, W, C) uint8."""
    if array.ndim < 2 or array.shape[1:] not in image_shapes(pre):
        raise bad_request(f"{where}: a batch of shape {list(array.shape)} does not hold "
                          f"{pre.height}x{pre.width}x{pre.channels} images (expected [N, {pre.height}, "
                          f"{pre.width}, {pre.channels}])")
    return to_uint8(array, where).reshape(len(array), pre.height, pre.width, pre.channels)


def b64_bytes(text: Any, where: str) -> bytes:
    """Standard or URL-safe base64 (whitespace ignored) → bytes."""
    if not isinstance(text, str):
        raise bad_request(f"{where}: \"b64\" must be a string")
    raw = _B64_SPACE.sub(b"", text.encode("ascii", errors="replace"))
    if b"-" in raw or b"_" in raw:
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{where}: \"b64\" is not valid base64") from None


def decode_image(data: bytes, pre: Preprocessing, where: str) -> np.ndarray:
    """Encoded image bytes → (1, H, W, C) uint8, converted and resized as the model expects.

    Formats and the pixel limit are those of every reader (`formats.imagecodec.open_image`).
    """
    try:
        with open_image(data, where) as image:
            array = pre.fit_image(image)
    except InputError as e:
        raise bad_request(str(e)) from None
    return array.reshape(1, pre.height, pre.width, pre.channels)


def _kind_name(array: np.ndarray) -> str:
    return {"b": "booleans", "U": "strings", "S": "strings", "O": "mixed values"}.get(array.dtype.kind, str(array.dtype))
