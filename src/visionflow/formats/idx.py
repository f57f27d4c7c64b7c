"""Reader and writer for the IDX format of the MNIST files (raw or gzip-compressed).

Layout: two zero bytes, a type code, the number of dimensions, then one big-endian uint32
per dimension, then the data in C order (big-endian for multi-byte types).  The reader checks
every part of that against the file's real size, so a truncated download or a file of another
kind is reported by name instead of producing garbage arrays.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

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

#: Refuse headers that claim more than this many elements (4 GiB of uint8): a corrupt header
#: must not make us allocate arbitrary amounts of memory.
MAX_ELEMENTS = 1 << 32


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                try:
                    return gzip.decompress(f.read())
                except (OSError, EOFError, zlib.error) as e:
                    raise InputError(f"{path}: corrupt gzip data ({e})") from None
            return f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected an IDX file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a native-endian array; `name` is used in error messages."""
    if len(data) < 4:
        raise InputError(f"{name}: truncated IDX header ({len(data)} bytes, need at least 4)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or data[3] == 0:
        magic = int.from_bytes(data[:4], "big")
        raise InputError(
            f"{name}: bad magic number 0x{magic:08x} "
            "(an IDX file starts with 0x0000, a type code 08/09/0b/0c/0d/0e and the number of dimensions)"
        )
    dtype = _DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise InputError(f"{name}: truncated IDX header ({len(data)} bytes, need {header} for {ndim} dimensions)")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    count = int(np.prod(dims, dtype=np.uint64)) if dims else 0
    if count > MAX_ELEMENTS:
        raise InputError(f"{name}: header claims {count} elements (dims {dims}), more than {MAX_ELEMENTS}")
    expected = count * dtype.itemsize
    actual = len(data) - header
    if actual < expected:
        raise InputError(f"{name}: truncated: dims {dims} need {expected} data bytes, file has {actual}")
    if actual > expected:
        raise InputError(f"{name}: oversized: dims {dims} need {expected} data bytes, file has {actual - expected} extra")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally .gz); errors name the file and the problem."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


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
