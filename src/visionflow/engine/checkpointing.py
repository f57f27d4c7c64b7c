"""The callback that decides when a checkpoint is written (the trainer knows what goes in it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .callbacks import Callback

if TYPE_CHECKING:
    from .loop import TrainResult


class Checkpointer(Callback):
    """A checkpoint every `every` global steps and at the end of every `fit` (once per step)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_step_end(self, step: int) -> None:
        trainer = self.trainer
        assert trainer is not None
        if step % self.every == 0 or step == trainer.max_steps:
            trainer.save_checkpoint()

    def on_fit_end(self, result: "TrainResult") -> None:
        trainer = self.trainer
        assert trainer is not None
        if trainer.last_saved != trainer.global_step:  # stopped early by a callback
            trainer.save_checkpoint()
