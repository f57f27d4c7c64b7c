"""Model directories and exports written by visionflow 0.1.0 (the flat layout) still load, and
answer exactly what 0.1.0 answered: tests/fixtures/legacy-0.1.0 was written by that version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, run_in_process
from visionflow.data.augment import RETRAIN_DISTORTIONS, Augment
from visionflow.engine.config import RunConfig

FIXTURE = ROOT / "tests" / "fixtures" / "legacy-0.1.0"


@pytest.fixture()
def old_dir(tmp_path) -> Path:
    target = tmp_path / "digits-mlp"
    shutil.copytree(FIXTURE / "digits-mlp", target)
    return target


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_old_config_fields_are_migrated_into_augment():
    run = RunConfig.load(FIXTURE / "digits-mlp" / "config.json")
    assert run.train.augment == Augment(pad=1)  # 0.1.0's augment_shift 1
    retrain = RunConfig.load(FIXTURE / "retrain-config.json")
    assert retrain.train.augment == RETRAIN_DISTORTIONS and retrain.model.options["backbone"] == "efficientnet_lite0"
    saved = json.loads(retrain.to_json())["train"]
    assert "distortions" not in saved and "augment_shift" not in saved and saved["augment"]["zoom"] == 0.1


def test_old_model_dir_evaluates_and_predicts_as_0_1_0_did(old_dir):
    proc = run_in_process("evaluate", "--model-dir", old_dir, "--json", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    now, then = json.loads(proc.stdout), json.loads((FIXTURE / "evaluate.json").read_text())
    assert now["confusion_matrix"] == then["confusion_matrix"] and now["global_step"] == then["global_step"] == 150
    assert now["accuracy"] == then["accuracy"] and now["loss"] == pytest.approx(then["loss"], abs=1e-6)
    proc = run_in_process("predict", "--model-dir", old_dir, "--json", "--device", "cpu", FIXTURE / "inputs.npy")
    assert proc.returncode == 0, proc.stderr
    now, then = _jsonl(proc.stdout), _jsonl((FIXTURE / "predict.jsonl").read_text())
    assert [p["class"] for p in now] == [p["class"] for p in then]
    assert np.allclose([p["probabilities"] for p in now], [p["probabilities"] for p in then], atol=2e-6)


def test_old_model_dir_continues_training_and_exports(old_dir, tmp_path):
    proc = run_in_process("train", "--model-dir", old_dir, "--steps", "170", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "global step 170" in proc.stdout
    saved = json.loads((old_dir / "config.json").read_text())["train"]
    assert saved["augment"]["pad"] == 1 and "augment_shift" not in saved and saved["steps"] == 170
    pytest.importorskip("onnxruntime")
    proc = run_in_process("export", "--model-dir", old_dir, "--export-base", tmp_path / "exports")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "exports" / "1" / "model.onnx").is_file()


def test_old_export_labels_and_serves_as_0_1_0_did(tmp_path):
    pytest.importorskip("onnxruntime")
    proc = run_in_process("label-image", "--export", FIXTURE / "export" / "1", "--json", "--top-k", "3",
                          FIXTURE / "inputs.npy")
    assert proc.returncode == 0, proc.stderr
    now, then = _jsonl(proc.stdout), _jsonl((FIXTURE / "label_export.jsonl").read_text())
    assert [[t["label"] for t in r["top_k"]] for r in now] == [[t["label"] for t in r["top_k"]] for r in then]
    assert np.allclose([[t["score"] for t in r["top_k"]] for r in now],
                       [[t["score"] for t in r["top_k"]] for r in then], atol=1e-6)

    from visionflow.export.exportdir import ExportBase
    from visionflow.serving.batching import Arrivals
    from visionflow.serving.runtime import RuntimeOptions, load_version

    served = load_version(ExportBase(FIXTURE / "export"), 1, RuntimeOptions(runtime="onnxruntime"), Arrivals())
    try:
        images = np.load(FIXTURE / "inputs.npy")[..., None]
        out = served.runner.run(images)
    finally:
        served.batcher.close()
    then = _jsonl((FIXTURE / "predict.jsonl").read_text())
    assert np.allclose(out["probabilities"], [p["probabilities"] for p in then], atol=2e-6)
    assert out["classes"].tolist() == [p["class"] for p in then]
