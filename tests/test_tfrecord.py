"""The TFRecord reader: framing CRCs, Example decoding (checked against protobuf itself), real files."""

from __future__ import annotations

import io
import struct

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED
from visionflow.errors import InputError
from visionflow.tfrecord import (TFRecordError, frame_record, iter_records, masked_crc32c, parse_example,
                                 read_examples)

CIFAR = SHARED / "data" / "cifar10-jpeg"
needs_cifar = pytest.mark.skipif(not (CIFAR / "test-00000-of-00001.tfrecord").exists(),
                                 reason=f"CIFAR-10 JPEG TFRecords not found in {CIFAR} (../shared is not in a user checkout)")


def _example_class():
    """tf.train.Example built from its .proto definition by protobuf itself: an independent encoder."""
    T = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="vf_example.proto", package="vftest", syntax="proto3")

    def message(name, *fields):
        m = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
        return m

    R, O = T.LABEL_REPEATED, T.LABEL_OPTIONAL
    message("BytesList", ("value", 1, T.TYPE_BYTES, R, None))
    message("FloatList", ("value", 1, T.TYPE_FLOAT, R, None))
    message("Int64List", ("value", 1, T.TYPE_INT64, R, None))
    feature = message("Feature", ("bytes_list", 1, T.TYPE_MESSAGE, O, ".vftest.BytesList"),
                      ("float_list", 2, T.TYPE_MESSAGE, O, ".vftest.FloatList"),
                      ("int64_list", 3, T.TYPE_MESSAGE, O, ".vftest.Int64List"))
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0
    features = message("Features", ("feature", 1, T.TYPE_MESSAGE, R, ".vftest.Features.FeatureEntry"))
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=O)
    entry.field.add(name="value", number=2, type=T.TYPE_MESSAGE, label=O, type_name=".vftest.Feature")
    message("Example", ("features", 1, T.TYPE_MESSAGE, O, ".vftest.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("vftest.Example"))


Example = _example_class()

feature_values = st.one_of(
    st.lists(st.binary(max_size=20), max_size=4).map(lambda v: ("bytes", v)),
    st.lists(st.floats(allow_nan=False, width=32), max_size=4).map(lambda v: ("float", v)),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4).map(lambda v: ("int64", v)),
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=12), feature_values, max_size=5))
def test_examples_decode_as_protobuf_encodes_them(features):
    example = Example()
    for key, (kind, values) in features.items():
        getattr(example.features.feature[key], f"{kind}_list").value.extend(values)
    parsed = parse_example(example.SerializeToString())
    assert parsed == {key: list(values) for key, (_, values) in features.items()}


def test_unpacked_repeated_scalars_are_accepted():
    # Int64List with two unpacked varints (wire type 0) and FloatList with one fixed32 (wire type 5)
    ints = b"\x08\x07\x08\x7f"
    floats = b"\x0d" + struct.pack("<f", 2.5)
    def entry(key: bytes, feature: bytes) -> bytes:
        body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature)]) + feature
        return b"\x0a" + bytes([len(body)]) + body
    features = entry(b"i", b"\x1a" + bytes([len(ints)]) + ints) + entry(b"f", b"\x12" + bytes([len(floats)]) + floats)
    data = b"\x0a" + bytes([len(features)]) + features
    assert parse_example(data) == {"i": [7, 127], "f": [2.5]}


def test_framing_roundtrip_and_known_crc():
    # CRC-32C("123456789") = 0xE3069283 (RFC 3720); masked as TFRecord masks it
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
    records = [b"", b"one", bytes(range(256)) * 3]
    stream = io.BytesIO(b"".join(frame_record(r) for r in records))
    assert list(iter_records(stream)) == records


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:5], "truncated header"),
    (lambda b: b[:-2], "truncated record"),
    (lambda b: b[:12] + b"X" + b[13:], "data CRC mismatch"),
    (lambda b: bytes([b[0] ^ 1]) + b[1:], "length CRC mismatch"),
])
def test_damaged_framing_is_reported(damage, message):
    good = frame_record(b"first") + frame_record(b"second record")
    with pytest.raises(TFRecordError, match=message):
        list(iter_records(io.BytesIO(damage(good[len(frame_record(b"first")):])), "f.tfrecord"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_give_records_or_a_clean_error(data):
    try:
        records = list(iter_records(io.BytesIO(data), "random"))
    except TFRecordError as e:
        assert str(e).startswith("random: record ")
        return
    assert b"".join(frame_record(r) for r in records) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_payload_in_valid_framing_parses_or_fails_cleanly(payload):
    stream = io.BytesIO(frame_record(payload))
    (record,) = iter_records(stream)
    try:
        parsed = parse_example(record, "payload")
    except InputError as e:
        assert str(e).startswith("payload: not a tf.train.Example")
        return
    assert isinstance(parsed, dict)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        list(read_examples(tmp_path / "nope.tfrecord"))


@needs_cifar
def test_reads_real_cifar_records():
    from PIL import Image

    names = (CIFAR / "labels.txt").read_text().split()
    first = next(read_examples(CIFAR / "test-00000-of-00001.tfrecord"))
    assert set(first) >= {"image/encoded", "image/class/label"}
    assert 0 <= first["image/class/label"][0] < len(names) == 10
    with Image.open(io.BytesIO(first["image/encoded"][0])) as image:
        assert image.size == (32, 32) and image.format == "JPEG"
