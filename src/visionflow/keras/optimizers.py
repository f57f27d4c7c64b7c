"""Keras' optimizers (names, arguments and defaults) as torch optimizers.

A Keras optimizer is a description until `fit` (or `build`) meets the model's weights; then it
makes its torch optimizer once, and that optimizer — its moments, its step count — lives for the
model's life, across `fit` calls and in checkpoints.  `learning_rate` may be a number or a
schedule (`optimizers.schedules`), a function of the step count; reading and setting
`optimizer.learning_rate` reads and sets the running optimizer's rate (what callbacks do).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import torch

from ..errors import InputError


class LearningRateSchedule:
    """A learning rate as a function of the optimizer's step count (0-based)."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}


class ExponentialDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float, staircase: bool = False) -> None:
        self.initial_learning_rate, self.decay_steps = float(initial_learning_rate), int(decay_steps)
        self.decay_rate, self.staircase = float(decay_rate), staircase

    def __call__(self, step: int) -> float:
        p = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (math.floor(p) if self.staircase else p)

    def get_config(self) -> dict[str, Any]:
        return dict(vars(self))


class CosineDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 warmup_target: Optional[float] = None, warmup_steps: int = 0) -> None:
        self.initial_learning_rate, self.decay_steps, self.alpha = float(initial_learning_rate), int(decay_steps), alpha
        self.warmup_target, self.warmup_steps = warmup_target, int(warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps and self.warmup_target is not None:
            return self.initial_learning_rate + (self.warmup_target - self.initial_learning_rate) * step / self.warmup_steps
        top = self.warmup_target if self.warmup_target is not None else self.initial_learning_rate
        progress = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        return top * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * progress)) + self.alpha)

    def get_config(self) -> dict[str, Any]:
        return dict(vars(self))


class PiecewiseConstantDecay(LearningRateSchedule):
    def __init__(self, boundaries: list[int], values: list[float]) -> None:
        if len(values) != len(boundaries) + 1:
            raise InputError("PiecewiseConstantDecay: values must have one more entry than boundaries")
        self.boundaries, self.values = list(boundaries), list(values)

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self) -> dict[str, Any]:
        return dict(vars(self))


class schedules:  # noqa: N801 - Keras' module name, `keras.optimizers.schedules.ExponentialDecay`
    LearningRateSchedule = LearningRateSchedule
    ExponentialDecay = ExponentialDecay
    CosineDecay = CosineDecay
    PiecewiseConstantDecay = PiecewiseConstantDecay


class Optimizer:
    """Base: `make(params)` builds the torch optimizer over the model's parameters."""

    name = "optimizer"
    defaults: dict[str, Any] = {}

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001, weight_decay: Optional[float] = None,
                 clipnorm: Optional[float] = None, clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None,
                 name: Optional[str] = None, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(self.defaults)
        if unknown:
            raise InputError(f"{type(self).__name__}: unknown argument(s) {', '.join(sorted(unknown))}")
        self.options = {**self.defaults, **kwargs}
        self.schedule: Optional[LearningRateSchedule] = learning_rate if callable(learning_rate) else None
        self._learning_rate = float(self.schedule(0)) if self.schedule is not None else float(learning_rate)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm or global_clipnorm
        self.clipvalue = clipvalue
        self.name = name or self.name
        self.torch_optimizer: Optional[torch.optim.Optimizer] = None

    def make(self, params: Any) -> torch.optim.Optimizer:
        raise NotImplementedError

    def build(self, params: Any) -> torch.optim.Optimizer:
        if self.torch_optimizer is None:
            self.torch_optimizer = self.make(params)
        return self.torch_optimizer

    @property
    def learning_rate(self) -> float:
        if self.torch_optimizer is not None:
            return float(self.torch_optimizer.param_groups[0]["lr"])
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self._learning_rate = float(value)
        if self.torch_optimizer is not None:
            for group in self.torch_optimizer.param_groups:
                group["lr"] = float(value)

    lr = learning_rate

    @property
    def iterations(self) -> int:
        if self.torch_optimizer is None:
            return 0
        state = next((s for s in self.torch_optimizer.state.values() if "step" in s), None)
        return int(state["step"]) if state is not None else 0

    def get_config(self) -> dict[str, Any]:
        rate: Any = self._learning_rate
        if self.schedule is not None:
            rate = {"class_name": type(self.schedule).__name__, "config": self.schedule.get_config()}
        return {"name": self.name, "learning_rate": rate, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue, **self.options}

    def _decay(self) -> float:
        return float(self.weight_decay or 0.0)


