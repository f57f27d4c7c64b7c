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

from conftest import ROOT


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
    assert [e.step for e in evals.Scalars("accuracy")] == [120]


def test_terminal_gets_a_progress_bar_and_pipes_get_plain_lines(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "100"}
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
