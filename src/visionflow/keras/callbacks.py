"""Keras' callbacks, with Keras' names, arguments and hook order.

They are reached through the engine's one dispatcher: `fit` adds a single engine callback
(`fitting.KerasHooks`) that turns the engine's hooks into Keras' (`on_train_begin`, …,
`on_train_batch_end(batch, logs)`, `on_epoch_end(epoch, logs)`) with Keras' `logs` dicts, and
calls these in list order.  `self.model` is the model being fitted; setting
`self.model.stop_training = True` ends `fit` after the current step.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .model import Model

Logs = Optional[dict[str, float]]


def _writer_process() -> bool:
    """Under torchrun, only rank 0 writes files (every process runs the callbacks)."""
    from ..core.distributed import world

    return world().is_main


class Callback:
    """No-op base: override the hooks you need."""

    model: "Model | None" = None
    params: dict[str, Any] = {}

    def set_model(self, model: "Model") -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs = None) -> None: ...
    def on_train_end(self, logs: Logs = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None: ...
    def on_train_batch_begin(self, batch: int, logs: Logs = None) -> None: ...
    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None: ...
    def on_test_begin(self, logs: Logs = None) -> None: ...
    def on_test_end(self, logs: Logs = None) -> None: ...
    def on_test_batch_begin(self, batch: int, logs: Logs = None) -> None: ...
    def on_test_batch_end(self, batch: int, logs: Logs = None) -> None: ...
    def on_predict_begin(self, logs: Logs = None) -> None: ...
    def on_predict_end(self, logs: Logs = None) -> None: ...
    def on_predict_batch_begin(self, batch: int, logs: Logs = None) -> None: ...
    def on_predict_batch_end(self, batch: int, logs: Logs = None) -> None: ...


def overrides(callback: Any, hook: str) -> bool:
    if hook in vars(callback):  # LambdaCallback's functions
        return True
    method = getattr(type(callback), hook, None)
    return method is not None and method is not getattr(Callback, hook, None)


class CallbackList:
    """Keras' callbacks in order; only overridden hooks are called."""

    def __init__(self, callbacks: list[Any], model: "Model", params: dict[str, Any]) -> None:
        self.callbacks = callbacks
        for cb in callbacks:
            cb.set_model(model)
            cb.set_params(params)

    def wants(self, hook: str) -> bool:
        return any(overrides(cb, hook) for cb in self.callbacks)

    def call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            if overrides(cb, hook):
                getattr(cb, hook)(*args)


class History(Callback):
    """Every epoch's logs: `history.history["loss"]`, `history.epoch`; `plot(path)` draws them."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: Logs = None) -> None:
        self.epoch = []
        self.history = {}

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def plot(self, path: str | os.PathLike) -> Path:
        """Loss and each metric per epoch (training and validation) as a PNG at `path`."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ..core.fsio import atomic_write_bytes

        names = [k for k in self.history if not k.startswith("val_") and k != "learning_rate"]
        if not names:
            raise InputError("History.plot: nothing was recorded (fit has not run an epoch)")
        fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.4), squeeze=False)
        epochs = [e + 1 for e in self.epoch]
        for ax, name in zip(axes[0], names):
            ax.plot(epochs, self.history[name], "o-", label="training")
            if f"val_{name}" in self.history:
                ax.plot(epochs, self.history[f"val_{name}"], "s--", label="validation")
            ax.set_title(name)
            ax.set_xlabel("epoch")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        import io

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        atomic_write_bytes(Path(path), buffer.getvalue())
        return Path(path)


def _format(logs: Logs) -> str:
    return " - ".join(f"{k}: {v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{k}: {v:.4e}" for k, v in (logs or {}).items())


