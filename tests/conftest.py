"""Shared helpers: real subprocess runs of the CLI, real data locations, directory snapshots."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: The serving tests' shared fixtures (model_dir, version_dir, digits) live with their helpers.
pytest_plugins = ["serving_support"]

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VISIONFLOW_SHARED", ROOT.parent / "shared"))
MNIST_DIR = SHARED / "data" / "mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR_DIR = SHARED / "data" / "cifar10-jpeg"

needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                                 reason=f"real MNIST not found in {MNIST_DIR} (../shared is not in a user checkout)")
needs_cifar = pytest.mark.skipif(not (CIFAR_DIR / "test-00000-of-00001.tfrecord").exists(),
                                 reason=f"CIFAR-10 JPEG TFRecords not found in {CIFAR_DIR} (../shared is not in a user checkout)")
needs_fashion = pytest.mark.skipif(not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(),
                                   reason=f"Fashion-MNIST not found in {FASHION_DIR} (apt-get install dataset-fashion-mnist)")


def pytest_addoption(parser) -> None:
    parser.addoption("--fuzz-long", action="store_true", help="run the fuzz harness with 20x the cases")
    parser.addoption("--fuzz-seed", type=int, default=0, help="seed of the fuzz harness's mutations")


def child_env(**extra: str) -> dict[str, str]:
    """This environment for a `python -m visionflow` child: src/ first on PYTHONPATH, the rest kept."""
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_cli(*args: str, timeout: float = 240, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m visionflow ARGS` as a user would, capturing output."""
    full_env = child_env(**(env or {}))
    return subprocess.run([sys.executable, "-m", "visionflow", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd)


def snapshot(directory: Path) -> dict[str, str]:
    """SHA-256 of every file below `directory`, to prove nothing in it changed."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def run_in_process(*args: str) -> subprocess.CompletedProcess:
    """`visionflow ARGS` through `cli.main` in this process, output captured: no interpreter and
    torch start-up (~4 s a run), for error paths that stop before anything is trained or saved.
    The exit code is main's return value (or argparse's SystemExit code)."""
    from visionflow.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 2
    return subprocess.CompletedProcess(["visionflow", *map(str, args)], code, out.getvalue(), err.getvalue())


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory) -> Path:
    """A small cnn model dir trained on the embedded digits (shared by read-only tests)."""
    model_dir = tmp_path_factory.mktemp("digits") / "cnn"
    proc = run_cli("train", "--model-dir", model_dir, "--steps", "120", "--batch-size", "64",
                   "--checkpoint-every", "40", "--log-every", "40")
    assert proc.returncode == 0, proc.stderr
    return model_dir
