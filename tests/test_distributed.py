"""Data-parallel training on torch.distributed (gloo on the CPU, started by torchrun): the same
run as one process with the same global batch, disjoint data per rank, rank 0 alone writing,
exact distributed evaluation, resume across world sizes, and a killed rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, child_env
from visionflow.data.augment import Augment
from visionflow.data.base import Split
from visionflow.data.batches import TensorBatches
from visionflow.errors import InputError
from visionflow.preprocessing import fit_preprocessing

TIMEOUT = 180  # a hung collective fails the test instead of stalling CI

RUN = textwrap.dedent("""
    import os, signal, sys
    import visionflow as vf
    from visionflow.engine.config import TrainConfig
    from visionflow.engine.training import train

    model_dir, steps, kill_step, marker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    class Kill(vf.Callback):
        def on_step_end(self, step):
            rank = int(os.environ.get("RANK", "0"))
            if step == kill_step and rank == int(os.environ.get("WORLD_SIZE", "1")) - 1 and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)

    config = TrainConfig(model="cnn", dataset="digits", steps=steps, batch_size=32, dropout=0.0, precision="fp32",
                         checkpoint_every=10, log_every=10, seed=0)
    train(config, model_dir, callbacks=[Kill()])
""")


def _run(tmp: Path, processes: int, model_dir: Path, steps: int, kill_step: int = 0, marker: str = "kill-marker",
         restarts: int = 0) -> subprocess.CompletedProcess:
    script = tmp / "run.py"
    script.write_text(RUN)
    args = [str(model_dir), str(steps), str(kill_step), str(tmp / marker)]
    if processes == 1:
        command = [sys.executable, str(script), *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   f"--max-restarts={restarts}", str(script), *args]
    return _run_group(command, ROOT)


def _run_group(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `command` in its own process group; on timeout the whole group (torchrun's workers
    too) is killed, so a hang fails this test without leaving processes behind."""
    proc = subprocess.Popen(command, env=child_env(OMP_NUM_THREADS="1"), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {TIMEOUT} s: {' '.join(command)}\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    latest = json.loads((model_dir / "checkpoints" / "index.json").read_text())["latest"]
    return load_file(model_dir / "checkpoints" / f"ckpt-{latest:08d}.safetensors")


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tolerance: float = 1e-5) -> float:
    assert a.keys() == b.keys()
    difference = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert difference < tolerance, difference
    return difference


def _images(n: int = 50) -> Split:
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), np.arange(n) % 10)


def test_ranks_split_each_global_batch_disjointly() -> None:
    split = _images()
    pre = fit_preprocessing(split.images)
    augment = Augment(flip="random", pad=2)
    one = TensorBatches(split, pre, 10, shuffle=True, seed=3, drop_last=True, augment=augment)
    ranks = [TensorBatches(split, pre, 10, shuffle=True, seed=3, drop_last=True, augment=augment, rank=r,
                           world_size=2) for r in range(2)]
    for epoch in (0, 1):
        for whole, part0, part1 in zip(one.epoch(epoch), ranks[0].epoch(epoch), ranks[1].epoch(epoch)):
            assert len(part0[1]) == len(part1[1]) == 5
            assert torch.equal(torch.cat([part0[0], part1[0]]), whole[0])  # same examples, same distortions
            assert torch.equal(torch.cat([part0[1], part1[1]]), whole[1])
    with pytest.raises(InputError, match="global batch"):
        TensorBatches(split, pre, 9, rank=0, world_size=2)


