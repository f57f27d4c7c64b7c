"""The CIFAR-10 models and the engine features they need: shapes, parameter counts, TF semantics
of their layers, per-group weight decay, weight averaging, whitening, exact resume, export."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from visionflow.data.augment import Augment
from visionflow.data.base import dataset_from_arrays
from visionflow.data.batches import TensorBatches
from visionflow.engine.averaging import Lookahead, MovingAverage
from visionflow.engine.config import RunConfig, TrainConfig
from visionflow.engine.loop import Trainer
from visionflow.engine.modeldir import ModelDir
from visionflow.engine.optim import make_optimizer, optimizer_groups
from visionflow.engine.recipes import default_config
from visionflow.engine.training import make_run_config
from visionflow.export.exporter import export_model
from visionflow.models import ModelSpec, build_model
from visionflow.models.cifar_cnn import LocalResponseNorm
from visionflow.models.fastnet import patch_whitening


@pytest.mark.parametrize("name, shape, params", [
    ("cifar-cnn", (3, 24, 24), 1_068_298),  # 4,864 + 102,464 + 885,120 + 73,920 + 1,930
    ("resnet20", (3, 32, 32), 269_722),     # "0.27M" in He et al.
    ("resnet56", (3, 32, 32), 853_018),     # "0.85M"
    ("resnet20-v2", (3, 32, 32), 269_722),  # final BN instead of the stem's: same count
    ("fastnet", (3, 32, 32), 1_972_792),    # airbench94: 1.97M (frozen tensors included)
    ("fastnet96", (3, 32, 32), 9_918_776),  # airbench96's 128/384/512, 3 convs a group: 9.9M
])
def test_shapes_and_parameter_counts(name, shape, params):
    net = build_model(ModelSpec(name, 10, shape))
    assert sum(p.numel() for p in net.parameters()) == params
    assert net(torch.randn(2, *shape)).shape == (2, 10)


def test_resnet_depths_are_6n_plus_2_with_option_a_shortcuts():
    for depth, blocks in ((32, 15), (44, 21), (110, 54)):
        net = build_model(ModelSpec(f"resnet{depth}", 10, (3, 32, 32)))
        assert len(net.blocks) == blocks and sum(isinstance(m, nn.Conv2d) for m in net.modules()) == depth - 1
    projected = build_model(ModelSpec("resnet20", 10, (3, 32, 32), {"shortcut": "B"}))
    assert sum(p.numel() for p in projected.parameters()) > 269_722


def test_registry_round_trip_rebuilds_the_same_network_from_config_json():
    spec = ModelSpec("resnet20-v2", 10, (3, 32, 32), {"shortcut": "B"})
    net = build_model(spec).eval()
    again_spec = RunConfig.from_json(RunConfig(TrainConfig(), spec, make_run_config(
        TrainConfig(), dataset_from_arrays((np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 1])))).preprocessing,
        ("a", "b")).to_json()).model
    again = build_model(again_spec).eval()
    again.load_state_dict(net.state_dict())
    x = torch.randn(3, 3, 32, 32)
    assert again_spec == spec and torch.equal(again(x), net(x))


def test_lrn_is_tensorflows_formula_and_torchs_with_alpha_times_size():
    x = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    lrn = LocalResponseNorm(3, depth_radius=1, bias=1.0, alpha=0.1, beta=0.75)
    sums = torch.tensor([1 + 4, 1 + 4 + 9, 4 + 9.0]).view(1, 3, 1, 1)  # windows c-1..c+1, clipped at the ends
    assert torch.allclose(lrn(x), x / (1.0 + 0.1 * sums) ** 0.75)
    x = torch.randn(2, 64, 5, 5) * 3
    tf = LocalResponseNorm(64)  # the tutorial's depth_radius 4, bias 1, alpha 0.001/9, beta 0.75
    torch_lrn = nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)
    assert torch.allclose(tf(x), torch_lrn(x), atol=1e-6)


def test_cifar_cnn_pools_like_tf_same_padding():
    net = build_model(ModelSpec("cifar-cnn", 10, (3, 24, 24)))
    assert net.local3.in_features == 64 * 6 * 6  # 24 → 12 → 6, as TF's SAME 3x3/2 pools


def test_weight_decay_reaches_only_the_dense_layers_of_cifar_cnn():
    net = build_model(ModelSpec("cifar-cnn", 10, (3, 24, 24)))
    config = TrainConfig(optimizer="sgd", lr=0.5, weight_decay=0.004)
    optimizer = make_optimizer(config, optimizer_groups(net, config), torch.device("cpu"))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    (0.0 * net(torch.randn(2, 3, 24, 24)).sum()).backward()  # zero gradients: only decay moves weights
    optimizer.step()
    for name, value in net.state_dict().items():
        if name in ("local3.weight", "local4.weight"):
            assert torch.allclose(value, before[name] * (1 - 0.5 * 0.004)), name
        else:
            assert torch.equal(value, before[name]), name


def test_fastnet_groups_frozen_tensors_and_bias_schedule():
    net = build_model(ModelSpec("fastnet", 10, (3, 32, 32)))
    groups = optimizer_groups(net, TrainConfig(optimizer="nesterov", weight_decay=1e-3))
    assert groups[0]["lr_scale"] == 64.0 and groups[0]["weight_decay"] == pytest.approx(1e-3 / 64)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert id(net.whiten.weight) not in grouped and id(net.groups[0].norm1.weight) not in grouped
    net.set_epoch(2)
    assert net.whiten.bias.requires_grad
    net.set_epoch(3)
    assert not net.whiten.bias.requires_grad


def test_fastnet_whitening_init_whitens_the_training_patches():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=g)
    images = torch.einsum("dc,nchw->ndhw", mix, torch.randn(64, 3, 12, 12, generator=g)).cumsum(-1) * 0.3
    net = build_model(ModelSpec("fastnet", 10, (3, 12, 12), {"widths": [8, 8, 8]}))
    net.init_from_data(images)
    out = torch.nn.functional.conv2d(images, net.whiten.weight[:12])  # the + half: one filter per eigenvector
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12)
    cov = flat.T @ flat / len(flat)
    eigenvalues, _ = patch_whitening(images, 2)
    assert torch.allclose(cov, torch.diag(eigenvalues / (eigenvalues + 5e-4)), atol=2e-3)
    assert torch.equal(net.whiten.weight[12:], -net.whiten.weight[:12])


def test_moving_average_is_tensorflows_with_num_updates():
    net = nn.Linear(2, 1)
    initial = net.weight.detach().clone()
    ema = MovingAverage(net, decay=0.9)
    values = [torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]]), torch.tensor([[0.5, 0.5]])]
    want = initial.clone()
    for step, value in enumerate(values, 1):
        with torch.no_grad():
            net.weight.copy_(value)
        ema.after_step(net, step)
        d = min(0.9, (1 + step) / (10 + step))  # 2/11, 3/12, 4/13
        want = d * want + (1 - d) * value
    assert torch.allclose(ema.module.weight, want, atol=1e-6)
    assert ema.decay_at(10**6) == 0.9 and not ema.module.weight.requires_grad


def test_lookahead_syncs_every_k_steps_from_its_epoch_and_at_epoch_ends():
    net = nn.Linear(1, 1, bias=False)
    la = Lookahead(net, every=2, decay=0.5, start_epoch=1, steps_per_epoch=4, total_steps=8)
    def set_and_step(value: float, step: int, end: bool = False) -> float:
        with torch.no_grad():
            net.weight.fill_(value)
        la.after_step(net, step, end)
        return float(net.weight.detach())
    assert set_and_step(1.0, 2) == 1.0 and la.average is None  # epoch 0: nothing
    assert set_and_step(2.0, 4, True) == 2.0
    assert set_and_step(4.0, 6) == 4.0 and float(la.average[0]) == 4.0  # first sync in epoch 1 starts it
    rho = 0.5**2 * (8 / 8) ** 3
    assert set_and_step(8.0, 8, True) == pytest.approx(rho * 4 + (1 - rho) * 8)


def _tiny_cifar(n: int = 96) -> object:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n + 32, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n + 32)
    return dataset_from_arrays((images[:n], labels[:n]), test=(images[n:], labels[n:]))


class _Killed(Exception):
    pass


class _KillAt:
    """Stops training at a global step, as SIGKILL would: whatever was not checkpointed is lost."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_log(self, step: int, metrics: dict) -> None:
        if step >= self.step:
            raise _Killed(step)


