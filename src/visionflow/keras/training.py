"""`compile / fit / evaluate / predict` for Keras-style models, on the engine's one loop.

`fit` hands the engine's `Trainer` the model, a batch source over the arrays, the Keras loss
(as the engine's custom loss, sample weights included), the Keras optimizer's torch optimizer,
and one engine callback, `KerasHooks`, which keeps the compiled metrics and turns the engine's
hooks into Keras' (`on_epoch_begin`, `on_train_batch_end`, …, with Keras' `logs`).  A model
directory — `fit(model_dir=...)` or `callbacks.BackupAndRestore(dir)` — gets the engine's
checkpoints (weights, optimizer, LR schedule, RNG, step), so a killed `fit` resumes exactly.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..core.devices import resolve_device
from ..core.distributed import barrier, broadcast_value, shard_range, world
from ..core.distributed import join as join_world
from ..data.arrays import ArrayBatches, as_tensor
from ..engine.callbacks import Callback as EngineCallback
from ..engine.config import RunConfig, TrainConfig
from ..engine.custom import Customizations
from ..engine.loop import Trainer
from ..engine.modeldir import ModelDir
from ..errors import InputError
from ..models.spec import ModelSpec
from ..preprocessing import Preprocessing
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .callbacks import BackupAndRestore, CallbackList, History, ProgbarLogger

if TYPE_CHECKING:
    from .model import Model

DEFAULT_BATCH = 32


class KerasHooks(EngineCallback):
    """The engine callback of one `fit`: compiled metrics per batch, Keras' hooks and logs."""

    def __init__(self, model: "Model", callbacks: CallbackList, origin: int, initial_epoch: int, per_epoch: int,
                 validation: Optional[tuple] = None) -> None:
        self.model, self.callbacks, self.origin = model, callbacks, origin
        self.initial_epoch, self.per_epoch, self.validation = initial_epoch, per_epoch, validation
        self.batch_logs = callbacks.wants("on_train_batch_end")
        self.batch_begin = callbacks.wants("on_train_batch_begin")
        self.logs: dict[str, float] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        self.model.stop_training = False
        self.callbacks.call("on_train_begin", {})

    def on_epoch_start(self, epoch: int) -> None:
        self.model.reset_metrics()
        self.callbacks.call("on_epoch_begin", self.initial_epoch + epoch, {})

    def on_step_start(self, step: int) -> None:
        if self.batch_begin:
            self.callbacks.call("on_train_batch_begin", (step - self.origin) % self.per_epoch, {})

    def on_batch_outputs(self, outputs: torch.Tensor, targets: torch.Tensor, weights: Any, loss: torch.Tensor) -> None:
        self.model._update_metrics(outputs, targets, weights, loss)

    def on_step_end(self, step: int) -> None:
        if self.batch_logs:
            self.callbacks.call("on_train_batch_end", (step - self.origin - 1) % self.per_epoch,
                                self.model._metric_logs())
        self._check_stop()

    def on_epoch_end(self, epoch: int, step: int, result: Any) -> None:
        logs = self.model._metric_logs()
        if self.validation is not None:
            x, y, w, batch_size = self.validation
            values = self.model.evaluate(x, y, batch_size=batch_size, sample_weight=w, verbose=0, return_dict=True,
                                         _during_fit=True)
            logs.update({f"val_{k}": v for k, v in values.items()})
        self.callbacks.call("on_epoch_end", self.initial_epoch + epoch, logs)
        self.logs = logs
        self._check_stop()

    def on_fit_end(self, result: Any) -> None:
        self.callbacks.call("on_train_end", dict(self.logs))

    def _check_stop(self) -> None:
        if self.model.stop_training and self.trainer is not None:
            self.trainer.stop_training = True


class KerasLearningRate:
    """The engine's LR scheduler for a Keras optimizer: the rate is the optimizer's own (what
    callbacks set), or its schedule's value at the step count; state: the step count."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Any = None) -> None:
        self.optimizer, self.schedule, self.steps = optimizer, schedule, 0
        self._apply()

    def _apply(self) -> None:
        if self.schedule is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = float(self.schedule(self.steps))

    def step(self) -> None:
        self.steps += 1
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
        self._apply()


def _clip(optimizer: optimizers_module.Optimizer) -> Any:
    """A step pre-hook clipping gradients as the Keras optimizer's clipnorm / clipvalue say."""
    def hook(torch_optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for g in torch_optimizer.param_groups for p in g["params"] if p.grad is not None]
        if optimizer.clipvalue:
            torch.nn.utils.clip_grad_value_(params, optimizer.clipvalue)
        if optimizer.clipnorm:
            torch.nn.utils.clip_grad_norm_(params, optimizer.clipnorm)
    return hook


