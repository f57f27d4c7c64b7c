"""What TensorBoard will show, read back with TensorBoard's own event reader; and the progress bar."""

import fcntl
import os
import pty
import struct
import termios
import select
import subprocess
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import child_env


def test_event_files_hold_scalars_histograms_images_graph(trained_digits):
    events = EventAccumulator(str(trained_digits), size_guidance={"histograms": 0, "images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss", "accuracy", "learning_rate", "examples_per_sec"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [40, 80, 120]
    assert "weights/conv1.weight" in tags["histograms"] and "weights/logits.bias" in tags["histograms"]
    assert tags["images"] == ["inputs"]
    assert tags["graph"] is True
    evals = EventAccumulator(str(trained_digits / "eval_test"))
    evals.Reload()
    assert {e.step for e in evals.Scalars("accuracy")} == {120}  # other tests may evaluate it again


def test_terminal_gets_a_progress_bar_and_pipes_get_plain_lines(tmp_path):
    env = child_env(COLUMNS="100")
    cmd = [sys.executable, "-m", "visionflow", "train", "--model", "mlp", "--steps", "60", "--log-every", "20"]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0x0 until sized
    proc = subprocess.Popen([*cmd, "--model-dir", str(tmp_path / "tty")], stdout=subprocess.DEVNULL, stderr=slave,
                            env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        try:
            data = os.read(master, 4096) if ready else b""
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(60)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "\r" in terminal and ("step/s" in terminal or "s/step" in terminal)  # tqdm redraws in place
    assert "step 60/60" in terminal
    piped = subprocess.run([*cmd, "--model-dir", str(tmp_path / "pipe")], capture_output=True, text=True, env=env)
    assert "\r" not in piped.stderr and "step/s" not in piped.stderr
    assert [l.split()[1] for l in piped.stderr.splitlines() if l.startswith("step ")] == ["20/60", "40/60", "60/60"]


def test_mistakes_grid_only_when_there_are_mistakes(tmp_path):
    import numpy as np

    from visionflow.engine.metrics import EvalResult
    from visionflow.engine.plots import save_mistakes_grid

    images = np.zeros((4, 8, 8, 1), np.uint8)
    labels = np.array([0, 1, 1, 0])
    perfect = EvalResult(0.1, 1.0, 4, np.eye(2, dtype=int) * 2, ("a", "b"), 5, "test", labels.copy())
    assert not save_mistakes_grid(images, labels, perfect, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    wrong = EvalResult(0.1, 0.5, 4, np.array([[1, 1], [1, 1]]), ("a", "b"), 5, "test", np.array([0, 0, 1, 1]))
    assert save_mistakes_grid(images, labels, wrong, tmp_path / "two.png")
    assert (tmp_path / "two.png").read_bytes()[:4] == b"\x89PNG"
