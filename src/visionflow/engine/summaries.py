"""TensorBoard summaries, in TensorBoard's own event format and through its own summary builders.

A model directory holds one TensorBoard run per kind of event: `train/` (loss, accuracy,
learning rate and throughput; weight histograms; the input grid, the model's graph, the config
as text and its hyperparameters for the HParams dashboard) and `eval_<split>/` (accuracy and
loss at every evaluation; for full evaluations also the confusion matrix and mistakes grid as
images and a precision–recall curve per class).

Resuming a run first trims, from the event files already there, every event logged after the
checkpoint it resumes from, so its curves continue without doubling back and TensorBoard never
has to purge "out of order" steps.  An evaluation folder keeps one event file that every
evaluation appends to (TensorBoard tails appended files), rather than one file per evaluation.
`TensorBoardLogger` is the callback that writes the training run.
"""

from __future__ import annotations

import dataclasses
import io
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .callbacks import Callback
from .metrics import EvalResult

if TYPE_CHECKING:
    from .config import RunConfig
    from .loop import Trainer

TRAIN_RUN = "train"
#: The one event file of an evaluation folder ("tfevents" in its name is what TensorBoard looks for).
EVAL_EVENTS = "events.out.tfevents.visionflow-eval"


def _writer(logdir: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(logdir))


def _summary():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.utils.tensorboard import summary
    return summary


class TrainSummaries:
    """Writes scalars, weight histograms, an input grid, the graph and the config of one training run."""

    def __init__(self, logdir: Path) -> None:
        self.writer = _writer(logdir)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def histograms(self, step: int, model: nn.Module) -> None:
        for name, param in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", param.detach().float().cpu(), step)

    def input_grid(self, step: int, images: torch.Tensor, limit: int = 32) -> None:
        """`images`: (N, H, W, C) uint8, as the pipeline stores them.

        Inputs that are not pictures (precomputed feature vectors (N, D), tabular rows
        (N, 1, 1, D) float32) have no grid to draw.
        """
        if images.dim() != 4 or images.shape[-1] not in (1, 3, 4) or images.dtype != torch.uint8:
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

    def config(self, run: "RunConfig") -> None:
        """The run's config as text, and its hyperparameters for the HParams dashboard (with the
        training loss and accuracy as its metrics)."""
        self.writer.add_text("config", "```json\n" + run.to_json() + "```", 0)
        summary = _summary()
        params = hparams_of(run)
        for proto in summary.hparams(params, {"loss": 0.0, "accuracy": 0.0}):
            self.writer.file_writer.add_summary(proto)

    def close(self) -> None:
        self.writer.close()


