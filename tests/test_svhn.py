"""SVHN (data/svhn.py): real-format .mat files written with scipy.io.savemat — labels 1–10 to
classes 0–9, shapes, the extra split, download from a local mirror with the MD5, one-line errors,
and the CIFAR models training on it unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import visionflow.data.svhn as svhn
from conftest import run_cli
from test_remote_data import _Server
from visionflow.data.catalog import load_dataset
from visionflow.errors import InputError


def write_mat(path: Path, n: int, seed: int = 0, **override) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    scipy.io.savemat(str(path), {"X": x, "y": y, **override})
    return x, y


@pytest.fixture
def folder(tmp_path) -> Path:
    write_mat(tmp_path / "train_32x32.mat", 60, seed=1)
    write_mat(tmp_path / "test_32x32.mat", 20, seed=2)
    return tmp_path


def test_labels_ten_are_zero_and_images_are_nhwc(folder) -> None:
    x, y = write_mat(folder / "train_32x32.mat", 60, seed=1)
    ds = load_dataset("svhn", folder, validation_size=10)
    assert ds.train.images.shape == (50, 32, 32, 3) and ds.validation.images.shape == (10, 32, 32, 3)
    assert np.array_equal(ds.train.images[3], x[:, :, :, 3])
    labels = np.concatenate([ds.train.labels, ds.validation.labels])
    assert np.array_equal(labels, y.reshape(-1) % 10) and labels.dtype == np.int64
    assert (labels == 0).sum() == (y == 10).sum() > 0 and ds.class_names == tuple("0123456789")
    write_mat(folder / "extra_32x32.mat", 30, seed=3)
    more = load_dataset("svhn", folder, validation_size=10)
    assert len(more.train) == 80 and len(more.validation) == 10 and len(more.test) == 20


def test_downloads_from_a_mirror_with_the_md5(tmp_path, monkeypatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    write_mat(site / "train_32x32.mat", 30, seed=4)
    write_mat(site / "test_32x32.mat", 10, seed=5)
    for split in ("train", "test"):
        name = svhn.FILES[split][0]
        monkeypatch.setitem(svhn.FILES, split, (name, hashlib.md5((site / name).read_bytes()).hexdigest()))
    server = _Server(site)
    try:
        ds = load_dataset("svhn", None, validation_size=5, cache_dir=tmp_path / "cache", mirrors=[server.url + "/"])
        assert len(ds.train) == 25 and (tmp_path / "cache" / "train_32x32.mat").exists()
        (site / "test_32x32.mat").write_bytes(b"not the published file")
        with pytest.raises(InputError, match="checksum mismatch"):
            load_dataset("svhn", None, cache_dir=tmp_path / "other", mirrors=[server.url + "/"])
    finally:
        server.close()


def test_bad_mat_files_are_one_line(folder) -> None:
    cases = [({"X": np.zeros((32, 32, 3, 4), np.uint8)}, "no 'X' and 'y'"),
             ({"X": np.zeros((28, 28, 4), np.uint8), "y": np.ones((4, 1))}, "expected (32, 32, 3, N)"),
             ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[1], [2], [11], [3]])}, "label 11 of image 2"),
             ({"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.array([[1], [2]])}, "2 labels in 'y' for 4 images")]
    for variables, message in cases:
        path = folder / "train_32x32.mat"
        path.unlink()
        scipy.io.savemat(str(path), variables)
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            svhn.read_svhn_mat(path)
    path.write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    proc = run_cli("train", "--dataset", "svhn", "--data-dir", str(folder), "--model-dir", str(folder / "m"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "train_32x32.mat" in proc.stderr
    assert not (folder / "m").exists()


@pytest.mark.parametrize("model", ["cifar-cnn", "resnet20", "fastnet"])
def test_the_cifar_models_train_on_it_without_flips(folder, model) -> None:
    proc = run_cli("train", "--model", model, "--dataset", "svhn", "--data-dir", str(folder), "--model-dir",
                   str(folder / model), "--steps", "2", "--batch-size", "10", "--validation-size", "10", "--json")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((folder / model / "config.json").read_text())
    assert config["train"]["augment"]["flip"] == "none" and config["train"]["dataset"] == "svhn"
    assert json.loads(proc.stdout.splitlines()[-1])["global_step"] == 2
