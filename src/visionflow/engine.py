"""The one training loop, and evaluation, shared by the CLI and the Python API.

`Trainer.fit(max_steps)` trains from wherever the model directory left off to global step
`max_steps`, checkpointing every `checkpoint_every` steps.  The per-step work stays on the
device: losses land in a small device buffer that is read (one sync) only when a line is
logged or a checkpoint is due, which is also when a non-finite loss is detected and the
exact step it first appeared is reported.

A model may declare, and the trainer then honours:
  `optimizer_groups()`   parameter groups, each a dict with "params" and optional
                         "weight_decay_scale" and "lr_scale" (multipliers of the config's weight
                         decay and of the scheduled learning rate), e.g. decay on dense layers only;
  `init_from_data(x)`    a data-dependent initialisation from normalised training inputs
                         (B, C, H, W), called once before step 0 — never on resume, where the
                         weights come from the checkpoint;
  `set_epoch(epoch)`     called before every (0-based) epoch, also when resuming inside one, for
                         schedules that change the model itself (e.g. freezing a layer).
Weight averaging (`averaging.py`: the tutorial's moving average, airbench's lookahead) is
updated after every optimizer step and saved in checkpoints; evaluation uses `eval_model`.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import tta_logits
from .averaging import Lookahead, MovingAverage, WeightAverage
from .checkpoint import load_checkpoint, restore_optimizer, rng_states, save_checkpoint
from .config import RunConfig, TrainConfig
from .errors import DivergedError, InputError
from .metrics import EvalResult
from .modeldir import ModelDir
from .pipeline import TensorBatches
from .progress import Progress
from .summaries import TrainSummaries, write_eval_summary


class Callback(Protocol):
    """Hooks called by `Trainer.fit`; every method is optional."""

    def on_log(self, step: int, metrics: dict[str, float]) -> None: ...
    def on_epoch_end(self, epoch: int, step: int, result: EvalResult | None) -> None: ...
    def on_checkpoint(self, step: int) -> None: ...


@dataclass
class TrainResult:
    global_step: int
    steps_run: int
    seconds: float
    examples_per_sec: float
    validation: EvalResult | None = None


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; explicit names are checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r} is not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise InputError(f"--device {name}: no such CUDA device on this machine")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps: MPS is not available on this machine")
    return device


def autocast_for(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """bf16 autocast on CUDA under 'auto' (where supported); full fp32 everywhere else."""
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    if not use_bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups with their weight decay and learning-rate multiplier ("lr_scale").

    Without an `optimizer_groups()` method every parameter is decayed by `weight_decay`.  With
    one, its groups must cover every trainable parameter exactly once (frozen ones may be left out).
    """
    declare = getattr(model, "optimizer_groups", None)
    if declare is None:
        return [{"params": list(model.parameters()), "weight_decay": weight_decay, "lr_scale": 1.0}]
    groups, seen = [], set()
    for group in declare():
        params = list(group["params"])
        if any(id(p) in seen for p in params):
            raise ValueError(f"{type(model).__name__}.optimizer_groups() lists a parameter twice")
        seen.update(id(p) for p in params)
        groups.append({"params": params, "weight_decay": weight_decay * group.get("weight_decay_scale", 1.0),
                       "lr_scale": float(group.get("lr_scale", 1.0))})
    missing = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missing:
        raise ValueError(f"{type(model).__name__}.optimizer_groups() leaves out {', '.join(missing[:3])}")
    return [g for g in groups if g["params"]]


