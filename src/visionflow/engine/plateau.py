"""The learning rate divided on a validation plateau: the PTB language model's schedule.

pytorch/examples' word language model and the tutorials' "small"/"medium" configs keep SGD's
learning rate (20) until the validation loss stops improving, then divide it by 4.  This is a
scheduler the trainer steps every step (a no-op) and the language model's validation callback
tells each epoch's loss (`observe`); the learning rate itself lives in the optimizer's param
groups, which checkpoints keep, and the best loss in `state_dict`, so resume is exact.
"""

from __future__ import annotations

import torch


class PlateauDecay:
    def __init__(self, optimizer: torch.optim.Optimizer, factor: float = 0.25) -> None:
        self.optimizer, self.factor = optimizer, factor
        self.best: float | None = None
        self.decays = 0

    def step(self) -> None:
        """Per training step: the rate changes only when a validation loss is observed."""

    def observe(self, loss: float) -> bool:
        """Record a validation loss; returns True when it did not improve and the rate was divided."""
        if self.best is None or loss < self.best:
            self.best = loss
            return False
        for group in self.optimizer.param_groups:
            group["lr"] *= self.factor
        self.decays += 1
        return True

    def state_dict(self) -> dict:
        return {"best": self.best, "decays": self.decays}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.decays = state.get("best"), int(state.get("decays", 0))