class ProgbarLogger(Callback):
    """Keras' progress: verbose=1 a bar per epoch on a terminal (plain lines when not a TTY),
    verbose=2 one line per epoch."""

    def __init__(self, verbose: int = 1, stream: Any = None) -> None:
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown = 0.0

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        self.started = time.perf_counter()
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.params.get('epochs')}", file=self.stream, flush=True)

    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        now = time.perf_counter()
        if self.verbose != 1 or not self.tty or now - self._shown < 0.1:
            return
        self._shown = now
        steps = self.params.get("steps") or 0
        done = batch + 1
        width = 20
        bar = "━" * int(width * done / max(steps, 1))
        print(f"\r{done}/{steps} {bar:<{width}} {now - self.started:.0f}s - {_format(logs)}", end="",
              file=self.stream, flush=True)

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if not self.verbose:
            return
        seconds = time.perf_counter() - self.started
        steps = self.params.get("steps") or 1
        prefix = "\r" if self.tty and self.verbose == 1 else ""
        print(f"{prefix}{steps}/{steps} - {seconds:.0f}s {1000 * seconds / steps:.0f}ms/step - {_format(logs)}",
              file=self.stream, flush=True)


class LambdaCallback(Callback):
    def __init__(self, on_epoch_begin: Optional[Callable] = None, on_epoch_end: Optional[Callable] = None,
                 on_train_begin: Optional[Callable] = None, on_train_end: Optional[Callable] = None,
                 on_train_batch_begin: Optional[Callable] = None, on_train_batch_end: Optional[Callable] = None,
                 **kwargs: Any) -> None:
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end, on_train_begin=on_train_begin,
                     on_train_end=on_train_end, on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **kwargs)
        for hook, fn in given.items():
            if fn is not None:
                if not hasattr(Callback, hook):
                    raise InputError(f"LambdaCallback: unknown hook {hook!r}")
                setattr(self, hook, fn)


