"""The callback that validates at epoch ends, so every epoch's accuracy is seen while training runs."""

from __future__ import annotations

from .callbacks import Callback
from .evaluation import evaluate


class Validator(Callback):
    """Evaluate the validation split after every epoch — or every few epochs when an epoch is
    shorter than a log interval (the embedded digits: 22 steps an epoch), so validation never
    costs more than the logging around it.  The result is `trainer.validation`."""

    def on_validate(self, epoch: int, step: int) -> None:
        trainer = self.trainer
        assert trainer is not None
        batches = trainer.validation_batches
        every = max(1, -(-trainer.config.log_every // trainer.train_batches.steps_per_epoch))
        if (epoch + 1) % every or batches is None or not batches.num_examples:
            return
        trainer.validation = evaluate(trainer.eval_model, batches, trainer.run.class_names, trainer.device,
                                      trainer.config.precision, step, "validation",
                                      trainer.custom_loss)
        trainer.model.train()
