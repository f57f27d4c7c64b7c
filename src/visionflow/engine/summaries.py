"""TensorBoard summaries through TensorBoard's own event-file writer.

Training scalars go to the model directory itself, evaluation scalars to `eval_<split>/`, so
TensorBoard draws the training and evaluation curves of one run side by side.
`TensorBoardLogger` is the callback that writes them while a run trains.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .callbacks import Callback
from .metrics import EvalResult

if TYPE_CHECKING:
    from .loop import Trainer


def _writer(logdir: Path, purge_step: int | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(logdir), purge_step=purge_step)


class TrainSummaries:
    """Writes scalars, weight histograms, an input grid and the graph of one training run.

    `purge_step` is the resumed step: events a killed run wrote after its last checkpoint
    are hidden by TensorBoard, so curves do not double back.
    """

    def __init__(self, logdir: Path, purge_step: int | None = None) -> None:
        self.writer = _writer(logdir, purge_step or None)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def histograms(self, step: int, model: nn.Module) -> None:
        for name, param in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)

    def input_grid(self, step: int, images: torch.Tensor, limit: int = 32) -> None:
        """`images`: (N, H, W, C) uint8, as the pipeline stores them.

        Inputs that are not pictures (precomputed feature vectors, (N, D)) have no grid to draw.
        """
        if images.dim() != 4 or images.shape[-1] not in (1, 3, 4):
            return
        self.writer.add_images("inputs", images[:limit].cpu(), step, dataformats="NHWC")

    def graph(self, model: nn.Module, example: torch.Tensor) -> None:
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.writer.add_graph(model, example[:1])
        except Exception as e:  # tracing is best-effort: a user's module may not trace
            warnings.warn(f"model graph not written to TensorBoard: {e}")
        finally:
            model.train(was_training)

    def close(self) -> None:
        self.writer.close()


def write_eval_summary(logdir: Path, result: EvalResult) -> None:
    writer = _writer(logdir)
    writer.add_scalar("accuracy", result.accuracy, result.global_step)
    writer.add_scalar("loss", result.loss, result.global_step)
    writer.close()


class TensorBoardLogger(Callback):
    """Scalars at every log line, weight histograms at every checkpoint, validation results at
    epoch ends, and — for a run that starts at step 0 — a grid of training inputs and the model's
    graph.  The event file is opened with the first of these, after a step has trained, so a run
    that fails at once leaves no event file behind."""

    def __init__(self) -> None:
        self.summaries: TrainSummaries | None = None
        self.start_step = 0

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.start_step = trainer.global_step

    def _writer(self) -> TrainSummaries:
        if self.summaries is None:
            trainer = self.trainer
            assert trainer is not None
            self.summaries = TrainSummaries(trainer.model_dir.path, purge_step=self.start_step)
            if self.start_step == 0:
                batches = trainer.train_batches
                self.summaries.input_grid(0, batches.images[: min(32, batches.num_examples)])
                self.summaries.graph(trainer.model, batches.inputs(1))
        return self.summaries

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self._writer().scalars(step, metrics)

    def on_checkpoint(self, step: int) -> None:
        assert self.trainer is not None
        self._writer().histograms(step, self.trainer.model)

    def on_epoch_end(self, epoch: int, step: int, result: EvalResult | None) -> None:
        if result is not None and self.trainer is not None:
            self._writer()
            write_eval_summary(self.trainer.model_dir.eval_dir(result.split), result)

    def teardown(self) -> None:
        if self.summaries is not None:
            self.summaries.close()
            self.summaries = None
