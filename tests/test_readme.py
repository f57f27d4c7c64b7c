"""The README's tours, run as written: every Python block, and the command-line tours' commands
(shortened to a few steps each, and fed small local copies of the data they name)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import CIFAR_DIR, FASHION_DIR, MNIST_DIR, ROOT, SHARED, needs_cifar, needs_fashion, needs_mnist, run_in_process

README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_the_python_tour_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)
    blocks = _blocks("python")
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "runs" / "digits" / "checkpoints" / "index.json").is_file()
    assert (tmp_path / "exports" / "mine" / "1" / "model.onnx").is_file()
    assert (tmp_path / "runs" / "digits.keras").is_file() and (tmp_path / "runs" / "keras-history.png").is_file()
    assert (tmp_path / "exports" / "keras-digits" / "1" / "model.onnx").is_file()
    assert not (tmp_path / "runs" / "keras-backup").exists()  # BackupAndRestore removes it after a finished fit


def _commands() -> list[str]:
    """Every `visionflow ...` line of the README's bash blocks, continuation lines joined."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("visionflow "):
                commands.append(line)
    return commands


#: Commands that cannot run in a test, and why (each is exercised elsewhere in the suite).
SKIPPED = {
    "visionflow board": "serves until stopped (test_cli starts it and reads its runs)",
    "visionflow serve": "serves until stopped (test_serving drives a real server)",
    "--server": "needs a running server (test_serving checks predict --server against local predict)",
    "--device cuda": "needs a GPU",
    "visionflow train ...": "a flag list, not a command",
    "--backbone resnet50": "needs ResNet-50 weights, which only a download provides",
    "--nproc-per-node 8": "eight processes (test_distributed runs the same path with two gloo processes)",
    "--corpus ptb": "downloads PTB (test_lm downloads a named corpus from a local mirror with its checksum)",
}


@needs_mnist
@needs_fashion
@needs_cifar
def test_the_command_line_tours_run(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    _stage_inputs(tmp_path, monkeypatch)
    ran = 0
    for command in _commands():
        if any(marker in command for marker in SKIPPED):
            continue
        args = shlex.split(command)[1:]
        args = [str(tmp_path / "cifar10-small") if a == "../shared/data/cifar10-jpeg" else
                str(tmp_path / "shakespeare.txt") if a == "../shared/data/tinyshakespeare/input.txt" else a for a in args]
        if args[0] in ("train", "retrain"):
            args = _shortened(args)
        if args[:2] == ["lm", "train"]:
            args += ["--steps", "6", "--hidden", "32", "--embed", "16", "--batch-size", "8", "--bptt", "20"]
        proc = run_in_process(*args)
        assert proc.returncode == 0, (command, proc.stderr[-2000:])
        ran += 1
    assert ran >= 15


def _shortened(args: list[str]) -> list[str]:
    """A few steps instead of the recipe's epochs (a continued run: a few more than it has)."""
    if "--steps" in args:
        i = args.index("--steps")
        return args[:i] + ["--steps", "8"] + args[i + 2:]
    return args + ["--steps", "4", "--batch-size", "16"]


def _stage_inputs(tmp: Path, monkeypatch) -> None:
    """The files the tour names, small, in a scratch working directory; MNIST pre-cached so the
    'downloads MNIST' command finds it offline."""
    from PIL import Image

    from visionflow.data.catalog import load_dataset
    from visionflow.data.tfrecord_images import export_image_folder

    monkeypatch.chdir(tmp)
    cache = tmp / "cache"
    shutil.copytree(MNIST_DIR, cache / "mnist")
    monkeypatch.setenv("VISIONFLOW_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fashion = load_dataset("fashion-mnist", FASHION_DIR).test.images[:3]
    Image.fromarray(fashion[0, ..., 0]).save(tmp / "shoe.png")
    np.save(tmp / "batch.npy", fashion[..., 0])
    _small_cifar(tmp / "cifar10-small")  # a few hundred records of the real shards, for the cifar commands
    (tmp / "shakespeare.txt").write_bytes((SHARED / "data" / "tinyshakespeare" / "input.txt").read_bytes()[:60_000])
    _cifar_python_batches(tmp / "cifar-10-batches-py")
    _sklearn_csv(tmp)
    labels = (CIFAR_DIR / "labels.txt").read_text().split()
    shards = sorted(CIFAR_DIR.glob("train-*.tfrecord"))[:1]
    export_image_folder(shards, tmp / "flower_photos", labels, ["ship", "automobile"], 12, size=64)
    shutil.copy(next((tmp / "flower_photos" / "ship").iterdir()), tmp / "rose.jpg")
    shutil.copy(next((tmp / "flower_photos" / "automobile").iterdir()), tmp / "grace_hopper.jpg")


def _sklearn_csv(tmp: Path) -> None:
    """iris.csv (class names in the last column) and diabetes.csv (a number to predict), from
    the copies scikit-learn ships."""
    from sklearn.datasets import load_diabetes, load_iris

    iris, diabetes = load_iris(), load_diabetes()
    rows = [",".join(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])]
    rows += [",".join(map(str, x)) + f",{iris.target_names[t]}" for x, t in zip(iris.data, iris.target)]
    (tmp / "iris.csv").write_text("\n".join(rows) + "\n")
    rows = [",".join([*diabetes.feature_names, "progression"])]
    rows += [",".join(f"{v:.6f}" for v in x) + f",{t:g}" for x, t in zip(diabetes.data, diabetes.target)]
    (tmp / "diabetes.csv").write_text("\n".join(rows) + "\n")


def _small_cifar(out: Path) -> None:
    import itertools

    from visionflow.formats.tfrecord import frame_record, read_records

    out.mkdir()
    for source, target, count in (("train-00000-of-00005.tfrecord", "train-00000-of-00001.tfrecord", 256),
                                  ("train-00001-of-00005.tfrecord", "validation-00000-of-00001.tfrecord", 32),
                                  ("test-00000-of-00001.tfrecord", "test-00000-of-00001.tfrecord", 64)):
        records = itertools.islice(read_records(CIFAR_DIR / source), count)
        (out / target).write_bytes(b"".join(frame_record(r) for r in records))
    shutil.copy(CIFAR_DIR / "labels.txt", out / "labels.txt")


def _cifar_python_batches(directory: Path) -> None:
    import pickle

    rng = np.random.default_rng(0)
    directory.mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, 20)],
                 b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * 20}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [n.encode() for n in (CIFAR_DIR / "labels.txt").read_text().split()],
            b"num_cases_per_batch": 20, b"num_vis": 3072}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