def to_array(value: Any, name: str) -> torch.Tensor:
    if value is None:
        raise InputError(f"{name} is required")
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (int, float, np.number, list)):
        raise InputError(f"{name}: one array is supported, not a list of {len(value)} (multi-input models are not)")
    return as_tensor(value if isinstance(value, (torch.Tensor, np.ndarray)) else np.asarray(value), name)


def class_weights_for(y: torch.Tensor, class_weight: dict[int, float]) -> torch.Tensor:
    """Per-example weights from Keras' `class_weight` {class index: weight} (labels or one-hot)."""
    labels = y.argmax(-1) if y.dim() > 1 and y.shape[-1] > 1 else y.reshape(len(y)).long()
    table = torch.ones(int(max(max(class_weight) + 1, int(labels.max()) + 1)))
    for k, v in class_weight.items():
        table[int(k)] = float(v)
    return table[labels.cpu()].to(y.device)


def input_contract(model: nn.Module, x: torch.Tensor) -> tuple[ModelSpec, Preprocessing]:
    """What the model directory records of a Keras model: its architecture, and — for image
    models (inputs (H, W, C) with 1 or 3 channels) — how served pixels become its input: scaled
    to 0–1, or left 0–255 when the training inputs were (their maximum above 1.5)."""
    shape = tuple(x.shape[1:])
    try:
        architecture = model.get_config()
    except InputError:
        architecture = {"subclassed": type(model).__name__}
    outputs = getattr(model, "output_shape", None) or (None, 0)
    classes = int(outputs[-1] or 0)
    if len(shape) == 3 and shape[-1] in (1, 3):
        h, w, c = (int(d) for d in shape)
    else:
        h, w, c = 1, 1, int(np.prod(shape)) if shape else 1
    scale = 255.0 if x.is_floating_point() and len(x) and float(x[:1000].max()) > 1.5 else 1.0
    pre = Preprocessing(channels=c, height=h, width=w, mean=(0.0,) * c, std=(1.0 / scale,) * c, resize="bilinear")
    return ModelSpec("keras", classes, (c, h, w), {"architecture": architecture}), pre


