"""Optimizers and learning-rate schedules, from the config alone.

The schedule is a pure function of (config, step, total steps), so a resumed run continues
the exact curve an uninterrupted one would have followed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig
from .muon import Muon


#: Per-group settings a model's `optimizer_groups(config)` may give besides the two scales;
#: they reach the optimizer as they are (see engine.muon for what they mean).
GROUP_OPTIONS = ("orthogonalize", "momentum", "nesterov", "ns_steps", "normalize_weights")


def optimizer_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Parameter groups with their weight decay and learning-rate multiplier ("lr_scale").

    Without an `optimizer_groups(config)` method every parameter is decayed by the config's
    `weight_decay`.  With one (given the run's config: the right grouping can depend on the
    optimizer and batch size), its groups must cover every trainable parameter exactly once (frozen
    ones may be left out); a group may also set any of GROUP_OPTIONS.
    """
    weight_decay = config.weight_decay
    declare = getattr(model, "optimizer_groups", None)
    if declare is None:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay, "lr_scale": 1.0}]
    groups, seen = [], set()
    for group in declare(config):
        params = list(group["params"])
        if any(id(p) in seen for p in params):
            raise ValueError(f"{type(model).__name__}.optimizer_groups() lists a parameter twice")
        seen.update(id(p) for p in params)
        groups.append({"params": params, "weight_decay": weight_decay * group.get("weight_decay_scale", 1.0),
                       "lr_scale": float(group.get("lr_scale", 1.0)),
                       **{key: group[key] for key in GROUP_OPTIONS if key in group}})
    missing = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"{type(model).__name__}.optimizer_groups() leaves out {', '.join(missing[:3])}")
    return [g for g in groups if g["params"]]


def make_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer `config` names over `params` (tensors, or groups from `optimizer_groups`)."""
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    wd = config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=wd)
    if config.optimizer in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=wd,
                               nesterov=config.optimizer == "nesterov")
    if config.optimizer == "muon":
        return Muon(params, lr=config.lr, momentum=config.momentum, weight_decay=wd, compile=config.compile)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=wd, **fused)
    return torch.optim.Adagrad(params, lr=config.lr, weight_decay=wd)


def lr_at(config: TrainConfig, step: int, total: int) -> float:
    """Learning rate for (0-based) `step` of a run that ends at step `total`: a pure function, so
    resume is exact.  The schedule spans the current cycle, from `config.schedule_start` to `total`."""
    start = config.schedule_start
    if config.schedule in ("constant", "plateau") or total <= start:  # plateau: PlateauDecay moves it
        return config.lr
    progress = min(max(step - start, 0) / (total - start), 1.0)
    warm = config.warmup
    if config.schedule == "linear":
        start, end = config.lr_start_factor, config.lr_end_factor
        if progress < warm:
            return config.lr * (start + (1.0 - start) * progress / warm)
        return config.lr * (1.0 + (end - 1.0) * (progress - warm) / (1.0 - warm))
    if progress < warm:
        return config.lr * progress / warm
    if config.schedule == "step":
        return config.lr * (0.01 if progress >= 0.75 else 0.1 if progress >= 0.5 else 1.0)
    if config.schedule == "onecycle":
        rest = (progress - warm) / (1.0 - warm)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * rest))
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
