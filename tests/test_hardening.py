"""The defects a fuzzing and fault-injection pass found, each pinned by a test that failed before
its fix: bad bytes and lying headers are one-line errors, and a failed command changes nothing."""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import visionflow as vf
from conftest import assert_one_line_error, run_in_process, snapshot
from visionflow.core.fsio import remove_stale_temps
from visionflow.core.limits import MAX_IMAGE_PIXELS
from visionflow.data.cifar import CIFAR, read_python_batch
from visionflow.data.shards import load_tfrecord_dataset
from visionflow.engine.config import TrainConfig
from visionflow.errors import InputError
from visionflow.formats.idx import encode_idx, read_idx
from visionflow.formats.imagecodec import header_size
from visionflow.formats.tfexample import image_example
from visionflow.formats.tfrecord import write_records


@pytest.fixture()
def model_dir(trained_digits, tmp_path) -> Path:
    target = tmp_path / "cnn"
    shutil.copytree(trained_digits, target)
    return target


def _npy_header_only(path: Path, shape: tuple[int, ...], dtype: str = "<u1", payload: bytes = b"\0" * 800) -> Path:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    path.write_bytes(out.getvalue() + payload)
    return path


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG signature and IHDR declaring width×height (8-bit RGB), a tiny IDAT and IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A JPEG's SOI, an APP0 and a baseline frame header declaring width×height, then EOI."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


# 1 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ("evaluate", "--model-dir", "{dir}"),
    ("predict", "--model-dir", "{dir}", "{npy}"),
    ("train", "--model-dir", "{dir}", "--steps", "200"),
    ("export", "--model-dir", "{dir}", "--export-base", "{exports}"),
])
def test_a_config_that_is_not_utf8_is_one_line(model_dir, tmp_path, command):
    pytest.importorskip("onnx")
    (model_dir / "config.json").write_bytes((model_dir / "config.json").read_bytes() + b"\xff")
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8), np.uint8))
    before = snapshot(model_dir)
    args = [a.format(dir=model_dir, npy=tmp_path / "x.npy", exports=tmp_path / "exports") for a in command]
    assert_one_line_error(run_in_process(*args), "config.json: not UTF-8 text")
    assert snapshot(model_dir) == before


# 2 ------------------------------------------------------------------------------------------

def test_a_npy_declaring_a_huge_shape_is_refused_from_its_header(model_dir, tmp_path):
    bomb = _npy_header_only(tmp_path / "bomb.npy", (10**12, 8, 8))
    assert bomb.stat().st_size < 1000
    for command in ("predict", "label-image"):
        proc = run_in_process(command, "--model-dir", model_dir, bomb)
        assert_one_line_error(proc, "bomb.npy: header claims shape (1000000000000, 8, 8)")
    short = _npy_header_only(tmp_path / "short.npy", (100, 8, 8))  # 6,400 bytes declared, 800 present
    assert_one_line_error(run_in_process("predict", "--model-dir", model_dir, short), "short.npy: truncated")


def test_an_empty_batch_is_an_error_not_silence(model_dir, tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8), np.uint8))
    proc = run_in_process("predict", "--model-dir", model_dir, "--json", tmp_path / "empty.npy")
    assert_one_line_error(proc, "empty.npy: holds no images")


# 3 ------------------------------------------------------------------------------------------

def test_idx_decompression_bomb_stops_at_the_declared_size(tmp_path):
    # The header claims 10 bytes of data; the stream expands to 64 MB more.
    stream = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = stream.compress(encode_idx(np.zeros(10, np.uint8)))
    for _ in range(64):
        body += stream.compress(b"\0" * 2**20)
    (tmp_path / "bomb.gz").write_bytes(body + stream.flush())
    started = time.perf_counter()
    with pytest.raises(InputError, match="bomb.gz: oversized: dims \\[10\\] need 10 data bytes, file has 1 extra"):
        read_idx(tmp_path / "bomb.gz")
    assert time.perf_counter() - started < 0.5  # not decompressed whole
    # a header claiming more than the limit is refused before any data is read
    (tmp_path / "huge.gz").write_bytes(gzip.compress(b"\0\0\x08\x03" + struct.pack(">III", 2**16, 2**16, 2**16)))
    with pytest.raises(InputError, match="huge.gz: header claims 281474976710656 elements"):
        read_idx(tmp_path / "huge.gz")


# 4 ------------------------------------------------------------------------------------------

def test_image_headers_are_read_without_decoding():
    assert header_size(_png_declaring(20000, 15000)) == (20000, 15000)
    assert header_size(_jpeg_declaring(60000, 50000)) == (60000, 50000)


@pytest.mark.parametrize("encoded, fmt", [(_png_declaring(20000, 20000), "png"), (_jpeg_declaring(60000, 60000), "jpeg")])
def test_a_record_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, encoded, fmt):
    shard = tmp_path / "train-00000-of-00001.tfrecord"
    ok = _png_declaring(2, 2)
    write_records(shard, [image_example(ok, 0), image_example(encoded, 1, fmt)])
    with pytest.raises(InputError, match=rf"{shard.name}: record 1: image of \d+x\d+ pixels is too large "
                                         rf"\(at most {MAX_IMAGE_PIXELS:,} pixels\)"):
        load_tfrecord_dataset(shard, cache=False)


