import json

import pytest
import torch

from visionflow.engine.checkpoint import load_checkpoint, read_index, restore_optimizer, rng_states, save_checkpoint, weights_path
from visionflow.engine.config import TrainConfig
from visionflow.engine.optim import make_optimizer
from visionflow.errors import InputError


def _trained(optimizer_name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = make_optimizer(TrainConfig(optimizer=optimizer_name, lr=0.01), model.parameters(), torch.device("cpu"))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(5, 4)).sum().backward()
        opt.step()
    return model, opt


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "adagrad"])
def test_optimizer_state_roundtrip_continues_identically(tmp_path, name):
    model, opt = _trained(name)
    save_checkpoint(tmp_path, 3, model, opt, {"torch": torch.get_rng_state()}, keep=5)
    model2, opt2 = _trained(name)
    for p in model2.parameters():
        p.data.add_(1.0)
    ckpt = load_checkpoint(tmp_path)
    model2.load_state_dict(ckpt.weights)
    restore_optimizer(opt2, ckpt)
    x = torch.randn(5, 4)
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    saved_rng = rng_states(ckpt)["torch"]
    assert saved_rng.dtype == torch.uint8 and saved_rng.shape == torch.get_rng_state().shape


def test_keep_last_n_and_index(tmp_path):
    model, opt = _trained("adam")
    for step in range(1, 8):
        save_checkpoint(tmp_path, step * 10, model, opt, {}, keep=3)
    index = read_index(tmp_path)
    assert index == {"latest": 70, "steps": [50, 60, 70]}
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == sorted(
        [f"ckpt-000000{s}.safetensors" for s in (50, 60, 70)] + [f"ckpt-000000{s}.state.safetensors" for s in (50, 60, 70)])
    assert not list(tmp_path.glob(".*tmp"))


def test_corrupt_checkpoint_named(tmp_path):
    model, opt = _trained("sgd")
    save_checkpoint(tmp_path, 5, model, opt, {}, keep=2)
    path = weights_path(tmp_path, 5)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(InputError, match=f"{path}: corrupt checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"latest": "x"}))
    with pytest.raises(InputError, match="corrupt checkpoint index"):
        load_checkpoint(tmp_path)


def test_files_hold_no_pickle(tmp_path):
    model, opt = _trained("adam")
    save_checkpoint(tmp_path, 1, model, opt, {"torch": torch.get_rng_state()}, keep=1)
    for p in tmp_path.glob("*.safetensors"):
        header_len = int.from_bytes(p.read_bytes()[:8], "little")
        json.loads(p.read_bytes()[8 : 8 + header_len])  # safetensors: a JSON header, then raw tensor bytes
        assert b"\x80\x04\x95" not in p.read_bytes()[: 8 + header_len]


def test_channels_last_conv_with_fused_adam_resumes_identically(tmp_path):
    """Moments saved contiguous must come back in the parameter's channels-last layout."""
    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 2))
        model = model.to(memory_format=torch.channels_last)
        return model, make_optimizer(TrainConfig(optimizer="adam", lr=0.01), model.parameters(), torch.device("cpu"))

    x = torch.randn(4, 3, 6, 6).contiguous(memory_format=torch.channels_last)

    def step(m, o):
        o.zero_grad()
        m(x).square().sum().backward()
        o.step()

    model, opt = make()
    for _ in range(3):
        step(model, opt)
    save_checkpoint(tmp_path, 3, model, opt, {}, keep=1)
    model2, opt2 = make()
    ckpt = load_checkpoint(tmp_path)
    model2.load_state_dict(ckpt.weights)
    restore_optimizer(opt2, ckpt)
    step(model, opt)
    step(model2, opt2)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
