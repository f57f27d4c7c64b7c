"""`visionflow inspect`: variables, filter and feature-map pictures, per-example gradients (vmap
equal to the per-example loop), on models trained for a few steps; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli
from visionflow.data.base import dataset_from_arrays
from visionflow.engine.config import TrainConfig
from visionflow.engine.evaluation import load_model
from visionflow.engine.modeldir import ModelDir
from visionflow.engine.training import train
from visionflow.inspection.gradients import norms_loop, norms_vmap


@pytest.fixture(scope="module")
def cnn_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("inspect") / "cnn"
    train(TrainConfig(model="cnn", dataset="digits", steps=40, batch_size=32, log_every=100, device="cpu"), directory)
    return directory


def non_blank(path: Path, size: tuple[int, int] = (200, 120)) -> np.ndarray:
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    assert pixels.shape[1] >= size[0] and pixels.shape[0] >= size[1], pixels.shape
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # a picture, not a blank
    return pixels


def test_variables_list_every_parameter_and_buffer(cnn_dir) -> None:
    proc = run_cli("inspect", "variables", "--model-dir", str(cnn_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    _, model, _ = load_model(ModelDir(cnn_dir), torch.device("cpu"))
    names = [v["name"] for v in out["variables"]]
    assert names == [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    conv1 = next(v for v in out["variables"] if v["name"] == "conv1.weight")
    w = model.conv1.weight.detach().double()
    assert conv1["shape"] == [32, 1, 5, 5] and conv1["count"] == 800 and conv1["trainable"]
    assert conv1["mean"] == pytest.approx(float(w.mean())) and conv1["std"] == pytest.approx(float(w.std(unbiased=False)))
    assert out["global_step"] == 40
    proc = run_cli("inspect", "variables", "--model-dir", str(cnn_dir), "--match", "conv2")
    assert proc.returncode == 0 and "conv2.weight" in proc.stdout and "conv1" not in proc.stdout
    proc = run_cli("inspect", "variables", "--model-dir", str(cnn_dir), "--match", "lstm*")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no variable" in proc.stderr


def test_filters_and_feature_maps_are_pictures(cnn_dir, tmp_path) -> None:
    proc = run_cli("inspect", "filters", "--model-dir", str(cnn_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    non_blank(Path(json.loads(proc.stdout)["png"]))
    proc = run_cli("inspect", "filters", "--model-dir", str(cnn_dir), "--layer", "conv2")
    assert proc.returncode == 0 and (cnn_dir / "filters_conv2.png").exists()
    from visionflow.data.catalog import load_dataset

    digit = load_dataset("digits", None).test
    Image.fromarray(digit.images[0, ..., 0]).save(tmp_path / "digit.png")
    proc = run_cli("inspect", "activations", str(tmp_path / "digit.png"), "--model-dir", str(cnn_dir), "--json",
                   "--layer", "conv*,dense")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [a["layer"] for a in out["layers"]] == ["conv1", "conv2", "dense"]
    assert out["layers"][0]["shape"] == [32, 8, 8] and out["layers"][2]["shape"] == [1024]
    assert len(out["top"]) == 5 and out["top"][0]["probability"] >= out["top"][1]["probability"]
    non_blank(Path(out["png"]))


def test_rgb_kernels_are_drawn_in_colour(tmp_path) -> None:
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8), rng.integers(0, 3, 64)
    ds = dataset_from_arrays((images, labels), test=(images[:8], labels[:8]), class_names=["a", "b", "c"])
    train(TrainConfig(model="cnn", steps=2, batch_size=16, log_every=100, device="cpu"), tmp_path / "rgb", dataset=ds)
    proc = run_cli("inspect", "filters", "--model-dir", str(tmp_path / "rgb"))
    assert proc.returncode == 0, proc.stderr
    pixels = non_blank(tmp_path / "rgb" / "filters_conv1.png", (150, 100))
    assert np.abs(pixels[..., 0] - pixels[..., 2]).mean() > 1  # colour, not grey


def test_per_example_gradients_vmap_equal_the_loop(cnn_dir) -> None:
    from visionflow.data.catalog import load_dataset

    _, model, _ = load_model(ModelDir(cnn_dir), torch.device("cpu"))
    model.eval()
    test = load_dataset("digits", None).test
    run = ModelDir(cnn_dir).load_config()
    x = run.preprocessing.normalize(torch.from_numpy(test.images[:40]))
    y = torch.from_numpy(test.labels[:40]).long()
    fast, slow = norms_vmap(model, x, y, chunk=16), norms_loop(model, x, y)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-6)
    proc = run_cli("inspect", "gradients", "--model-dir", str(cnn_dir), "--top", "6", "--limit", "120", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    norms = [row["norm"] for row in out["top"]]
    assert out["method"] == "vmap" and out["count"] == 120 and norms == sorted(norms, reverse=True)
    assert norms[0] == pytest.approx(out["norm_max"]) and out["norm_max"] > out["norm_median"]
    non_blank(Path(out["png"]))


def test_bad_requests_are_one_line(cnn_dir, tmp_path) -> None:
    train(TrainConfig(model="mlp", dataset="digits", steps=2, batch_size=16, log_every=100, device="cpu"), tmp_path / "mlp")
    cases = [("filters", "--model-dir", str(tmp_path / "mlp"), "no convolution layers"),
             ("filters", "--model-dir", str(cnn_dir), "--layer", "conv9", "not a convolution layer"),
             ("activations", str(tmp_path / "missing.png"), "--model-dir", str(cnn_dir), "not found"),
             ("activations", str(tmp_path / "x.npy"), "--model-dir", str(cnn_dir), "x.npy"),
             ("activations", str(tmp_path / "x.png"), "--model-dir", str(cnn_dir), "--layer", "nothing*", "no layer matches")]
    np.save(tmp_path / "x.npy", np.zeros((2, 5, 7, 3), np.uint8))  # the wrong size for an 8×8 greyscale model
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    for *args, message in cases:
        proc = run_cli("inspect", *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, (args, proc.stderr)


def test_training_time_summaries_of_activations_and_gradients(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    outcome = train(TrainConfig(model="cnn", dataset="digits", steps=30, batch_size=32, log_every=10, device="cpu",
                                summarize_activations="conv*,dense", summarize_gradients=True), tmp_path / "m")
    assert all(not m._forward_hooks for m in outcome.model.modules())  # no hook left behind
    events = EventAccumulator(str(tmp_path / "m" / "train"), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    assert {"activations/conv1", "activations/conv2", "activations/dense"} <= set(events.Tags()["histograms"])
    assert [e.step for e in events.Scalars("zero_fraction/conv2")] == [10, 20, 30]
    norms = events.Scalars("gradient_norm/conv1.weight")
    assert len(norms) == 3 and all(e.value > 0 for e in norms)
    proc = run_cli("train", "--model-dir", str(tmp_path / "bad"), "--steps", "3", "--summarize-activations", "lstm*")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no layer matches" in proc.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("name, shape", [("mlp", (1, 8, 8)), ("rnn", (1, 8, 8)), ("cifar-cnn", (3, 24, 24)),
                                         ("resnet20", (3, 32, 32)), ("fastnet", (3, 32, 32))])
def test_every_image_model_gives_per_example_gradients_and_variables(name, shape) -> None:
    from visionflow.inspection.variables import model_variables
    from visionflow.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(name, 10, shape)).eval()
    x = torch.randn(6, *shape).contiguous(memory_format=torch.channels_last)
    y = torch.arange(6) % 10
    torch.testing.assert_close(norms_vmap(model, x, y), norms_loop(model, x, y), rtol=1e-3, atol=1e-5)
    found = model_variables(model)
    assert sum(v.count for v in found if v.kind == "parameter") == sum(p.numel() for p in model.parameters())


def test_large_feature_maps_are_sampled_down_whole() -> None:
    from visionflow.inspection.pictures import _tile

    big = np.arange(112 * 112, dtype=np.float64).reshape(112, 112)
    tile = _tile(big, 48)
    assert tile.shape == (48, 48) and not np.isnan(tile).any()
    assert tile[-1, -1] > 0.95 * big.max()  # the far corner is in the tile, not cropped away
    small = _tile(np.eye(4), 48)
    assert np.array_equal(small[:12, :12], np.ones((12, 12))) and small[12, 0] == 0
