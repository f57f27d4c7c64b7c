"""visionflow: train, evaluate, export, serve and use image classifiers on PyTorch.

The package is built in layers; imports run downward only (import-linter contracts in
pyproject.toml, checked by CI and tests/test_architecture.py; docs/architecture.md explains):

    cli | api | keras          the faces: the `visionflow` command, the Python API, the Keras face
    serving | inspection       HTTP serving of exported versions (never imports train or data) |
                               looking inside model directories (`visionflow inspect`)
    infer | transfer | lm      predictions and labels for new inputs | retraining a pretrained network |
                               the LSTM language model
    export                     exported versions: signature, serving graph, ONNX, verification
    engine                     training: config, recipes, the loop, callbacks, checkpoints, evaluation
    data | models              datasets and the input pipeline | the network registry and families
    formats | preprocessing | ops   IDX, TFRecord, Example, CSV, images, safe pickles | the model's input
                               contract | custom operations with hand-written gradients
    core                       atomic files, cache paths, devices and precision, progress, typed config
    errors                     the exceptions every layer raises

Nothing heavy is imported here: the public names below load on first use, so `visionflow
--help`, `import visionflow.serving` and reading a saved config do not pay for torch or the engine.
"""

from __future__ import annotations

import importlib
from typing import Any

from .core.version import VERSION as __version__
from .errors import DivergedError, InputError, VisionflowError

#: Public name → the module that defines it (imported on first access).
_LAZY = {
    "Classifier": "visionflow.api",
    "Callback": "visionflow.engine.callbacks",
    "Dataset": "visionflow.data.base",
    "Split": "visionflow.data.base",
    "dataset_from_arrays": "visionflow.data.base",
    "load_dataset": "visionflow.data.catalog",
    "CsvOptions": "visionflow.formats.csv_table",
    "EvalResult": "visionflow.engine.metrics",
    "ModelSpec": "visionflow.models.spec",
    "build_model": "visionflow.models.registry",
    "model_names": "visionflow.models.registry",
    "register_model": "visionflow.models.registry",
    "RunConfig": "visionflow.engine.config",
    "TrainConfig": "visionflow.engine.config",
    "Trainer": "visionflow.engine.loop",
    "default_config": "visionflow.engine.recipes",
    "evaluate": "visionflow.engine.evaluation",
    "export_model": "visionflow.export.exporter",
    "train": "visionflow.engine.training",
    "datasets": "visionflow.keras",
}

__all__ = [
    "Callback", "Classifier", "CsvOptions", "Dataset", "DivergedError", "EvalResult", "InputError", "ModelSpec", "RunConfig",
    "Split", "TrainConfig", "Trainer", "VisionflowError", "__version__", "build_model", "dataset_from_arrays",
    "default_config", "evaluate", "export_model", "load_dataset", "model_names", "register_model", "train",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'visionflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
