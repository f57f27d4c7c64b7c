"""Per-example gradients: which examples pull hardest on the weights (often mislabelled or hard).

`torch.func.vmap(grad(loss))` computes every example's gradient of the loss w.r.t. the trainable
parameters in one vectorised pass (the model in eval mode: BatchNorm uses its running statistics,
dropout is off, so an example's gradient does not depend on its batch).  The tutorial's way — a
batch of one, once per example — is `method="loop"`, and the fallback when vmap cannot trace a
model (data-dependent Python control flow, in-place updates of captured tensors): the result says
which ran.  Only the norms are kept (N floats), so memory stays one chunk of gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.devices import resolve_device
from ..engine.evaluation import load_model
from ..engine.run_data import dataset_for_run
from ..engine.modeldir import ModelDir
from ..engine.plots import save_captioned_grid
from ..errors import InputError


#: Bytes of per-example gradients held at once: a chunk holds chunk × parameters floats.
CHUNK_BYTES = 256 << 20


def norms_vmap(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """(N,) L2 norms of each example's loss gradient, by torch.func.vmap over `chunk` examples at a
    time (by default as many as keep CHUNK_BYTES of gradients, at most 64)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if chunk is None:
        chunk = max(1, min(64, CHUNK_BYTES // (4 * max(1, sum(p.numel() for p in params.values())))))
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    buffers = {k: v for k, v in model.named_buffers()}

    def loss(p: dict, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**p, **frozen}, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out.float(), yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    norms = []
    for i in range(0, len(x), chunk):
        grads = per_example(params, x[i:i + chunk], y[i:i + chunk])
        norms.append(torch.sqrt(sum(g.flatten(1).double().pow(2).sum(1) for g in grads.values())))
    return torch.cat(norms).float()


def norms_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same, one example at a time (a batch of one, as the tutorial suggests)."""
    params = [p for p in model.parameters() if p.requires_grad]
    norms = torch.empty(len(x))
    for i in range(len(x)):
        grads = torch.autograd.grad(F.cross_entropy(model(x[i:i + 1]).float(), y[i:i + 1]), params)
        norms[i] = torch.sqrt(sum(g.double().pow(2).sum() for g in grads))
    return norms


@dataclass(frozen=True)
class GradientReport:
    split: str
    method: str
    count: int
    global_step: int
    norms: np.ndarray
    top: list[dict]
    path: Path

    def to_dict(self) -> dict:
        return {"split": self.split, "method": self.method, "count": self.count, "global_step": self.global_step,
                "norm_mean": float(self.norms.mean()), "norm_median": float(np.median(self.norms)),
                "norm_max": float(self.norms.max()), "top": self.top, "png": str(self.path)}


def gradient_report(model_dir: str | Path, split: str = "test", limit: int = 1000, top: int = 16,
                    method: str = "vmap", data_dir: str | None = None, step: int | None = None) -> GradientReport:
    """Per-example gradient norms over the first `limit` examples of `split`, the `top` largest with a PNG grid."""
    if method not in ("vmap", "loop"):
        raise InputError(f"--method must be vmap or loop, got {method!r}")
    if limit < 1 or top < 1:
        raise InputError("--limit and --top must be at least 1")
    directory = ModelDir(model_dir)
    run = directory.load_config()
    data = dataset_for_run(run, data_dir, split=split).split(split)
    if not len(data):
        raise InputError(f"{directory.location}: the {split} split is empty")
    images, labels = data.images[:limit], data.labels[:limit]
    run, model, at = load_model(directory, resolve_device("cpu"), step)
    model.eval()
    x = run.preprocessing.normalize(torch.from_numpy(images)).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(labels).long()
    used = method
    if method == "vmap":
        try:
            norms = norms_vmap(model, x, y)
        except (RuntimeError, NotImplementedError):  # a model vmap cannot trace: the loop gives the same numbers
            used = "loop (vmap could not trace this model)"
            norms = norms_loop(model, x, y)
    else:
        norms = norms_loop(model, x, y)
    with torch.no_grad():
        predicted = model(x).argmax(1).numpy()
    order = np.argsort(-norms.numpy(), kind="stable")[:top]
    names = run.class_names
    rows = [{"index": int(i), "label": names[labels[i]], "predicted": names[predicted[i]], "norm": float(norms[i])}
            for i in order]
    path = directory.path / f"gradients_{split}.png"
    save_captioned_grid(images[order], [f"{r['label']} → {r['predicted']}\n|g| {r['norm']:.3g}" for r in rows], path,
                        f"{split}: the {len(order)} largest per-example gradient norms of {len(x):,} "
                        f"(step {at}; label → predicted)")
    directory.sync()
    return GradientReport(split, used, len(x), at, norms.numpy(), rows, path)
