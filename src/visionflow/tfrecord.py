"""A small TFRecord reader: framed records with CRC-32C checks, decoded as `tf.train.Example`s.

A TFRecord file is a sequence of records, each framed as

    uint64 length (little endian)
    uint32 masked CRC-32C of the 8 length bytes
    length bytes of data
    uint32 masked CRC-32C of the data

where masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2**32).  Every CRC is checked,
so a truncated or corrupted file is reported (record number and byte offset) instead of read
as garbage.  The data of each record is a serialised `tf.train.Example` protocol buffer, decoded
here by hand from the protobuf wire format (varints and length-delimited fields), which needs
no generated code and no TensorFlow:

    Example    { Features features = 1; }
    Features   { map<string, Feature> feature = 1; }
    Feature    { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList  { repeated bytes value = 1; }
    FloatList  { repeated float value = 1 [packed = true]; }
    Int64List  { repeated int64 value = 1 [packed = true]; }

Writers may emit repeated scalars packed or unpacked; both are accepted, as protobuf requires.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import InputError

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")  # length, masked CRC of the length
_FOOTER = struct.Struct("<I")  # masked CRC of the data
# One record larger than this is taken for a corrupt length field rather than allocated.
MAX_RECORD_BYTES = 1 << 30

Feature = list[bytes] | list[float] | list[int]


class TFRecordError(InputError):
    """A TFRecord file whose framing or Example encoding is broken (one line: file, record, problem)."""


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C of `data` (masking keeps a CRC of CRC-bearing data well mixed)."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """`data` framed as one TFRecord record (what a writer appends to the file)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """The data of each record of the TFRecord file at `path`, CRCs checked, in file order."""
    path = Path(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None
    with handle:
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
            raise TFRecordError(f"{where}: truncated header ({len(header)} of {_HEADER.size} bytes)")
        length, length_crc = _HEADER.unpack(header)
        if masked_crc32c(header[:8]) != length_crc:
            raise TFRecordError(f"{where}: length CRC mismatch (corrupt file, or not a TFRecord file)")
        if length > MAX_RECORD_BYTES:
            raise TFRecordError(f"{where}: record length {length} exceeds {MAX_RECORD_BYTES} bytes")
        data = stream.read(length)
        footer = stream.read(_FOOTER.size)
        if len(data) < length or len(footer) < _FOOTER.size:
            raise TFRecordError(f"{where}: truncated record (file ends inside its {length} data bytes or CRC)")
        if masked_crc32c(data) != _FOOTER.unpack(footer)[0]:
            raise TFRecordError(f"{where}: data CRC mismatch (corrupt record)")
        yield data
        index += 1
        offset += _HEADER.size + length + _FOOTER.size


def read_examples(path: str | os.PathLike) -> Iterator[dict[str, Feature]]:
    """Each record of `path` decoded as a `tf.train.Example`: feature name → list of values.

    Values are `bytes` for a BytesList, `float` for a FloatList and `int` for an Int64List, e.g.
    {"image/encoded": [b"\\xff\\xd8..."], "image/class/label": [3]}.
    """
    for index, data in enumerate(read_records(path)):
        yield parse_example(data, f"{path}: record {index}")


def parse_example(data: bytes, where: str = "example") -> dict[str, Feature]:
    """One serialised `tf.train.Example` → {feature name: values}; TFRecordError when malformed."""
    features: dict[str, Feature] = {}
    try:
        for field, wire, value in _fields(data):
            if field == 1 and wire == 2:  # Example.features
                for entry_field, entry_wire, entry in _fields(value):
                    if entry_field == 1 and entry_wire == 2:  # Features.feature map entry
                        key, feature = _map_entry(entry)
                        features[key] = feature
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise TFRecordError(f"{where}: not a tf.train.Example ({e})") from None
    return features


def _map_entry(data: bytes) -> tuple[str, Feature]:
    key, feature = "", []
    for field, wire, value in _fields(data):
        if field == 1 and wire == 2:
            key = value.decode("utf-8")
        elif field == 2 and wire == 2:
            feature = _feature(value)
    return key, feature


def _feature(data: bytes) -> Feature:
    """A Feature message: whichever of its three lists is set (the last one, as protobuf merges)."""
    values: Feature = []
    for field, wire, value in _fields(data):
        if wire != 2:
            continue
        if field == 1:
            values = [v for f, w, v in _fields(value) if f == 1 and w == 2]
        elif field == 2:
            values = _floats(value)
        elif field == 3:
            values = _int64s(value)
    return values


def _floats(data: bytes) -> list[float]:
    out: list[float] = []
    for field, wire, value in _fields(data):
        if field != 1:
            continue
        if wire == 2:  # packed
            if len(value) % 4:
                raise ValueError(f"packed floats of {len(value)} bytes")
            out.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif wire == 5:
            out.append(struct.unpack("<f", value)[0])
    return out


def _int64s(data: bytes) -> list[int]:
    out: list[int] = []
    for field, wire, value in _fields(data):
        if field != 1:
            continue
        if wire == 2:  # packed
            pos = 0
            while pos < len(value):
                raw, pos = _varint(value, pos)
                out.append(_signed64(raw))
        elif wire == 0:
            out.append(_signed64(value))
    return out


def _signed64(raw: int) -> int:
    raw &= (1 << 64) - 1
    return raw - (1 << 64) if raw >= 1 << 63 else raw


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; returns (value, position after it)."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of each field of a message.

    The value is an int for varints (wire type 0) and bytes otherwise: 8 bytes for fixed64 (1),
    the payload for length-delimited fields (2) and 4 bytes for fixed32 (5).  Groups (3, 4) are
    obsolete and never appear in an Example; they are rejected like any unknown wire type.
    """
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            yield field, wire, value
            continue
        if wire == 2:
            size, pos = _varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
        if pos + size > len(data):
            raise ValueError(f"field {field} runs past the end of its message")
        yield field, wire, data[pos : pos + size]
        pos += size
