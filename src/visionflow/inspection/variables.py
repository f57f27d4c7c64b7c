"""A model directory's variables: every parameter and buffer by its module path (`conv1.weight`,
`groups.0.norm1.running_mean`), with shape, dtype, device, trainable flag, element count and
statistics — what `tf.get_collection(GLOBAL_VARIABLES)` listed, names as `inspect activations`
and `--summarize-activations` take them."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..core.devices import resolve_device
from ..engine.evaluation import load_model
from ..engine.modeldir import ModelDir
from ..errors import InputError


@dataclass(frozen=True)
class Variable:
    name: str
    kind: str  # "parameter" or "buffer"
    shape: tuple[int, ...]
    dtype: str
    device: str
    trainable: bool
    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    zero_fraction: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def describe(name: str, tensor: torch.Tensor, kind: str, trainable: bool) -> Variable:
    numeric = tensor.is_floating_point() and tensor.numel() > 0
    t = tensor.detach().double() if numeric else None
    return Variable(name, kind, tuple(tensor.shape), str(tensor.dtype).replace("torch.", ""), str(tensor.device), trainable,
                    tensor.numel(), float(t.mean()) if numeric else None,
                    float(t.std(unbiased=False)) if numeric else None, float(t.min()) if numeric else None,
                    float(t.max()) if numeric else None, float((t == 0).double().mean()) if numeric else None)


def model_variables(model: torch.nn.Module, match: str | None = None) -> list[Variable]:
    """Parameters then buffers, in module order, whose names match the glob `match` (all when None;
    a pattern without wildcards matches as a prefix, like a TF variable scope)."""
    pattern = match if match is None or any(c in match for c in "*?[") else f"{match}*"
    found = [describe(n, p, "parameter", p.requires_grad) for n, p in model.named_parameters()]
    found += [describe(n, b, "buffer", False) for n, b in model.named_buffers()]
    return [v for v in found if pattern is None or fnmatch.fnmatchcase(v.name, pattern)]


def variables_of(model_dir: str | Path, match: str | None = None, step: int | None = None) -> tuple[int, list[Variable]]:
    """(the checkpoint's global step, its variables) of a model directory."""
    _, model, at = load_model(ModelDir(model_dir), resolve_device("cpu"), step)
    found = model_variables(model, match)
    if match and not found:
        names = ", ".join(n for n, _ in list(model.named_parameters())[:6])
        raise InputError(f"--match {match!r}: no variable of {model_dir} matches (names look like: {names}, …)")
    return at, found


def variable_lines(variables: list[Variable]) -> list[str]:
    width = max((len(v.name) for v in variables), default=4)
    lines = [f"{'name':<{width}}  {'shape':<18} {'dtype':<8} {'train':<5} {'count':>10}  {'mean':>10} {'std':>10} "
             f"{'zeros':>6}"]
    for v in variables:
        stats = (f"{v.mean:10.4g} {v.std:10.4g} {v.zero_fraction:6.1%}" if v.mean is not None else f"{'':10} {'':10} {'':6}")
        lines.append(f"{v.name:<{width}}  {str(list(v.shape)):<18} {v.dtype:<8} {'yes' if v.trainable else 'no':<5} "
                     f"{v.count:>10,}  {stats}")
    total = sum(v.count for v in variables if v.kind == "parameter")
    trainable = sum(v.count for v in variables if v.trainable)
    lines.append(f"{len(variables)} variables; parameters {total:,} ({trainable:,} trainable)")
    return lines
