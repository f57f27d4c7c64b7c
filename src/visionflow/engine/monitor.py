"""Looking inside a network while it trains: intermediate outputs and per-layer gradient norms in
TensorBoard, every `log_every` steps.

`summarize_activations` holds comma-separated globs of module paths (the names `visionflow
inspect variables` shows, without the parameter suffix: `conv1`, `groups.*.conv2`): each matching
module's output gets a histogram and its zero fraction (ReLU sparsity) — what the tutorial's
`tf.summary.histogram` / `tf.nn.zero_fraction` on `resnet/tower_0/Relu:0` gave.  The forward
hooks exist only during the steps that are summarised, so the other steps cost nothing.
`summarize_gradients` adds each parameter's gradient L2 norm as `gradient_norm/NAME`.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import torch

from ..errors import InputError
from .callbacks import Callback


def matching_modules(model: torch.nn.Module, patterns: list[str], flag: str = "--summarize-activations"
                     ) -> list[tuple[str, torch.nn.Module]]:
    """The modules whose paths match any of the globs; an InputError naming `flag` when none does."""
    named = [(n, m) for n, m in model.named_modules() if n]
    chosen = [(n, m) for n, m in named if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise InputError(f"{flag} {','.join(patterns)}: no layer matches (layers: "
                         f"{', '.join(n for n, _ in named[:12])}{', …' if len(named) > 12 else ''})")
    return chosen


class TrainingMonitor(Callback):
    def __init__(self, activations: str, gradients: bool, model: torch.nn.Module, logger: Any) -> None:
        """The layers are matched now, so a pattern that matches nothing fails before training
        starts; summaries go through `logger`'s writer (the run's TensorBoardLogger)."""
        patterns = [p.strip() for p in activations.split(",") if p.strip()]
        self.modules = matching_modules(model, patterns) if patterns else []
        self.gradients = gradients
        self.logger = logger
        self.hooks: list[Any] = []
        self.outputs: dict[str, torch.Tensor] = {}

    def _due(self, step: int) -> bool:
        """Summarised with the log lines: every `log_every` steps and the run's last step."""
        return step % self.trainer.config.log_every == 0 or step == self.trainer.max_steps

    def on_step_start(self, step: int) -> None:
        if self.modules and self._due(step + 1):  # the step about to run ends at step + 1
            self.hooks = [m.register_forward_hook(lambda _m, _i, out, n=n: self.outputs.__setitem__(n, out.detach()))
                          for n, m in self.modules]

    def on_step_end(self, step: int) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks = []
        if not self._due(step):
            return
        writer = self.logger.summary_writer()
        for name, out in self.outputs.items():
            values = out.float()
            writer.add_histogram(f"activations/{name}", values.cpu(), step)
            writer.add_scalar(f"zero_fraction/{name}", float((values == 0).float().mean()), step)
        self.outputs = {}
        if self.gradients:
            for name, p in self.trainer.model.named_parameters():
                if p.grad is not None:
                    writer.add_scalar(f"gradient_norm/{name}", float(p.grad.detach().float().norm()), step)

    def teardown(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks = []
