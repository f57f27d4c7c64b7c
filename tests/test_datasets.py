import gzip
import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from conftest import MNIST_DIR, needs_fashion, needs_mnist
from visionflow.data.base import dataset_from_arrays
from visionflow.data.catalog import load_dataset
from visionflow.data.mnist import IDX_DATASETS, verify_idx_download
from visionflow.errors import InputError
from visionflow.formats.idx import encode_idx, write_idx


@needs_mnist
def test_real_mnist_splits_like_read_data_sets():
    ds = load_dataset("mnist", data_dir=MNIST_DIR)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (55000, 5000, 10000)
    assert ds.image_shape == (28, 28, 1) and ds.train.images.dtype == np.uint8
    assert sorted(np.unique(ds.test.labels)) == list(range(10))
    # The first training label of the official file is a 5, the first test label a 7.
    assert ds.train.labels[0] == 5 and ds.test.labels[0] == 7


@needs_mnist
def test_real_mnist_files_pass_the_content_checksums():
    for f in IDX_DATASETS["mnist"].files.values():
        assert verify_idx_download((MNIST_DIR / f"{f.name}.gz").read_bytes(), f)


@needs_fashion
def test_fashion_mnist_found_in_debian_location_without_data_dir(tmp_path):
    ds = load_dataset("fashion-mnist", cache_dir=tmp_path, download=False)
    assert (len(ds.train), len(ds.test)) == (55000, 10000)
    assert ds.class_names[9] == "Ankle boot"


def test_digits_is_real_embedded_data():
    ds = load_dataset("digits")
    assert ds.image_shape == (8, 8, 1)
    assert len(ds.train) + len(ds.validation) + len(ds.test) == 1797
    assert ds.train.images.max() == 255 and len(np.unique(ds.train.labels)) == 10


def _fake_idx_dataset(directory: Path, labels_max: int = 9, n: int = 20) -> None:
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        labels = rng.integers(0, 10, n).astype(np.uint8)
        labels[-1] = labels_max
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)


def test_label_out_of_range_names_file_and_record(tmp_path):
    _fake_idx_dataset(tmp_path, labels_max=12)
    with pytest.raises(InputError, match=r"train-labels-idx1-ubyte.gz: label 12 at record 19 out of range 0..9"):
        load_dataset("mnist", data_dir=tmp_path, validation_size=5)


def test_count_mismatch_between_images_and_labels(tmp_path):
    _fake_idx_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(InputError, match="7 labels for 20 images"):
        load_dataset("mnist", data_dir=tmp_path, validation_size=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_mirror(tmp_path):
    """A real HTTP server on loopback serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _patched_spec(monkeypatch, contents: dict[str, bytes]):
    """Point mnist's checksums at our small files: the download code itself stays untouched."""
    from dataclasses import replace

    spec = IDX_DATASETS["mnist"]
    files = {k: replace(f, gz_md5="0" * 32, content_md5=hashlib.md5(contents[f.name]).hexdigest())
             for k, f in spec.files.items()}
    monkeypatch.setitem(IDX_DATASETS, "mnist", replace(spec, files=files, local_dirs=()))
    return files


def test_download_over_http_verifies_and_caches(tmp_path, http_mirror, monkeypatch):
    root, url = http_mirror
    contents = {}
    for name, arr in [("train-images-idx3-ubyte", np.zeros((12, 28, 28), np.uint8)),
                      ("train-labels-idx1-ubyte", np.arange(12, dtype=np.uint8) % 10),
                      ("t10k-images-idx3-ubyte", np.ones((4, 28, 28), np.uint8)),
                      ("t10k-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))]:
        contents[name] = encode_idx(arr)
        (root / f"{name}.gz").write_bytes(gzip.compress(contents[name]))
    _patched_spec(monkeypatch, contents)
    bad_mirror = tmp_path / "bad"
    bad_mirror.mkdir()
    for name in contents:  # a mirror serving wrong bytes is skipped, the next one is used
        (bad_mirror / f"{name}.gz").write_bytes(gzip.compress(b"not the file"))
    cache = tmp_path / "cache"
    ds = load_dataset("mnist", cache_dir=cache, mirrors=[bad_mirror.as_uri() + "/", url], validation_size=2)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (10, 2, 4)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in contents)
    for name in contents:  # served from the cache now: the mirror can go away
        (root / f"{name}.gz").unlink()
    assert len(load_dataset("mnist", cache_dir=cache, mirrors=[url], validation_size=2).test) == 4


def test_download_checksum_mismatch_everywhere_is_an_error(tmp_path, http_mirror, monkeypatch):
    root, url = http_mirror
    _patched_spec(monkeypatch, {n: b"expected" for n in
                                ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")})
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"other"))
    with pytest.raises(InputError, match="checksum mismatch") as e:
        load_dataset("mnist", cache_dir=tmp_path / "c", mirrors=[url])
    assert "404" in str(e.value) or "checksum" in str(e.value)
    assert not (tmp_path / "c" / "train-images-idx3-ubyte.gz").exists()


def test_arrays_float_and_uint8():
    images = np.random.default_rng(0).random((6, 5, 5))
    ds = dataset_from_arrays((images, np.array([0, 1, 2, 0, 1, 2])))
    assert ds.train.images.dtype == np.uint8 and ds.image_shape == (5, 5, 1) and ds.num_classes == 3
    with pytest.raises(InputError, match="labels must be"):
        dataset_from_arrays((images, np.zeros(5, np.int64)))
