import gzip

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from visionflow.errors import InputError
from visionflow.formats.idx import encode_idx, parse_idx, read_idx, write_idx

DTYPES = [np.uint8, np.int8, np.dtype(">i2"), np.dtype(">i4"), np.dtype(">f4"), np.dtype(">f8")]


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from(DTYPES), shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=6)))
def test_roundtrip_any_dtype_and_shape(array):
    out = parse_idx(encode_idx(array))
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array.astype(array.dtype.newbyteorder("=")))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_parse_or_fail_cleanly(data):
    try:
        parse_idx(data, "fuzz")
    except InputError as e:
        assert str(e).startswith("fuzz: ")


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=40), st.data())
def test_any_truncation_is_reported(n, data):
    blob = encode_idx(np.arange(n * 3, dtype=np.uint8).reshape(n, 3))
    cut = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    with pytest.raises(InputError, match="truncated"):
        parse_idx(blob[:cut], "x")


def test_official_header_layout():
    blob = encode_idx(np.zeros((2, 28, 28), np.uint8))
    assert blob[:4] == bytes([0, 0, 8, 3])
    assert blob[4:16] == (2).to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")


@pytest.mark.parametrize("blob, problem", [
    (b"\x00\x00\x08", "truncated IDX header"),
    (b"PK\x03\x04rest", "bad magic number 0x504b0304"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "bad magic number"),
    (b"\x00\x00\x08\x00", "bad magic number"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated IDX header"),
    (encode_idx(np.zeros(5, np.uint8)) + b"\x00", "oversized"),
    (b"\x00\x00\x08\x03" + b"\xff" * 12, "more than"),
])
def test_bad_headers_named(blob, problem):
    with pytest.raises(InputError, match=problem):
        parse_idx(blob, "f.idx")


def test_read_gz_and_raw(tmp_path):
    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a)
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)


def test_corrupt_gzip_and_missing_file(tmp_path):
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(encode_idx(np.zeros(100, np.uint8)))[:-12])
    with pytest.raises(InputError, match=f"{bad}: corrupt gzip"):
        read_idx(bad)
    with pytest.raises(InputError, match="file not found"):
        read_idx(tmp_path / "nope")
