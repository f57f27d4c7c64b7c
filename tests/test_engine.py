"""The engine's one loop: the callback dispatcher, stopping early, and float16 with loss scaling."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

import visionflow as vf
from visionflow.engine.callbacks import Callback, CallbackList
from visionflow.engine.checkpoint import load_checkpoint
from visionflow.engine.config import TrainConfig


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = (rng.random((n, 6, 6)) * 0.3 + labels[:, None, None] * 0.3).astype(np.float32)
    return images, labels


def _dataset():
    return vf.dataset_from_arrays(_data(), test=_data(30, 1), validation=_data(30, 2))


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start", trainer.global_step, self.trainer is trainer))

    def on_epoch_start(self, epoch):
        self.calls.append(("epoch_start", epoch))

    def on_log(self, step, metrics):
        self.calls.append(("log", step))

    def on_checkpoint(self, step):
        self.calls.append(("checkpoint", step))

    def on_validate(self, epoch, step):
        self.calls.append(("validate", epoch))

    def on_epoch_end(self, epoch, step, result):
        self.calls.append(("epoch_end", epoch, result is not None and result.split))

    def on_fit_end(self, result):
        self.calls.append(("fit_end", result.global_step))

    def teardown(self):
        self.calls.append(("teardown",))


def test_hooks_run_in_the_documented_order_after_the_engines_own(tmp_path):
    rec = Recorder()
    # 96 examples / batch 32 = 3 steps an epoch; 6 steps; log and checkpoint every 3
    vf.train(TrainConfig(model="mlp", dataset="arrays", steps=6, batch_size=32, log_every=3, checkpoint_every=3,
                         device="cpu"), tmp_path / "m", _dataset(), callbacks=[rec], progress_stream=io.StringIO())
    assert rec.calls == [
        ("fit_start", 0, True), ("epoch_start", 0),
        ("log", 3), ("checkpoint", 3), ("validate", 0), ("epoch_end", 0, "validation"),
        ("epoch_start", 1),
        ("log", 6), ("checkpoint", 6), ("validate", 1), ("epoch_end", 1, "validation"),
        ("fit_end", 6), ("teardown",),
    ]


def test_stop_training_ends_fit_with_a_checkpoint_of_that_step(tmp_path):
    class StopAt(Callback):
        def on_step_end(self, step):
            if step == 4:
                self.trainer.stop_training = True

    outcome = vf.train(TrainConfig(model="mlp", dataset="arrays", steps=50, batch_size=32, log_every=100,
                                   checkpoint_every=100, device="cpu"), tmp_path / "m", _dataset(),
                       callbacks=[StopAt()], progress_stream=io.StringIO())
    assert outcome.result.global_step == 4 and load_checkpoint(tmp_path / "m" / "checkpoints").step == 4


def test_teardown_reaches_every_callback_when_training_fails(tmp_path):
    closed = []

    class Boom(Callback):
        def on_step_end(self, step):
            raise RuntimeError("boom")

    class Closer(Callback):
        def teardown(self):
            closed.append(True)

    with pytest.raises(RuntimeError, match="boom"):
        vf.train(TrainConfig(model="mlp", dataset="arrays", steps=5, batch_size=32, device="cpu"), tmp_path / "m",
                 _dataset(), callbacks=[Boom(), Closer()], progress_stream=io.StringIO())
    assert closed == [True]


def test_dispatcher_calls_only_what_each_callback_implements():
    class Partial:  # not a Callback subclass: any object with some hooks works
        def __init__(self):
            self.logs = []

        def on_log(self, step, metrics):
            self.logs.append(step)

    partial, base = Partial(), Callback()
    calls = CallbackList([partial, base])
    assert calls._hooks["on_log"] == [partial.on_log] and calls._hooks["on_step_end"] == []
    calls.call("on_log", 7, {})
    calls.call("on_step_end", 7)
    assert partial.logs == [7]


def test_fp16_autocasts_scales_the_loss_and_keeps_the_scaler_in_checkpoints(tmp_path):
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(36, 32), nn.ReLU(), nn.Linear(32, 3))

        def forward(self, x):
            out = self.net(x)
            if self.training:  # the training steps (TensorBoard's graph trace runs outside them)
                seen.append(out.dtype)
            return out

    config = TrainConfig(model="mlp", dataset="arrays", steps=40, batch_size=32, precision="fp16", device="cpu",
                         log_every=20, checkpoint_every=20, lr=1e-2)
    outcome = vf.train(config, tmp_path / "m", _dataset(), model=Probe, progress_stream=io.StringIO())
    assert set(seen) == {torch.float16}  # not silently float32
    assert outcome.test.accuracy > 0.9
    scaler = load_checkpoint(tmp_path / "m" / "checkpoints").state_meta["grad_scaler"]
    assert scaler["scale"] > 0 and scaler["growth_interval"] == 2000
    resumed = vf.train(config.__class__(**{**config.__dict__, "steps": 50}), tmp_path / "m", _dataset(), model=Probe,
                       progress_stream=io.StringIO())
    assert resumed.result.steps_run == 10


def test_fp16_is_a_flag_choice():
    from visionflow.cli import build_parser

    assert build_parser().parse_args(["train", "--precision", "fp16"]).precision == "fp16"
