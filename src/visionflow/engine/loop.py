"""The one training loop, shared by the CLI, the Estimator-style API and the Keras-style face.

`Trainer.fit(max_steps)` trains from wherever the model directory left off to global step
`max_steps`.  The loop itself is data, learning rate, optimizer step and global step; all else
joins through callbacks (engine/callbacks.py): the built-in ones write checkpoints, TensorBoard
summaries and progress, keep weight averages and validate, in that order, before the user's.

The per-step work stays on the device: losses land in a small device buffer that is read (one
sync) only when a line is logged or a checkpoint is due, which is also when a non-finite loss
is detected and the exact step it first appeared is reported — before any checkpoint of it.

A model may declare, and the trainer then honours:
  `optimizer_groups(config)`   parameter groups for the run's TrainConfig, each a dict with
                         "params" and optional "weight_decay_scale" and "lr_scale" (multipliers of
                         the config's weight decay and of the scheduled learning rate), e.g. decay
                         on dense layers only, and optim.GROUP_OPTIONS (e.g. Muon's per-group momentum);
  `init_from_data(x)`    a data-dependent initialisation from normalised training inputs
                         (B, C, H, W), called once before step 0 — never on resume, where the
                         weights come from the checkpoint;
  `set_epoch(epoch)`     called before every (0-based) epoch, also when resuming inside one, for
                         schedules that change the model itself (e.g. freezing a layer).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.devices import autocast_for, grad_scaler_for
from ..core.fsio import remove_stale_temps
from ..core.distributed import all_reduce_sum, world
from ..core.memory import retain_freed_memory
from ..data.batches import TensorBatches
from ..errors import DivergedError, InputError
from .averaging import WeightAveraging
from .callbacks import CallbackList
from .checkpoint import Checkpoint, load_checkpoint, restore_optimizer, rng_states, save_checkpoint
from .checkpointing import Checkpointer
from .config import RunConfig
from .custom import Customizations, Loss, build_optimizer
from .metrics import EvalResult
from .modeldir import ModelDir
from .optim import lr_at, make_optimizer, optimizer_groups
from .reporting import ProgressReporter
from .summaries import TensorBoardLogger
from .validation import Validator


#: The engine's own callbacks, in the order they run (before a user's); `Trainer(builtins=...)`
#: may leave some out (the Keras-style face shows its own progress and validates with its metrics).
BUILTINS = ("averaging", "progress", "summaries", "checkpoints", "validation")


class Batches(Protocol):
    """What the trainer draws batches from (data.batches.TensorBatches, data.arrays.ArrayBatches):
    `epoch(epoch, start)` yields (inputs, targets) or (inputs, targets, sample weights) from batch
    number `start` on, the same batches for the same (seed, epoch) — so resuming is exact."""

    batch_size: int

    @property
    def num_examples(self) -> int: ...
    @property
    def steps_per_epoch(self) -> int: ...
    def inputs(self, count: int) -> torch.Tensor: ...
    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]: ...


@dataclass
class TrainResult:
    global_step: int
    steps_run: int
    seconds: float
    examples_per_sec: float
    validation: EvalResult | None = None


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
        model_dir: ModelDir | None,
        device: torch.device,
        train_batches: Batches,
        validation_batches: TensorBatches | None = None,
        callbacks: Sequence[Any] = (),
        progress_stream: TextIO | None = None,
        custom: Customizations | None = None,
        builtins: Sequence[str] = BUILTINS,
    ) -> None:
        self.run = run
        self.config = config = run.train
        self.model_dir = model_dir
        self.device = device
        if device.type == "cpu":
            retain_freed_memory()  # see core/memory.py: page faults were 40% of a small CPU step
        self.world = world()
        if self.world.active and config.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(device=device, memory_format=torch.channels_last)
        self.train_batches = train_batches
        self.validation_batches = validation_batches
        self.progress_stream = progress_stream
        custom = custom or Customizations()
        groups = optimizer_groups(self.model, config)
        self.optimizer = (make_optimizer(config, groups, device) if custom.optimizer is None else
                          build_optimizer(custom.optimizer, self.model, groups, config.lr, config.weight_decay))
        self.scheduler = custom.lr_scheduler(self.optimizer) if custom.lr_scheduler is not None else None
        smoothing = config.label_smoothing
        self.loss_fn: Loss = custom.loss or (squared_error if config.loss == "mse" else (
            lambda logits, y, *weights: weighted_cross_entropy(logits, y, smoothing, *weights)))
        self.custom_loss = custom.loss  # evaluation reports it instead of cross-entropy
        self.autocast = autocast_for(device, config.precision)
        self.scaler = grad_scaler_for(device, config.precision)
        self.global_step = 0
        self.max_steps = 0
        self.last_saved: int | None = None
        self.validation: EvalResult | None = None
        self.stop_training = False
        #: A non-finite loss ends `fit` with DivergedError; the Keras face turns this off (Keras
        #: trains on, and its TerminateOnNaN callback stops) — checkpoints still refuse one.
        self.raise_on_nonfinite = True
        #: The gradient's global L2 norm before clipping, of the last step (a tensor: reading it
        #: synchronises), when `clip_norm` is set; None otherwise.
        self.grad_norm: torch.Tensor | None = None
        self.derived_metrics: Callable[[dict[str, float]], dict[str, float]] | None = None
        self.example_unit = "examples"  # what a batch's targets count, in progress lines ("tokens")
        self._config_saved = False
        ckpt = load_checkpoint(model_dir.checkpoints) if model_dir is not None else None
        if ckpt is None:
            self._init_from_data()
        # Built after the data-dependent initialisation: a moving average starts from those weights.
        self.averaging = WeightAveraging.for_config(config, self.model, train_batches.steps_per_epoch)
        if ckpt is not None:
            self._restore(ckpt)
        if model_dir is None:
            builtins = [name for name in builtins if name not in ("summaries", "checkpoints")]
        if not self.world.is_main:  # rank 0 alone prints, writes checkpoints and summaries
            builtins = [name for name in builtins if name not in ("summaries", "checkpoints", "progress")]
        made = {"averaging": lambda: self.averaging, "progress": lambda: ProgressReporter(progress_stream),
                "summaries": TensorBoardLogger, "checkpoints": lambda: Checkpointer(config.checkpoint_every),
                "validation": Validator}
        self.builtin_callbacks = [cb for cb in (made[name]() for name in BUILTINS if name in builtins) if cb is not None]
        if (config.summarize_activations or config.summarize_gradients) and "summaries" in builtins:
            from .monitor import TrainingMonitor

            logger = next(cb for cb in self.builtin_callbacks if isinstance(cb, TensorBoardLogger))
            self.builtin_callbacks.append(TrainingMonitor(config.summarize_activations, config.summarize_gradients,
                                                          self.model, logger))
        self.set_callbacks(callbacks)
        self._window = _LossWindow(config.log_every, device, self.world.active)
        self._step_fn = self._make_step()

    def set_callbacks(self, callbacks: Sequence[Any]) -> None:
        """The user's callbacks for the next `fit` (after the built-in ones, which stay)."""
        self.callbacks = CallbackList(self.builtin_callbacks + list(callbacks))

    @property
    def eval_model(self) -> nn.Module:
        """The weights to evaluate, checkpoint and export: the moving average when there is one."""
        return self.averaging.eval_module(self.model) if self.averaging is not None else self.model

    def _init_from_data(self, count: int = 5000) -> None:
        """Call the model's `init_from_data` with up to `count` normalised training images (first ones)."""
        hook = getattr(self.model, "init_from_data", None)
        if hook is None or not self.train_batches.num_examples:
            return
        with torch.no_grad():
            hook(self.train_batches.inputs(count))

    def _restore(self, ckpt: Checkpoint) -> None:
        weights = ckpt.weights
        try:
            if self.averaging is not None:
                weights = self.averaging.load_state(self.model, ckpt.weights, ckpt.state_tensors)
            self.model.load_state_dict(weights)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise InputError(f"{self.model_dir.checkpoints}: checkpoint {ckpt.step} does not fit this model ({first})") from None
        restore_optimizer(self.optimizer, ckpt)
        if self.scaler is not None and "grad_scaler" in ckpt.state_meta:
            self.scaler.load_state_dict(ckpt.state_meta["grad_scaler"])
        if self.scheduler is not None and "lr_scheduler" in ckpt.state_meta:
            self.scheduler.load_state_dict(ckpt.state_meta["lr_scheduler"])
        restore_rng(rng_states(ckpt), self.device)
        self.global_step = self.last_saved = ckpt.step

    def _make_step(self) -> Callable[..., tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        model: nn.Module = self.model
        if self.world.active:  # gradients averaged over the processes: the global batch's gradient
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.config.compile:
            model = torch.compile(model, mode=self.config.compile_mode)
        optimizer, loss_fn, autocast, scaler = self.optimizer, self.loss_fn, self.autocast, self.scaler
        clip, params = self.config.clip_norm, [p for p in self.model.parameters() if p.requires_grad]

        def step(x: torch.Tensor, y: torch.Tensor, *weights: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
            with autocast():
                logits = model(x)
                loss = loss_fn(logits, y, *weights)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                if clip is not None:
                    self.grad_norm = torch.nn.utils.clip_grad_norm_(params, clip).detach()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                if clip is not None:
                    scaler.unscale_(optimizer)  # clip the true gradient, not the scaled one
                    self.grad_norm = torch.nn.utils.clip_grad_norm_(params, clip).detach()
                scaler.step(optimizer)  # skipped when the scaled gradients overflowed
                scaler.update()
            outputs = logits.detach()
            classes = outputs.dim() == 2 and y.dim() == 1 and not y.is_floating_point()
            return loss.detach().float(), (outputs.argmax(1) == y).sum() if classes else None, outputs

        return step

    def _log_metrics(self, lr: float) -> dict[str, float]:
        """A log line's metrics: the loss window's, the gradient norm when clipping, and what
        `derived_metrics` computes from them (a language model's perplexity)."""
        metrics = self._window.read(self.global_step, lr, self.raise_on_nonfinite)
        if self.grad_norm is not None:
            metrics["grad_norm"] = float(self.grad_norm)
        if self.derived_metrics is not None:
            metrics.update(self.derived_metrics(metrics))
        return metrics

    def save_checkpoint(self) -> None:
        """Write a checkpoint of the current step (after checking the losses since the last read
        are finite: a diverged run never checkpoints its broken weights), then tell the callbacks.

        The run's config.json is written with the first checkpoint of each `fit`, not before: a
        run that fails before it has trained a step leaves the directory as it found it.
        """
        self._window.check_finite(self.global_step)
        if self.model_dir is None or not self.world.is_main:
            return
        if not self._config_saved:
            self.model_dir.save_config(self.run)
            self._config_saved = True
        extra = self.averaging.state_tensors(self.model) if self.averaging is not None else {}
        meta = {}
        if self.scaler is not None:
            meta["grad_scaler"] = self.scaler.state_dict()
        if self.scheduler is not None:
            meta["lr_scheduler"] = plain_state(self.scheduler.state_dict())
        save_checkpoint(self.model_dir.checkpoints, self.global_step, self.eval_model, self.optimizer,
                        capture_rng(self.device), self.config.keep_checkpoints, extra, self.max_steps, meta)
        self.last_saved = self.global_step
        self.callbacks.call("on_checkpoint", self.global_step)
        self.model_dir.sync()

    def fit(self, max_steps: int, epoch_origin: int = 0) -> TrainResult:
        """Train until global step `max_steps` (a no-op when the directory is already there).
        Epochs are counted from global step `epoch_origin` (Keras' `fit` starts epoch 0 at
        whatever step the model has reached).

        Ctrl-C (SIGINT) stops after the current step and writes a checkpoint of it on the way out,
        then raises KeyboardInterrupt; a second Ctrl-C interrupts at once (writes are atomic, so
        the directory stays valid — only the steps since the last checkpoint are lost).
        """
        self.max_steps = max_steps
        cfg, batches, calls = self.config, self.train_batches, self.callbacks
        start_step = self.global_step
        if start_step >= max_steps:
            return TrainResult(start_step, 0, 0.0, 0.0)
        per_epoch = batches.steps_per_epoch
        self.validation = latest_validation = None
        self.stop_training = False
        self._config_saved = False
        if self.model_dir is not None:
            for directory in (self.model_dir.path, self.model_dir.checkpoints):
                remove_stale_temps(directory)  # writes of an earlier run that was killed
        started = time.perf_counter()
        self.model.train()
        calls.set_trainer(self)
        interrupt = _InterruptGuard()
        try:
            interrupt.__enter__()
            calls.call("on_fit_start", self)
            while self.global_step < max_steps and not self.stop_training:
                epoch, offset = divmod(self.global_step - epoch_origin, per_epoch)
                set_epoch = getattr(self.model, "set_epoch", None)
                if set_epoch is not None:
                    set_epoch(epoch)
                calls.call("on_epoch_start", epoch)
                outputs_wanted = calls.has("on_batch_outputs")
                for batch in batches.epoch(epoch, offset):
                    calls.call("on_step_start", self.global_step)
                    if self.scheduler is None:
                        lr = lr_at(cfg, self.global_step, max_steps)
                        for group in self.optimizer.param_groups:
                            group["lr"] = lr * group.get("lr_scale", 1.0)
                    else:
                        lr = self.optimizer.param_groups[0]["lr"]
                    loss, correct, outputs = self._step_fn(*batch)
                    if self.scheduler is not None:
                        self.scheduler.step()
                    self.global_step += 1
                    self._window.add(loss, correct, len(batch[1]))
                    if outputs_wanted:
                        calls.call("on_batch_outputs", outputs, batch[1], batch[2] if len(batch) > 2 else None, loss)
                    if self.global_step % cfg.log_every == 0 or self.global_step == max_steps:
                        calls.call("on_log", self.global_step, self._log_metrics(lr))
                    calls.call("on_step_end", self.global_step)
                    if (self.global_step - epoch_origin) % per_epoch == 0:
                        self.validation = None
                        calls.call("on_validate", epoch, self.global_step)
                        calls.call("on_epoch_end", epoch, self.global_step, self.validation)
                        latest_validation = self.validation or latest_validation
                    if interrupt.requested:
                        self._stop_on_interrupt(interrupt)
                    if self.global_step >= max_steps or self.stop_training:
                        break
            if self.raise_on_nonfinite:
                self._window.check_finite(self.global_step)
            seconds = time.perf_counter() - started
            steps_run = self.global_step - start_step
            result = TrainResult(self.global_step, steps_run, seconds,
                                 steps_run * batches.batch_size / seconds if seconds else 0.0, latest_validation)
            calls.call("on_fit_end", result)
        finally:
            interrupt.__exit__()
            calls.teardown()
        return result

    def _stop_on_interrupt(self, interrupt: "_InterruptGuard") -> None:
        """Checkpoint the step just finished, say so, and raise KeyboardInterrupt."""
        stream = self.progress_stream or sys.stderr
        interrupt.second_is_immediate()
        if self.last_saved != self.global_step:
            try:
                self.save_checkpoint()
            except KeyboardInterrupt:
                lost = self.global_step - (self.last_saved or 0)
                print(f"\ninterrupted again: the {lost} step(s) since the last checkpoint are lost", file=stream)
                raise
        print(f"\ninterrupted at step {self.global_step}: checkpoint written; run the same command to continue",
              file=stream, flush=True)
        raise KeyboardInterrupt


class _InterruptGuard:
    """While training, the first SIGINT only asks the loop to stop after the current step (an
    optimizer step is never cut in half); the second raises KeyboardInterrupt at once.  Outside the
    main thread, where signals cannot be caught, SIGINT behaves as usual."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "_InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def second_is_immediate(self) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def squared_error(outputs: torch.Tensor, targets: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
    """Mean squared error of (B, 1) outputs against (B,) float targets (a regression's loss)."""
    errors = (outputs.float().squeeze(1) - targets.float()).square()
    return errors.mean() if not weights else (errors * weights[0]).sum() / len(errors)


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float,
                           weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of (B, K) logits and (B,) labels; with (B,) per-example `weights`, the
    weighted sum over the batch size (Keras' "sum_over_batch_size")."""
    if weights is None:
        return F.cross_entropy(logits, labels, label_smoothing=smoothing)
    losses = F.cross_entropy(logits, labels, label_smoothing=smoothing, reduction="none")
    return (losses * weights).sum() / len(labels)


def plain_state(state: dict) -> dict:
    """A scheduler's state dict as JSON-able data (tensors and functions dropped: a LambdaLR's
    functions are rebuilt by its constructor; tensors are not expected in schedulers' state)."""
    import json

    out = {}
    for key, value in state.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out


class _LossWindow:
    """Per-step losses kept on the device until the next log/checkpoint (one sync per read).

    The buffer starts at `size` (the log interval) up to 256 entries and doubles when full, so a
    huge interval (logging only at the end) costs no huge allocation."""

    def __init__(self, size: int, device: torch.device, reduce: bool = False) -> None:
        self.reduce = reduce  # sum loss and accuracy over the data-parallel processes when read
        self.losses = torch.zeros(min(max(size, 1), 256), device=device)
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        self.n = 0
        self.checked = 0  # losses[:checked] are known to be finite
        self.examples = 0
        self.classified = True
        self.t0 = time.perf_counter()

    def add(self, loss: torch.Tensor, correct: torch.Tensor | None, batch: int) -> None:
        """`correct`: how many of the batch's `batch` examples were classified right (None: not a
        classification with class-index labels, so no accuracy is reported)."""
        if self.n == len(self.losses):
            self.losses = torch.cat([self.losses, torch.zeros_like(self.losses)])
        self.losses[self.n] = loss
        if correct is None:
            self.classified = False
        else:
            self.correct += correct
        self.n += 1
        self.examples += batch

    def check_finite(self, step: int) -> np.ndarray:
        """The window's losses; DivergedError naming the first non-finite step (`step` is the last's)."""
        losses = self.losses[: self.n].cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(losses[self.checked:]))
        if len(bad):
            first = self.checked + int(bad[0])
            raise DivergedError("NaN" if np.isnan(losses[first]) else "inf", step - self.n + first + 1)
        self.checked = self.n
        return losses

    def read(self, step: int, lr: float, check: bool = True) -> dict[str, float]:
        """The metrics of the steps since the last read (loss, accuracy, learning_rate,
        examples_per_sec), checked finite (unless `check` is False); the window starts over."""
        losses = self.check_finite(step) if check else self.losses[: self.n].cpu().numpy()
        now = time.perf_counter()
        n, examples = self.n, self.examples
        loss_sum, correct, seen = float(losses.sum()), int(self.correct.item()), examples
        if self.reduce:  # every rank reads at the same steps: one small all-reduce per log line
            totals = all_reduce_sum(torch.tensor([loss_sum, correct, seen], dtype=torch.float64,
                                                 device=self.losses.device)).tolist()
            loss_sum, correct, seen = totals[0] / world().size, int(totals[1]), int(totals[2])
        metrics = {"loss": loss_sum / n if n else 0.0}
        if self.classified:  # a regression (float targets) has no accuracy to log, not an accuracy of 0
            metrics["accuracy"] = correct / seen if seen else 0.0
        metrics.update(learning_rate=lr, examples_per_sec=examples / (now - self.t0) if now > self.t0 else 0.0)
        self.correct.zero_()
        self.n = self.checked = self.examples = 0
        self.t0 = now
        return metrics
