"""TFRecord framing: CRCs, round trips through the writer, damaged files, real shards."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import CIFAR_DIR, needs_cifar
from visionflow.errors import InputError
from visionflow.formats.tfrecord import TFRecordError, frame_record, iter_records, masked_crc32c, read_records, write_records


def test_masked_crc_of_the_rfc_check_value():
    # CRC-32C("123456789") = 0xE3069283 (RFC 3720), masked as TFRecord masks it
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8))
def test_written_files_read_back(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("rt") / "x.tfrecord"
    assert write_records(path, records) == len(records)
    assert list(read_records(path)) == records
    assert path.read_bytes() == b"".join(frame_record(r) for r in records)


FIRST = frame_record(b"first")  # 21 bytes: the second record starts at byte 21
GOOD = FIRST + frame_record(b"second record")


@pytest.mark.parametrize("broken, message", [
    (GOOD[:21 + 5], "truncated record"),
    (GOOD[:-2], "truncated record"),
    (GOOD[:21 + 12] + b"X" + GOOD[21 + 13:], "data CRC mismatch"),
    (GOOD[:21] + bytes([GOOD[21] ^ 1]) + GOOD[22:], "length CRC mismatch"),
])
def test_damaged_framing_names_record_and_offset(broken, message):
    with pytest.raises(TFRecordError, match=f"^f.tfrecord: record 1 at byte 21: {message}"):
        list(iter_records(io.BytesIO(broken), "f.tfrecord"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_give_records_or_a_clean_error(data):
    try:
        records = list(iter_records(io.BytesIO(data), "random"))
    except TFRecordError as e:
        assert str(e).startswith("random: record ")
        return
    assert b"".join(frame_record(r) for r in records) == data


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5), st.data())
def test_any_single_flipped_bit_is_detected(records, data):
    good = b"".join(frame_record(r) for r in records)
    position = data.draw(st.integers(0, len(good) - 1))
    bit = data.draw(st.integers(0, 7))
    broken = good[:position] + bytes([good[position] ^ (1 << bit)]) + good[position + 1:]
    with pytest.raises(TFRecordError, match="CRC mismatch|truncated record|exceeds"):
        list(iter_records(io.BytesIO(broken), "flipped"))


def test_missing_file_and_directory_are_one_line(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        list(read_records(tmp_path / "nope.tfrecord"))
    with pytest.raises(InputError, match="is a directory"):
        list(read_records(tmp_path))


def test_a_failed_write_leaves_no_file(tmp_path):
    def records():
        yield b"one"
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        write_records(tmp_path / "x.tfrecord", records())
    assert list(tmp_path.iterdir()) == []


@needs_cifar
def test_real_shard_frames_are_sound():
    shard = CIFAR_DIR / "test-00000-of-00001.tfrecord"
    count = 0
    for data in read_records(shard):
        count += 1
        if count == 2000:
            break
    assert count == 2000
