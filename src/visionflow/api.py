"""The Python API: an Estimator-style `Classifier` over the same engine the CLI drives.

    clf = visionflow.Classifier("runs/mnist", model="cnn", dataset="mnist", epochs=2)
    clf.train()                       # or clf.train((images, labels)), clf.train(steps=500), ...
    print(clf.evaluate().accuracy)    # or clf.evaluate((images, labels))
    out = clf.predict(images)         # {"classes": (N,), "probabilities": (N, K)}
    clf.export("exports/mnist")       # a verified, servable version, also for your own module

How far `train` goes follows the Estimator: `steps=N` trains N more steps, `max_steps=M` trains
until global step M, `epochs=E` trains E more epochs, and with none of them a call trains the
amount the Classifier was made with — the `steps`/`epochs` you gave it, else its recipe's — more.
Every call that adds steps starts a new learning-rate cycle over them; a call that has nothing to
train (`max_steps` already reached) warns instead of passing in silence.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .core.devices import resolve_device
from .data.base import Dataset, dataset_from_arrays, hold_out
from .data.batches import TensorBatches
from .data.catalog import DATASETS
from .engine.config import TrainConfig
from .engine.custom import Customizations
from .engine.evaluation import evaluate, load_model
from .engine.metrics import EvalResult
from .engine.modeldir import ModelDir
from .engine.recipes import default_config, resolve_config
from .engine.training import TrainOutcome, train
from .errors import InputError
from .infer.predict import predict_probabilities
from .preprocessing import pixel_batch

DataLike = Dataset | str | tuple[np.ndarray, np.ndarray] | None


class Classifier:
    """An image classifier bound to a model directory.

    `model` is a registered name ("mlp", "cnn"), a `torch.nn.Module`, or a function that
    returns one (like the Estimator's model_fn); None means the directory's model, else "cnn".
    Keyword arguments are `TrainConfig` fields; on a directory that already holds a run, they
    must agree with it.  `optimizer` may also be a torch optimizer class, instance or a function
    of the parameter groups, `loss` a function (logits, labels) → scalar, and `lr_scheduler` a
    function of the optimizer returning a torch LR scheduler (see engine/custom.py).
    """

    def __init__(self, model_dir: str | os.PathLike, model: str | nn.Module | Callable[[], nn.Module] | None = None,
                 *, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 lr_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None, **params: Any) -> None:
        self.model_dir = ModelDir(model_dir)
        if model is None:
            model = self.model_dir.load_config().train.model if self.model_dir.exists() else "cnn"
        self._custom = None if isinstance(model, str) else model
        optimizer = params.pop("optimizer", None)
        self.customizations = Customizations(optimizer=None if optimizer is None or isinstance(optimizer, str)
                                             else optimizer, loss=loss, lr_scheduler=lr_scheduler)
        overrides = dict(params, **self.customizations.config_overrides())
        if isinstance(optimizer, str):
            overrides["optimizer"] = optimizer
        if isinstance(model, str):
            overrides["model"] = model
        elif not self.model_dir.exists():
            overrides.setdefault("model", "custom")
        self.config: TrainConfig = resolve_config(self.model_dir, overrides, flags=False)
        self._last_data: Dataset | None = None
        # What a `train()` without steps/epochs/max_steps adds: what was given here, else the recipe's.
        if "steps" in params or "epochs" in params:
            self._amount = (params.get("steps"), params.get("epochs"))
        else:
            recipe = default_config(self.config.model, self.config.dataset)
            self._amount = (recipe.steps if recipe.epochs is None else None, recipe.epochs)

    def train(self, data: DataLike = None, steps: int | None = None, epochs: float | None = None,
              max_steps: int | None = None, callbacks: Sequence[Any] = ()) -> TrainOutcome:
        """Train on `data` (arrays `(images, labels)`, a Dataset or a dataset name; default: the
        configured dataset): `steps` more steps, `epochs` more epochs, or until global step
        `max_steps`; with none of them, the configured amount more.  Warns when there is nothing
        to train.  Returns the outcome (its `test` is None when the data has no test split)."""
        if sum(x is not None for x in (steps, epochs, max_steps)) > 1:
            raise InputError("give one of steps, epochs and max_steps")
        dataset = self._dataset(data)
        self._last_data = dataset
        outcome = train(self.config, self.model_dir.location, dataset, self._custom, callbacks,
                        custom=self.customizations, target=self._target(steps, epochs, max_steps))
        self.config = outcome.run.train
        self._module = outcome.model
        if outcome.result.steps_run == 0:
            warnings.warn(f"{self.model_dir.location}: already at global step {outcome.result.global_step}; nothing "
                          "trained (pass steps=, epochs= or a larger max_steps=)", stacklevel=2)
        return outcome

    def _target(self, steps: int | None, epochs: float | None, max_steps: int | None) -> Callable[[int, int], int]:
        """How far a `train` call goes, as a function of (global step reached, steps per epoch)."""
        if max_steps is not None:
            return lambda reached, per_epoch: max_steps
        if steps is None and epochs is None:
            steps, epochs = self._amount
        if steps is not None:
            return lambda reached, per_epoch: reached + steps
        return lambda reached, per_epoch: reached + math.ceil((epochs or 1) * per_epoch)

    def evaluate(self, data: DataLike = None, split: str = "test") -> EvalResult:
        """Evaluate the latest checkpoint.  `(images, labels)` arrays are evaluated whole; a
        Dataset or dataset name on its `split`; with no data, the run's own dataset (or the one
        last passed to `train`) on `split`."""
        run, model, step = self._loaded()
        if isinstance(data, tuple):
            examples = dataset_from_arrays(data, class_names=run.class_names).train
            split = "given"
        else:
            examples = self._dataset(data, for_evaluation=True).split(split)
        if not len(examples):
            raise InputError(f"no examples to evaluate in the {split} split: pass (images, labels)")
        device = next(model.parameters()).device
        batches = TensorBatches(examples, run.preprocessing, 1000, device)
        return evaluate(model, batches, run.class_names, device, run.train.precision, step, split,
                        self.customizations.loss)

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """`images`: (N,H,W[,C]) or (N,C,H,W), uint8 0–255 or float 0–1 → classes (N,) and
        probabilities (N,K).  A model of tabular features takes (N, D) rows of raw feature values;
        a regression answers {"values": (N,)} instead."""
        run, model, _ = self._loaded()
        pre = run.preprocessing
        if pre.dtype == "uint8":
            batch = torch.from_numpy(pixel_batch(images, pre))
        else:
            rows = np.asarray(images, dtype=np.float32)
            if rows.ndim != 2 or rows.shape[1] != pre.channels:
                raise InputError(f"predict: expected (N, {pre.channels}) feature rows, got shape {rows.shape}")
            batch = torch.from_numpy(rows.reshape(len(rows), 1, 1, pre.channels))
        x = pre.normalize(batch)
        if run.train.regression:
            with torch.no_grad():
                values = model(x.to(next(model.parameters()).device)).float()[:, 0].cpu().numpy()
            return {"values": values}
        probabilities = predict_probabilities(model, x, run.train.precision, tta=run.preprocessing.tta).cpu().numpy()
        return {"classes": probabilities.argmax(axis=1), "probabilities": probabilities}

    def export(self, export_base: str | os.PathLike, version: int | None = None) -> Path:
        """Export the latest checkpoint as a verified, servable version (also for a custom module);
        returns the version directory."""
        from .export.exporter import export_model

        return export_model(self.model_dir.path, export_base, version, model=self._custom_instance()).path

    def _loaded(self):
        device = resolve_device(self.config.device)
        return load_model(self.model_dir, device, model=self._custom_instance())

    def _custom_instance(self) -> nn.Module | None:
        if self._custom is None:
            return None
        return self._custom if isinstance(self._custom, nn.Module) else self._custom()

    def _dataset(self, data: DataLike, for_evaluation: bool = False) -> Dataset:
        if isinstance(data, Dataset):
            return data
        if isinstance(data, tuple):
            dataset = dataset_from_arrays(data)
            size = self.config.validation_size
            if size:
                train_split, validation = hold_out(dataset.train, size, "arrays")
                dataset = Dataset(dataset.name, train_split, validation, dataset.test, dataset.class_names)
            return dataset
        name = data if isinstance(data, str) else self.config.dataset
        if name not in DATASETS:
            if for_evaluation and self._last_data is not None:
                return self._last_data
            raise InputError(f"{self.model_dir.location}: trained on in-memory data ({name!r}), which cannot be loaded "
                             "by name: pass it, e.g. evaluate((images, labels))")
        from .data.catalog import load
        from .engine.run_data import request_for

        return load(name, request_for(self.config))
