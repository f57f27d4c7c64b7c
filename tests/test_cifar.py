"""CIFAR-10/100 in binary and python form (tiny real files written here), archives, downloads, real shards."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import CIFAR_DIR, needs_cifar
from visionflow.data import cifar
from visionflow.data.catalog import load_dataset
from visionflow.data.download import extract_archive
from visionflow.errors import InputError
from visionflow.formats.tfrecord import frame_record, read_records

RNG = np.random.default_rng(7)


def _images(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _planes(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) → (N, 3072) rows of R, G, B planes: the CIFAR layout, built independently."""
    return np.concatenate([images[..., c].reshape(len(images), -1) for c in range(3)], axis=1)


def py2_pickle(obj) -> bytes:
    """`obj` pickled as Python 2's cPickle (protocol 2) with numpy 1.x wrote the official CIFAR batches."""
    return b"\x80\x02" + _op(obj) + b"."


def _op(obj) -> bytes:
    if isinstance(obj, dict):
        return b"}(" + b"".join(_op(k) + _op(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, list):
        return b"](" + b"".join(_op(v) for v in obj) + b"e"
    if isinstance(obj, tuple):
        return b"(" + b"".join(_op(v) for v in obj) + b"t"
    if isinstance(obj, str):  # a Python 2 str: SHORT_BINSTRING / BINSTRING
        obj = obj.encode("ascii")
    if isinstance(obj, bytes):
        return (b"U" + bytes([len(obj)]) if len(obj) < 256 else b"T" + struct.pack("<i", len(obj))) + obj
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, np.ndarray):  # _reconstruct(ndarray, (0,), 'b') then BUILD with (1, shape, dtype, False, raw)
        dtype = (b"cnumpy\ndtype\n" + _op((obj.dtype.str[1:], 0, 1)) + b"R"
                 + _op((3, obj.dtype.str[0], None, None, None, -1, -1, 0)) + b"b")
        empty = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _op((0,)) + _op("b") + b"\x87R"
        return empty + b"(" + _op(1) + _op(tuple(obj.shape)) + dtype + b"\x89" + _op(obj.tobytes()) + b"tb"
    raise TypeError(type(obj))


def write_cifar10_binary(directory: Path, n: int = 4) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in (*cifar.CIFAR["cifar10"].binary.train, "test_batch.bin"):
        images, labels = _images(n), RNG.integers(0, 10, n).astype(np.uint8)
        (directory / name).write_bytes(np.concatenate([labels[:, None], _planes(images)], axis=1).tobytes())
        written[name] = (images, labels)
    (directory / "batches.meta.txt").write_text("\n".join(cifar.CIFAR10_CLASSES) + "\n\n")
    return written


def write_cifar10_python(directory: Path, n: int = 3, dump=py2_pickle) -> dict[str, tuple[np.ndarray, list[int]]]:
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, name in enumerate((*cifar.CIFAR["cifar10"].python.train, "test_batch")):
        images, labels = _images(n), [int(v) for v in RNG.integers(0, 10, n)]
        batch = {"batch_label": f"batch {i}", "labels": labels, "data": _planes(images),
                 "filenames": [f"img_{i}_{j}.png" for j in range(n)]}
        (directory / name).write_bytes(dump(batch))
        written[name] = (images, labels)
    meta = {"num_cases_per_batch": n, "label_names": list(cifar.CIFAR10_CLASSES), "num_vis": 3072}
    (directory / "batches.meta").write_bytes(dump(meta))
    return written


