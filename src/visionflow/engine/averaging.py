"""Weight averaging during training: the tutorial's moving average and airbench's lookahead.

Both are updated by the `WeightAveraging` callback right after each optimizer step (before any
checkpoint of that step is written), from nothing but the weights and the global step, and both
save their state in the checkpoint, so a resumed run continues them exactly.

* `MovingAverage` — TensorFlow's `ExponentialMovingAverage(decay, num_updates=global_step)` as
  the CIFAR-10 tutorial uses it: after step t (1-based) every shadow weight becomes
  d·shadow + (1 - d)·weight with d = min(decay, (1 + t) / (10 + t)); shadows start at the
  initial weights.  The averaged copy is what evaluation, the checkpoint's weights file and
  export use; the raw training weights go to the checkpoint's state file.  Buffers (BatchNorm
  statistics, themselves running averages) are copied, not averaged.
* `Lookahead` — airbench's scheme: from epoch `start_epoch` on, every `every` steps the average
  moves toward the weights with decay ρ = decay**every · (t / total)³ and the weights are reset
  to it; at every epoch end (and the run's end) the weights are reset to the average.  Floating
  buffers take part, as in airbench.  Training and evaluation use the same (reset) weights.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from .callbacks import Callback
from .config import TrainConfig

if TYPE_CHECKING:
    from .loop import Trainer

TRAIN_PREFIX = "train."
AVERAGE_PREFIX = "average."


class WeightAverage(Protocol):
    """What `Trainer` needs of a weight-averaging scheme."""

    def eval_module(self, model: nn.Module) -> nn.Module: ...
    def after_step(self, model: nn.Module, step: int, epoch_end: bool) -> None: ...
    def state_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]: ...
    def load_state(self, model: nn.Module, weights: dict[str, torch.Tensor],
                   tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...


def _floating(module: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(parameters, buffers) of `module` with floating dtypes, in state_dict order."""
    params = [p for p in module.parameters() if p.is_floating_point()]
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    return params, buffers


class MovingAverage:
    """An exponential moving average of a model's parameters (see the module docstring)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """TF's decay after update number `step` (1-based): min(decay, (1 + step) / (10 + step))."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int, epoch_end: bool = False) -> None:
        shadow, _ = _floating(self.module)
        live, _ = _floating(model)
        torch._foreach_lerp_(shadow, live, 1.0 - self.decay_at(step))
        for mine, theirs in zip(self.module.buffers(), model.buffers()):
            mine.copy_(theirs)

    def eval_module(self, model: nn.Module) -> nn.Module:
        return self.module

    def state_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The raw training weights (the checkpoint's weights file holds the average)."""
        return {TRAIN_PREFIX + k: v for k, v in model.state_dict().items()}

    def load_state(self, model: nn.Module, weights: dict[str, torch.Tensor],
                   tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Load the average from `weights`; return the training weights to load into the model.

        A checkpoint written without the average (the run had no --ema-decay) has no training
        weights of its own: then both start from its weights.
        """
        self.module.load_state_dict(weights)
        train = {k[len(TRAIN_PREFIX):]: v for k, v in tensors.items() if k.startswith(TRAIN_PREFIX)}
        return train or weights


class Lookahead:
    """airbench's lookahead on a model's floating state (see the module docstring)."""

    def __init__(self, model: nn.Module, every: int, decay: float, start_epoch: int, steps_per_epoch: int,
                 total_steps: int) -> None:
        self.every, self.decay, self.start_epoch = every, decay, start_epoch
        self.steps_per_epoch, self.total_steps = steps_per_epoch, max(total_steps, 1)
        self.average: list[torch.Tensor] | None = None

    @staticmethod
    def _state(model: nn.Module) -> list[torch.Tensor]:
        return [v for v in model.state_dict().values() if v.is_floating_point()]

    def rho(self, step: int) -> float:
        """The average's decay at a sync after step `step`: decay**every · (step / total)³."""
        return self.decay ** self.every * (step / self.total_steps) ** 3

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int, epoch_end: bool = False) -> None:
        epoch = (step - 1) // self.steps_per_epoch
        sync = epoch >= self.start_epoch and step % self.every == 0
        if not (sync or (epoch_end and self.average is not None)):
            return
        live = self._state(model)
        if sync and self.average is None:
            self.average = [v.detach().clone() for v in live]
        elif sync:
            torch._foreach_lerp_(self.average, live, 1.0 - self.rho(step))
            torch._foreach_copy_(live, self.average)
        if epoch_end and self.average is not None:
            torch._foreach_copy_(live, self.average)

    def eval_module(self, model: nn.Module) -> nn.Module:
        return model

    def state_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        if self.average is None:
            return {}
        names = [k for k, v in model.state_dict().items() if v.is_floating_point()]
        return {AVERAGE_PREFIX + k: v for k, v in zip(names, self.average)}

    def load_state(self, model: nn.Module, weights: dict[str, torch.Tensor],
                   tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        saved = {k[len(AVERAGE_PREFIX):]: v for k, v in tensors.items() if k.startswith(AVERAGE_PREFIX)}
        if saved:
            live = model.state_dict()
            self.average = [torch.empty_like(live[k]).copy_(saved[k]) for k, v in live.items() if v.is_floating_point()]
        return weights


class WeightAveraging(Callback):
    """The callback that keeps a `WeightAverage` in step with training.

    The trainer asks it for the weights to evaluate, checkpoint and export (`eval_module`) and
    for the tensors a checkpoint must carry to resume the average (`state_tensors`).
    """

    def __init__(self, average: WeightAverage) -> None:
        self.average = average

    @classmethod
    def for_config(cls, config: TrainConfig, model: nn.Module, steps_per_epoch: int) -> "WeightAveraging | None":
        """The averaging `config` asks for (`ema_decay` or `lookahead_every`), or None."""
        if config.ema_decay:
            return cls(MovingAverage(model, config.ema_decay))
        if config.lookahead_every:
            # The run's length, for the decay's warm-up, is set when fit starts.
            return cls(Lookahead(model, config.lookahead_every, config.lookahead_decay, config.lookahead_start_epoch,
                                 steps_per_epoch, steps_per_epoch))
        return None

    def on_fit_start(self, trainer: "Trainer") -> None:
        if isinstance(self.average, Lookahead):
            self.average.total_steps = max(trainer.max_steps, 1)

    def on_step_end(self, step: int) -> None:
        trainer = self.trainer
        assert trainer is not None
        epoch_end = step % trainer.train_batches.steps_per_epoch == 0 or step == trainer.max_steps
        self.average.after_step(trainer.model, step, epoch_end)

    def eval_module(self, model: nn.Module) -> nn.Module:
        return self.average.eval_module(model)

    def state_tensors(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return self.average.state_tensors(model)

    def load_state(self, model: nn.Module, weights: dict[str, torch.Tensor],
                   tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.average.load_state(model, weights, tensors)