def test_predict_and_folders_refuse_huge_and_unsupported_images(model_dir, tmp_path):
    (tmp_path / "huge.png").write_bytes(_png_declaring(20000, 20000))
    assert_one_line_error(run_in_process("predict", "--model-dir", model_dir, tmp_path / "huge.png"),
                          "huge.png: image of 20000x20000 pixels is too large")
    # EPS would be handed to Ghostscript by Pillow: not a format visionflow reads
    (tmp_path / "figure.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    assert_one_line_error(run_in_process("predict", "--model-dir", model_dir, tmp_path / "figure.eps"),
                          "figure.eps: not a readable image (PNG, JPEG, BMP, GIF, WEBP, TIFF)")
    from visionflow.data.imagefolder import load_image_folder_as_is

    for name in ("a", "b"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(3):
            np.save(tmp_path / "unused.npy", np.zeros(1))
            from PIL import Image

            Image.new("L", (4, 4), 40 * i).save(tmp_path / "folder" / name / f"{i}.png")
    (tmp_path / "folder" / "a" / "huge.png").write_bytes(_png_declaring(20000, 20000))
    skipped = {}
    data = load_image_folder_as_is(tmp_path / "folder", 0, 0, on_skip=lambda p, r: skipped.update({p.name: r}))
    assert len(data.train) == 6 and skipped == {"huge.png": "image of 20000x20000 pixels is too large (at most "
                                                            f"{MAX_IMAGE_PIXELS:,} pixels)"}


# 5 and 6 ------------------------------------------------------------------------------------

def _small_run(directory: Path, steps: int = 20) -> None:
    proc = run_in_process("train", "--model", "mlp", "--model-dir", directory, "--steps", str(steps),
                          "--checkpoint-every", "10", "--log-every", "10", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("damage", ["truncated state", "index names a missing step"])
def test_a_resume_that_cannot_read_its_checkpoint_changes_nothing(tmp_path, damage):
    run = tmp_path / "m"
    _small_run(run)
    checkpoints = run / "checkpoints"
    if damage == "truncated state":
        state = checkpoints / "ckpt-00000020.state.safetensors"
        state.write_bytes(state.read_bytes()[:100])
    else:
        (checkpoints / "index.json").write_text(json.dumps({"latest": 30, "steps": [10, 20, 30]}))
    before = snapshot(run)
    proc = run_in_process("train", "--model", "mlp", "--model-dir", run, "--steps", "30", "--device", "cpu")
    assert_one_line_error(proc, str(checkpoints))
    assert snapshot(run) == before


def test_a_bad_dropout_is_refused_before_anything_is_written(tmp_path):
    run = tmp_path / "m"
    assert_one_line_error(run_in_process("train", "--model-dir", run, "--dropout", "1.5", "--steps", "5"),
                          "--dropout must be in [0, 1)")
    assert not run.exists()
    _small_run(run, steps=5)  # and the same directory then trains with a valid value


def test_a_run_that_fails_at_its_first_step_leaves_no_config(tmp_path):
    import torch

    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(64, 10)

        def forward(self, x):
            raise ValueError("broken forward")

    config = TrainConfig(model="custom", steps=5, batch_size=32, device="cpu")
    with pytest.raises(ValueError, match="broken forward"):
        vf.train(config, tmp_path / "m", model=Broken, progress_stream=io.StringIO())
    assert not (tmp_path / "m" / "config.json").exists() and not (tmp_path / "m" / "checkpoints").exists()
    outcome = vf.train(config, tmp_path / "m", model=lambda: torch.nn.Sequential(torch.nn.Flatten(),
                                                                                 torch.nn.Linear(64, 10)),
                       progress_stream=io.StringIO())
    assert outcome.result.global_step == 5


# smaller ones --------------------------------------------------------------------------------

def test_temp_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        (tmp_path / f".config.json.{dead}.abcd1234.tmp").write_text("half")
        (tmp_path / f".3.{dead}.k2x9ab12.tmp").mkdir()
        (tmp_path / f".3.{dead}.k2x9ab12.tmp" / "model.onnx").write_bytes(b"x" * 1000)
        (tmp_path / f".config.json.{sleeper.pid}.efgh5678.tmp").write_text("being written")
        (tmp_path / ".config.json.oldstyle.tmp").write_text("0.1.0, recent")
        (tmp_path / "config.json").write_text("{}")
        removed = remove_stale_temps(tmp_path)
        assert sorted(p.name for p in removed) == sorted([f".config.json.{dead}.abcd1234.tmp",
                                                          f".3.{dead}.k2x9ab12.tmp"])
        old = tmp_path / ".config.json.oldstyle.tmp"
        os.utime(old, (time.time() - 2 * 86400,) * 2)
        assert remove_stale_temps(tmp_path) == [old]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            ["config.json", f".config.json.{sleeper.pid}.efgh5678.tmp"])
    finally:
        sleeper.kill()


def test_identical_runs_write_identical_checkpoint_bytes(tmp_path):
    for name in ("a", "b"):
        proc = run_in_process("train", "--model", "mlp", "--model-dir", tmp_path / name, "--steps", "6",
                              "--checkpoint-every", "3", "--deterministic", "--device", "cpu")
        assert proc.returncode == 0, proc.stderr
    a, b = (sorted((tmp_path / n / "checkpoints").iterdir()) for n in ("a", "b"))
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 5
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes(), x.name


def test_cifar_python_batches_pickled_by_python3_with_protocol_2_load(tmp_path):
    rng = np.random.default_rng(0)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [3, 1],
             b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"filenames": [b"a.png", b"b.png"]}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    assert b"_codecs" in path.read_bytes()  # how Python 3 spells bytes at protocol 2
    split = read_python_batch(path, CIFAR["cifar10"])
    assert list(split.labels) == [3, 1] and split.images.shape == (2, 32, 32, 3)
    evil = pickle.dumps(batch, protocol=2).replace(b"latin1", b"rot13\x00"[:6])
    path.write_bytes(evil)
    with pytest.raises(InputError, match="data_batch_1: "):
        read_python_batch(path, CIFAR["cifar10"])