class Training:
    """compile/fit/evaluate/predict; mixed into `keras.Model` (an nn.Module of Keras layers)."""

    stop_training = False

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Optional[Sequence[Any]] = None,
                loss_weights: Any = None, weighted_metrics: Any = None, run_eagerly: bool = False,
                steps_per_execution: int = 1, jit_compile: Any = "auto", auto_scale_loss: bool = True) -> None:
        """Keras' compile.  `jit_compile=True` compiles the training step with torch.compile."""
        if loss is None:
            raise InputError("compile: loss is required (a name such as 'sparse_categorical_crossentropy', "
                             "a keras loss, or a function of (y_true, y_pred))")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        self._metric_specs = list(metrics or []) + list(weighted_metrics or [])
        self.compiled_metrics: list[metrics_module.Metric] = []
        self._loss_tracker = metrics_module.Mean(name="loss")
        self.jit_compile = jit_compile is True
        self._trainer: Optional[Trainer] = None
        self._trainer_dir: Optional[Path] = None
        self.compiled = True

    def _require_compiled(self, what: str) -> None:
        if not getattr(self, "compiled", False):
            raise InputError(f"{what}: call model.compile(optimizer=..., loss=...) first")

    # -- metrics -------------------------------------------------------------------------------
    def _resolve_metrics(self) -> None:
        if self.compiled_metrics or not self._metric_specs:
            return
        shape = getattr(self, "output_shape", None) or ()
        self.compiled_metrics = [metrics_module.get(m, self.loss.name, shape) for m in self._metric_specs]

    @property
    def metrics(self) -> list[metrics_module.Metric]:
        return [self._loss_tracker] + list(getattr(self, "compiled_metrics", []))

    @property
    def metrics_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def reset_metrics(self) -> None:
        for m in self.metrics:
            m.reset_state()

    def _update_metrics(self, outputs: torch.Tensor, y: torch.Tensor, weights: Any, loss: torch.Tensor) -> None:
        self._loss_tracker.update_state(loss.reshape(1), torch.full((1,), float(len(y)), device=loss.device))
        for m in self.compiled_metrics:
            m.update_state(y, outputs, weights)

    def _metric_logs(self) -> dict[str, float]:
        logs = {}
        for m in self.metrics:
            value = m.result()
            if value.numel() == 1:
                logs[m.name] = float(value)
        return logs

    # -- the engine's pieces ---------------------------------------------------------------------
    def _engine_loss(self) -> Any:
        loss = self.loss

        def engine_loss(outputs: torch.Tensor, y: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
            return loss(y, outputs, weights)

        engine_loss.__name__ = loss.name
        return engine_loss

    def _ensure_built(self, x: torch.Tensor) -> None:
        build = getattr(self, "ensure_built", None)
        if build is not None:
            build(x)
        if not any(True for _ in self.parameters()):  # subclassed: layers make weights on first call
            with torch.no_grad():
                was = self.training
                self.eval()
                self(x[:2])
                self.train(was)

    def _make_trainer(self, directory: Optional[Path], config: TrainConfig, x: torch.Tensor,
                      batches: ArrayBatches) -> Trainer:
        device = resolve_device(config.device)
        self.to(device)
        torch_optimizer = self.optimizer.build([p for p in self.parameters() if p.requires_grad])
        if (self.optimizer.clipnorm or self.optimizer.clipvalue) and not getattr(self, "_clip_hooked", False):
            torch_optimizer.register_step_pre_hook(_clip(self.optimizer))
            self._clip_hooked = True
        scheduler = getattr(self, "_lr_scheduler", None)
        if scheduler is None or scheduler.optimizer is not torch_optimizer:
            self._lr_scheduler = scheduler = KerasLearningRate(torch_optimizer, self.optimizer.schedule)
        spec, pre = input_contract(self, x)
        run = RunConfig(config, spec, pre, tuple(str(i) for i in range(max(spec.num_classes, 0))))
        custom = Customizations(optimizer=torch_optimizer, loss=self._engine_loss(),
                                lr_scheduler=lambda optimizer: scheduler)
        model_dir = ModelDir(directory, training=True) if directory is not None else None
        builtins = ("checkpoints", "summaries") if directory is not None else ()
        trainer = Trainer(self, run, model_dir, device, batches, None, (), None, custom, builtins=builtins)
        trainer.raise_on_nonfinite = False
        return trainer

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, x: Any = None, y: Any = None, batch_size: Optional[int] = None, epochs: int = 1,
            verbose: Any = "auto", callbacks: Optional[Sequence[Any]] = None, validation_split: float = 0.0,
            validation_data: Any = None, shuffle: bool = True, class_weight: Optional[dict] = None,
            sample_weight: Any = None, initial_epoch: int = 0, steps_per_epoch: Optional[int] = None,
            validation_steps: Optional[int] = None, validation_batch_size: Optional[int] = None,
            validation_freq: int = 1, model_dir: Any = None) -> History:
        """Keras' fit over arrays or tensors (`x` may also be a visionflow Dataset or a catalog
        name: its training split scaled to 0–1, validated on its validation split).  Trains
        epochs `initial_epoch` … `epochs - 1`; returns the History.

        `model_dir` (visionflow's own): keep the run in a model directory — checkpoints every
        epoch, TensorBoard events, config.json — which `visionflow export` and `serve` take.
        """
        self._require_compiled("fit")
        x, y, validation_data = _dataset_arrays(x, y, validation_data)
        x, y = to_array(x, "x"), to_array(y, "y")
        if len(x) != len(y):
            raise InputError(f"x has {len(x)} rows but y has {len(y)}")
        weights = to_array(sample_weight, "sample_weight").float() if sample_weight is not None else None
        if class_weight:
            cw = class_weights_for(y, class_weight)
            weights = cw if weights is None else weights * cw
        if not 0 <= validation_split < 1:
            raise InputError(f"validation_split must be in [0, 1), not {validation_split}")
        if validation_split and validation_data is None:
            cut = len(x) - int(len(x) * validation_split)
            if cut <= 0 or cut == len(x):
                raise InputError(f"validation_split={validation_split} leaves no data on one side ({len(x)} rows)")
            validation_data = (x[cut:], y[cut:]) + ((weights[cut:],) if weights is not None else ())
            x, y, weights = x[:cut], y[:cut], (weights[:cut] if weights is not None else None)
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise InputError("validation_data must be (x_val, y_val) or (x_val, y_val, sample_weight_val)")
            vx, vy = validation_data[0], validation_data[1]
            vw = validation_data[2] if len(validation_data) == 3 else None
            validation = (vx, vy, vw, validation_batch_size or batch_size or DEFAULT_BATCH)
        if epochs <= initial_epoch:
            return self.history if isinstance(getattr(self, "history", None), History) else History()
        self._ensure_built(x)
        self._resolve_metrics()
        self._example_input = x[:64].cpu()
        callbacks = list(callbacks or [])
        backup = next((cb for cb in callbacks if isinstance(cb, BackupAndRestore)), None)
        directory = Path(model_dir) if model_dir is not None else (backup.backup_dir if backup else None)
        stored = ModelDir(directory).load_config() if directory is not None and ModelDir(directory).exists() else None
        seed = stored.train.seed if stored is not None else int(torch.randint(0, 2**31 - 1, (1,)).item())
        batch_size = batch_size or DEFAULT_BATCH
        w, device = join_world(resolve_device("auto"))
        if w.active:  # every process draws the same seed: the data order is one process's
            seed = int(broadcast_value(seed))
        batches = ArrayBatches(x, y, batch_size, device, shuffle=bool(shuffle), seed=seed, weights=weights,
                               steps_per_epoch=steps_per_epoch, rank=w.rank, world_size=w.size)
        per_epoch = batches.steps_per_epoch
        if backup is not None and backup.save_freq != "epoch":
            every = int(backup.save_freq)
        else:
            every = per_epoch
        config = TrainConfig(model="keras", dataset="arrays", batch_size=batch_size, epochs=None,
                             optimizer=f"custom:{self.optimizer.name}", lr=self.optimizer.learning_rate,
                             schedule="custom:keras", loss=f"custom:{self.loss.name}", seed=seed, device=str(device),
                             precision="fp32", compile=self.jit_compile, log_every=10**9, checkpoint_every=every,
                             keep_checkpoints=2, deterministic=torch.are_deterministic_algorithms_enabled())
        if self._trainer is None or self._trainer_dir != directory:
            self._trainer = self._make_trainer(directory, config, x, batches)
            self._trainer_dir = directory
        trainer = self._trainer
        trainer.train_batches = batches
        trainer.config = trainer.run.train = config
        # With a directory the run's steps count from its start (so a resumed fit knows where it
        # is); without one, from wherever the model is now.
        origin = 0 if directory is not None else trainer.global_step
        if directory is not None and stored is None and trainer.global_step:
            origin = trainer.global_step
        max_steps = origin + (epochs - initial_epoch) * per_epoch
        verbose = 1 if verbose == "auto" else int(verbose)
        if not w.is_main:
            verbose = 0
        history = History()
        keras_callbacks = ([ProgbarLogger(verbose)] if verbose else []) + callbacks + [history]
        params = {"epochs": epochs, "steps": per_epoch, "verbose": verbose}
        hooks = KerasHooks(self, CallbackList(keras_callbacks, self, params), origin, initial_epoch, per_epoch,
                           validation if validation_freq else None)
        trainer.set_callbacks([hooks])
        self.history = history
        self.train()
        trainer.fit(max_steps, epoch_origin=origin)
        self.eval()
        if backup is not None and directory == backup.backup_dir and not self.stop_training:
            self._trainer = None  # the next fit starts without the backup it deletes
            barrier()
            if w.is_main:
                backup.finished()
        return history

    # -- evaluate / predict ------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next((p.device for p in self.parameters()), torch.device("cpu"))

    def _batches_of(self, x: torch.Tensor, batch_size: int) -> Any:
        device = self._device()
        for start in range(0, len(x), batch_size):
            yield x[start:start + batch_size].to(device)

    def evaluate(self, x: Any = None, y: Any = None, batch_size: Optional[int] = None, verbose: Any = "auto",
                 sample_weight: Any = None, steps: Optional[int] = None, callbacks: Optional[Sequence[Any]] = None,
                 return_dict: bool = False, _during_fit: bool = False) -> Any:
        """The loss and compiled metrics over (x, y): a scalar (no metrics), a list in
        `metrics_names` order, or a dict with `return_dict=True`."""
        self._require_compiled("evaluate")
        x, y, _ = _dataset_arrays(x, y, None, split="test")
        x, y = to_array(x, "x"), to_array(y, "y")
        if len(x) != len(y):
            raise InputError(f"x has {len(x)} rows but y has {len(y)}")
        weights = to_array(sample_weight, "sample_weight").float() if sample_weight is not None else None
        self._ensure_built(x)
        self._resolve_metrics()
        w = world()
        if w.active:  # each process evaluates its share; the metrics sum over processes when read
            lo, hi = shard_range(len(x), w)
            x, y, weights = x[lo:hi], y[lo:hi], (weights[lo:hi] if weights is not None else None)
        batch_size = batch_size or DEFAULT_BATCH
        kept = None
        if _during_fit:  # the training metrics' epoch values must survive validation
            kept = [copy.deepcopy(m) for m in self.metrics]
        self.reset_metrics()
        hooks = CallbackList(list(callbacks or []), self, {"steps": -(-len(x) // batch_size)})
        hooks.call("on_test_begin", {})
        was = self.training
        self.eval()
        device = self._device()
        with torch.no_grad():
            for i, start in enumerate(range(0, len(x), batch_size)):
                if steps is not None and i >= steps:
                    break
                hooks.call("on_test_batch_begin", i, {})
                xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
                wb = weights[start:start + batch_size].to(device) if weights is not None else None
                out = self(xb)
                self._update_metrics(out, yb, wb, self.loss(yb, out, wb).detach())
                hooks.call("on_test_batch_end", i, {})
        self.train(was)
        logs = self._metric_logs()
        hooks.call("on_test_end", logs)
        if kept is not None:
            self._loss_tracker, self.compiled_metrics = kept[0], kept[1:]
        if (verbose == "auto" or verbose) and not _during_fit:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()), file=sys.stdout)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x: Any, batch_size: Optional[int] = None, verbose: Any = "auto", steps: Optional[int] = None,
                callbacks: Optional[Sequence[Any]] = None) -> np.ndarray:
        """The model's outputs for `x`, batch by batch, as a NumPy array."""
        x = to_array(x, "x")
        self._ensure_built(x)
        hooks = CallbackList(list(callbacks or []), self, {})
        hooks.call("on_predict_begin", {})
        was = self.training
        self.eval()
        outs = []
        with torch.no_grad():
            for i, xb in enumerate(self._batches_of(x, batch_size or DEFAULT_BATCH)):
                if steps is not None and i >= steps:
                    break
                hooks.call("on_predict_batch_begin", i, {})
                outs.append(self(xb).float().cpu())
                hooks.call("on_predict_batch_end", i, {"outputs": outs[-1]})
        self.train(was)
        hooks.call("on_predict_end", {})
        return torch.cat(outs).numpy() if outs else np.zeros((0,), dtype=np.float32)

    # -- single batches --------------------------------------------------------------------------
    def train_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, class_weight: Optional[dict] = None,
                       return_dict: bool = False) -> Any:
        """One optimizer step on (x, y) through the engine; returns the loss and metrics of it."""
        self._require_compiled("train_on_batch")
        x, y = to_array(x, "x"), to_array(y, "y")
        self.reset_metrics()
        self.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False, sample_weight=sample_weight,
                 class_weight=class_weight)
        logs = {k: v[-1] for k, v in self.history.history.items()}
        return logs if return_dict else (list(logs.values()) if len(logs) > 1 else next(iter(logs.values())))

    def test_on_batch(self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = False) -> Any:
        return self.evaluate(x, y, batch_size=len(x), sample_weight=sample_weight, verbose=0, return_dict=return_dict)

    def predict_on_batch(self, x: Any) -> np.ndarray:
        return self.predict(x, batch_size=len(x), verbose=0)


def _dataset_arrays(x: Any, y: Any, validation_data: Any, split: str = "train") -> tuple[Any, Any, Any]:
    """`x` as a visionflow Dataset or catalog name → (inputs, labels, validation): images 0–1 float32,
    or a CSV's tabular features (N, D)."""
    from ..data.base import Dataset

    if isinstance(x, str):
        from ..data.catalog import load_dataset

        x = load_dataset(x)
    if not isinstance(x, Dataset):
        return x, y, validation_data
    part = x.split(split)
    if validation_data is None and split == "train" and len(x.validation):
        validation_data = (_keras_inputs(x.validation.images), x.validation.labels)
    return _keras_inputs(part.images), part.labels, validation_data


def _keras_inputs(images: np.ndarray) -> np.ndarray:
    """Pixels as Keras takes them (float32 0–1, (N, H, W, C)); tabular rows (a CSV's features,
    stored (N, 1, 1, D)) as the (N, D) raw values a Dense model takes."""
    if images.dtype != np.uint8:
        return images.reshape(len(images), -1).astype(np.float32, copy=False)
    return images.astype(np.float32) / 255.0