def hparams_of(run: "RunConfig") -> dict[str, Any]:
    """The TrainConfig flattened to the scalars the HParams plugin takes (augment as augment.FIELD)."""
    out: dict[str, Any] = {"model": run.model.name}
    for key, value in dataclasses.asdict(run.train).items():
        if isinstance(value, dict):
            for inner, v in value.items():
                out[f"{key}.{inner}"] = v if isinstance(v, (bool, int, float, str)) else str(v)
        elif value is not None:
            out[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def trim_events(logdir: Path, after_step: int) -> int:
    """Drop, from every event file in `logdir`, the events logged after `after_step` (a killed
    run's steps past its last checkpoint).  Files are rewritten atomically; returns the events dropped."""
    from tensorboard.compat.proto.event_pb2 import Event

    from ..core.fsio import remove_stale_temps
    from ..errors import InputError
    from ..formats.tfrecord import read_records, write_records

    dropped = 0
    if not logdir.is_dir():
        return 0
    remove_stale_temps(logdir)
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        if path.name.startswith("."):
            continue
        kept, removed = [], 0
        try:
            for data in read_records(path):
                event = Event.FromString(data)
                if event.step > after_step and not event.HasField("file_version"):
                    removed += 1
                else:
                    kept.append(data)
        except (InputError, ValueError):
            continue  # a torn last record of a killed writer: TensorBoard reads what is whole
        if removed:
            write_records(path, kept)
            dropped += removed
    return dropped


def write_eval_summary(logdir: Path, result: EvalResult, labels: np.ndarray | None = None,
                       images: dict[str, bytes] | None = None) -> None:
    """Append one evaluation to `logdir`'s event file: accuracy and loss; a precision–recall
    curve per class when the true `labels` (N,) and the result's probabilities are there; and
    `images` ({tag: PNG bytes}, such as the confusion matrix)."""
    from tensorboard.compat.proto.event_pb2 import Event

    from ..formats.tfrecord import frame_record

    summary = _summary()
    step, now = result.global_step, time.time()
    protos = [summary.scalar(name, value) for name, value in (result.regression or {"accuracy": result.accuracy}).items()]
    protos.append(summary.scalar("loss", result.loss))
    if labels is not None and result.probabilities is not None and len(labels):
        for k, name in enumerate(result.class_names):
            protos.append(summary.pr_curve(f"pr_curve/{k}_{name}", labels == k, result.probabilities[:, k],
                                           num_thresholds=101))
    for tag, png in (images or {}).items():
        protos.append(summary.image(tag, _png_array(png), dataformats="HWC"))
    path = logdir / EVAL_EVENTS
    logdir.mkdir(parents=True, exist_ok=True)
    records = [] if path.exists() else [Event(wall_time=now, file_version="brain.Event:2").SerializeToString()]
    records += [Event(wall_time=now, step=step, summary=proto).SerializeToString() for proto in protos]
    with open(path, "ab") as f:  # appended, as every TensorBoard writer does: readers tail the file
        f.write(b"".join(frame_record(r) for r in records))
        f.flush()


def _png_array(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


class TensorBoardLogger(Callback):
    """Scalars at every log line, weight histograms at every checkpoint, validation results at
    epoch ends, and — for a run that starts at step 0 — a grid of training inputs, the model's
    graph, the config and its hyperparameters.  The event file is opened with the first of these,
    after a step has trained, so a run that fails at once leaves no event file behind; a resumed
    run first trims what a killed run logged after its checkpoint."""

    def __init__(self) -> None:
        self.summaries: TrainSummaries | None = None
        self.start_step = 0

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.start_step = trainer.global_step

    def _writer(self) -> TrainSummaries:
        if self.summaries is None:
            trainer = self.trainer
            assert trainer is not None
            path = trainer.model_dir.path
            if self.start_step:
                for logdir in (path, path / TRAIN_RUN, trainer.model_dir.eval_dir("validation")):
                    trim_events(logdir, self.start_step)
            self.summaries = TrainSummaries(path / TRAIN_RUN)
            batches = trainer.train_batches
            if self.start_step == 0 and hasattr(batches, "images"):  # image data (not the Keras face's arrays)
                self.summaries.input_grid(0, batches.images[: min(32, batches.num_examples)])
                self.summaries.graph(trainer.model, batches.inputs(1))
            if self.start_step == 0:
                self.summaries.config(trainer.run)
        return self.summaries

    def summary_writer(self) -> Any:
        """The run's one SummaryWriter (train/), for other callbacks' summaries of this run."""
        return self._writer().writer

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        self._writer().scalars(step, metrics)

    def on_checkpoint(self, step: int) -> None:
        assert self.trainer is not None
        self._writer().histograms(step, self.trainer.model)

    def on_epoch_end(self, epoch: int, step: int, result: EvalResult | None) -> None:
        if result is not None and self.trainer is not None:
            self._writer()
            batches = self.trainer.validation_batches
            labels = batches.labels.cpu().numpy() if batches is not None else None
            write_eval_summary(self.trainer.model_dir.eval_dir(result.split), result, labels)

    def teardown(self) -> None:
        if self.summaries is not None:
            self.summaries.close()
            self.summaries = None
