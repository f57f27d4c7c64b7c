"""What a Python user may hand the engine instead of a name: an optimizer, a loss, a schedule.

The config can only name what it can rebuild ("adam", "cross_entropy", "onecycle"); anything
else is recorded as "custom:NAME" and must be given again to continue the run in Python (the
command line refuses such a directory with a one-line message saying so).  Their state still
goes into every checkpoint — an optimizer's `state_dict`, a scheduler's when it is plain data —
so a resumed run continues where it stopped.

  optimizer     a torch.optim.Optimizer subclass (built with the config's lr and weight decay
                over the model's parameter groups), a function of those groups returning an
                optimizer, or an optimizer already built over this model's parameters;
  loss          a function (logits (B, K), labels (B,)) → scalar tensor, used for training and
                for the loss that evaluation reports;
  lr_scheduler  a function of the optimizer returning a torch LR scheduler, stepped after every
                optimizer step (it then owns the learning rate: the config's schedule is off).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import InputError

#: (outputs, targets) → scalar; called with a third argument, the (B,) sample weights, when the data has them.
Loss = Callable[..., torch.Tensor]


@dataclass
class Customizations:
    """The Python objects that replace named settings of a run (None: use the config's)."""

    optimizer: Any = None
    loss: Optional[Loss] = None
    lr_scheduler: Optional[Callable[[torch.optim.Optimizer], Any]] = None

    def config_overrides(self) -> dict[str, Any]:
        """What the config records of them: "custom:NAME" and, for a built optimizer, its lr."""
        out: dict[str, Any] = {}
        if self.optimizer is not None:
            out["optimizer"] = f"custom:{name_of(self.optimizer)}"
            if isinstance(self.optimizer, torch.optim.Optimizer):
                out["lr"] = float(self.optimizer.param_groups[0]["lr"])
        if self.loss is not None:
            out["loss"] = f"custom:{name_of(self.loss)}"
        if self.lr_scheduler is not None:
            out["schedule"] = f"custom:{name_of(self.lr_scheduler)}"
        return out


def name_of(obj: Any) -> str:
    if inspect.isclass(obj):
        return obj.__name__
    return getattr(obj, "__name__", None) or type(obj).__name__


def build_optimizer(spec: Any, model: nn.Module, groups: list[dict], lr: float, weight_decay: float
                    ) -> torch.optim.Optimizer:
    """The optimizer `spec` describes (see the module docstring) for `model`."""
    if isinstance(spec, torch.optim.Optimizer):
        given = {id(p) for group in spec.param_groups for p in group["params"]}
        wanted = {id(p) for p in model.parameters() if p.requires_grad}
        if not wanted <= given:
            raise InputError(f"optimizer {name_of(spec)} was built over other parameters than this model's: pass its "
                             "class, or a function of the parameters, to build it over the model visionflow trains")
        for group in spec.param_groups:
            group.setdefault("lr_scale", 1.0)
        return spec
    if inspect.isclass(spec) and issubclass(spec, torch.optim.Optimizer):
        try:
            return spec(groups, lr=lr, weight_decay=weight_decay)
        except TypeError:
            return spec(groups, lr=lr)
    if callable(spec):
        built = spec(groups)
        if not isinstance(built, torch.optim.Optimizer):
            raise InputError(f"optimizer function {name_of(spec)} returned {type(built).__name__}, "
                             "not a torch.optim.Optimizer")
        return built
    raise InputError(f"optimizer must be a name, a torch.optim.Optimizer (class or instance) or a function of the "
                     f"parameters, not {type(spec).__name__}")


def check_custom_names(config_names: dict[str, str], given: Customizations, where: str) -> None:
    """A run recorded with a custom optimizer, loss or schedule cannot continue without them."""
    for field, recorded in config_names.items():
        if recorded.startswith("custom:") and getattr(given, field if field != "schedule" else "lr_scheduler") is None:
            keyword = field if field != "schedule" else "lr_scheduler"
            raise InputError(f"{where}: was trained with a custom {field} ({recorded[7:]}); continue it through the "
                             f"Python API, passing the same {keyword}=")
