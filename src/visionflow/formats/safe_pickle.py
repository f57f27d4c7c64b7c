"""Pickles of plain data, read without running anything they might ask for.

Some datasets (CIFAR's python batches) ship as pickles, and a pickle can call any importable
function while it loads.  `load_plain` uses an unpickler that resolves only the few numpy
names an array needs — each guarded to the one use an array makes of it — so what comes back
is built from dicts, lists, strings, numbers and plain numeric numpy arrays, and nothing else.
The caller still checks that it got exactly the structure it expects.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from ..errors import InputError


class _Refused(Exception):
    """Raised inside the unpickler; turned into an InputError naming the file."""


class _NdarrayType:
    """What the pickle's `numpy.ndarray` global resolves to: a marker, never callable."""


_NDARRAY = _NdarrayType()
_DTYPES = ("u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1")


def _reconstruct(subtype: Any, shape: Any, code: Any) -> np.ndarray:
    """numpy's `_reconstruct` as pickled arrays call it: an empty array whose state BUILD sets next."""
    if subtype is not _NDARRAY or tuple(shape) != (0,) or code not in (b"b", "b"):
        raise _Refused("numpy _reconstruct called with unexpected arguments")
    return np.ndarray((0,), np.uint8)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """numpy's `_frombuffer` as protocol-5 pickles call it: an array over in-band bytes."""
    if (not isinstance(buffer, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or order not in ("C", "F")
            or not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape)):
        raise _Refused("numpy _frombuffer called with unexpected arguments")
    return np.frombuffer(buffer, dtype).reshape(shape, order=order)


def _dtype(code: Any, align: Any = 0, copy: Any = 1) -> np.dtype:
    text = code.decode("ascii", "replace") if isinstance(code, bytes) else code
    if text not in _DTYPES:
        raise _Refused(f"numpy dtype {text!r} (only plain numeric dtypes are accepted)")
    return np.dtype(text)


def _encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """`_codecs.encode` as Python 3 calls it in protocol 0–2 pickles: how those spell a bytes
    object (its latin-1 text).  Nothing but str → bytes in latin-1 is accepted."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode called with unexpected arguments")
    return text.encode("latin-1")


_ALLOWED = {
    ("_codecs", "encode"): _encode,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build dicts, lists, strings, numbers and plain numpy arrays — nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise _Refused(f"unexpected pickle global {module}.{name}")
        return _ALLOWED[(module, name)]

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("unexpected persistent id")


def load_plain(data: bytes, name: str, what: str, holds: str) -> Any:
    """Unpickle `data` with the restricted unpickler (Python 2 strings come back as bytes).

    Raises InputError for a refused global or any malformed pickle, naming the file `name`,
    `what` it should be ("a CIFAR python batch") and what that `holds` ("a dict of bytes, ints
    and numpy arrays").
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise InputError(f"{name}: refusing to load: {e} ({what} holds only {holds})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, UnicodeDecodeError, RecursionError) as e:
        raise InputError(f"{name}: not {what} (unreadable pickle: {e})") from None
