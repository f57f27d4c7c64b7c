"""The callback that shows a run's progress: a live bar on a terminal, plain lines when piped."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from ..core.progress import Progress
from .callbacks import Callback

if TYPE_CHECKING:
    from .loop import Trainer
    from .metrics import EvalResult


class ProgressReporter(Callback):
    """One line per log interval and per validation, under a step bar when the stream is a TTY."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.progress: Progress | None = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.progress = Progress(trainer.max_steps, trainer.global_step, stream=self.stream)

    def on_step_end(self, step: int) -> None:
        assert self.progress is not None
        self.progress.advance(1)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        assert self.progress is not None and self.trainer is not None
        loss, accuracy = metrics["loss"], metrics["accuracy"]
        self.progress.describe(f"loss {loss:.4f}  accuracy {accuracy:.2%}")
        self.progress.log(f"step {step}/{self.trainer.max_steps}  loss {loss:.4f}  accuracy {accuracy:.2%}  "
                          f"lr {metrics['learning_rate']:.2e}  {metrics['examples_per_sec']:,.0f} examples/s")

    def on_epoch_end(self, epoch: int, step: int, result: "EvalResult | None") -> None:
        if result is not None and self.progress is not None:
            self.progress.log(f"epoch {epoch + 1} (step {step}): validation accuracy {result.accuracy:.2%}  "
                              f"loss {result.loss:.4f}")

    def teardown(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None
