"""From a config to a trained model directory: the path both the CLI and the API take.

`train()` loads data, reconciles the config with what the model directory already holds,
builds (or rebuilds) the model, runs the engine's `Trainer` and evaluates on the test split.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TextIO

import numpy as np
import torch
from torch import nn

from ..core.devices import resolve_device
from ..core.distributed import barrier, check_global_batch
from ..core.distributed import join as join_world
from ..data.base import Dataset
from ..data.batches import TensorBatches
from ..data.catalog import DATASETS, load
from ..errors import InputError
from ..models import ModelSpec, build_model, get_factory
from ..preprocessing import fit_preprocessing
from .checkpoint import read_index
from .config import RunConfig, TrainConfig
from .custom import Customizations, check_custom_names
from .evaluation import evaluate, record_evaluation
from .loop import TrainResult, Trainer
from .metrics import EvalResult
from .modeldir import ModelDir
from .reporting import run_header
from .run_data import request_for


def set_determinism(config: TrainConfig) -> None:
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def make_run_config(config: TrainConfig, dataset: Dataset, model_name: str | None = None) -> RunConfig:
    """The run's model spec and preprocessing, from the config and the training images.

    The preprocessing is the one factory of model inputs for training, evaluation, prediction
    and export: it takes the training set's per-channel statistics, and from `config.augment`
    the central crop (the training crop's size), the standardization and the TTA level.
    """
    aug = config.augment
    preprocessing = fit_preprocessing(dataset.train.images)
    crop = (aug.crop, aug.crop) if aug.crop and (aug.crop, aug.crop) != (preprocessing.height, preprocessing.width) else None
    preprocessing = dataclasses.replace(preprocessing, center_crop=crop, standardize=aug.standardize, tta=aug.tta)
    options = {} if config.dropout is None else {"dropout": config.dropout}
    if config.regression and model_name is None:
        options.update(_target_scale(config.model, dataset.train.labels))
    spec = ModelSpec(model_name or config.model, dataset.num_classes, preprocessing.input_shape, options)
    return RunConfig(config, spec, preprocessing, tuple(dataset.class_names))


def _target_scale(model: str, targets: np.ndarray) -> dict[str, float]:
    """The training targets' mean and std for a model that learns a standardized regression
    target (one whose factory takes `target_mean` and `target_std`); nothing for the others."""
    import inspect

    if "target_std" not in inspect.signature(get_factory(model)).parameters or not len(targets):
        return {}
    return {"target_mean": float(targets.mean()), "target_std": float(targets.std()) or 1.0}


def check_data_fits(run: RunConfig, dataset: Dataset, model_dir: ModelDir) -> None:
    h, w, c = dataset.image_shape
    pre = run.preprocessing
    if (c, h, w) != (pre.channels, pre.height, pre.width) or dataset.num_classes != run.model.num_classes:
        raise InputError(f"{model_dir.config_path}: model takes {(pre.channels, pre.height, pre.width)} inputs and "
                         f"{run.model.num_classes} classes; dataset {dataset.name!r} has {(c, h, w)} and "
                         f"{dataset.num_classes}")


def max_steps_for(config: TrainConfig, steps_per_epoch: int) -> int:
    if config.steps is not None:
        return config.steps
    return math.ceil((config.epochs or 1) * steps_per_epoch)


@dataclass
class TrainOutcome:
    run: RunConfig
    result: TrainResult
    test: EvalResult | None
    model: nn.Module


#: How far a call trains: a function of (the global step the directory is at, steps per epoch)
#: returning the global step to stop at.  None: the config's `steps` or `epochs` (absolute).
Target = Callable[[int, int], int]


def train(
    config: TrainConfig,
    model_dir: str | os.PathLike,
    dataset: Dataset | None = None,
    model: nn.Module | Callable[[], nn.Module] | None = None,
    callbacks: Sequence[Any] = (),
    progress_stream: TextIO | None = None,
    on_start: Callable[[RunConfig, nn.Module, torch.device], None] | None = None,
    custom: Customizations | None = None,
    target: Target | None = None,
    flags: bool = False,
) -> TrainOutcome:
    """Train `config` into `model_dir` (continuing what is there) and evaluate on the test split.

    `model` replaces the registered model named by the config: a module, or a function that
    builds one (the Estimator's model_fn).  `callbacks` join the engine's own (engine/callbacks.py);
    `custom` holds Python objects that replace named settings (engine/custom.py).  `target` sets
    how far to train (see `Target`; the config's absolute `steps`/`epochs` by default).  Raising a
    run's target starts a new learning-rate cycle at the step it has reached (`schedule_start`).
    Nothing is written to `model_dir` until a step has trained (then config.json comes with the
    first checkpoint), so a run that fails on bad input or an unreadable checkpoint changes nothing.
    `flags` words errors as command-line flags rather than Python names.
    """
    config.validate(flags)
    custom = custom or Customizations()
    directory = ModelDir(model_dir, training=True)
    set_determinism(config)
    w, device = join_world(resolve_device(config.device))
    check_global_batch(config.batch_size, w, flags)
    if w.is_main:
        directory.check_writable()
    stored = directory.load_config() if directory.exists() else None
    if stored is not None:
        check_custom_names({"optimizer": stored.train.optimizer, "loss": stored.train.loss,
                            "schedule": stored.train.schedule}, custom, str(directory.path))
    if dataset is None:
        if config.dataset not in DATASETS:
            raise InputError(f"{directory.location}: trained on in-memory data ({config.dataset!r}), which cannot be "
                             "loaded by name: continue it through the Python API, passing the data")
        dataset = load(config.dataset, request_for(config))
    elif dataset.name not in DATASETS:
        config = dataclasses.replace(config, dataset=dataset.name)  # in-memory data: never loaded by name
    problems = config.augment.problems(*dataset.image_shape[:2], flags=flags)
    if problems:
        raise InputError(f"dataset {dataset.name!r}: {problems[0]}")
    if stored is not None:
        run = stored
        check_data_fits(run, dataset, directory)
    else:
        run = make_run_config(config, dataset, model_name=f"custom:{_name_of(model)}" if model is not None else None)
    torch.manual_seed(config.seed)
    net = _instantiate(model, run)
    train_batches = TensorBatches(dataset.train, run.preprocessing, config.batch_size, device, shuffle=True,
                                  seed=config.seed, drop_last=True, augment=config.augment, rank=w.rank,
                                  world_size=w.size)
    run.train = _with_target(config, directory, train_batches.steps_per_epoch, target)
    eval_size = max(config.batch_size, 1000)
    validation = TensorBatches(dataset.validation, run.preprocessing, eval_size, device)
    trainer = Trainer(net, run, directory, device, train_batches, validation, callbacks, progress_stream, custom)
    if on_start:
        on_start(run, trainer.model, device)
    max_steps = max_steps_for(run.train, train_batches.steps_per_epoch)
    if max_steps > trainer.global_step and w.is_main:
        sizes = (len(dataset.train), len(dataset.validation), len(dataset.test))
        print(run_header(trainer, dataset.name, sizes, max_steps, trainer.global_step or None),
              file=progress_stream or sys.stderr, flush=True)
    result = trainer.fit(max_steps)
    barrier()  # rank 0's last checkpoint is written before any process goes on
    test = None
    if len(dataset.test):
        test_batches = TensorBatches(dataset.test, run.preprocessing, eval_size, device)
        test = evaluate(trainer.eval_model, test_batches, run.class_names, device, run.train.precision,
                        trainer.global_step, "test", custom.loss)
        if directory.exists() and w.is_main:  # a run that has trained nothing has no directory to record into
            record_evaluation(directory, test, dataset.test)
    if result.steps_run and w.is_main:
        from .plots import save_training_curves

        save_training_curves(directory.path, directory.path / "curves.png", test)
    if w.is_main:
        directory.sync()
    barrier()  # every process returns once the run's files are written
    return TrainOutcome(run, result, test, trainer.eval_model)


def _with_target(config: TrainConfig, directory: ModelDir, steps_per_epoch: int, target: Target | None) -> TrainConfig:
    """`config` with the step this call trains to (`steps`, when `target` decides it) and the step
    its learning-rate cycle starts at: unchanged when resuming toward the same target, the step
    reached when the target was raised, 0 for a new run."""
    index = read_index(directory.checkpoints) if directory.exists() else None
    reached = int(index["latest"]) if index else 0
    if target is not None:
        config = dataclasses.replace(config, steps=target(reached, steps_per_epoch), epochs=None)
    goal = max_steps_for(config, steps_per_epoch)
    previous = index.get("max_steps") if index else None
    if index is None:
        start = 0
    elif previous is not None and goal > int(previous):
        start = reached  # a new cycle over the added steps
    else:
        start = min(config.schedule_start, reached)
    return dataclasses.replace(config, schedule_start=start)


def _name_of(model: Any) -> str:
    return type(model).__name__ if isinstance(model, nn.Module) else getattr(model, "__name__", "model")


#: Registered models that take tabular rows (a CSV's feature columns): they flatten their input.
TABULAR_MODELS = ("dense", "mlp")


def _instantiate(model: nn.Module | Callable[[], nn.Module] | None, run: RunConfig) -> nn.Module:
    if model is None:
        if run.preprocessing.dtype != "uint8" and run.model.name not in TABULAR_MODELS:
            raise InputError(f"model {run.model.name!r} takes images, and the data are {run.preprocessing.channels} "
                             f"tabular features (CSV columns): use --model dense (or mlp)")
        return build_model(run.model)
    if isinstance(model, nn.Module):
        return model
    built = model()
    if not isinstance(built, nn.Module):
        raise InputError(f"model function {_name_of(model)} returned {type(built).__name__}, not a torch.nn.Module")
    return built
