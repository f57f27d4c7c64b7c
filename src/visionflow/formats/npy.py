""".npy files read without trusting them: no pickles, and a header that must fit the file.

`np.load` allocates whatever shape a header declares, so a 1 KB file claiming (10**12, 28, 28)
exhausts memory before any check could run.  Here the header is parsed first and checked —
plain numeric dtype, element count within `MAX_ARRAY_ELEMENTS`, data bytes present in the file
— and only then is the array read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.fsio import open_input
from ..core.limits import MAX_ARRAY_ELEMENTS
from ..errors import InputError


def read_npy_file(path: str | os.PathLike) -> np.ndarray:
    """The array in the .npy file `path`; InputError naming it for anything unreadable or too large."""
    path = Path(path)
    with open_input(path, "a .npy array") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"format version {version[0]}.{version[1]} is not supported")
            shape, fortran, dtype = read_header(f, max_header_size=10_000)
        except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors, ...
            raise InputError(f"{path}: not a readable .npy array ({type(e).__name__}: {e})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise InputError(f"{path}: not a readable .npy array (dtype {dtype}: only plain numbers are read, never pickles)")
        count = 1
        for n in shape:
            count *= n
        if count > MAX_ARRAY_ELEMENTS:
            raise InputError(f"{path}: header claims shape {shape} ({count:,} elements), more than "
                             f"{MAX_ARRAY_ELEMENTS:,}")
        need = count * dtype.itemsize
        have = os.fstat(f.fileno()).st_size - f.tell()
        if have < need:
            raise InputError(f"{path}: truncated: shape {shape} of {dtype} needs {need:,} data bytes, file has {have:,}")
        data = np.frombuffer(f.read(need), dtype=dtype, count=count)
    return data.reshape(shape, order="F" if fortran else "C")
