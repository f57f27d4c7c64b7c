"""Encoded images ↔ uint8 arrays, in bulk: the decoding behind TFRecord datasets and `convert`.

JPEGs are decoded in batches by TorchCodec (libjpeg-turbo), or by torchvision.io where TorchCodec
cannot load (torchvision's decoders are the same code, deprecated in its favour since 0.29): on
the 2-core CPU either takes 30–40 µs per 32×32 CIFAR image against 120–170 µs with PIL,
pixel-identical (docs/benchmarks.md, "Data formats").  PNG, WebP and GIF go through the same
library's general decoder, anything else through PIL.

Only the formats of `core.limits.IMAGE_FORMATS` are read, and an image declaring more than
`MAX_IMAGE_PIXELS` pixels is refused from its header, before any decoder allocates its pixels.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from ..core.limits import IMAGE_FORMATS, MAX_IMAGE_PIXELS
from ..errors import InputError

if TYPE_CHECKING:
    import PIL.Image

JPEG_MAGIC = b"\xff\xd8\xff"
#: How many JPEGs one torchvision call decodes: bounds the temporary tensors, not the speed.
CHUNK = 1024
#: How much of a file `header_size` looks at: JPEG frame headers follow the metadata segments.
HEADER_BYTES = 1 << 16
#: PIL modes of single-channel images.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def decode_images(encoded: Sequence[bytes], where: Callable[[int], str], channels: int | None = None) -> np.ndarray:
    """Encoded images → (N, H, W, C) uint8, C = `channels` (1 grey or 3 RGB).

    With `channels` None it is 1 when the first image is greyscale, else 3.  All images must
    have one size (an array dataset has one shape); `where(i)` names image i in errors.
    """
    if not encoded:
        return np.zeros((0, 0, 0, channels or 3), np.uint8)
    for i, data in enumerate(encoded):
        check_pixels(data, where(i))
    if channels is None:
        channels = stored_channels(encoded[0], where(0))
    import torch

    out = np.empty((0, 0, 0, channels), np.uint8)
    for start in range(0, len(encoded), CHUNK):
        chunk = _decode_chunk(encoded[start : start + CHUNK], start, where, channels)
        if start == 0:
            out = np.empty((len(encoded), chunk[0].shape[1], chunk[0].shape[2], channels), np.uint8)
        for offset, image in enumerate(chunk):
            if image.shape[1:] != out.shape[1:3]:
                h, w = out.shape[1:3]
                raise InputError(f"{where(start + offset)}: image is {image.shape[2]}×{image.shape[1]} pixels, "
                                 f"the first one {w}×{h} (an image dataset loaded as arrays needs one size)")
        out[start : start + len(chunk)] = torch.stack(chunk).permute(0, 2, 3, 1).numpy()
    return out


@functools.lru_cache(maxsize=None)
def _decoders() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(decode_jpeg, decode_image) of TorchCodec, else of torchvision.io (same signatures, same libjpeg-turbo)."""
    try:
        from torchcodec.decoders import decode_image, decode_jpeg
    except Exception:  # not installed, or built for another torch
        from torchvision.io import decode_image, decode_jpeg

        def quiet(decode: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    return decode(*args, **kwargs)
            return call

        return quiet(decode_jpeg), quiet(decode_image)
    return decode_jpeg, decode_image


def _decode_chunk(encoded: Sequence[bytes], start: int, where: Callable[[int], str], channels: int) -> list:
    """(C, H, W) uint8 tensors of `encoded`; JPEGs in one batched call when they all decode."""
    import torch

    decode_jpeg, _ = _decoders()
    images: list = [None] * len(encoded)
    jpegs = [i for i, data in enumerate(encoded) if data[:3] == JPEG_MAGIC]
    if jpegs:
        try:
            decoded = decode_jpeg([torch.frombuffer(bytearray(encoded[i]), dtype=torch.uint8) for i in jpegs],
                                  mode="GRAY" if channels == 1 else "RGB")
        except RuntimeError:
            decoded = [None] * len(jpegs)  # one is broken: decode one by one below, to name it
        for i, image in zip(jpegs, decoded):
            images[i] = image
    for i, image in enumerate(images):
        if image is None:
            images[i] = _decode_one(encoded[i], where(start + i), channels)
    return images


@contextlib.contextmanager
def open_image(data: bytes | Path, name: str) -> Iterator["PIL.Image.Image"]:
    """`data` (bytes or a file) opened by PIL for the `with` block, header read, size checked.

    Only `IMAGE_FORMATS` are recognised and at most `MAX_IMAGE_PIXELS` pixels accepted; any
    failure to read it, there or inside the block, is an InputError "NAME: ..." in one line.
    """
    from PIL import Image, UnidentifiedImageError

    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        head = data[:HEADER_BYTES] if isinstance(data, bytes) else _file_head(data)
        size = header_size(head)
        if size is not None:
            _check_size(size, name)
        with Image.open(source, formats=IMAGE_FORMATS) as image:
            _check_size(image.size, name)
            yield image
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not a readable image ({', '.join(IMAGE_FORMATS)})") from None
    except Image.DecompressionBombError:
        raise InputError(f"{name}: image is too large (at most {MAX_IMAGE_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"{name}: not a readable image ({e})") from None


def _file_head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEADER_BYTES)


def _check_size(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"{name}: image of {width}x{height} pixels is too large (at most {MAX_IMAGE_PIXELS:,} pixels)")


def check_pixels(data: bytes, name: str) -> None:
    """InputError unless the encoded image declares at most MAX_IMAGE_PIXELS pixels (and is of a
    readable format): PNG and JPEG sizes are read from their headers here (a few µs), others by PIL."""
    size = header_size(data)
    if size is not None:
        _check_size(size, name)
        return
    with open_image(data, name):
        pass


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's frame header; None for anything else (or a
    JPEG whose markers are not as expected: PIL then reads it)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:3] != JPEG_MAGIC:
        return None
    i, n = 2, len(data)
    while i + 9 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def stored_channels(data: bytes, name: str) -> int:
    """1 when the encoded image is greyscale, else 3 (read from its header; nothing is decoded)."""
    with open_image(data, name) as image:
        return 1 if image.mode in GREY_MODES else 3


def _decode_one(data: bytes, name: str, channels: int):
    """One image → (C, H, W) uint8 tensor; InputError naming `name`."""
    import torch

    _, decode_image = _decoders()
    try:
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode="GRAY" if channels == 1 else "RGB")
        if image.ndim == 3:
            return image
    except (RuntimeError, ValueError):
        pass
    with open_image(data, name) as image:
        array = np.array(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1)).permute(2, 0, 1)


def encode_png(image: np.ndarray) -> bytes:
    """(H, W, C) uint8, C = 1 or 3 → PNG bytes (lossless; zlib level 6)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()