def make_optimizer(config: TrainConfig, params, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer `config` names over `params` (tensors, or groups from `optimizer_groups`)."""
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    wd = config.weight_decay
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, weight_decay=wd)
    if config.optimizer in ("momentum", "nesterov"):
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=wd,
                               nesterov=config.optimizer == "nesterov")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=wd, **fused)
    return torch.optim.Adagrad(params, lr=config.lr, weight_decay=wd)


def lr_at(config: TrainConfig, step: int, total: int) -> float:
    """Learning rate for (0-based) `step` of a `total`-step run: a pure function, so resume is exact."""
    if config.schedule == "constant" or total <= 0:
        return config.lr
    progress = min(step / total, 1.0)
    warm = config.warmup
    if config.schedule == "linear":
        start, end = config.lr_start_factor, config.lr_end_factor
        if progress < warm:
            return config.lr * (start + (1.0 - start) * progress / warm)
        return config.lr * (1.0 + (end - 1.0) * (progress - warm) / (1.0 - warm))
    if progress < warm:
        return config.lr * progress / warm
    if config.schedule == "step":
        return config.lr * (0.01 if progress >= 0.75 else 0.1 if progress >= 0.5 else 1.0)
    if config.schedule == "onecycle":
        rest = (progress - warm) / (1.0 - warm)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * rest))
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def capture_rng(device: torch.device) -> dict[str, torch.Tensor]:
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng(states: dict[str, torch.Tensor], device: torch.device) -> None:
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


class Trainer:
    """Trains `model` as `run` says, keeping `model_dir` the single source of truth."""

    def __init__(
        self,
        model: nn.Module,
        run: RunConfig,
        model_dir: ModelDir,
        device: torch.device,
        train_batches: TensorBatches,
        validation_batches: TensorBatches | None = None,
        callbacks: Sequence[Callback] = (),
        progress_stream=None,
    ) -> None:
        self.run = run
        self.config = run.train
        self.model_dir = model_dir
        self.device = device
        self.model = model.to(device=device, memory_format=torch.channels_last)
        self.train_batches = train_batches
        self.validation_batches = validation_batches
        self.callbacks = list(callbacks)
        self.progress_stream = progress_stream
        self.optimizer = make_optimizer(self.config, optimizer_groups(self.model, self.config.weight_decay), device)
        self.autocast = autocast_for(device, self.config.precision)
        self.global_step = 0
        ckpt = load_checkpoint(self.model_dir.checkpoints)
        if ckpt is None:
            self._init_from_data()
        self.average = self._make_average()
        self._max_steps: int | None = None
        if ckpt is not None:
            self._restore(ckpt)
        self._step_fn = self._make_step()

    @property
    def eval_model(self) -> nn.Module:
        """The weights to evaluate, checkpoint and export: the moving average when there is one."""
        return self.average.eval_module(self.model) if self.average is not None else self.model

    def _init_from_data(self, count: int = 5000) -> None:
        """Call the model's `init_from_data` with up to `count` normalised training images (first ones)."""
        hook = getattr(self.model, "init_from_data", None)
        if hook is None or not self.train_batches.num_examples:
            return
        with torch.no_grad():
            hook(self.train_batches.inputs(count))

    def _make_average(self) -> WeightAverage | None:
        cfg = self.config
        if cfg.ema_decay:
            return MovingAverage(self.model, cfg.ema_decay)
        if cfg.lookahead_every:
            # The run's length (for the decay's warm-up) is set by `fit`.
            return Lookahead(self.model, cfg.lookahead_every, cfg.lookahead_decay, cfg.lookahead_start_epoch,
                             self.train_batches.steps_per_epoch, self.train_batches.steps_per_epoch)
        return None

    def _restore(self, ckpt) -> None:
        weights = ckpt.weights
        if self.average is not None:
            try:
                weights = self.average.load_state(self.model, ckpt.weights, ckpt.state_tensors)
            except RuntimeError as e:
                first = str(e).strip().splitlines()[0]
                raise InputError(f"{self.model_dir.checkpoints}: checkpoint {ckpt.step} does not fit this model ({first})") from None
        try:
            self.model.load_state_dict(weights)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise InputError(f"{self.model_dir.checkpoints}: checkpoint {ckpt.step} does not fit this model ({first})") from None
        restore_optimizer(self.optimizer, ckpt)
        restore_rng(rng_states(ckpt), self.device)
        self.global_step = ckpt.step

    def _make_step(self) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        model = torch.compile(self.model) if self.config.compile else self.model
        optimizer, smoothing, autocast = self.optimizer, self.config.label_smoothing, self.autocast

        def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with autocast():
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.detach().float(), (logits.detach().argmax(1) == y).sum()

        return step

    def _checkpoint(self) -> None:
        extra = self.average.state_tensors(self.model) if self.average is not None else {}
        save_checkpoint(self.model_dir.checkpoints, self.global_step, self.eval_model, self.optimizer,
                        capture_rng(self.device), self.config.keep_checkpoints, extra, self._max_steps)
        for cb in self.callbacks:
            getattr(cb, "on_checkpoint", lambda s: None)(self.global_step)

    def fit(self, max_steps: int) -> TrainResult:
        """Train until global step `max_steps` (a no-op when the directory is already there)."""
        self._max_steps = max_steps
        cfg, batches = self.config, self.train_batches
        start_step = self.global_step
        if isinstance(self.average, Lookahead):
            self.average.total_steps = max(max_steps, 1)
        if start_step >= max_steps:
            return TrainResult(start_step, 0, 0.0, 0.0)
        per_epoch = batches.steps_per_epoch
        summaries = TrainSummaries(self.model_dir.path, purge_step=start_step)
        progress = Progress(max_steps, start_step, stream=self.progress_stream)
        window = _LossWindow(cfg.log_every, self.device)
        last_saved = start_step
        validation = None
        started = time.perf_counter()
        self.model.train()
        try:
            while self.global_step < max_steps:
                epoch, offset = divmod(self.global_step, per_epoch)
                set_epoch = getattr(self.model, "set_epoch", None)
                if set_epoch is not None:
                    set_epoch(epoch)
                for x, y in batches.epoch(epoch, offset):
                    if self.global_step == 0:
                        summaries.input_grid(0, batches.images[: min(32, batches.num_examples)])
                        summaries.graph(self.model, x)
                    lr = lr_at(cfg, self.global_step, max_steps)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr * group.get("lr_scale", 1.0)
                    loss, correct = self._step_fn(x, y)
                    self.global_step += 1
                    if self.average is not None:
                        self.average.after_step(self.model, self.global_step,
                                                self.global_step % per_epoch == 0 or self.global_step == max_steps)
                    window.add(loss, correct, len(y))
                    progress.advance(1)
                    due_log = self.global_step % cfg.log_every == 0 or self.global_step == max_steps
                    due_ckpt = self.global_step % cfg.checkpoint_every == 0
                    if due_log or due_ckpt:
                        stats = window.flush(self.global_step)
                        progress.describe(f"loss {stats.loss:.4f}  accuracy {stats.accuracy:.2%}")
                        if due_log:
                            self._log(progress, summaries, stats, lr, max_steps)
                    if due_ckpt:
                        self._checkpoint()
                        summaries.histograms(self.global_step, self.model)
                        last_saved = self.global_step
                    if self.global_step % per_epoch == 0:
                        validation = self._end_epoch(epoch, progress)
                    if self.global_step >= max_steps:
                        break
            window.flush(self.global_step)
            if self.global_step != last_saved:
                self._checkpoint()
                summaries.histograms(self.global_step, self.model)
        finally:
            progress.close()
            summaries.close()
        seconds = time.perf_counter() - started
        steps_run = self.global_step - start_step
        return TrainResult(self.global_step, steps_run, seconds,
                           steps_run * batches.batch_size / seconds if seconds else 0.0, validation)

    def _log(self, progress: Progress, summaries: TrainSummaries, stats: "_WindowStats", lr: float,
             max_steps: int) -> None:
        metrics = {"loss": stats.loss, "accuracy": stats.accuracy, "learning_rate": lr,
                   "examples_per_sec": stats.examples_per_sec}
        summaries.scalars(self.global_step, metrics)
        progress.log(f"step {self.global_step}/{max_steps}  loss {stats.loss:.4f}  accuracy {stats.accuracy:.2%}  "
                     f"lr {lr:.2e}  {stats.examples_per_sec:,.0f} examples/s")
        for cb in self.callbacks:
            getattr(cb, "on_log", lambda s, m: None)(self.global_step, metrics)

    def _end_epoch(self, epoch: int, progress: Progress) -> EvalResult | None:
        """Validate after every epoch, or every few epochs when an epoch is shorter than a log interval."""
        result = None
        every = max(1, -(-self.config.log_every // self.train_batches.steps_per_epoch))
        if (epoch + 1) % every == 0 and self.validation_batches is not None and self.validation_batches.num_examples:
            result = evaluate(self.eval_model, self.validation_batches, self.run.class_names, self.device,
                              self.config.precision, self.global_step, "validation")
            self.model.train()
            write_eval_summary(self.model_dir.eval_dir("validation"), result)
            progress.log(f"epoch {epoch + 1} (step {self.global_step}): validation accuracy {result.accuracy:.2%}  "
                         f"loss {result.loss:.4f}")
        for cb in self.callbacks:
            getattr(cb, "on_epoch_end", lambda e, s, r: None)(epoch, self.global_step, result)
        return result


@dataclass
class _WindowStats:
    steps: int
    loss: float
    accuracy: float
    examples_per_sec: float


class _LossWindow:
    """Per-step losses kept on the device until the next log/checkpoint (one sync per window)."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.losses = torch.zeros(max(size, 1), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.n = 0
        self.examples = 0
        self.first_step = 0
        self.t0 = time.perf_counter()

    def add(self, loss: torch.Tensor, correct: torch.Tensor, batch: int) -> None:
        if self.n == len(self.losses):
            self.losses = torch.cat([self.losses, torch.zeros_like(self.losses)])
        self.losses[self.n] = loss
        self.correct += correct
        self.n += 1
        self.examples += batch

    def flush(self, step: int) -> _WindowStats:
        """Read the window back; raise DivergedError naming the first non-finite step."""
        n = self.n
        losses = self.losses[:n].cpu().numpy()
        correct = int(self.correct.item())
        bad = np.flatnonzero(~np.isfinite(losses))
        if len(bad):
            value = losses[bad[0]]
            raise DivergedError("NaN" if np.isnan(value) else "inf", step - n + int(bad[0]) + 1)
        now = time.perf_counter()
        stats = _WindowStats(n, float(losses.mean()) if n else 0.0, correct / self.examples if self.examples else 0.0,
                             self.examples / (now - self.t0) if now > self.t0 else 0.0)
        self.correct.zero_()
        self.n = self.examples = 0
        self.t0 = now
        return stats


@torch.no_grad()
def evaluate(model: nn.Module, batches: TensorBatches, class_names: Sequence[str], device: torch.device,
             precision: str = "auto", global_step: int = 0, split: str = "test") -> EvalResult:
    """Loss, accuracy and confusion matrix of `model` over every example of `batches`.

    Inputs are prepared by the batches' preprocessing (central crop, standardization) and the
    logits averaged over its test-time augmentation views (`Preprocessing.tta`), if any.
    """
    model.eval()
    k = len(class_names)
    confusion = torch.zeros(k * k, dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    autocast = autocast_for(device, precision)
    tta = getattr(batches.preprocessing, "tta", 0)
    predictions = []
    for x, y in batches.epoch(0):
        with autocast():
            logits = tta_logits(model, x, tta)
        predicted = logits.argmax(1)
        predictions.append(predicted)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        confusion += torch.bincount(y * k + predicted, minlength=k * k)
    count = batches.num_examples
    matrix = confusion.view(k, k).cpu().numpy()
    accuracy = float(np.trace(matrix) / count) if count else 0.0
    predicted_all = torch.cat(predictions).cpu().numpy() if predictions else np.zeros(0, np.int64)
    return EvalResult(float(loss_sum.item() / count) if count else 0.0, accuracy, count, matrix,
                      tuple(class_names), global_step, split, predicted_all)


@torch.no_grad()
def predict_probabilities(model: nn.Module, x: torch.Tensor, precision: str = "auto",
                          batch_size: int = 1024, tta: int = 0) -> torch.Tensor:
    """Softmax probabilities (N, classes) for normalised inputs (N, C, H, W), averaging the
    logits over `tta`'s test-time views (see `augment.tta_logits`)."""
    model.eval()
    device = next(model.parameters()).device
    autocast = autocast_for(device, precision)
    out = []
    for i in range(0, len(x), batch_size):
        with autocast():
            out.append(torch.softmax(tta_logits(model, x[i : i + batch_size].to(device), tta).float(), dim=1))
    return torch.cat(out) if out else torch.zeros(0)
