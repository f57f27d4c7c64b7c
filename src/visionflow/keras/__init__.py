"""The Keras face: a Keras 3 script runs on visionflow by changing `import keras` to
`from visionflow import keras`.

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"), ...])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=128, epochs=2, validation_split=0.1)

Layers and models are `models/keras`; `fit` runs the engine's one training loop
(`training.py`); callbacks, metrics, losses, optimizers, saving and datasets are the modules
here, under Keras' names.  Where visionflow differs from Keras on purpose — files are
safetensors + JSON, a NaN loss stops `fit` with an error — the README says so.
"""

from __future__ import annotations

import types

from ..models.keras import core as _core
from ..models.keras import layers as _layers
from ..models.keras.core import Input, KerasTensor, Layer
from . import callbacks, datasets, losses, metrics, optimizers, saving, utils
from .loading import load_model
from .model import Model, Sequential
from .saving import register_keras_serializable

layers = types.SimpleNamespace(**{name: getattr(_layers, name) for name in _layers.LAYERS},
                               Layer=Layer, Input=Input, InputLayer=Input,
                               TorchModuleWrapper=_layers.TorchModuleWrapper)
models = types.SimpleNamespace(Model=Model, Sequential=Sequential, load_model=load_model)
backend = types.SimpleNamespace(clear_session=_core.clear_session, backend=lambda: "torch",
                                image_data_format=lambda: "channels_last", floatx=lambda: "float32")
utils.clear_session = _core.clear_session  # type: ignore[attr-defined]
saving.load_model = load_model
saving.register_keras_serializable = register_keras_serializable

__all__ = ["Input", "KerasTensor", "Layer", "Model", "Sequential", "backend", "callbacks", "datasets", "layers",
           "load_model", "losses", "metrics", "models", "optimizers", "saving", "utils"]
