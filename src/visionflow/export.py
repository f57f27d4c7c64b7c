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
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .augment import center_crop, tta_logits
from .config import RunConfig
from .errors import InputError
from .evaluation import load_model
from .exportdir import INPUT_NAME, OUTPUT_NAMES, ExportBase, Signature, check_onnx_model, check_version
from .fsio import publish_dir
from .modeldir import ModelDir
from .preprocessing import Preprocessing

DEFAULT_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| over all probabilities of the check
VERIFY_EXAMPLES = 256
ONNX_OPSET = 18


class ServingGraph(nn.Module):
    """What an exported version computes, end to end.

    (N, H, W, C) uint8 pixels → central crop (if the model was trained on crops) → normalised
    (N, C, h, w) float32 (per-channel or per-image standardization) → the model, its logits
    averaged over the test-time augmentation views (if any) → probabilities (N, K) float32 and
    classes (N,) int64.  Exporting this module rather than the bare network puts all of the
    preprocessing inside the ONNX graph, so no client can feed the model differently from how it
    was trained and evaluated.

    The normalisation is `Preprocessing.normalize` itself, given its per-channel scale and
    shift as buffers of this module: module state is what torch.export captures as graph
    constants, whereas tensors made inside `normalize` would be traced as fake tensors (and
    `normalize`'s per-device cache would keep them).  Tests check both give equal results.
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.model = model
        self.preprocessing = preprocessing
        scale = [1.0 / (255.0 * s) for s in preprocessing.std]
        shift = [m / s for m, s in zip(preprocessing.mean, preprocessing.std)]
        device = next(model.parameters()).device
        self.register_buffer("scale", torch.tensor(scale, device=device).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift, device=device).view(1, -1, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        pre = self.preprocessing
        if pre.center_crop:
            images = center_crop(images, *pre.center_crop)
        return pre.standardize_floats(images.permute(0, 3, 1, 2).float(), self.scale, self.shift)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = tta_logits(self.model, self.normalize(images), self.preprocessing.tta)
        probabilities = torch.softmax(logits.float(), dim=1)
        return probabilities, probabilities.argmax(dim=1)


@dataclass(frozen=True)
class Verification:
    """How onnxruntime compared with PyTorch on `examples` inputs drawn from `source`."""

    examples: int
    source: str
    max_abs_diff: float
    tolerance: float
    batch_sizes: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"examples": self.examples, "source": self.source, "max_abs_diff": self.max_abs_diff,
                "tolerance": self.tolerance, "batch_sizes": list(self.batch_sizes)}


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
    from . import __version__

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
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp", dir=base.path))
    try:
        onnx_info = write_onnx(graph, run.preprocessing, staging / "model.onnx")
        write_weights(model, staging / "model.safetensors", step)
        images, source = verification_images(run)
        verification = verify_export(staging / "model.onnx", graph, images, source, tolerance)
        signature = Signature.for_model(run.model, run.preprocessing, tuple(run.class_names), step, __version__,
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


def verification_images(run: RunConfig, count: int = VERIFY_EXAMPLES) -> tuple[np.ndarray, str]:
    """Up to `count` test-split images (N, H, W, C) uint8 of the run's dataset, and where they came from.

    Real inputs exercise the model where it matters (confident and borderline predictions);
    random pixels are the fallback when the dataset is not on this machine (no download is
    attempted) or does not fit the model.  Image folders are read at the run's input size.
    """
    from .datasets import dataset_for_run

    pre, dataset = run.preprocessing, run.train.dataset
    shape = (pre.height, pre.width, pre.channels)
    try:
        images = dataset_for_run(run, download=False, split="test").test.images[:count]
    except InputError as e:
        problem = f"dataset {dataset} is not available ({e})"
    else:
        problem = "" if len(images) and images.shape[1:] == shape else f"dataset {dataset} has no test images of {shape}"
    if not problem:
        return np.ascontiguousarray(images), f"{dataset} test split"
    return np.random.default_rng(0).integers(0, 256, (count, *shape), dtype=np.uint8), f"random pixels: {problem}"


def verify_export(onnx_path: Path, graph: nn.Module, images: np.ndarray, source: str,
                  tolerance: float = DEFAULT_TOLERANCE) -> Verification:
    """Check `onnx_path` structurally and numerically against `graph` (PyTorch) on `images`.

    Compared at batch size 1 and at the full batch, since a server runs both.  Raises
    InputError when onnx.checker fails, probabilities differ by more than `tolerance`, the
    outputs are not finite, or a class differs where PyTorch's top two are not within
    2×tolerance of each other (a genuine tie may break either way).
    """
    import onnxruntime as ort

    check_onnx_model(onnx_path)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        want_p, want_c = (t.numpy() for t in graph(torch.from_numpy(images)))
    if not np.isfinite(want_p).all():
        raise InputError("refusing to export: PyTorch's probabilities are not finite (diverged weights?)")
    got_p, got_c = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
    one_p, _ = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images[:1]})
    diff = float(max(np.abs(got_p - want_p).max(initial=0.0), np.abs(one_p - want_p[:1]).max(initial=0.0)))
    if not diff <= tolerance:  # also catches NaN
        raise InputError(f"onnxruntime differs from PyTorch by {diff:.3g} > {tolerance:g} on {source}; not published")
    top2 = np.sort(want_p, axis=1)[:, -2:] if want_p.shape[1] > 1 else np.zeros((len(want_p), 2))
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * tolerance
    flips = np.flatnonzero(decisive & (got_c != want_c))
    if len(flips):
        raise InputError(f"onnxruntime predicts another class than PyTorch for {len(flips)} of {len(images)} "
                         f"examples of {source} (first: example {int(flips[0])}); not published")
    return Verification(len(images), source, diff, tolerance, (1, len(images)))


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
