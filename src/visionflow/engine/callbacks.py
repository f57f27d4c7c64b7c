"""Callbacks: how anything that is not the training step itself joins the training loop.

`Trainer.fit` runs the loop — data, learning rate, optimizer step, global step — and calls
hooks through one dispatcher, `CallbackList`.  Checkpointing, TensorBoard summaries, progress
output, weight averaging and validation are callbacks like a user's (engine/checkpointing.py,
summaries.py, reporting.py, averaging.py, validation.py), and so are the Keras-style face's.

Hooks, in the order one step of `fit` calls them (every one is optional; `Callback` is a
no-op base, and any object with some of these methods works too):

  on_fit_start(trainer)              before the first step of this call to `fit`
  on_epoch_start(epoch)              before an epoch's (or a resumed epoch's) first step
  on_step_start(step)                before every optimizer step (`step`: the global step so far)
  on_batch_outputs(outputs, targets, weights, loss)
                                     after every step: the model's outputs (detached, on the
                                     device), the batch's targets, its sample weights (or None)
                                     and its loss — only passed when a callback has this hook
  on_log(step, metrics)              every `log_every` steps and at the last: loss, accuracy (class labels only),
                                     learning_rate, examples_per_sec of the steps since the last log
  on_step_end(step)                  after every optimizer step (`step` is the new global step)
  on_checkpoint(step)                after a checkpoint of `step` was written
  on_validate(epoch, step)           at an epoch's end: a callback that validates sets
                                     `trainer.validation` (an EvalResult)
  on_epoch_end(epoch, step, result)  at an epoch's end, with this epoch's validation (or None)
  on_fit_end(result)                 after the last step, with the TrainResult
  teardown()                         always, also when training stopped on an error

A callback learns the trainer through `set_trainer` before `on_fit_start`; setting
`trainer.stop_training = True` ends `fit` after the current step (Keras' `stop_training`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .loop import TrainResult, Trainer
    from .metrics import EvalResult

HOOKS = ("on_fit_start", "on_epoch_start", "on_step_start", "on_batch_outputs", "on_log", "on_step_end", "on_checkpoint", "on_validate", "on_epoch_end",
         "on_fit_end", "teardown")


class Callback:
    """A no-op base: override the hooks you need (see the module docstring)."""

    trainer: "Trainer | None" = None

    def set_trainer(self, trainer: "Trainer") -> None:
        self.trainer = trainer

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def on_epoch_start(self, epoch: int) -> None: ...
    def on_step_start(self, step: int) -> None: ...
    def on_batch_outputs(self, outputs: Any, targets: Any, weights: Any, loss: Any) -> None: ...
    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_step_end(self, step: int) -> None: ...
    def on_checkpoint(self, step: int) -> None: ...
    def on_validate(self, epoch: int, step: int) -> None: ...
    def on_epoch_end(self, epoch: int, step: int, result: "EvalResult | None") -> None: ...
    def on_fit_end(self, result: "TrainResult") -> None: ...
    def teardown(self) -> None: ...


class CallbackList:
    """The one dispatcher: calls a hook on every callback that implements it, in list order.

    Only overridden hooks are called (looked up once), so a step pays nothing for the hooks
    nobody uses.  `teardown` reaches every callback even when one of them raises.
    """

    def __init__(self, callbacks: Sequence[Any]) -> None:
        self.callbacks = list(callbacks)
        self._hooks = {hook: [getattr(cb, hook) for cb in self.callbacks if _implements(cb, hook)] for hook in HOOKS}

    def set_trainer(self, trainer: "Trainer") -> None:
        for cb in self.callbacks:
            if hasattr(cb, "set_trainer"):
                cb.set_trainer(trainer)

    def has(self, hook: str) -> bool:
        """Whether any callback implements `hook` (so the loop can skip preparing its arguments)."""
        return bool(self._hooks[hook])

    def call(self, hook: str, *args: Any) -> None:
        for method in self._hooks[hook]:
            method(*args)

    def teardown(self) -> None:
        error = None
        for method in self._hooks["teardown"]:
            try:
                method()
            except Exception as e:  # every callback gets to release what it holds; the first error is raised
                error = error or e
        if error is not None:
            raise error


def _implements(callback: Any, hook: str) -> bool:
    method = getattr(type(callback), hook, None) or getattr(callback, hook, None)
    return method is not None and method is not getattr(Callback, hook)
