"""Reader and writer for the IDX format of the MNIST files (raw or gzip-compressed).

Layout: two zero bytes, a type code, the number of dimensions, then one big-endian uint32
per dimension, then the data in C order (big-endian for multi-byte types).  The reader checks
every part of that against the file's real size, so a truncated download or a file of another
kind is reported by name instead of producing garbage arrays; it reads the header first and
the data only as far as the header declares, so a lying header or a decompression bomb is
refused within the limits of `core.limits`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..core.limits import MAX_ARRAY_ELEMENTS, MAX_DECOMPRESSED_BYTES
from ..errors import InputError

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder(">") if dt.itemsize > 1 else dt: code for code, dt in _DTYPES.items()}


def _open_stream(path: Path) -> BinaryIO:
    """The file's decompressed bytes as a stream: gzip when it starts with gzip's magic."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected an IDX file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def gunzip_bounded(data: bytes, name: str, limit: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """gzip `data` decompressed, refusing (InputError naming `name`) more than `limit` bytes or a
    truncated or corrupt stream: a downloaded file is decompressed only as far as the limit."""
    decoder = zlib.decompressobj(wbits=31)
    try:
        out = decoder.decompress(data, limit + 1)
    except zlib.error as e:
        raise InputError(f"{name}: corrupt gzip data ({e})") from None
    if len(out) > limit:
        raise InputError(f"{name}: decompresses to more than {limit:,} bytes (the limit)")
    if not decoder.eof:
        raise InputError(f"{name}: corrupt gzip data (truncated)")
    return out


def _header(head: bytes, name: str) -> tuple[np.dtype, list[int], int]:
    """(dtype, dims, header length) of an IDX header at the start of `head`."""
    if len(head) < 4:
        raise InputError(f"{name}: truncated IDX header ({len(head)} bytes, need at least 4)")
    if head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES or head[3] == 0:
        magic = int.from_bytes(head[:4], "big")
        raise InputError(
            f"{name}: bad magic number 0x{magic:08x} "
            "(an IDX file starts with 0x0000, a type code 08/09/0b/0c/0d/0e and the number of dimensions)"
        )
    ndim = head[3]
    size = 4 + 4 * ndim
    if len(head) < size:
        raise InputError(f"{name}: truncated IDX header ({len(head)} bytes, need {size} for {ndim} dimensions)")
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    count = _count(dims)
    if count > MAX_ARRAY_ELEMENTS:
        raise InputError(f"{name}: header claims {count} elements (dims {dims}), more than {MAX_ARRAY_ELEMENTS}")
    return _DTYPES[head[2]], dims, size


def _count(dims: list[int]) -> int:
    count = 1
    for d in dims:
        count *= d
    return count


def _array(data: bytes, dtype: np.dtype, dims: list[int], offset: int, name: str) -> np.ndarray:
    count = _count(dims)
    expected = count * dtype.itemsize
    actual = len(data) - offset
    if actual < expected:
        raise InputError(f"{name}: truncated: dims {dims} need {expected} data bytes, file has {actual}")
    if actual > expected:
        raise InputError(f"{name}: oversized: dims {dims} need {expected} data bytes, file has {actual - expected} extra")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a native-endian array; `name` is used in error messages."""
    dtype, dims, offset = _header(data, name)
    return _array(data, dtype, dims, offset, name)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally .gz); errors name the file and the problem.

    The header is read first and the data only as far as it declares (plus one byte, to catch
    extra data), so a lying header or a decompression bomb costs no more than the limits allow.
    """
    path = Path(path)
    name = str(path)
    try:
        with _open_stream(path) as stream:
            head = stream.read(4)
            if len(head) == 4 and head[:2] == b"\0\0":
                head += stream.read(4 * head[3])
            dtype, dims, offset = _header(head, name)
            expected = _count(dims) * dtype.itemsize
            if expected > MAX_DECOMPRESSED_BYTES:
                raise InputError(f"{name}: header claims {expected:,} data bytes, more than {MAX_DECOMPRESSED_BYTES:,}")
            data = head + _read_at_most(stream, expected + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"{name}: corrupt gzip data ({e})") from None
    return _array(data, dtype, dims, offset, name)


def _read_at_most(stream: BinaryIO, limit: int, chunk: int = 1 << 24) -> bytes:
    """Up to `limit` bytes of `stream`, read in chunks, so a header that claims more than the
    stream holds allocates only what is really there."""
    parts = []
    while limit > 0:
        part = stream.read(min(limit, chunk))
        if not part:
            break
        parts.append(part)
        limit -= len(part)
    return b"".join(parts)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (the inverse of `parse_idx`)."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if big not in _CODES:
        raise ValueError(f"dtype {array.dtype} has no IDX type code")
    if not 1 <= array.ndim <= 255:
        raise ValueError("IDX needs 1 to 255 dimensions")
    header = bytes([0, 0, _CODES[big], array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=big).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write `array` as IDX; gzip-compress when `compress` or when the name ends in .gz."""
    from ..core.fsio import atomic_write_bytes

    path = Path(path)
    data = encode_idx(array)
    if compress or (compress is None and path.suffix == ".gz"):
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)