def _trainer(directory, config: TrainConfig, dataset, stop_at: int | None = None,
             model_options: dict | None = None) -> Trainer:
    run = make_run_config(config, dataset)
    run = dataclasses.replace(run, model=dataclasses.replace(run.model, options=model_options or {}))
    model_dir = ModelDir(directory)
    if model_dir.exists():
        run = model_dir.load_config()
    model_dir.path.mkdir(parents=True, exist_ok=True)
    model_dir.save_config(run)
    torch.manual_seed(config.seed)
    batches = TensorBatches(dataset.train, run.preprocessing, config.batch_size, "cpu", shuffle=True,
                            seed=config.seed, drop_last=True, augment=config.augment)
    callbacks = [_KillAt(stop_at)] if stop_at else []
    return Trainer(build_model(run.model), run, model_dir, torch.device("cpu"), batches, callbacks=callbacks,
                   progress_stream=open("/dev/null", "w"))


@pytest.mark.parametrize("model, steps, options, model_options", [
    ("cifar-cnn", 8, {"checkpoint_every": 4}, {}),
    ("fastnet", 12, {"optimizer": "nesterov", "lookahead_every": 5, "lookahead_start_epoch": 1, "batch_size": 16,
                     "checkpoint_every": 3}, {"widths": [16, 32, 32]}),
    ("fastnet", 12, {"batch_size": 16, "checkpoint_every": 3}, {"widths": [16, 32, 32]}),  # Muon
])
def test_stopping_and_resuming_equals_an_uninterrupted_run_bit_for_bit(tmp_path, model, steps, options, model_options):
    """With the moving average (cifar-cnn) or lookahead (fastnet: started at step 5, killed at 7) in the
    checkpoint, or fastnet's Muon momentum buffers.

    Killed after a log line, as SIGKILL would (tests/test_resume.py kills real processes).  The CPU
    kernels these small models use are deterministic without `torch.use_deterministic_algorithms`
    (whose first call imports torch's compiler: seconds this test need not spend)."""
    dataset = _tiny_cifar(48 if model == "fastnet" else 96)
    base = default_config(model, "cifar10")
    config = dataclasses.replace(base, augment=dataclasses.replace(base.augment, crop=12 if base.augment.crop else 0),
                                 **{"batch_size": 32, "checkpoint_every": 2, "log_every": 1, "device": "cpu",
                                    "precision": "fp32", **options})
    straight = _trainer(tmp_path / "straight", config, dataset, model_options=model_options)
    straight.fit(steps)
    stopped = _trainer(tmp_path / "stopped", config, dataset, stop_at=steps // 2 + 1, model_options=model_options)
    with pytest.raises(_Killed):
        stopped.fit(steps)
    resumed = _trainer(tmp_path / "stopped", config, dataset, model_options=model_options)
    assert resumed.global_step == steps // 2  # the last checkpoint before the "kill"
    resumed.fit(steps)
    want = load_file(str(tmp_path / "straight" / "checkpoints" / f"ckpt-{steps:08d}.state.safetensors"))
    got = load_file(str(tmp_path / "stopped" / "checkpoints" / f"ckpt-{steps:08d}.state.safetensors"))
    assert want.keys() == got.keys()
    prefix = "train." if model == "cifar-cnn" else "average." if config.lookahead_every else "optimizer."
    assert any(k.startswith(prefix) for k in got)
    for key in want:
        assert torch.equal(want[key], got[key]), key
    weights = [load_file(str(tmp_path / d / "checkpoints" / f"ckpt-{steps:08d}.safetensors")) for d in ("straight", "stopped")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    if model == "cifar-cnn":  # the weights file holds the average, not the training weights
        assert not torch.equal(weights[0]["local3.weight"], got["train.local3.weight"])
        assert torch.equal(resumed.eval_model.state_dict()["local3.weight"], weights[0]["local3.weight"])


def _model_dir_with_checkpoint(directory, model: str, options: dict, augment: Augment):
    """A model directory holding an untrained (but initialised) model: enough to export."""
    from visionflow.engine.checkpoint import save_checkpoint

    dataset = _tiny_cifar(32)
    config = dataclasses.replace(default_config(model, "arrays"), augment=augment)
    run = make_run_config(config, dataset)
    run = dataclasses.replace(run, model=dataclasses.replace(run.model, options=options))
    model_dir = ModelDir(directory)
    model_dir.path.mkdir(parents=True)
    model_dir.save_config(run)
    torch.manual_seed(0)
    net = build_model(run.model)
    if hasattr(net, "init_from_data"):
        net.init_from_data(run.preprocessing.normalize(torch.from_numpy(dataset.train.images)))
    save_checkpoint(model_dir.checkpoints, 1, net, None, {}, 1)
    return model_dir.path


@pytest.mark.parametrize("model, options, augment", [
    ("resnet20", {}, Augment(pad=4, flip="random")),
    ("fastnet", {"widths": [8, 16, 16]}, Augment(pad=2, pad_mode="reflect", flip="alternating", tta=2)),
])
def test_export_puts_the_eval_transform_in_the_graph_and_verifies(tmp_path, model, options, augment):
    directory = _model_dir_with_checkpoint(tmp_path / "m", model, options, augment)
    result = export_model(directory, tmp_path / "exports")
    assert result.verification.max_abs_diff <= result.verification.tolerance
    signature = json.loads((result.path / "signature.json").read_text())
    assert signature["inputs"][0]["shape"] == [-1, 16, 16, 3] and signature["preprocessing"]["tta"] == augment.tta


def test_compiled_fastnet_has_the_eager_bf16_gradients():
    """torch.compile of an amax after a bf16 GELU gave NaN gradients (fastnet's --compile run diverged
    at step 2 on an H200); the pooling that replaced it must give the eager gradients, finite."""
    torch.manual_seed(0)
    net = build_model(ModelSpec("fastnet", 10, (3, 16, 16), {"widths": [8, 16, 16]}))
    x = torch.randn(32, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    net.init_from_data(x)

    def grads(model: nn.Module) -> list[torch.Tensor]:
        net.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(inputs)
        out.float().square().mean().backward()
        return [inputs.grad] + [p.grad for p in net.parameters() if p.grad is not None]

    eager, compiled = grads(net), grads(torch.compile(net))
    assert len(compiled) == len(eager) and all(torch.isfinite(g).all() for g in compiled)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=0.05, atol=1e-3)
