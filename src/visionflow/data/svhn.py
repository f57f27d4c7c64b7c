"""`svhn`: the Street View House Numbers (cropped digits, 32×32 colour), the CIFAR-10 tutorial's
suggested exercise.

The official files are MATLAB v5 `.mat` files read with `scipy.io.loadmat`: `X` is
(32, 32, 3, N) uint8 and `y` (N, 1) holds labels 1–10, where 10 means the digit 0 — so a
label maps to class `y % 10` and the classes are the digits 0–9.  `train_32x32.mat` and
`test_32x32.mat` are required; `extra_32x32.mat` (531,131 easier images), when present in the
data directory, is appended to the training split after the validation hold-out (the last 5,000
of train) is taken.  Missing files are downloaded into the cache from the canonical mirror and
checked against their published MD5s.

Before anything is read, the variables' declared shapes are checked (`scipy.io.whosmat`) against
MAX_ELEMENTS, so a crafted header cannot ask for an arbitrary allocation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.cache import default_cache_dir
from ..errors import InputError
from .base import Dataset, Split, hold_out
from .catalog import DataRequest, DatasetReader, register_reader
from .download import download_checked, md5_problem

CLASS_NAMES = tuple(str(i) for i in range(10))
MIRRORS = ("http://ufldl.stanford.edu/housenumbers/",)
#: File name → published MD5 (the dataset page's files as torchvision checks them).
FILES = {"train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
         "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
         "extra": ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7")}
#: The most pixel values one file's X may declare (extra's 531,131 images are 1.63e9).
MAX_ELEMENTS = 2_000_000_000


def read_svhn_mat(path: Path) -> Split:
    """One SVHN .mat file as (N, 32, 32, 3) uint8 images and labels 0–9 (10 → 0)."""
    import scipy.io

    try:
        declared = {name: shape for name, shape, _ in scipy.io.whosmat(str(path))}
        if "X" not in declared or "y" not in declared:
            raise InputError(f"{path}: no 'X' and 'y' variables (not an SVHN .mat file); it holds "
                             f"{', '.join(sorted(declared)) or 'nothing'}")
        if int(np.prod(declared["X"], dtype=np.float64)) > MAX_ELEMENTS:
            raise InputError(f"{path}: 'X' declares shape {declared['X']}, more than {MAX_ELEMENTS:,} values")
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
    except InputError:
        raise
    except Exception as e:  # scipy's MatReadError, ValueError, OSError, zlib errors: all "unreadable"
        raise InputError(f"{path}: not a readable MATLAB v5 file ({type(e).__name__}: {e})") from None
    x, y = mat["X"], np.asarray(mat["y"])
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise InputError(f"{path}: 'X' has shape {x.shape}, expected (32, 32, 3, N)")
    if x.dtype != np.uint8:
        raise InputError(f"{path}: 'X' holds {x.dtype}, expected uint8 pixels")
    y = y.reshape(-1)
    if len(y) != x.shape[3]:
        raise InputError(f"{path}: {len(y):,} labels in 'y' for {x.shape[3]:,} images in 'X'")
    bad = np.flatnonzero((y < 1) | (y > 10) | (y != np.round(y)))
    if len(bad):
        raise InputError(f"{path}: label {float(y[bad[0]]):g} of image {bad[0]} is outside 1–10")
    return Split(np.ascontiguousarray(x.transpose(3, 0, 1, 2)), (y.astype(np.int64) % 10))


def _directory(request: DataRequest) -> Path:
    if request.data_dir is not None:
        directory = Path(request.data_dir)
        if not directory.is_dir():
            raise InputError(f"{directory}: data directory not found")
        return directory
    directory = Path(request.cache_dir) if request.cache_dir else default_cache_dir() / "svhn"
    for split in ("train", "test"):
        name, md5 = FILES[split]
        if (directory / name).is_file():
            continue
        if not request.download:
            raise InputError(f"svhn: {name} is not in {directory} and downloads are off; pass --data-dir DIR")
        download_checked(name, request.mirrors or MIRRORS, directory / name, md5_problem(md5))
    return directory


def load_svhn(request: DataRequest) -> Dataset:
    directory = _directory(request)
    for split in ("train", "test"):
        if not (directory / FILES[split][0]).is_file():
            raise InputError(f"{directory / FILES[split][0]}: file not found (SVHN needs train_32x32.mat and test_32x32.mat)")
    train, validation = hold_out(read_svhn_mat(directory / FILES["train"][0]), request.validation_size or 0, "svhn")
    extra = directory / FILES["extra"][0]
    if extra.is_file() and "train" in request.splits:
        more = read_svhn_mat(extra)
        train = Split(np.concatenate([train.images, more.images]), np.concatenate([train.labels, more.labels]))
    return Dataset("svhn", train, validation, read_svhn_mat(directory / FILES["test"][0]), CLASS_NAMES)


register_reader(DatasetReader("svhn", load_svhn, default_validation=5000))
