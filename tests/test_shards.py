"""Sharded TFRecord image datasets: finding shards, seeded streaming shuffle, loading as arrays, the decoded cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from visionflow.data.catalog import load_dataset
from visionflow.data.shards import find_shards, load_split, split_of, stream_decoded_batches, stream_image_records
from visionflow.errors import InputError
from visionflow.formats.imagecodec import encode_png
from visionflow.formats.tfexample import encode_example, image_example
from visionflow.formats.tfrecord import write_records

RNG = np.random.default_rng(3)


def write_shard(path: Path, labels, size=(8, 6), text: bool = False, channels: int = 3) -> np.ndarray:
    """A shard of PNG image Examples with the given labels; returns the images (N, H, W, C)."""
    images = RNG.integers(0, 256, (len(labels), *size, channels), dtype=np.uint8)
    write_records(path, [image_example(encode_png(im), int(lab), "png", size[0], size[1],
                                       f"class-{lab}" if text else None) for im, lab in zip(images, labels)])
    return images


@pytest.fixture
def shard_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VISIONFLOW_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "shards"
    d.mkdir()
    for j in range(3):
        write_shard(d / f"train-{j:05d}-of-00003.tfrecord", [i % 4 for i in range(j * 5, j * 5 + 5)])
    write_shard(d / "test-00000-of-00001.tfrecord", [0, 1, 2, 3])
    (d / "labels.txt").write_text("a\nb\nc\nd\n")
    (d / "README").write_text("not a shard")
    return d


def test_find_shards_by_directory_glob_and_file(shard_dir):
    names = [p.name for p in find_shards(shard_dir)]
    assert names == ["test-00000-of-00001.tfrecord", *(f"train-{j:05d}-of-00003.tfrecord" for j in range(3))]
    assert [p.name for p in find_shards(f"{shard_dir}/train-*")] == names[1:]
    assert find_shards(shard_dir / names[0]) == [shard_dir / names[0]]
    with pytest.raises(InputError, match="no files match"):
        find_shards(f"{shard_dir}/nothing-*")
    with pytest.raises(InputError, match="no such file or directory"):
        find_shards(shard_dir / "gone")
    (shard_dir.parent / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no TFRecord shards"):
        find_shards(shard_dir.parent / "empty")


@pytest.mark.parametrize("name, split", [("train-00001-of-00005.tfrecord", "train"), ("test.tfrecord", "test"),
                                         ("validation-00000-of-00001", "validation"), ("val_0.tfrecord", "validation"),
                                         ("eval.tfrecords", "test"), ("data-00003-of-00010", "train")])
def test_split_from_shard_name(name, split):
    assert split_of(Path(name)) == split


def _labels(records) -> list[tuple[int, bytes]]:
    return [(r.label, r.encoded) for r in records]


def test_stream_order_is_a_pure_function_of_seed_and_epoch(shard_dir):
    shards = find_shards(f"{shard_dir}/train-*")
    first = _labels(stream_image_records(shards, seed=1, epoch=0, buffer_size=4))
    assert first == _labels(stream_image_records(shards, seed=1, epoch=0, buffer_size=4))
    assert first != _labels(stream_image_records(shards, seed=1, epoch=1, buffer_size=4))
    in_file_order = _labels(stream_image_records(shards, shuffle=False))
    assert sorted(first) == sorted(in_file_order) and len(first) == 15


def test_buffer_of_one_keeps_record_order_within_shards(shard_dir):
    shards = find_shards(f"{shard_dir}/train-*")
    per_shard = [_labels(stream_image_records([s], shuffle=False)) for s in shards]
    streamed = _labels(stream_image_records(shards, seed=5, epoch=2, buffer_size=1))
    chunks = [streamed[i:i + 5] for i in range(0, 15, 5)]
    assert sorted(chunks) == sorted(per_shard)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=4), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_stream_yields_every_record_exactly_once(tmp_path_factory, sizes, buffer_size, seed):
    d = tmp_path_factory.mktemp("s")
    shards = []
    for j, n in enumerate(sizes):
        shards.append(d / f"train-{j}.tfrecord")
        write_records(shards[-1], [encode_example({"image/encoded": f"{j}/{i}".encode(), "image/class/label": i})
                                   for i in range(n)])
    out = [r.encoded for r in stream_image_records(shards, seed, 0, buffer_size)]
    assert sorted(out) == sorted(f"{j}/{i}".encode() for j, n in enumerate(sizes) for i in range(n))


def test_decoded_batches(shard_dir):
    batches = list(stream_decoded_batches(find_shards(f"{shard_dir}/train-*"), 4, seed=0))
    assert [len(b[1]) for b in batches] == [4, 4, 4, 3]
    assert batches[0][0].shape == (4, 8, 6, 3) and batches[0][0].dtype == np.uint8


def test_directory_loads_as_a_dataset_with_labels_file(shard_dir):
    expected = [write_shard(shard_dir / f"train-{j:05d}-of-00003.tfrecord", [j, j + 1 % 4, 0]) for j in range(3)]
    ds = load_dataset("tfrecord", shard_dir, validation_size=2)
    assert ds.class_names == ("a", "b", "c", "d")
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (7, 2, 4)
    assert np.array_equal(np.concatenate([ds.train.images, ds.validation.images]), np.concatenate(expected))
    assert ds.image_shape == (8, 6, 3)


def test_class_text_names_classes_without_labels_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONFLOW_CACHE", str(tmp_path / "cache"))
    write_shard(tmp_path / "train.tfrecord", [0, 2, 1], text=True)
    write_shard(tmp_path / "validation.tfrecord", [2], text=True)
    ds = load_dataset("tfrecord", tmp_path)
    assert ds.class_names == ("class-0", "class-1", "class-2") and len(ds.validation) == 1


def test_label_beyond_the_labels_file_names_shard_and_record(shard_dir):
    write_shard(shard_dir / "test-00000-of-00001.tfrecord", [0, 1, 7])
    with pytest.raises(InputError, match=r"test-00000-of-00001.tfrecord: record 2: label 7 out of range 0..3"):
        load_dataset("tfrecord", shard_dir)


def test_images_of_another_size_are_named(shard_dir):
    write_shard(shard_dir / "test-00000-of-00001.tfrecord", [0, 1], size=(5, 5))
    with pytest.raises(InputError, match=r"test-00000-of-00001.tfrecord: images are \(5, 5, 3\)"):
        load_dataset("tfrecord", shard_dir)


def test_undecodable_image_names_shard_and_record(tmp_path):
    write_records(tmp_path / "train.tfrecord", [image_example(encode_png(np.zeros((4, 4, 3), np.uint8)), 0),
                                                image_example(b"\xff\xd8\xff\xe0 broken jpeg", 1)])
    with pytest.raises(InputError, match=r"train.tfrecord: record 1: not a readable image"):
        load_split(find_shards(tmp_path))


def test_greyscale_images_load_with_one_channel(tmp_path):
    images = write_shard(tmp_path / "train.tfrecord", [0, 1], channels=1)
    loaded = load_split(find_shards(tmp_path))
    assert loaded.images.shape == (2, 8, 6, 1) and np.array_equal(loaded.images, images)


def test_decoded_arrays_are_cached_per_shard_until_it_changes(shard_dir, tmp_path):
    cache = tmp_path / "decoded"
    shard = shard_dir / "test-00000-of-00001.tfrecord"
    first = load_split([shard], cache_dir=cache)
    (entry,) = list(cache.iterdir())
    assert sorted(p.name for p in entry.iterdir()) == ["images.npy", "labels.npy", "texts.json"]
    np.save(entry / "images.npy", np.full_like(first.images, 7))  # prove the next load reads the cache
    assert (load_split([shard], cache_dir=cache).images == 7).all()
    new = write_shard(shard, [3, 2, 1, 0])
    os.utime(shard, ns=(1, 1))
    reloaded = load_split([shard], cache_dir=cache)
    assert np.array_equal(reloaded.images, new) and reloaded.labels.tolist() == [3, 2, 1, 0]


def test_decoding_shards_shows_progress_and_a_cached_load_is_silent(tmp_path, monkeypatch, capsys):
    from visionflow.data.shards import load_tfrecord_dataset

    shard = tmp_path / "train-00000-of-00001.tfrecord"
    write_records(shard, [image_example(encode_png(np.full((4, 4, 1), i, np.uint8)), i % 2) for i in range(6)])
    monkeypatch.setenv("VISIONFLOW_CACHE", str(tmp_path / "cache"))
    load_tfrecord_dataset(shard)
    assert "decoded train-00000-of-00001.tfrecord: 6 images in" in capsys.readouterr().err
    load_tfrecord_dataset(shard)
    assert capsys.readouterr().err == ""
