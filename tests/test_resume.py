"""Exact resume: SIGKILL a real training process, run the same command again, compare bits."""

import json
import random
import signal
import subprocess
import sys
import time

from safetensors.torch import load_file

from conftest import child_env

STEPS = 240
ARGS = ["train", "--model", "cnn", "--steps", str(STEPS), "--batch-size", "32", "--checkpoint-every", "15",
        "--log-every", "15", "--deterministic", "--device", "cpu", "--seed", "7", "--keep-checkpoints", "3"]


def _command(model_dir):
    return [sys.executable, "-m", "visionflow", *ARGS, "--model-dir", str(model_dir)]


def _env():
    return child_env()


def _final_weights(model_dir):
    index = json.loads((model_dir / "checkpoints" / "index.json").read_text())
    assert index["latest"] == STEPS
    return load_file(str(model_dir / "checkpoints" / f"ckpt-{STEPS:08d}.safetensors"))


def _latest(model_dir):
    try:
        return json.loads((model_dir / "checkpoints" / "index.json").read_text())["latest"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_sigkill_then_rerun_equals_uninterrupted_bit_for_bit(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_command(reference), check=True, env=_env(), capture_output=True, timeout=300)
    expected = _final_weights(reference)

    resumed = tmp_path / "resumed"
    rng = random.Random(1234)
    kills = 0
    for kill_after in (15, 90, 165):  # three kills, each at a random moment after checkpoint N
        proc = subprocess.Popen(_command(resumed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while _latest(resumed) < kill_after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.15))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(30)
        assert _latest(resumed) < STEPS, "run finished before it could be killed: slow the test down"
    assert kills == 3
    final = subprocess.run(_command(resumed), env=_env(), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    got = _final_weights(resumed)
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].dtype == expected[name].dtype
        assert got[name].numpy().tobytes() == expected[name].numpy().tobytes(), name
