"""The Python API: an Estimator-style `Classifier` over the same engine the CLI drives.

    clf = visionflow.Classifier("runs/mnist", model="cnn", dataset="mnist", epochs=2)
    clf.train()                       # or clf.train((images, labels))
    print(clf.evaluate().accuracy)
    out = clf.predict(images)         # {"classes": (N,), "probabilities": (N, K)}
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .core.devices import resolve_device
from .data.base import Dataset, dataset_from_arrays
from .data.batches import TensorBatches
from .data.catalog import load_dataset
from .infer.predict import pixel_batch, predict_probabilities
from .engine.config import TrainConfig
from .engine.evaluation import evaluate, load_model
from .engine.metrics import EvalResult
from .engine.modeldir import ModelDir
from .engine.recipes import resolve_config
from .engine.training import TrainOutcome, train

DataLike = Dataset | str | tuple[np.ndarray, np.ndarray] | None


class Classifier:
    """An image classifier bound to a model directory.

    `model` is a registered name ("mlp", "cnn"), a `torch.nn.Module`, or a function that
    returns one (like the Estimator's model_fn); None means the directory's model, else "cnn".  Keyword arguments are `TrainConfig`
    fields; on a directory that already holds a run, they must agree with it.
    """

    def __init__(self, model_dir: str | os.PathLike, model: str | nn.Module | Callable[[], nn.Module] | None = None,
                 **params: Any) -> None:
        self.model_dir = ModelDir(model_dir)
        if model is None:
            model = self.model_dir.load_config().train.model if self.model_dir.exists() else "cnn"
        self._custom = None if isinstance(model, str) else model
        overrides = dict(params)
        if isinstance(model, str):
            overrides["model"] = model
        elif not self.model_dir.exists():
            overrides.setdefault("model", "custom")
        self.config: TrainConfig = resolve_config(self.model_dir, overrides)
        self._module: nn.Module | None = None

    def train(self, data: DataLike = None, steps: int | None = None, epochs: float | None = None,
              callbacks: Sequence[Any] = ()) -> TrainOutcome:
        """Train until global step `steps` (or for `epochs`), continuing from the directory."""
        if steps is not None or epochs is not None:
            self.config = dataclasses.replace(self.config, steps=steps, epochs=epochs)
        outcome = train(self.config, self.model_dir.path, self._dataset(data), self._custom, callbacks)
        self._module = outcome.model
        return outcome

    def evaluate(self, data: DataLike = None, split: str = "test") -> EvalResult:
        dataset = self._dataset(data)
        run, model, step = self._loaded()
        device = next(model.parameters()).device
        batches = TensorBatches(dataset.split(split), run.preprocessing, 1000, device)
        return evaluate(model, batches, run.class_names, device, run.train.precision, step, split)

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """`images`: (N,H,W[,C]) uint8 0–255 or float 0–1 → classes (N,) and probabilities (N,K)."""
        run, model, _ = self._loaded()
        batch = pixel_batch(images, run.preprocessing)
        x = run.preprocessing.normalize(torch.from_numpy(batch))
        probabilities = predict_probabilities(model, x, run.train.precision, tta=run.preprocessing.tta).cpu().numpy()
        return {"classes": probabilities.argmax(axis=1), "probabilities": probabilities}

    def _loaded(self):
        device = resolve_device(self.config.device)
        return load_model(self.model_dir, device, model=self._custom_instance())

    def _custom_instance(self) -> nn.Module | None:
        if self._custom is None:
            return None
        return self._custom if isinstance(self._custom, nn.Module) else self._custom()

    def _dataset(self, data: DataLike) -> Dataset:
        if isinstance(data, Dataset):
            return data
        if isinstance(data, tuple):
            return dataset_from_arrays(data)
        name = data if isinstance(data, str) else self.config.dataset
        return load_dataset(name, self.config.data_dir, self.config.validation_size)

