"""`visionflow export`: a model directory's checkpoint → a verified, servable version directory.

An export is built in a dot-prefixed staging directory inside the export base, verified, and
only then renamed to `BASE/<version>/` — one atomic step, so a server watching the base sees
either no new version or a complete one.  Verification is not optional: the ONNX file must
pass `onnx.checker`, and onnxruntime must reproduce PyTorch's probabilities on real examples
(the run's dataset test split) to within `DEFAULT_TOLERANCE`, at the batch sizes a server uses.
A failed export publishes nothing.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..core.fsio import publish_dir, remove_stale_temps, staging_dir
from ..core.version import VERSION
from ..errors import InputError
from ..preprocessing import Preprocessing
from ..engine.evaluation import load_model
from ..engine.modeldir import ModelDir
from .exportdir import INPUT_NAME, OUTPUT_NAMES, ExportBase, Signature, check_version
from .graph import ServingGraph
from .verify import DEFAULT_TOLERANCE, Verification, verification_images, verify_export

ONNX_OPSET = 18


@dataclass(frozen=True)
class ExportResult:
    path: Path
    version: int
    model: str
    global_step: int
    verification: Verification


def export_model(model_dir: str | os.PathLike, export_base: str | os.PathLike, version: int | None = None,
                 tolerance: float = DEFAULT_TOLERANCE) -> ExportResult:
    """Export the latest checkpoint of `model_dir` as `export_base/<version>/` (default: the next one).

    Raises InputError (nothing published) when the version exists, the model cannot be
    loaded, or the exported graph fails verification.
    """
    base = ExportBase(export_base)
    if base.path.exists() and not base.path.is_dir():
        raise InputError(f"{base.path}: export base is not a directory")
    if version is not None:
        check_version(version)
        _refuse_existing(base, version)
    run, model, step = load_model(ModelDir(model_dir), torch.device("cpu"))
    graph = ServingGraph(model, run.preprocessing).eval()
    base.path.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else base.next_version()
    _refuse_existing(base, version)
    remove_stale_temps(base.path)  # exports killed half-way
    staging = staging_dir(base.path, str(version))
    try:
        onnx_info = write_onnx(graph, run.preprocessing, staging / "model.onnx")
        write_weights(model, staging / "model.safetensors", step)
        images, source = verification_images(run)
        verification = verify_export(staging / "model.onnx", graph, images, source, tolerance)
        signature = Signature.for_model(run.model, run.preprocessing, tuple(run.class_names), step, VERSION,
                                        onnx_info, verification.to_dict())
        (staging / "signature.json").write_text(signature.to_json())
        (staging / "labels.txt").write_text("".join(f"{name}\n" for name in run.class_names))
        final = _publish(staging, base, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(final, version, run.model.name, step, verification)


def write_onnx(graph: ServingGraph, pre: Preprocessing, path: Path) -> dict:
    """torch.export-based ONNX export with a dynamic batch dimension; returns facts for the signature."""
    example = torch.zeros((2, pre.height, pre.width, pre.channels), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.onnx.export(graph, (example,), None, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                    dynamo=True, opset_version=ONNX_OPSET, dynamic_shapes={"images": {0: batch}},
                                    verbose=False)
        program.save(str(path))
    except Exception as e:  # the exporter raises many unrelated types; any of them means "cannot export"
        raise InputError(f"ONNX export of {type(graph.model).__name__} failed: {str(e).strip().splitlines()[0]}") from None
    return {"opset": ONNX_OPSET, "exporter": f"torch.onnx (torch.export) {torch.__version__}"}


def write_weights(model: nn.Module, path: Path, step: int) -> None:
    from safetensors.torch import save_file

    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(path), metadata={"global_step": str(step)})


def _refuse_existing(base: ExportBase, version: int) -> None:
    if base.version_dir(version).exists():
        raise InputError(f"{base.version_dir(version)}: version {version} already exists "
                         "(versions are immutable: omit --version for the next one)")


def _publish(staging: Path, base: ExportBase, version: int) -> Path:
    final = base.version_dir(version)
    _refuse_existing(base, version)
    try:
        publish_dir(staging, final)
    except OSError as e:
        raise InputError(f"{final}: could not publish version {version} ({e.strerror})") from None
    return final
