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
    events = EventAccumulator(str(trained_digits / "train"),
                              size_guidance={"histograms": 0, "images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    assert {"loss", "accuracy", "learning_rate", "examples_per_sec"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [40, 80, 120]
    assert "weights/conv1.weight" in tags["histograms"] and "weights/logits.bias" in tags["histograms"]
    assert tags["images"] == ["inputs"]
    assert tags["graph"] is True
    assert "config/text_summary" in tags["tensors"]
    plugins = events.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
    assert not list(trained_digits.glob("events.out.*"))  # no run named "." in TensorBoard's list
    evals = EventAccumulator(str(trained_digits / "eval_test"), size_guidance={"images": 0, "tensors": 0})
    evals.Reload()
    assert {e.step for e in evals.Scalars("accuracy")} == {120}  # other tests may evaluate it again
    assert {"confusion_matrix", "mistakes"} <= set(evals.Tags()["images"])
    pr = [t for t in evals.Tags()["tensors"] if t.startswith("pr_curve/")]
    assert len(pr) == 10 and "pr_curve/3_3" in pr
    assert len(list((trained_digits / "eval_test").iterdir())) == 1  # one event file, appended to


def test_an_evaluation_folder_keeps_one_event_file(trained_digits, tmp_path):
    import shutil

    from conftest import run_in_process

    model_dir = tmp_path / "m"
    shutil.copytree(trained_digits, model_dir)

    def evaluations() -> int:
        evals = EventAccumulator(str(model_dir / "eval_test"))
        evals.Reload()
        return len(evals.Scalars("accuracy"))

    before = evaluations()
    for _ in range(3):
        assert run_in_process("evaluate", "--model-dir", model_dir, "--device", "cpu").returncode == 0
    assert len(list((model_dir / "eval_test").iterdir())) == 1
    assert evaluations() == before + 3


def test_a_resumed_run_trims_the_killed_runs_later_steps_so_tensorboard_purges_nothing(tmp_path, caplog):
    import logging

    from conftest import run_in_process

    model_dir = tmp_path / "m"
    flags = ["--model", "mlp", "--model-dir", model_dir, "--log-every", "10", "--checkpoint-every", "20",
             "--device", "cpu"]
    assert run_in_process("train", *flags, "--steps", "40").returncode == 0
    # as if killed after logging step 50 but before its checkpoint: drop checkpoint 40 from the index
    from visionflow.engine.checkpoint import read_index
    import json

    index = read_index(model_dir / "checkpoints")
    index.update(latest=20, steps=[20], max_steps=40)
    (model_dir / "checkpoints" / "index.json").write_text(json.dumps(index))
    assert run_in_process("train", *flags, "--steps", "40").returncode == 0
    with caplog.at_level(logging.WARNING):
        events = EventAccumulator(str(model_dir / "train"))
        events.Reload()
    assert "out of order" not in caplog.text
    assert [e.step for e in events.Scalars("loss")] == [10, 20, 30, 40]  # 30 and 40 once: the resumed run's


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
