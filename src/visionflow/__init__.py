"""visionflow: train, evaluate and use image classifiers on PyTorch."""

from .api import Classifier
from .config import RunConfig, TrainConfig
from .datasets import Dataset, Split, dataset_from_arrays, load_dataset
from .engine import Trainer, evaluate
from .errors import DivergedError, InputError, VisionflowError
from .metrics import EvalResult
from .models import ModelSpec, build_model, model_names, register_model
from .training import default_config, train

__version__ = "0.1.0"

__all__ = [
    "Classifier", "Dataset", "DivergedError", "EvalResult", "InputError", "ModelSpec", "RunConfig", "Split",
    "TrainConfig", "Trainer", "VisionflowError", "build_model", "dataset_from_arrays", "default_config",
    "evaluate", "load_dataset", "model_names", "register_model", "train",
]
