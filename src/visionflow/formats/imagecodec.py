"""Encoded images ↔ uint8 arrays, in bulk: the decoding behind TFRecord datasets and `convert`.

JPEGs are decoded in batches by TorchCodec (libjpeg-turbo), or by torchvision.io where TorchCodec
cannot load (torchvision's decoders are the same code, deprecated in its favour since 0.29): on
the 2-core CPU either takes 30–40 µs per 32×32 CIFAR image against 120–170 µs with PIL,
pixel-identical (docs/benchmarks.md, "Data formats").  PNG, WebP and GIF go through the same
library's general decoder, anything else through PIL.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    import PIL.Image

JPEG_MAGIC = b"\xff\xd8\xff"
#: How many JPEGs one torchvision call decodes: bounds the temporary tensors, not the speed.
CHUNK = 1024
#: PIL modes of single-channel images.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def decode_images(encoded: Sequence[bytes], where: Callable[[int], str], channels: int | None = None) -> np.ndarray:
    """Encoded images → (N, H, W, C) uint8, C = `channels` (1 grey or 3 RGB).

    With `channels` None it is 1 when the first image is greyscale, else 3.  All images must
    have one size (an array dataset has one shape); `where(i)` names image i in errors.
    """
    if not encoded:
        return np.zeros((0, 0, 0, channels or 3), np.uint8)
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
def open_image(data: bytes, name: str) -> Iterator["PIL.Image.Image"]:
    """`data` opened by PIL for the `with` block; any failure to read it, there or inside the
    block, is an InputError "NAME: not a readable image (why)"."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            yield image
    except UnidentifiedImageError:
        raise InputError(f"{name}: not a readable image (unknown format)") from None
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: not a readable image ({e})") from None


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
