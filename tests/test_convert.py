"""`visionflow convert`, image folders as training data, and corrupt shards through the CLI (exit code 2)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CIFAR_DIR, assert_one_line_error, needs_cifar, run_cli
from test_cifar import write_cifar10_binary
from visionflow.data.catalog import load_dataset
from visionflow.data.convert import convert
from visionflow.data.imagefolder import which_set
from visionflow.errors import InputError
from visionflow.formats.tfexample import image_record
from visionflow.formats.tfrecord import frame_record, read_records


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONFLOW_CACHE", str(tmp_path / "cache"))


def _as_set(images: np.ndarray, labels: np.ndarray) -> list[tuple[int, bytes]]:
    return sorted((int(label), image.tobytes()) for image, label in zip(images, labels))


def test_digits_convert_losslessly_and_read_back(tmp_path):
    result = convert("digits", tmp_path / "out", shards=3, seed=1)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["labels.txt", "test-00000-of-00001.tfrecord",
                     *(f"train-{j:05d}-of-00003.tfrecord" for j in range(3))]
    assert (tmp_path / "out" / "labels.txt").read_text() == "".join(f"{i}\n" for i in range(10))
    source = load_dataset("digits", validation_size=0)
    back = load_dataset("tfrecord", tmp_path / "out")
    assert result.records == {"train": len(source.train), "test": len(source.test)}
    assert back.class_names == source.class_names and back.image_shape == (8, 8, 1)
    for split in ("train", "test"):
        a, b = source.split(split), back.split(split)
        assert _as_set(a.images, a.labels) == _as_set(b.images, b.labels)
    assert not np.array_equal(back.train.labels, source.train.labels)  # shuffled across shards
    record = image_record(next(read_records(tmp_path / "out" / "test-00000-of-00001.tfrecord")))
    assert (record.format, record.height, record.width) == ("png", 8, 8)
    assert record.text == str(record.label)


def test_cifar_binary_converts_to_shards_that_load_as_cifar10(tmp_path):
    write_cifar10_binary(tmp_path / "bin", n=6)
    convert("cifar10", tmp_path / "shards", shards=2, data_dir=tmp_path / "bin")
    source = load_dataset("cifar10", tmp_path / "bin", validation_size=0)
    back = load_dataset("cifar10", tmp_path / "shards", validation_size=0)
    assert back.class_names == source.class_names
    for split in ("train", "test"):
        a, b = source.split(split), back.split(split)
        assert _as_set(a.images, a.labels) == _as_set(b.images, b.labels)


def test_shards_reshard_with_records_unchanged(tmp_path):
    convert("digits", tmp_path / "a", shards=2)
    convert("tfrecord", tmp_path / "b", shards=3, data_dir=tmp_path / "a", seed=9)
    records = lambda d, split: sorted(r for p in sorted(d.glob(f"{split}-*")) for r in read_records(p))
    assert records(tmp_path / "a", "train") == records(tmp_path / "b", "train")
    assert len(list((tmp_path / "b").glob("train-*-of-00003.tfrecord"))) == 3


def test_refuses_to_mix_with_other_shards(tmp_path):
    convert("digits", tmp_path / "out", shards=2)
    with pytest.raises(InputError, match="already holds other TFRecord shards"):
        convert("digits", tmp_path / "out", shards=3)
    convert("digits", tmp_path / "out", shards=2, seed=4)  # the same files again: replaced atomically


def _image_bytes(color: int, fmt: str, size=(6, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (color, 255 - color, 9)).save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    for c, category in enumerate(("cats", "dogs")):
        (root / category).mkdir(parents=True)
        for i in range(8):
            fmt, suffix = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")][i % 3]
            (root / category / f"{category}{i}.{suffix}").write_bytes(_image_bytes(20 * i + c, fmt))
    return root


def test_image_folder_converts_keeping_jpeg_and_png_bytes(tmp_path, folder):
    result = convert("image-folder", tmp_path / "out", data_dir=folder, validation_percentage=30, testing_percentage=30)
    expected = {split: sum(which_set(p.name, 30, 30) == split for p in folder.rglob("*.*")) for split in
                ("train", "validation", "test")}
    assert result.records == {k: v for k, v in expected.items() if v}
    originals = {p.read_bytes() for p in folder.rglob("*") if p.suffix in (".jpg", ".png")}
    records = [image_record(r) for p in sorted((tmp_path / "out").glob("*.tfrecord")) for r in read_records(p)]
    assert len(records) == 16 and {r.text for r in records} == {"cats", "dogs"}
    kept = [r for r in records if r.encoded in originals]
    assert len(kept) == 12 and {r.format for r in kept} == {"jpeg", "png"}
    webp = [r for r in records if r.encoded not in originals]
    assert len(webp) == 4 and {r.format for r in webp} == {"png"}  # WebP re-encoded losslessly


def test_image_folder_trains_at_its_own_size(folder):
    ds = load_dataset("image-folder", folder)
    assert ds.image_shape == (6, 6, 3) and ds.class_names == ("cats", "dogs")
    assert len(ds.train) + len(ds.validation) + len(ds.test) == 16
    (folder / "dogs" / "big.png").write_bytes(_image_bytes(1, "PNG", size=(9, 7)))
    with pytest.raises(InputError, match=r"big.png: 9×7 pixels, but .*cats0.jpg is 6×6"):
        load_dataset("image-folder", folder)


def _real_subset(directory: Path, count: int = 400) -> Path:
    """The first `count` records of the real test shard, as whole records in a shard of their own."""
    directory.mkdir()
    records = []
    for data in read_records(CIFAR_DIR / "test-00000-of-00001.tfrecord"):
        records.append(frame_record(data))
        if len(records) == count:
            break
    (directory / "train-00000-of-00001.tfrecord").write_bytes(b"".join(records))
    (directory / "labels.txt").write_bytes((CIFAR_DIR / "labels.txt").read_bytes())
    return directory / "train-00000-of-00001.tfrecord"


@needs_cifar
def test_cli_convert_then_flipped_byte_and_truncation_are_exit_2(tmp_path):
    shard = _real_subset(tmp_path / "data")
    proc = run_cli("convert", "--dataset", "tfrecord", "--data-dir", tmp_path / "data", "--output", tmp_path / "out",
                   "--shards", "2", env={"VISIONFLOW_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert "train: 400 records in 2 shards" in proc.stdout
    data = bytearray(shard.read_bytes())
    offsets = [0]
    for record in read_records(shard):
        offsets.append(offsets[-1] + len(frame_record(record)))
    data[offsets[300] + 40] ^= 0x10  # a byte inside record 300's data
    shard.write_bytes(bytes(data))
    proc = run_cli("convert", "--dataset", "tfrecord", "--data-dir", tmp_path / "data", "--output", tmp_path / "o2")
    assert_one_line_error(proc, str(shard), "record 300", "CRC mismatch")
    shard.write_bytes(bytes(data[:offsets[120] + 30]))  # cut inside record 120
    proc = run_cli("convert", "--dataset", "tfrecord", "--data-dir", tmp_path / "data", "--output", tmp_path / "o3")
    assert_one_line_error(proc, str(shard), "record 120", "truncated record")
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


@needs_cifar
def test_cli_train_on_a_corrupt_cifar_shard_is_exit_2(tmp_path):
    shard = _real_subset(tmp_path / "data", count=50)
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0xFF  # the last record's data CRC
    shard.write_bytes(bytes(data))
    proc = run_cli("train", "--dataset", "cifar10", "--data-dir", tmp_path / "data", "--model-dir", tmp_path / "run",
                   "--steps", "1", env={"VISIONFLOW_CACHE": str(tmp_path / "cache")})
    assert_one_line_error(proc, str(shard), "record 49", "CRC mismatch")