def test_binary_batches_read_as_written(tmp_path):
    written = write_cifar10_binary(tmp_path / "cifar-10-batches-bin")
    ds = load_dataset("cifar10", tmp_path, validation_size=2)  # found inside the archive's folder
    train_images = np.concatenate([written[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    train_labels = np.concatenate([written[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    assert np.array_equal(np.concatenate([ds.train.images, ds.validation.images]), train_images)
    assert np.array_equal(np.concatenate([ds.train.labels, ds.validation.labels]), train_labels)
    assert np.array_equal(ds.test.images, written["test_batch.bin"][0])
    assert (len(ds.train), len(ds.validation), ds.image_shape) == (18, 2, (32, 32, 3))
    assert ds.class_names == cifar.CIFAR10_CLASSES and ds.train.images.flags.c_contiguous


def test_cifar100_binary_uses_fine_labels(tmp_path):
    images = _images(3)
    coarse, fine = np.array([1, 19, 0], np.uint8), np.array([99, 5, 42], np.uint8)
    records = np.concatenate([coarse[:, None], fine[:, None], _planes(images)], axis=1)
    (tmp_path / "train.bin").write_bytes(records.tobytes())
    (tmp_path / "test.bin").write_bytes(records[:1].tobytes())
    ds = load_dataset("cifar100", tmp_path, validation_size=0)
    assert ds.train.labels.tolist() == [99, 5, 42] and np.array_equal(ds.train.images, images)
    assert ds.num_classes == 100
    records[2, 0] = 20  # coarse labels run 0..19
    (tmp_path / "train.bin").write_bytes(records.tobytes())
    with pytest.raises(InputError, match=r"train.bin: label 20 at record 2 out of range 0..19"):
        load_dataset("cifar100", tmp_path, validation_size=0)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-1], r"data_batch_3.bin: 12291 bytes is not a whole number of 3073-byte CIFAR-10 records"),
    (lambda b: b"", r"data_batch_3.bin: 0 bytes is not a whole number"),
    (lambda b: b[:3073] + b"\x0a" + b[3074:], r"data_batch_3.bin: label 10 at record 1 out of range 0..9"),
])
def test_bad_binary_files_are_named(tmp_path, damage, message):
    write_cifar10_binary(tmp_path)
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(InputError, match=message):
        load_dataset("cifar10", tmp_path)


def test_missing_batch_is_named(tmp_path):
    write_cifar10_binary(tmp_path)
    (tmp_path / "data_batch_4.bin").unlink()
    with pytest.raises(InputError, match=r"data_batch_4.bin: file not found"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("dump", [py2_pickle, lambda obj: pickle.dumps(_bytes_keys(obj), protocol=4),
                                  lambda obj: pickle.dumps(_bytes_keys(obj), protocol=5)],
                         ids=["python2-cPickle", "protocol-4", "protocol-5"])
def test_python_batches_read_as_written(tmp_path, dump):
    written = write_cifar10_python(tmp_path / "cifar-10-batches-py", dump=dump)
    ds = load_dataset("cifar10", tmp_path, validation_size=3)
    assert np.array_equal(ds.validation.images, written["data_batch_5"][0])
    assert ds.validation.labels.tolist() == written["data_batch_5"][1]
    assert np.array_equal(ds.test.images, written["test_batch"][0])
    assert ds.class_names == cifar.CIFAR10_CLASSES


def _bytes_keys(obj):
    """Keys and strings as bytes, as Python 3 reads a Python 2 pickle with encoding='bytes'."""
    if isinstance(obj, dict):
        return {k.encode(): _bytes_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_bytes_keys(v) for v in obj]
    return obj.encode() if isinstance(obj, str) else obj


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar10_python(tmp_path)
    batch = {b"batch_label": _Evil(), b"labels": [1], b"data": np.zeros((1, 3072), np.uint8)}
    (tmp_path / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=4))
    with pytest.raises(InputError, match=r"data_batch_2: refusing to load: unexpected pickle global (posix|os)\.system"):
        load_dataset("cifar10", tmp_path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("batch, message", [
    ({"labels": [1], "data": np.zeros((1, 3072), np.uint8), "extra": 1}, r"unexpected key\(s\) 'extra'"),
    ({"labels": [1]}, r"missing key\(s\) 'data'"),
    ({"labels": [1], "data": np.zeros((1, 3071), np.uint8)}, r"'data' is a uint8 array of shape \(1, 3071\)"),
    ({"labels": [1], "data": np.zeros((1, 3072), np.int64)}, r"'data' is a int64 array"),
    ({"labels": [1, 2], "data": np.zeros((1, 3072), np.uint8)}, r"2 labels for 1 images"),
    ({"labels": [12], "data": np.zeros((1, 3072), np.uint8)}, r"labels 12 at record 0 out of range 0..9"),
    ({"labels": ["x"], "data": np.zeros((1, 3072), np.uint8)}, r"'labels' must be a list of ints"),
    ([1, 2], r"holds a list, expected a dict"),
])
def test_wrong_python_batches_name_file_and_problem(tmp_path, batch, message):
    write_cifar10_python(tmp_path)
    (tmp_path / "test_batch").write_bytes(py2_pickle(batch))
    with pytest.raises(InputError, match="test_batch: " + message):
        load_dataset("cifar10", tmp_path)


def test_truncated_pickle_is_an_input_error(tmp_path):
    write_cifar10_python(tmp_path)
    path = tmp_path / "data_batch_1"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(InputError, match="data_batch_1: not a CIFAR python batch"):
        load_dataset("cifar10", tmp_path)


def _tar(path: Path, source: Path, arcname: str) -> None:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=arcname)


def test_archive_in_data_dir_is_checked_and_unpacked_into_the_cache(tmp_path, monkeypatch):
    written = write_cifar10_binary(tmp_path / "src")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = data_dir / "cifar-10-binary.tar.gz"
    _tar(archive, tmp_path / "src", "cifar-10-batches-bin")
    spec = cifar.CIFAR["cifar10"]
    form = replace(spec.binary, archive=replace(spec.binary.archive, md5="0" * 32))
    monkeypatch.setitem(cifar.CIFAR, "cifar10", replace(spec, binary=form))
    with pytest.raises(InputError, match="cifar-10-binary.tar.gz: checksum mismatch"):
        load_dataset("cifar10", data_dir, cache_dir=tmp_path / "cache")
    form = replace(form, archive=replace(form.archive, md5=hashlib.md5(archive.read_bytes()).hexdigest()))
    monkeypatch.setitem(cifar.CIFAR, "cifar10", replace(spec, binary=form))
    ds = load_dataset("cifar10", data_dir, cache_dir=tmp_path / "cache", validation_size=0)
    assert np.array_equal(ds.test.images, written["test_batch.bin"][0])
    assert (tmp_path / "cache" / "cifar-10-batches-bin" / "test_batch.bin").is_file()
    assert [p.name for p in data_dir.iterdir()] == ["cifar-10-binary.tar.gz"]


def test_download_from_a_mirror_verifies_md5(tmp_path, monkeypatch):
    write_cifar10_binary(tmp_path / "src")
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    _tar(good / "cifar-10-binary.tar.gz", tmp_path / "src", "cifar-10-batches-bin")
    (bad / "cifar-10-binary.tar.gz").write_bytes(b"not the archive")
    spec = cifar.CIFAR["cifar10"]
    md5 = hashlib.md5((good / "cifar-10-binary.tar.gz").read_bytes()).hexdigest()
    form = replace(spec.binary, archive=replace(spec.binary.archive, md5=md5))
    monkeypatch.setitem(cifar.CIFAR, "cifar10", replace(spec, binary=form))
    cache = tmp_path / "cache"
    ds = load_dataset("cifar10", cache_dir=cache, mirrors=[bad.as_uri(), good.as_uri()], validation_size=0)
    assert len(ds.train) == 20 and (cache / "cifar-10-binary.tar.gz").is_file()
    with pytest.raises(InputError, match="checksum mismatch"):
        load_dataset("cifar10", cache_dir=tmp_path / "other", mirrors=[bad.as_uri()])
    with pytest.raises(InputError, match="downloads are off"):
        load_dataset("cifar10", cache_dir=tmp_path / "none", download=False)


def test_canonical_archives_and_checksums():
    assert cifar.MIRRORS == ("https://www.cs.toronto.edu/~kriz/",)
    archives = {s.name: (s.binary.archive.md5, s.python.archive.md5) for s in cifar.CIFAR.values()}
    assert archives == {"cifar10": ("c32a1d4ab5d03f1284b67883e8d87530", "c58f30108f718f92721af3b95e74349a"),
                        "cifar100": ("03b5dce01913d631647c71ecec9e9cb8", "eb9058c3a382ffc7106e4002c42a8d85")}


def test_archive_member_escaping_the_target_is_refused(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(InputError, match=r"evil.tar.gz: refusing to extract"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_empty_directory_says_what_it_looked_for(tmp_path):
    with pytest.raises(InputError, match=r"no CIFAR-10 data here: expected TFRecord shards"):
        load_dataset("cifar10", tmp_path)


@needs_cifar
def test_real_shards_load_as_cifar10(tmp_path, monkeypatch):
    """The first 300 records of each real shard (whole records, CRCs intact) as a CIFAR-10 directory."""
    monkeypatch.setenv("VISIONFLOW_CACHE", str(tmp_path / "cache"))
    for shard in sorted(CIFAR_DIR.glob("*.tfrecord")):
        records = []
        for data in read_records(shard):
            records.append(frame_record(data))
            if len(records) == 300:
                break
        (tmp_path / shard.name).write_bytes(b"".join(records))
    (tmp_path / "labels.txt").write_bytes((CIFAR_DIR / "labels.txt").read_bytes())
    ds = load_dataset("cifar10", tmp_path, validation_size=100)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (1400, 100, 300)
    assert ds.image_shape == (32, 32, 3) and ds.train.images.dtype == np.uint8
    assert ds.class_names == tuple((CIFAR_DIR / "labels.txt").read_text().split())
    assert sorted(np.unique(ds.test.labels)) == list(range(10))
    assert 60 < ds.test.images.mean() < 190  # real photos, not zeros
    again = load_dataset("cifar10", tmp_path, validation_size=100)  # from the decoded-array cache now
    assert np.array_equal(again.train.images, ds.train.images) and np.array_equal(again.test.labels, ds.test.labels)
