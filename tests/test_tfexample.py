"""tf.train.Example decoding and encoding, checked against an independently built protobuf class and real records."""

from __future__ import annotations

import io
import struct

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CIFAR_DIR, needs_cifar
from visionflow.errors import InputError
from visionflow.formats.tfexample import ImageRecord, encode_example, image_example, image_record, parse_example, read_examples
from visionflow.formats.tfrecord import TFRecordError, read_records


EXAMPLE_PROTO = """
name: "vf_example.proto" package: "vftest" syntax: "proto3"
message_type { name: "BytesList" field { name: "value" number: 1 type: TYPE_BYTES label: LABEL_REPEATED } }
message_type { name: "FloatList" field { name: "value" number: 1 type: TYPE_FLOAT label: LABEL_REPEATED } }
message_type { name: "Int64List" field { name: "value" number: 1 type: TYPE_INT64 label: LABEL_REPEATED } }
message_type {
  name: "Feature"
  field { name: "bytes_list" number: 1 type: TYPE_MESSAGE label: LABEL_OPTIONAL type_name: ".vftest.BytesList" oneof_index: 0 }
  field { name: "float_list" number: 2 type: TYPE_MESSAGE label: LABEL_OPTIONAL type_name: ".vftest.FloatList" oneof_index: 0 }
  field { name: "int64_list" number: 3 type: TYPE_MESSAGE label: LABEL_OPTIONAL type_name: ".vftest.Int64List" oneof_index: 0 }
  oneof_decl { name: "kind" }
}
message_type {
  name: "Features"
  field { name: "feature" number: 1 type: TYPE_MESSAGE label: LABEL_REPEATED type_name: ".vftest.Features.FeatureEntry" }
  nested_type {
    name: "FeatureEntry" options { map_entry: true }
    field { name: "key" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
    field { name: "value" number: 2 type: TYPE_MESSAGE label: LABEL_OPTIONAL type_name: ".vftest.Feature" }
  }
}
message_type { name: "Example" field { name: "features" number: 1 type: TYPE_MESSAGE label: LABEL_OPTIONAL type_name: ".vftest.Features" } }
"""


def _reference_example_class():
    """tf.train.Example from a text-format descriptor of its .proto, built by protobuf itself: an encoder
    written independently of ours."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(text_format.Parse(EXAMPLE_PROTO, descriptor_pb2.FileDescriptorProto()))
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("vftest.Example"))


Reference = _reference_example_class()

float32s = st.floats(allow_nan=False, width=32)
feature_values = st.one_of(
    st.lists(st.binary(max_size=20), min_size=1, max_size=4).map(lambda v: ("bytes", v)),
    st.lists(float32s, min_size=1, max_size=4).map(lambda v: ("float", v)),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=4).map(lambda v: ("int64", v)),
)
feature_dicts = st.dictionaries(st.text(max_size=12), feature_values, max_size=5)


def _reference(features) -> bytes:
    example = Reference()
    for key, (kind, values) in features.items():
        getattr(example.features.feature[key], f"{kind}_list").value.extend(values)
    return example.SerializeToString(deterministic=True)


@settings(max_examples=150, deadline=None)
@given(feature_dicts)
def test_decodes_what_protobuf_encodes(features):
    assert parse_example(_reference(features)) == {k: list(v) for k, (_, v) in features.items()}


@settings(max_examples=150, deadline=None)
@given(feature_dicts)
def test_encodes_byte_for_byte_like_protobuf(features):
    ours = encode_example({k: [float(x) for x in v] if kind == "float" else v for k, (kind, v) in features.items()})
    assert ours == _reference(features)
    assert Reference.FromString(ours) == Reference.FromString(_reference(features))


def test_unpacked_repeated_scalars_are_accepted():
    # Int64List with two unpacked varints (wire type 0) and FloatList with one fixed32 (wire type 5)
    ints = b"\x08\x07\x08\x7f"
    floats = b"\x0d" + struct.pack("<f", 2.5)

    def entry(key: bytes, feature: bytes) -> bytes:
        body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature)]) + feature
        return b"\x0a" + bytes([len(body)]) + body

    features = entry(b"i", b"\x1a" + bytes([len(ints)]) + ints) + entry(b"f", b"\x12" + bytes([len(floats)]) + floats)
    assert parse_example(b"\x0a" + bytes([len(features)]) + features) == {"i": [7, 127], "f": [2.5]}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_random_payload_parses_or_fails_cleanly(payload):
    try:
        parsed = parse_example(payload, "payload")
    except InputError as e:
        assert str(e).startswith("payload: not a tf.train.Example")
        return
    assert isinstance(parsed, dict)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=50), st.integers(0, 2**40), st.sampled_from([None, "png", "jpeg"]),
       st.none() | st.integers(1, 5000), st.none() | st.text(max_size=10))
def test_image_records_round_trip(encoded, label, fmt, size, text):
    data = image_example(encoded, label, fmt, size, size, text)
    assert image_record(data) == ImageRecord(encoded, label, fmt, size, size, text)


def test_image_record_without_label_names_the_record():
    data = encode_example({"image/encoded": b"\xff\xd8\xff", "image/class/text": "cat"})
    with pytest.raises(TFRecordError, match=r"^f: record 3: needs one int64 value in feature 'image/class/label'"):
        image_record(data, "f: record 3")
    with pytest.raises(TFRecordError, match="needs one bytes value in feature 'image/encoded'"):
        image_record(encode_example({"image/encoded": 5, "image/class/label": 1}), "x")


@needs_cifar
def test_real_records_decode_and_reencode_identically():
    from PIL import Image

    names = (CIFAR_DIR / "labels.txt").read_text().split()
    shard = CIFAR_DIR / "test-00000-of-00001.tfrecord"
    for index, data in enumerate(read_records(shard)):
        example = parse_example(data)
        assert encode_example(example) == data  # TensorFlow's serialisation, reproduced byte for byte
        record = image_record(data)
        assert record.format == "jpeg" and 0 <= record.label < len(names) == 10
        if index == 0:
            assert next(read_examples(shard)) == example
            with Image.open(io.BytesIO(record.encoded)) as image:
                assert image.size == (32, 32) and image.format == "JPEG"
        if index == 1000:
            break
