"""Running one exported version: onnxruntime on CPU, or PyTorch where CUDA is available.

A `ServedVersion` is loaded, checked against its signature and warmed up (the runtime has
run the largest batch it will see) before it takes a single request, so swapping it in never
makes a client wait for lazy initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..core.fsio import read_text
from ..errors import InputError
from ..export.exportdir import INPUT_NAME, OUTPUT_NAMES, ExportBase, Signature, check_onnx_model, onnx_session
from .batching import Arrivals, DynamicBatcher, Outputs

RUNTIMES = ("auto", "onnxruntime", "torch")


class Runner(Protocol):
    """(N, H, W, C) uint8 → {"probabilities": (N, K) float32, "classes": (N,) int64}."""

    description: str

    def run(self, images: np.ndarray) -> Outputs: ...


@dataclass(frozen=True)
class RuntimeOptions:
    """`runtime`: auto (PyTorch on CUDA when present, else onnxruntime), onnxruntime or torch.

    `intra_op_threads` is onnxruntime's per-call thread count (0: its default, one per core).
    `batch_threads` is how many batches may run at once (TF Serving's num_batch_threads).
    Threads beyond the first take only full batches (see `batching`), so they give
    single-threaded runtime calls more cores without shrinking batches.  On 2 cores the HTTP
    handling keeps the second core busy and two threads measured within the noise of one, so
    the default (0) is one.
    """

    runtime: str = "auto"
    intra_op_threads: int = 0
    max_batch_size: int = 32
    batch_timeout_s: float = 0.001
    batch_threads: int = 0

    def batch_workers(self) -> int:
        return max(1, self.batch_threads)


class OnnxRunner:
    def __init__(self, path: Path, signature: Signature, threads: int) -> None:
        import onnxruntime as ort

        self.session = onnx_session(path, signature, threads)
        self.description = f"onnxruntime {ort.__version__} (CPU)"

    def run(self, images: np.ndarray) -> Outputs:
        probabilities, classes = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return {"probabilities": probabilities, "classes": classes}


class TorchRunner:
    """The `ServingGraph` the ONNX file was exported from, rebuilt from model.safetensors.

    On CUDA, float32 convolutions and matrix products run in full IEEE precision rather than
    TF32, so the server answers what `visionflow predict` and the ONNX graph answer (TF32
    moved probabilities by ~3e-4 on an H100).  model.onnx must still be a valid ONNX model:
    which versions load must not depend on the runtime a machine happens to pick.
    """

    def __init__(self, directory: Path, signature: Signature, device: str) -> None:
        import torch
        from safetensors.torch import load_file

        from ..export.graph import ServingGraph
        from ..models import build_model

        check_onnx_model(directory / "model.onnx")
        if torch.device(device).type == "cuda":
            use_ieee_fp32(torch)
        model = build_model(signature.model)
        try:
            model.load_state_dict(load_file(str(directory / "model.safetensors")))
        except RuntimeError as e:
            raise InputError(f"{directory / 'model.safetensors'}: does not fit {signature.model.name} "
                             f"({str(e).strip().splitlines()[0]})") from None
        self.device = torch.device(device)
        self.graph = ServingGraph(model, signature.preprocessing).to(self.device).eval()
        self.description = f"torch {torch.__version__} ({self.device})"

    def run(self, images: np.ndarray) -> Outputs:
        import torch

        with torch.inference_mode():
            probabilities, classes = self.graph(torch.from_numpy(images).to(self.device, non_blocking=True))
        return {"probabilities": probabilities.cpu().numpy(), "classes": classes.cpu().numpy()}


def use_ieee_fp32(torch) -> None:
    """Full-precision float32 on CUDA (no TF32) for this process."""
    try:
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    except AttributeError:  # PyTorch before 2.9
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


@dataclass
class ServedVersion:
    """A loaded version and its batcher; `leases` counts requests currently using it."""

    version: int
    path: Path
    signature: Signature
    runner: Runner
    batcher: DynamicBatcher
    leases: int = 0


def load_version(base: ExportBase, version: int, options: RuntimeOptions, arrivals: Arrivals,
                 on_batch: Callable[[int, int, float], None] | None = None) -> ServedVersion:
    """Load, check and warm up `base/<version>`; InputError (or the runtime's own error) when broken."""
    directory = base.version_dir(version)
    missing = base.missing_files(version)
    if missing:
        raise InputError(f"{directory}: incomplete (missing {', '.join(missing)})")
    signature = Signature.load(directory / "signature.json")
    labels = read_text(directory / "labels.txt").splitlines()
    if tuple(labels) != signature.class_names:
        raise InputError(f"{directory / 'labels.txt'}: does not match the class names in signature.json")
    runner = make_runner(directory, signature, options.runtime, options.intra_op_threads)
    warm_up(runner, signature, options.max_batch_size, directory)
    report = (lambda size, seconds: on_batch(version, size, seconds)) if on_batch else None
    batcher = DynamicBatcher(runner.run, options.max_batch_size, options.batch_timeout_s, arrivals,
                             f"v{version}", report, options.batch_workers())
    return ServedVersion(version, directory, signature, runner, batcher)


def make_runner(directory: Path, signature: Signature, runtime: str, threads: int) -> Runner:
    if runtime not in RUNTIMES:
        raise InputError(f"--runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    custom = signature.model.name.startswith("custom:")  # a module visionflow cannot rebuild: ONNX only
    if runtime == "torch" and custom:
        raise InputError(f"{directory}: holds a custom model ({signature.model.name[7:]}), which only the "
                         "onnxruntime runtime can serve")
    if runtime == "auto":
        import torch

        runtime = "torch" if torch.cuda.is_available() and not custom else "onnxruntime"
    if runtime == "torch":
        import torch

        return TorchRunner(directory, signature, "cuda" if torch.cuda.is_available() else "cpu")
    return OnnxRunner(directory / "model.onnx", signature, threads)


def warm_up(runner: Runner, signature: Signature, max_batch_size: int, directory: Path) -> None:
    """Run batches of 1 and `max_batch_size` zero images and check what comes back."""
    pre, k = signature.preprocessing, len(signature.class_names)
    for n in sorted({1, max(1, max_batch_size)}):
        out = runner.run(np.zeros((n, pre.height, pre.width, pre.channels), dtype=np.uint8))
        p, c = out["probabilities"], out["classes"]
        if p.shape != (n, k) or p.dtype != np.float32 or c.shape != (n,) or c.dtype != np.int64:
            raise InputError(f"{directory}: the model returns probabilities {p.dtype}{list(p.shape)} and classes "
                             f"{c.dtype}{list(c.shape)}; the signature promises float32[{n}, {k}] and int64[{n}]")
        if not np.isfinite(p).all():
            raise InputError(f"{directory}: the model returns non-finite probabilities")