def _monitor_mode(monitor: str, mode: str) -> Callable[[float, float], bool]:
    """`better(a, b)`: a improves on b for `monitor` under Keras' mode rules."""
    if mode not in ("auto", "min", "max"):
        raise InputError(f"mode must be 'auto', 'min' or 'max', not {mode!r}")
    if mode == "auto":
        mode = "max" if any(s in monitor for s in ("acc", "auc", "precision", "recall", "io_u")) else "min"
    return (lambda a, b: a > b) if mode == "max" else (lambda a, b: a < b)


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs; with
    `restore_best_weights`, the model ends with its best epoch's weights — also when training
    runs to its last epoch without stopping early."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: Optional[float] = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0) -> None:
        self.monitor, self.min_delta, self.patience, self.verbose = monitor, abs(min_delta), patience, verbose
        self.baseline, self.restore_best_weights, self.start_from_epoch = baseline, restore_best_weights, start_from_epoch
        self._better = _monitor_mode(monitor, mode)
        self.sign = 1 if self._better(1, 0) else -1

    def on_train_begin(self, logs: Logs = None) -> None:
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = self.baseline if self.baseline is not None else (-math.inf if self.sign > 0 else math.inf)
        self.best_weights: Optional[dict] = None

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(f"EarlyStopping: {self.monitor!r} is not in the logs ({', '.join(logs or {})})", stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self._keep(epoch)  # the first epoch watched is the best so far
        self.wait += 1
        if self._better(value - self.sign * self.min_delta, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self._keep(epoch)
            if self.baseline is None or self._better(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            assert self.model is not None
            self.model.stop_training = True

    def _keep(self, epoch: int) -> None:
        assert self.model is not None
        self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def on_train_end(self, logs: Logs = None) -> None:
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None and self.model is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (or its weights) to `filepath` — formatted with `epoch` (1-based), `batch`
    and the logs, e.g. "ckpt/{epoch:02d}-{val_loss:.2f}.keras" — every epoch or every
    `save_freq` batches; with `save_best_only`, only when `monitor` improved."""

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, save_weights_only: bool = False, mode: str = "auto",
                 save_freq: str | int = "epoch", initial_value_threshold: Optional[float] = None) -> None:
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, verbose
        self.save_best_only, self.save_weights_only, self.save_freq = save_best_only, save_weights_only, save_freq
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise InputError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive int, not {save_freq!r}")
        self._better = _monitor_mode(monitor, mode)
        self.best = initial_value_threshold
        self._batches = 0

    def _save(self, epoch: int, batch: Optional[int], logs: Logs) -> None:
        assert self.model is not None
        if not _writer_process():
            return
        logs = dict(logs or {})
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                warnings.warn(f"ModelCheckpoint: {self.monitor!r} is not in the logs; not saving", stacklevel=2)
                return
            if self.best is not None and not self._better(value, self.best):
                return
            self.best = value
        try:
            path = self.filepath.format(epoch=epoch + 1, batch=batch, **logs)
        except KeyError as e:
            raise InputError(f"ModelCheckpoint: filepath {self.filepath!r} names {e} that is not in the logs "
                             f"({', '.join(logs)})") from None
        if self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        (self.model.save_weights if self.save_weights_only else self.model.save)(path)

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        if isinstance(self.save_freq, int):
            self._batches += 1
            if self._batches % self.save_freq == 0:
                self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)


class ReduceLROnPlateau(Callback):
    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        if factor >= 1.0:
            raise InputError("ReduceLROnPlateau: factor must be below 1")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
        self._better = _monitor_mode(monitor, mode)
        self.sign = 1 if self._better(1, 0) else -1

    def on_train_begin(self, logs: Logs = None) -> None:
        self.wait = self.cooldown_counter = 0
        self.best = -math.inf if self.sign > 0 else math.inf

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        assert self.model is not None
        logs = logs if logs is not None else {}
        value = logs.get(self.monitor)
        logs["learning_rate"] = self.model.optimizer.learning_rate
        if value is None:
            warnings.warn(f"ReduceLROnPlateau: {self.monitor!r} is not in the logs", stacklevel=2)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(value - self.sign * self.min_delta, self.best):
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = self.model.optimizer.learning_rate
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the learning rate at each epoch's start to `schedule(epoch, lr)` (or `schedule(epoch)`)."""

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        assert self.model is not None
        try:
            rate = self.schedule(epoch, self.model.optimizer.learning_rate)
        except TypeError:
            rate = self.schedule(epoch)
        if not isinstance(rate, (int, float, np.floating)) or not math.isfinite(rate):
            raise InputError(f"LearningRateScheduler: the schedule returned {rate!r}, not a finite number")
        self.model.optimizer.learning_rate = float(rate)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {rate}.")

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if logs is not None and self.model is not None:
            logs["learning_rate"] = self.model.optimizer.learning_rate


class CSVLogger(Callback):
    """One row per epoch: epoch and every log, written (and flushed) as each epoch ends."""

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        self.filename, self.separator, self.append = Path(filename), separator, append
        self.file: Any = None
        self.keys: Optional[list[str]] = None

    def on_train_begin(self, logs: Logs = None) -> None:
        if not _writer_process():
            self.file = None
            return
        exists = self.append and self.filename.exists() and self.filename.stat().st_size > 0
        self.file = open(self.filename, "a" if self.append else "w", newline="")
        self.keys = None
        if exists:
            with open(self.filename, newline="") as f:
                header = next(csv.reader(f, delimiter=self.separator), None)
            self.keys = header[1:] if header else None
        self.writer: Any = None

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        logs = logs or {}
        if self.file is None:
            return
        if self.keys is None:
            self.keys = sorted(logs)
            csv.writer(self.file, delimiter=self.separator).writerow(["epoch"] + self.keys)
        csv.writer(self.file, delimiter=self.separator).writerow([epoch] + [logs.get(k, "NA") for k in self.keys])
        self.file.flush()

    def on_train_end(self, logs: Logs = None) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class TerminateOnNaN(Callback):
    def on_train_batch_end(self, batch: int, logs: Logs = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            assert self.model is not None
            self.model.stop_training = True


class TensorBoard(Callback):
    """Epoch scalars (train/ and validation/ runs, as the command line writes them: `loss`,
    `accuracy`, …) and weight histograms every `histogram_freq` epochs, under `log_dir`.

    visionflow's addition, `summarize_activations` ("conv*,dense": globs of module paths, as
    `visionflow inspect variables` names them): histograms and zero fractions of those layers'
    outputs on the first batch of every `histogram_freq`-th epoch (every epoch when 0), through
    forward hooks removed at the epoch's end."""

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0, write_graph: bool = True,
                 update_freq: str | int = "epoch", summarize_activations: str | None = None, **kwargs: Any) -> None:
        self.log_dir = Path(log_dir)
        self.histogram_freq, self.update_freq = histogram_freq, update_freq
        self.writers: dict[str, Any] = {}
        self.patterns = [p.strip() for p in (summarize_activations or "").split(",") if p.strip()]
        self.hooks: list[Any] = []
        self.outputs: dict[str, Any] = {}
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Logs = None) -> None:
        self.epoch = epoch
        if self.patterns and self.model is not None and _writer_process() and (epoch + 1) % max(self.histogram_freq, 1) == 0:
            from ..engine.monitor import matching_modules

            for name, module in matching_modules(self.model, self.patterns, "summarize_activations"):
                self.hooks.append(module.register_forward_hook(self._keep(name)))

    def _keep(self, name: str) -> Any:
        """A hook that keeps the layer's first output of the epoch and then removes itself (no
        per-batch callback: Keras' per-batch logs cost a device sync each batch)."""
        def hook(_module: Any, _inputs: Any, out: Any) -> None:
            if name not in self.outputs:
                self.outputs[name] = out.detach()
        return hook

    def _write_activations(self, epoch: int) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks = []
        for name, out in self.outputs.items():
            values = out.float()
            self._writer("train").add_histogram(f"activations/{name}", values.cpu(), epoch)
            self._writer("train").add_scalar(f"zero_fraction/{name}", float((values == 0).float().mean()), epoch)
        self.outputs = {}

    def _writer(self, run: str) -> Any:
        if run not in self.writers:
            from torch.utils.tensorboard import SummaryWriter

            self.writers[run] = SummaryWriter(str(self.log_dir / run))
        return self.writers[run]

    def on_epoch_end(self, epoch: int, logs: Logs = None) -> None:
        if not _writer_process():
            return
        self._write_activations(epoch)
        for key, value in (logs or {}).items():
            run, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(run).add_scalar(f"epoch_{name}", value, epoch)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0 and self.model is not None:
            for name, p in self.model.named_parameters():
                self._writer("train").add_histogram(name, p.detach().cpu(), epoch)

    def on_train_end(self, logs: Logs = None) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


class BackupAndRestore(Callback):
    """Resume a killed `fit` exactly where its last backup was: weights, optimizer state, the
    learning-rate schedule, random number generators and the place in the data order — also in
    the middle of an epoch.  `save_freq`: "epoch" or every N batches.  The backup is a
    visionflow model directory (its checkpoints); `delete_checkpoint` removes it when `fit` ends
    normally.  It is read by `fit` itself (see `model.Model.fit`): this callback carries the settings."""

    def __init__(self, backup_dir: str | os.PathLike, save_freq: str | int = "epoch",
                 delete_checkpoint: bool = True) -> None:
        if not backup_dir:
            raise InputError("BackupAndRestore: backup_dir is required")
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise InputError(f"BackupAndRestore: save_freq must be 'epoch' or a positive int, not {save_freq!r}")
        self.backup_dir, self.save_freq, self.delete_checkpoint = Path(backup_dir), save_freq, delete_checkpoint

    def finished(self) -> None:
        if self.delete_checkpoint and self.backup_dir.exists():
            shutil.rmtree(self.backup_dir)
