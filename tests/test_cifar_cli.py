"""`visionflow train --model cifar-cnn` end to end on a few hundred real CIFAR-10 images, then the
separate evaluator (`evaluate --watch`) and export on the same model directory."""

from __future__ import annotations

import itertools
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import CIFAR_DIR, needs_cifar, run_cli
from visionflow.cli import build_parser
from visionflow.cli.train import config_flags
from visionflow.data.augment import Augment
from visionflow.engine.modeldir import ModelDir
from visionflow.engine.recipes import resolve_config
from visionflow.formats.tfrecord import frame_record, read_records


@pytest.fixture(scope="module")
def small_cifar(tmp_path_factory) -> Path:
    """320 training and 100 test records copied byte for byte from the real CIFAR-10 JPEG shards."""
    out = tmp_path_factory.mktemp("cifar10")
    for source, target, count in (("train-00000-of-00005.tfrecord", "train-00000-of-00001.tfrecord", 320),
                                  ("test-00000-of-00001.tfrecord", "test-00000-of-00001.tfrecord", 100)):
        records = itertools.islice(read_records(CIFAR_DIR / source), count)
        (out / target).write_bytes(b"".join(frame_record(r) for r in records))
    shutil.copy(CIFAR_DIR / "labels.txt", out / "labels.txt")
    return out


def test_pipeline_flags_override_only_their_part_of_the_recipe(tmp_path):
    args = build_parser().parse_args(["train", "--model", "cifar-cnn", "--flip", "alternating", "--contrast", "0.5", "1.5",
                                      "--ema-decay", "0.999"])
    flags = config_flags(args)
    config = resolve_config(ModelDir(tmp_path / "new"), flags)
    assert config.augment == Augment(crop=24, flip="alternating", brightness=63 / 255, contrast=(0.5, 1.5),
                                     standardize="per_image")
    assert config.ema_decay == 0.999 and config.weight_decay == 0.004


@needs_cifar
def test_train_cifar_cnn_then_watch_evaluate_and_export(small_cifar, tmp_path, monkeypatch):
    env = {"VISIONFLOW_CACHE": str(tmp_path / "cache")}
    monkeypatch.setenv("VISIONFLOW_CACHE", env["VISIONFLOW_CACHE"])
    model_dir = tmp_path / "run"
    train = run_cli("train", "--model", "cifar-cnn", "--dataset", "cifar10", "--data-dir", small_cifar,
                    "--validation-size", "64", "--steps", "8", "--batch-size", "32", "--checkpoint-every", "4",
                    "--log-every", "4", "--device", "cpu", "--model-dir", model_dir, "--json", env=env)
    assert train.returncode == 0, train.stderr
    trained = json.loads(train.stdout.splitlines()[-1])
    assert trained["global_step"] == 8 and trained["count"] == 100

    config = json.loads((model_dir / "config.json").read_text())
    assert config["preprocessing"]["center_crop"] == [24, 24] and config["preprocessing"]["standardize"] == "per_image"
    assert config["model"]["input_shape"] == [3, 24, 24] and config["train"]["ema_decay"] == 0.9999
    assert config["train"]["augment"]["crop"] == 24 and config["train"]["augment"]["contrast"] == [0.2, 1.8]
    state = load_file(str(model_dir / "checkpoints" / "ckpt-00000008.state.safetensors"))
    assert "train.local3.weight" in state  # the weights file holds the moving average

    # the separate evaluator (a process of its own, running while this one exports): moving-average
    # weights and the central-crop view, exactly as training's own test evaluation
    with ThreadPoolExecutor(1) as pool:
        watching = pool.submit(run_cli, "evaluate", "--model-dir", model_dir, "--watch", "--json", "--poll", "0.1",
                               "--timeout", "0.5", env=env)
        from visionflow.export.exporter import export_model

        exported = export_model(model_dir, tmp_path / "exports")
        watch = watching.result()
    assert watch.returncode == 0, watch.stderr
    result = json.loads(watch.stdout.splitlines()[-1])
    assert result["global_step"] == 8 and result["count"] == 100
    assert result["accuracy"] == trained["accuracy"] and result["loss"] == pytest.approx(trained["loss"], abs=1e-6)
    assert list((model_dir / "eval_test").glob("events.out.tfevents.*"))
    assert exported.verification.source == "cifar10 test split" and exported.verification.examples == 100
    signature = json.loads((exported.path / "signature.json").read_text())
    assert signature["inputs"][0]["shape"] == [-1, 32, 32, 3]  # raw pixels in: crop and standardization in the graph
