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
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..core.fsio import publish_dir, remove_stale_temps, staging_dir
from ..core.version import VERSION
from ..errors import InputError
from ..preprocessing import Preprocessing, pixel_batch
from ..engine.config import RunConfig, TrainConfig
from ..engine.evaluation import load_model
from ..engine.modeldir import ModelDir
from ..models.spec import ModelSpec
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


def export_model(source: str | os.PathLike | nn.Module, export_base: str | os.PathLike, version: int | None = None,
                 tolerance: float = DEFAULT_TOLERANCE, *, model: nn.Module | None = None,
                 example_input: np.ndarray | None = None, class_names: Sequence[str] | None = None) -> ExportResult:
    """Export a model as `export_base/<version>/` (default: the next version).

    `source` is a model directory (its latest checkpoint; `model` is the module to load it into
    when the directory holds a custom one) or a `torch.nn.Module` itself.  A bare module takes
    `example_input` — images (N, H, W[, C]) uint8 0–255 (or float 0–1) — which fixes its input
    contract: the graph feeds it those pixels scaled to 0–1, NCHW, and the export is verified on
    them; `class_names` name its outputs (default "0", "1", …).

    Raises InputError (nothing published) when the version exists, the model cannot be loaded,
    or the exported graph fails verification against PyTorch.
    """
    base = ExportBase(export_base)
    if base.path.exists() and not base.path.is_dir():
        raise InputError(f"{base.path}: export base is not a directory")
    if version is not None:
        check_version(version)
        _refuse_existing(base, version)
    if isinstance(source, nn.Module):
        run, net, step, examples = _bare_module(source, example_input, class_names)
        images, images_source = examples, "example_input"
    else:
        directory = ModelDir(source)
        problem = directory.load_config().not_an_image_classifier()
        if problem:
            raise InputError(f"{directory.location}: this model {problem}; export and serving take image classifiers "
                             "(use it from Python: Classifier(model_dir).predict)")
        run, net, step = load_model(directory, torch.device("cpu"), model=model)
        images, images_source = (_as_pixels(example_input, run.preprocessing) if example_input is not None
                                 else verification_images(run))
    graph = ServingGraph(net, run.preprocessing).eval()
    base.path.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else base.next_version()
    _refuse_existing(base, version)
    remove_stale_temps(base.path)  # exports killed half-way
    staging = staging_dir(base.path, str(version))
    try:
        onnx_info = write_onnx(graph, run.preprocessing, staging / "model.onnx")
        write_weights(net, staging / "model.safetensors", step)
        verification = verify_export(staging / "model.onnx", graph, images, images_source, tolerance)
        signature = Signature.for_model(run.model, run.preprocessing, tuple(run.class_names), step, VERSION,
                                        onnx_info, verification.to_dict())
        (staging / "signature.json").write_text(signature.to_json())
        (staging / "labels.txt").write_text("".join(f"{name}\n" for name in run.class_names))
        final = _publish(staging, base, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(final, version, run.model.name, step, verification)


def _bare_module(module: nn.Module, example_input: np.ndarray | None, class_names: Sequence[str] | None
                 ) -> tuple[RunConfig, nn.Module, int, np.ndarray]:
    """A run-like description of a module that never went through a model directory."""
    if example_input is None:
        raise InputError("exporting a module needs example_input: images (N, H, W[, C]) that fix its input size")
    array = np.asarray(example_input)
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or not len(array):
        raise InputError(f"example_input must be images (N, H, W) or (N, H, W, C), got shape {array.shape}")
    _, h, w, c = array.shape
    pre = Preprocessing(c, h, w, (0.0,) * c, (1.0,) * c)  # pixels / 255, no other normalisation
    images = pixel_batch(array, pre, "example_input")
    module = module.to("cpu").eval()
    with torch.no_grad():
        out = module(pre.normalize(torch.from_numpy(images[:1])))
    if out.dim() != 2:
        raise InputError(f"{type(module).__name__} returns shape {tuple(out.shape)}; a classifier returns (N, classes)")
    k = out.shape[1]
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(k))
    if len(names) != k:
        raise InputError(f"{len(names)} class_names for a model with {k} outputs")
    spec = ModelSpec(f"custom:{type(module).__name__}", k, pre.input_shape)
    return RunConfig(TrainConfig(model=spec.name, dataset="example_input"), spec, pre, names), module, 0, images


def _as_pixels(example_input: np.ndarray, pre: Preprocessing) -> tuple[np.ndarray, str]:
    return pixel_batch(np.asarray(example_input), pre, "example_input"), "example_input"


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
