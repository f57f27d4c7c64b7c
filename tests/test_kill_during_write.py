"""SIGKILL during the write of each file of a checkpoint — config.json, the weights, the training
state, the index — then the same command again: it resumes to the weights an uninterrupted run
ends with, bit for bit, and no temporary file of the killed write is left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import child_env, run_in_process

STEPS = ["--steps", "24", "--checkpoint-every", "8", "--log-every", "8"]
FLAGS = ["--model", "mlp", "--batch-size", "32", "--deterministic", "--device", "cpu", *STEPS]

#: Kill just before the `occurrence`-th write of a file whose name ends with `suffix` is published
#: (its bytes are in the temporary file, fsynced; the rename has not happened).
KILLER = textwrap.dedent("""
    import os, signal, sys
    suffix, occurrence = sys.argv[1], int(sys.argv[2])
    seen = 0
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        global seen
        if str(dst).endswith(suffix):
            seen += 1
            if seen == occurrence:
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)

    os.replace = replace
    from visionflow.cli import main
    sys.exit(main(sys.argv[3:]))
""")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, bytes]:
    run = tmp_path_factory.mktemp("reference") / "m"
    proc = run_in_process("train", "--model-dir", run, *FLAGS)
    assert proc.returncode == 0, proc.stderr
    return _final(run)


def _final(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (run / "checkpoints").glob("ckpt-00000024*")}


@pytest.mark.parametrize("suffix, occurrence", [
    ("config.json", 1),  # written with the first checkpoint (step 8)
    ("ckpt-00000016.safetensors", 1),  # the weights of the second checkpoint
    ("ckpt-00000016.state.safetensors", 1),  # its optimizer and RNG state
    ("index.json", 2),  # the index that would point at step 16
])
def test_kill_during_a_checkpoint_write_then_resume(tmp_path, uninterrupted, suffix, occurrence):
    run = tmp_path / "m"
    killed = subprocess.run([sys.executable, "-c", KILLER, suffix, str(occurrence), "train", "--model-dir", str(run),
                             *FLAGS], env=child_env(), capture_output=True, text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    leftovers = [p.name for p in run.rglob(".*.tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{suffix}."), leftovers  # the interrupted write
    proc = run_in_process("train", "--model-dir", run, *FLAGS)
    assert proc.returncode == 0, proc.stderr
    assert "global step 24" in proc.stdout
    assert _final(run) == uninterrupted
    assert not list(run.rglob(".*.tmp"))  # the killed write's temporary file was cleaned up
