"""`visionflow export`: what a version directory holds, parity with PyTorch, and every refusal."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import assert_one_line_error, run_cli, snapshot
from serving_support import trained_models
from visionflow.data.catalog import load_dataset
from visionflow.engine.evaluation import load_model
from visionflow.engine.modeldir import ModelDir
from visionflow.errors import InputError
from visionflow.export.exportdir import VERSION_FILES, ExportBase, Signature
from visionflow.export.exporter import export_model
from visionflow.export.graph import ServingGraph
from visionflow.export.verify import DEFAULT_TOLERANCE, verify_export
from visionflow.infer.predict import predict_probabilities


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return trained_models(tmp_path_factory)


@pytest.fixture(scope="module")
def exports(models, tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """cnn through the CLI (version 1), then mlp through the Python API (version 2), into one base."""
    base = tmp_path_factory.mktemp("base")
    proc = run_cli("export", "--model-dir", models["cnn"], "--export-base", base)
    assert proc.returncode == 0, proc.stderr
    result = export_model(models["mlp"], base)
    assert result.version == 2 and result.path == base / "2"
    return {"cnn": (base, proc.stdout), "mlp": (base, "")}


def test_export_writes_a_complete_verified_version(models, exports):
    base, stdout = exports["cnn"]
    assert "as version 1: " in stdout and "verified: onnxruntime matches PyTorch on 256 examples (digits test split)" in stdout
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]  # no staging directory left behind
    version = base / "1"
    assert sorted(p.name for p in version.iterdir()) == sorted(VERSION_FILES)
    signature = Signature.load(version / "signature.json")
    run = ModelDir(models["cnn"]).load_config()
    assert signature.preprocessing == run.preprocessing and signature.model == run.model
    assert signature.global_step == 8 and signature.visionflow_version == "0.1.0"
    assert (signature.input.name, signature.input.dtype, signature.input.shape) == ("images", "uint8", (-1, 8, 8, 1))
    assert [(o.name, o.dtype, o.shape) for o in signature.outputs] == [
        ("probabilities", "float32", (-1, 10)), ("classes", "int64", (-1,))]
    assert signature.verification["source"] == "digits test split"
    assert signature.verification["max_abs_diff"] <= DEFAULT_TOLERANCE
    assert (version / "labels.txt").read_text() == (models["cnn"] / "labels.txt").read_text()
    onnx.checker.check_model(str(version / "model.onnx"), full_check=True)
    _, model, step = load_model(ModelDir(models["cnn"]), torch.device("cpu"))
    weights = load_file(str(version / "model.safetensors"))
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert ExportBase(base).versions() == [1, 2] and ExportBase(base).next_version() == 3


@pytest.mark.parametrize("kind,version", [("cnn", 1), ("mlp", 2)])
def test_onnx_matches_local_predict_on_the_test_split(models, exports, kind, version):
    """The exported graph takes raw uint8 pixels and agrees with `visionflow predict`'s path."""
    base, _ = exports[kind]
    run, model, _ = load_model(ModelDir(models[kind]), torch.device("cpu"))
    test = load_dataset("digits").test
    want = predict_probabilities(model, run.preprocessing.normalize(torch.from_numpy(test.images)), "fp32").numpy()
    session = ort.InferenceSession(str(base / str(version) / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("images", "tensor(uint8)")]
    for batch in (1, 7, len(test)):
        probabilities, classes = session.run(["probabilities", "classes"], {"images": test.images[:batch]})
        assert np.abs(probabilities - want[:batch]).max() <= 1e-4
        assert (classes == want[:batch].argmax(1)).all()


def test_serving_graph_normalises_exactly_like_training(models):
    run, model, _ = load_model(ModelDir(models["cnn"]), torch.device("cpu"))
    images = torch.randint(0, 256, (5, 8, 8, 1), dtype=torch.uint8)
    graph = ServingGraph(model, run.preprocessing)
    assert torch.equal(graph.normalize(images), run.preprocessing.normalize(images))


def test_export_refusals_are_one_line_errors_and_publish_nothing(models, exports, tmp_path):
    base, _ = exports["cnn"]
    before = snapshot(base)
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    cli_cases = [
        (("--model-dir", models["cnn"], "--export-base", base, "--version", "1"), "version 1 already exists"),
        (("--model-dir", not_a_model, "--export-base", base), "not a visionflow model directory"),
        (("--export-base", base), "the following arguments are required: --model-dir"),
    ]
    with ThreadPoolExecutor(len(cli_cases)) as pool:
        procs = list(pool.map(lambda case: run_cli("export", *case[0]), cli_cases))
    for proc, (_, fragment) in zip(procs, cli_cases):
        assert_one_line_error(proc, fragment)

    no_checkpoint = tmp_path / "fresh"
    no_checkpoint.mkdir()
    shutil.copy(models["cnn"] / "config.json", no_checkpoint / "config.json")
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    api_cases = [
        ((models["cnn"], base, 0), "must be an integer from 1"),
        ((models["cnn"], base, 2), "version 2 already exists"),
        ((no_checkpoint, base, None), "no checkpoint yet"),
        ((models["cnn"], a_file, None), "export base is not a directory"),
    ]
    for args, fragment in api_cases:
        with pytest.raises(InputError, match=fragment):
            export_model(*args)
    assert snapshot(base) == before


def test_diverged_weights_are_refused_before_publishing(models, tmp_path):
    """A checkpoint with NaN weights is refused as damaged when it is read: nothing is published.
    (A graph that returns non-finite probabilities is refused by verification too.)"""
    broken = tmp_path / "diverged"
    shutil.copytree(models["mlp"], broken)
    checkpoint = next((broken / "checkpoints").glob("ckpt-*[0-9].safetensors"))
    weights = load_file(str(checkpoint))
    weights["layers.1.weight"][0, 0] = float("nan")
    save_file(weights, str(checkpoint), metadata={"global_step": "8"})
    base = tmp_path / "base"
    with pytest.raises(InputError, match="'layers.1.weight' holds NaN or infinite values"):
        export_model(broken, base)
    assert not base.exists() or list(base.iterdir()) == []  # no version, no staging directory
    run, model, _ = load_model(ModelDir(models["mlp"]), torch.device("cpu"))
    with torch.no_grad():
        model.layers[1].weight.fill_(float("nan"))  # as if a module diverged in memory
    graph = ServingGraph(model, run.preprocessing).eval()
    images = load_dataset("digits").test.images[:4]
    with pytest.raises(InputError, match="not finite"):
        verify_export(exports_dir(models, tmp_path) / "model.onnx", graph, images, "digits test split")


def exports_dir(models, tmp_path):
    return export_model(models["mlp"], tmp_path / "good").path


def test_verification_catches_an_onnx_file_that_is_not_the_model(models, exports):
    """verify_export compares the ONNX file with the PyTorch graph it is said to be; a mismatch fails."""
    base, _ = exports["mlp"]
    run, model, _ = load_model(ModelDir(models["mlp"]), torch.device("cpu"))
    images = load_dataset("digits").test.images[:64]
    graph = ServingGraph(model, run.preprocessing).eval()
    ok = verify_export(base / "2" / "model.onnx", graph, images, "digits test split")
    assert ok.max_abs_diff <= DEFAULT_TOLERANCE and ok.examples == 64
    with torch.no_grad():
        model.layers[-1].bias.add_(0.5 * torch.arange(10.0))  # the same network, other weights
    with pytest.raises(InputError, match="onnxruntime differs from PyTorch by .* not published"):
        verify_export(base / "2" / "model.onnx", graph, images, "digits test split")
    corrupt = base.parent / "corrupt.onnx"
    corrupt.write_bytes((base / "2" / "model.onnx").read_bytes()[:1000])
    with pytest.raises(InputError, match="onnx.checker rejects the export"):
        verify_export(corrupt, graph, images, "digits test split")


def test_signature_json_round_trips(exports):
    base, _ = exports["cnn"]
    text = (base / "1" / "signature.json").read_text()
    assert Signature.load(base / "1" / "signature.json").to_json() == text
    raw = json.loads(text)
    raw["outputs"] = raw["outputs"][:1]
    bad = base.parent / "bad-signature.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(InputError, match="expected outputs probabilities, classes"):
        Signature.load(bad)