def test_two_processes_train_the_one_process_run(tmp_path: Path) -> None:
    single, double = tmp_path / "single", tmp_path / "double"
    one = _run(tmp_path, 1, single, 30)
    assert one.returncode == 0, one.stderr
    two = _run(tmp_path, 2, double, 30)
    assert two.returncode == 0, two.stderr[-3000:]
    _close(_weights(single), _weights(double))
    # Rank 0 alone wrote: the same files as one process, one event file per run directory.
    files = lambda d: sorted(str(p.relative_to(d)).split(".")[0] for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(single) == files(double)
    assert len(list((double / "train").glob("events.out.*"))) == 1
    # Distributed evaluation (359 test examples: uneven over 2 ranks) equals one process's.
    a, b = (json.loads((d / "eval_test.json").read_text()) for d in (single, double))
    assert a["count"] == b["count"] == 359
    assert a["accuracy"] == b["accuracy"] and a["loss"] == pytest.approx(b["loss"], abs=1e-5)
    assert two.stderr.count("visionflow: cnn on digits") == 1  # one header, from rank 0


def test_resume_across_world_sizes_and_a_killed_rank(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert _run(tmp_path, 1, reference, 40).returncode == 0
    expected = _weights(reference)

    # Two processes, the last rank SIGKILLed at step 25: the job ends, naming the rank and cause.
    run = tmp_path / "two-then-one"
    killed = _run(tmp_path, 2, run, 40, kill_step=25, marker="a")
    assert killed.returncode != 0
    assert "rank: 1" in killed.stderr or "local_rank: 1" in killed.stderr, killed.stderr[-2000:]
    assert "SIGKILL" in killed.stderr or "-9" in killed.stderr
    reached = json.loads((run / "checkpoints" / "index.json").read_text())["latest"]
    assert reached in (10, 20)
    resumed = _run(tmp_path, 1, run, 40)  # … and one process continues the same run
    assert resumed.returncode == 0, resumed.stderr
    _close(_weights(run), expected)

    # One process killed at 15; two processes continue it, and their last rank is killed at 35;
    # started again, they resume from step 30 and finish the same run.
    run = tmp_path / "one-then-two"
    assert _run(tmp_path, 1, run, 40, kill_step=15, marker="b").returncode == -9
    assert _run(tmp_path, 2, run, 40, kill_step=35, marker="c").returncode != 0
    assert json.loads((run / "checkpoints" / "index.json").read_text())["latest"] in (20, 30)
    restarted = _run(tmp_path, 2, run, 40)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    _close(_weights(run), expected)


def test_nproc_per_node_flag_launches_torchrun(tmp_path: Path) -> None:
    out = _run_group([sys.executable, "-m", "visionflow", "train", "--model", "mlp", "--steps", "10",
                      "--batch-size", "30", "--model-dir", str(tmp_path / "m"), "--nproc-per-node", "2"], tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "data-parallel over 2 processes" in out.stderr and out.stdout.count("test accuracy") == 1
    bad = _run_group([sys.executable, "-m", "visionflow", "train", "--model", "mlp", "--steps", "10",
                      "--batch-size", "31", "--model-dir", str(tmp_path / "n"), "--nproc-per-node", "2"], tmp_path)
    assert bad.returncode != 0 and "--batch-size 31 is the global batch" in bad.stderr
    assert not (tmp_path / "n").exists()


KERAS = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from visionflow import keras
    from visionflow.keras import layers
    rng = np.random.default_rng(0)
    x = rng.normal(size=(330, 6, 6, 1)).astype("float32")
    y = (x.mean((1, 2, 3)) * 8).astype("int64") % 3
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                              layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x[:300], y[:300], batch_size=30, epochs=3, validation_data=(x[300:], y[300:]), verbose=0)
    if int(os.environ.get("RANK", "0")) == 0:
        model.save_weights(sys.argv[1])
        json.dump(history.history, open(sys.argv[1] + ".json", "w"))
""")


def test_keras_fit_under_torchrun_is_the_one_process_fit(tmp_path: Path) -> None:
    script = tmp_path / "keras_fit.py"
    script.write_text(KERAS)
    out = {}
    for processes in (1, 2):
        target = tmp_path / f"k{processes}.safetensors"
        command = [sys.executable, str(script), str(target)] if processes == 1 else [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script), str(target)]
        done = _run_group(command, ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        out[processes] = (load_file(target), json.loads(Path(str(target) + ".json").read_text()))
    _close(out[1][0], out[2][0])
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):  # metrics summed over the processes exactly
        np.testing.assert_allclose(out[1][1][key], out[2][1][key], atol=1e-5)


def test_max_restarts_resumes_a_killed_rank_by_itself(tmp_path: Path) -> None:
    """torchrun --max-restarts 1: the last rank is SIGKILLed at step 25 once; the agent restarts both
    workers, which resume from step 20 and end where the uninterrupted run ends.  Three runs: a
    restarted attempt reading the previous attempt's gloo address failed or hung 2 times in 3
    before each attempt got its own store prefix."""
    reference = tmp_path / "reference"
    assert _run(tmp_path, 1, reference, 40).returncode == 0
    expected = _weights(reference)
    for attempt in range(3):
        run = tmp_path / f"restarted-{attempt}"
        done = _run(tmp_path, 2, run, 40, kill_step=25, marker=f"restart-{attempt}", restarts=1)
        assert done.returncode == 0, done.stderr[-3000:]
        assert (tmp_path / f"restart-{attempt}").exists()  # the kill did happen
        assert "resuming from step 20" in done.stderr
        _close(_weights(run), expected)
