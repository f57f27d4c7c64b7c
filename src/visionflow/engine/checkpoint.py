"""Checkpoints: weights and training state in safetensors, an index of the latest, atomic writes.

For global step S the directory `checkpoints/` holds
  ckpt-S.safetensors        model weights (what evaluate / predict / export need)
  ckpt-S.state.safetensors  optimizer tensors and RNG states; the optimizer's non-tensor
                            state (param groups, scalar entries) and fp16's loss-scaler state
                            are JSON in its metadata; with
                            weight averaging also the raw training weights ("train.*", when
                            the weights file holds the moving average) or lookahead's average
                            ("average.*")
  index.json                {"latest": S, "steps": [...], "max_steps": M} — rewritten last, so a crash at any
                            moment leaves it pointing at a complete checkpoint.
Nothing is ever unpickled: safetensors and JSON carry only tensors, numbers and strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..core.fsio import atomic_write, atomic_write_json, read_json
from ..errors import InputError

INDEX = "index.json"


def weights_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:08d}.safetensors"


def state_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:08d}.state.safetensors"


@dataclass
class Checkpoint:
    step: int
    weights: dict[str, torch.Tensor]
    state_tensors: dict[str, torch.Tensor]
    state_meta: dict[str, Any]


def read_index(directory: Path) -> dict[str, Any] | None:
    path = directory / INDEX
    if not path.exists():
        return None
    try:
        index = read_json(path)
        int(index["latest"])
        [int(s) for s in index["steps"]]
        return index
    except InputError as e:
        raise InputError(f"{path}: corrupt checkpoint index ({str(e).split(': ', 1)[-1]})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: corrupt checkpoint index ({e})") from None


def latest_step(directory: Path) -> int | None:
    index = read_index(directory)
    return None if index is None else int(index["latest"])


def save_checkpoint(directory: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    rng: dict[str, torch.Tensor], keep: int, extra: dict[str, torch.Tensor] | None = None,
                    max_steps: int | None = None, meta: dict[str, Any] | None = None) -> None:
    """Write checkpoint `step` atomically, point the index at it, prune to the newest `keep`.

    `max_steps`, the step the running training stops at, goes into the index so that an
    evaluator following the run (`evaluate --watch`) knows when it has seen the last one.

    `model`'s weights are what evaluation and export load (the moving average, when training
    keeps one); `extra` tensors (e.g. "train.*" raw weights, "average.*" lookahead state) are
    stored beside the optimizer state for an exact resume, and `meta` (JSON-able, e.g. the loss
    scaler's state) beside the optimizer's non-tensor state.
    """
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors, optimizer_meta = flatten_optimizer(optimizer.state_dict() if optimizer is not None else None)
    optimizer_meta.update(meta or {})
    tensors.update({f"rng.{k}": v.contiguous().cpu() for k, v in rng.items()})
    tensors.update({k: v.detach().contiguous().cpu() for k, v in (extra or {}).items()})
    step_meta = {"global_step": str(step)}
    atomic_write(weights_path(directory, step), lambda p: save_file(weights, str(p), metadata=step_meta))
    # One metadata key: safetensors writes several in a random order, and identical runs should
    # write identical bytes.
    atomic_write(state_path(directory, step), lambda p: save_file(
        tensors, str(p), metadata={"optimizer": json.dumps(optimizer_meta, sort_keys=True)}))
    previous = read_index(directory)
    steps = sorted({*(previous["steps"] if previous else []), step})
    kept, dropped = steps[-keep:], steps[:-keep]
    index = {"latest": step, "steps": kept, **({"max_steps": max_steps} if max_steps is not None else {})}
    atomic_write_json(directory / INDEX, index)
    for old in dropped:
        weights_path(directory, old).unlink(missing_ok=True)
        state_path(directory, old).unlink(missing_ok=True)


def load_checkpoint(directory: Path, step: int | None = None, with_state: bool = True) -> Checkpoint | None:
    """Load checkpoint `step` (default: the latest in the index); None when there is none."""
    if step is None:
        step = latest_step(directory)
        if step is None:
            return None
    weights = _load(weights_path(directory, step))
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    if with_state:
        path = state_path(directory, step)
        tensors = _load(path)
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {})["optimizer"])
        except (KeyError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: missing or corrupt optimizer metadata ({e})") from None
    return Checkpoint(step, weights, tensors, meta)


def restore_optimizer(optimizer: torch.optim.Optimizer, ckpt: Checkpoint) -> None:
    try:
        state: dict[int, dict[str, Any]] = {}
        for key, value in ckpt.state_tensors.items():
            if key.startswith("optimizer."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value
        for key, value in ckpt.state_meta.get("scalars", {}).items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = value
        param_groups = ckpt.state_meta.get("param_groups", [])
        for group in param_groups:
            for k, v in list(group.items()):
                if isinstance(v, list) and k != "params":
                    group[k] = tuple(v)
        optimizer.load_state_dict({"state": state, "param_groups": param_groups})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"checkpoint {ckpt.step}: optimizer state does not match this optimizer ({e})") from None
    _match_param_layouts(optimizer)


def _match_param_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give per-parameter state the memory layout of its parameter.

    Checkpoints store contiguous tensors, but a channels-last conv weight's Adam moments were
    channels-last when saved; fused optimizer kernels walk parameter and state memory in
    lockstep, so a layout mismatch would silently pair the wrong elements.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            entries = optimizer.state.get(param, {})
            for name, value in entries.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    entries[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def rng_states(ckpt: Checkpoint) -> dict[str, torch.Tensor]:
    return {k[len("rng."):]: v for k, v in ckpt.state_tensors.items() if k.startswith("rng.")}


def flatten_optimizer(sd: dict[str, Any] | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if sd is None:
        return {}, {}
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{pid}.{name}"] = value.detach().contiguous().cpu()
            elif value is not None:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one checkpoint file, every floating one checked to be finite: training never
    checkpoints a non-finite value, so one means the file was damaged."""
    try:
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: checkpoint file missing") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"{path}: corrupt checkpoint ({e})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise InputError(f"{path}: tensor {name!r} holds NaN or infinite values (a damaged checkpoint)")
    return tensors