class Adam(Optimizer):
    name = "adam"
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False}
    torch_class: type[torch.optim.Optimizer] = torch.optim.Adam

    def make(self, params: Any) -> torch.optim.Optimizer:
        o = self.options
        return self.torch_class(params, lr=self._learning_rate, betas=(o["beta_1"], o["beta_2"]), eps=o["epsilon"],
                                amsgrad=o["amsgrad"], weight_decay=self._decay())


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras' default 0.004)."""

    name = "adamw"
    torch_class = torch.optim.AdamW

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.001, weight_decay: float = 0.004,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class SGD(Optimizer):
    name = "sgd"
    defaults = {"momentum": 0.0, "nesterov": False}

    def __init__(self, learning_rate: float | LearningRateSchedule = 0.01, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)

    def make(self, params: Any) -> torch.optim.Optimizer:
        o = self.options
        return torch.optim.SGD(params, lr=self._learning_rate, momentum=o["momentum"], nesterov=o["nesterov"],
                               weight_decay=self._decay())


class RMSprop(Optimizer):
    name = "rmsprop"
    defaults = {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False}

    def make(self, params: Any) -> torch.optim.Optimizer:
        o = self.options
        return torch.optim.RMSprop(params, lr=self._learning_rate, alpha=o["rho"], eps=o["epsilon"],
                                   momentum=o["momentum"], centered=o["centered"], weight_decay=self._decay())


class Adagrad(Optimizer):
    name = "adagrad"
    defaults = {"initial_accumulator_value": 0.1, "epsilon": 1e-7}

    def make(self, params: Any) -> torch.optim.Optimizer:
        o = self.options
        return torch.optim.Adagrad(params, lr=self._learning_rate, eps=o["epsilon"],
                                   initial_accumulator_value=o["initial_accumulator_value"], weight_decay=self._decay())


class TorchOptimizer(Optimizer):
    """A torch optimizer (instance, class, or function of the parameters) in Keras' clothes."""

    def __init__(self, spec: Any) -> None:
        super().__init__(0.001)
        self.spec = spec
        self.name = getattr(spec, "__name__", type(spec).__name__)
        if isinstance(spec, torch.optim.Optimizer):
            self.torch_optimizer = spec

    def make(self, params: Any) -> torch.optim.Optimizer:
        built = self.spec(params)
        if not isinstance(built, torch.optim.Optimizer):
            raise InputError(f"optimizer {self.name} returned {type(built).__name__}, not a torch.optim.Optimizer")
        return built


ALIASES: dict[str, Callable[[], Optimizer]] = {"adam": Adam, "adamw": AdamW, "sgd": SGD, "rmsprop": RMSprop,
                                               "adagrad": Adagrad}


def get(identifier: Any) -> Optimizer:
    """An optimizer from a Keras name, a Keras optimizer, or a torch optimizer (instance or class)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() not in ALIASES:
            raise InputError(f"unknown optimizer {identifier!r} (choose one of: {', '.join(sorted(ALIASES))})")
        return ALIASES[identifier.lower()]()
    if isinstance(identifier, torch.optim.Optimizer) or callable(identifier):
        return TorchOptimizer(identifier)
    raise InputError(f"optimizer must be a name or an optimizer, not {type(identifier).__name__}")


def from_config(config: dict[str, Any]) -> Optimizer:
    """Rebuild a built-in optimizer from `get_config()` (a saved model's compile settings)."""
    config = dict(config)
    cls = ALIASES.get(str(config.pop("name", "")).lower())
    if cls is None:
        raise InputError(f"cannot rebuild optimizer {config!r}: pass it to compile() again")
    rate = config.pop("learning_rate")
    if isinstance(rate, dict):
        rate = getattr(schedules, rate["class_name"])(**rate["config"])
    return cls(learning_rate=rate, **{k: v for k, v in config.items() if v is not None})  # type: ignore[call-arg]
