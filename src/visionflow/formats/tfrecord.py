"""TFRecord framing: read and write files of length-prefixed, CRC-checked records.

A TFRecord file is a sequence of records, each framed as

    uint64 length (little endian)
    uint32 masked CRC-32C of the 8 length bytes
    length bytes of data
    uint32 masked CRC-32C of the data

where masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32).  Every CRC is checked,
so a corrupted or truncated file is reported — file, record index and byte offset — instead of
read as garbage.  CRC-32C comes from google-crc32c (hardware instructions where the CPU has
them).  What the records hold (usually `tf.train.Example`s) is tfexample.py's business.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import google_crc32c

from ..core.fsio import atomic_write, open_input
from ..errors import InputError

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")  # length, masked CRC of the length
_FOOTER = struct.Struct("<I")  # masked CRC of the data
_LENGTH = struct.Struct("<Q")
#: One record larger than this is taken for a corrupt length field rather than allocated.
MAX_RECORD_BYTES = 1 << 30


class TFRecordError(InputError):
    """A TFRecord file whose framing or record contents are broken (one line: file, record, problem)."""


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of `data` (masking keeps a CRC of CRC-bearing data well mixed)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """`data` framed as one TFRecord record (what a writer appends to the file)."""
    length = _LENGTH.pack(len(data))
    return length + _FOOTER.pack(masked_crc32c(length)) + data + _FOOTER.pack(masked_crc32c(data))


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """The data of each record of the TFRecord file at `path`, CRCs checked, in file order.

    The file is streamed (one record in memory at a time); errors name `path`.
    """
    path = Path(path)
    with open_input(path, "a TFRecord file", buffering=1 << 20) as handle:
        yield from iter_records(handle, str(path))


def iter_records(stream: BinaryIO, name: str = "tfrecord") -> Iterator[bytes]:
    """Records from an open binary stream; `name` is used in error messages."""
    index = offset = 0
    while True:
        header = stream.read(_HEADER.size)
        if not header:
            return
        where = f"{name}: record {index} at byte {offset}"
        if len(header) < _HEADER.size:
            raise TFRecordError(f"{where}: truncated record (the file ends inside its {_HEADER.size}-byte header "
                                f"after {len(header)} bytes)")
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise TFRecordError(f"{where}: length CRC mismatch (corrupt file, or not a TFRecord file)")
        if length > MAX_RECORD_BYTES:
            raise TFRecordError(f"{where}: record length {length} exceeds {MAX_RECORD_BYTES} bytes")
        data = stream.read(length)
        footer = stream.read(_FOOTER.size)
        if len(data) < length or len(footer) < _FOOTER.size:
            raise TFRecordError(f"{where}: truncated record (the file ends inside its {length} data bytes or CRC)")
        if masked_crc32c(data) != _FOOTER.unpack(footer)[0]:
            raise TFRecordError(f"{where}: data CRC mismatch (corrupt record)")
        yield data
        index += 1
        offset += _HEADER.size + length + _FOOTER.size


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> int:
    """Write `records` as the TFRecord file `path`, atomically; returns how many were written.

    Readers see the old file or the complete new one, never a partly written shard.
    """
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "wb", buffering=1 << 20) as f:
            for data in records:
                f.write(frame_record(data))
                count += 1

    atomic_write(path, write)
    return count
