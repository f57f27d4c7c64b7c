"""From a config to a trained model directory: the path both the CLI and the API take.

`train()` loads data, reconciles the config with what the model directory already holds,
builds (or rebuilds) the model, runs the engine's `Trainer` and evaluates on the test split.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .augment import Augment
from .config import RunConfig, TrainConfig
from .datasets import Dataset, load_dataset
from .engine import Callback, TrainResult, Trainer, evaluate, resolve_device
from .errors import InputError
from .metrics import EvalResult
from .modeldir import ModelDir
from .models import ModelSpec, build_model
from .pipeline import TensorBatches
from .preprocessing import fit_preprocessing

#: Settings that may change when a run is continued; any other flag must match the directory.
CONTINUABLE = {"steps", "epochs", "log_every", "checkpoint_every", "keep_checkpoints", "device", "data_dir",
               "deterministic", "compile"}

#: The CIFAR-10 tutorial's distortions: random 24×24 crop, flip, brightness ±63/255, contrast
#: 0.2–1.8, per-image standardization (evaluation: the central 24×24, standardized).
TUTORIAL_DISTORTIONS = Augment(crop=24, flip="random", brightness=63 / 255, contrast=(0.2, 1.8),
                               standardize="per_image")
#: He et al.'s CIFAR augmentation: 4-pixel zero padding, random 32×32 crop, random flip.
PAD_CROP_FLIP = Augment(pad=4, flip="random")


def _resnet_recipe() -> dict[str, Any]:
    """cifar10_estimator's ResNet training: momentum SGD, lr 0.1, weight decay 2e-4, batch 128,
    pad-and-crop + flip; cosine decay over 160 epochs (He et al.'s 64k steps) after a 1% warm-up."""
    return {"epochs": 160, "batch_size": 128, "optimizer": "momentum", "momentum": 0.9, "lr": 0.1,
            "weight_decay": 2e-4, "schedule": "cosine", "warmup": 0.01, "augment": PAD_CROP_FLIP,
            "log_every": 100, "checkpoint_every": 1000}


#: Default recipes: (model, dataset) → overrides of TrainConfig's defaults; (model, "*") applies to
#: any dataset without its own entry.  The CNN recipes beat the tutorial (97.3% after 20k SGD
#: steps) in a few minutes of CPU time.
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("cnn", "digits"): {"epochs": 40, "batch_size": 64, "log_every": 50, "checkpoint_every": 200},
    ("mlp", "digits"): {"epochs": 60, "batch_size": 64, "log_every": 50, "checkpoint_every": 200},
    ("cnn", "mnist"): {"epochs": 6, "label_smoothing": 0.1},
    ("cnn", "fashion-mnist"): {"epochs": 8, "label_smoothing": 0.1},
    ("mlp", "mnist"): {"epochs": 10},
    ("mlp", "fashion-mnist"): {"epochs": 15},
    # The CIFAR-10 tutorial (cifar10_train.py): batch 128, weight decay 0.004 on the dense layers
    # (the model's optimizer_groups), moving-average weights for evaluation (decay 0.9999 with TF's
    # num_updates warm-up).  Momentum SGD with a cosine schedule instead of plain SGD decayed 10x
    # every 350 epochs, to finish in tens rather than thousands of epochs.
    ("cifar-cnn", "*"): {"epochs": 40, "batch_size": 128, "optimizer": "momentum", "momentum": 0.9, "lr": 0.02,
                         "weight_decay": 0.004, "schedule": "cosine", "warmup": 0.02, "ema_decay": 0.9999,
                         "augment": TUTORIAL_DISTORTIONS, "log_every": 100, "checkpoint_every": 1000},
    # airbench94's recipe in visionflow's units: its summed loss with lr 11.5 / weight decay 0.0153
    # "per 1024 examples" and momentum 0.85 is, for a mean loss at batch 1024, nesterov SGD with
    # lr 11.5 / (1 + 1 / 0.15) = 1.5 and decay coefficient 0.0153 · 1024 / 7850.7 / 1.5 = 1.33e-3;
    # lr triangle 0.2 → 1 (at 23%) → 0.07; lookahead every 5 steps from epoch 3; label smoothing 0.2;
    # 2-pixel reflect translation + alternating flip; evaluated with flip + translate TTA; trained
    # on all 50,000 training images, as airbench is (no validation split).
    ("fastnet", "*"): {"epochs": 9.9, "validation_size": 0, "batch_size": 1024, "optimizer": "nesterov", "momentum": 0.85, "lr": 1.5,
                       "weight_decay": 0.0153 * 1024 / (1024 * (1 + 1 / 0.15)) / 1.5, "schedule": "linear",
                       "warmup": 0.23, "lr_start_factor": 0.2, "lr_end_factor": 0.07, "label_smoothing": 0.2,
                       "lookahead_every": 5, "lookahead_decay": 0.95, "lookahead_start_epoch": 3,
                       "augment": Augment(pad=2, pad_mode="reflect", flip="alternating", tta=2),
                       "log_every": 50, "checkpoint_every": 1000},
    **{(f"resnet{depth}{suffix}", "*"): _resnet_recipe() for depth in (20, 32, 44, 56, 110) for suffix in ("", "-v2")},
}


def default_config(model: str = "cnn", dataset: str = "digits") -> TrainConfig:
    """The recommended recipe for `model` on `dataset` (TrainConfig defaults where none is known)."""
    recipe = RECIPES.get((model, dataset)) or RECIPES.get((model, "*")) or {"epochs": 10}
    return dataclasses.replace(TrainConfig(model=model, dataset=dataset), **recipe)


def resolve_config(model_dir: ModelDir, overrides: dict[str, Any]) -> TrainConfig:
    """The config to train with: the directory's own when it holds a run, else the recipe.

    On a directory that holds a run, flags outside CONTINUABLE must agree with it: a model
    directory is one model, trained one way.  An "augment" override may be a dict of some of
    `Augment`'s fields: they replace those of the recipe's (or the stored run's) distortions.
    """
    if isinstance(overrides.get("augment"), dict):
        partial = overrides["augment"]
        if model_dir.exists():
            base_augment = model_dir.load_config().train.augment
        else:
            base_augment = default_config(overrides.get("model", "cnn"), overrides.get("dataset", "digits")).augment
        overrides = {**overrides, "augment": dataclasses.replace(base_augment, **partial)}
    if model_dir.exists():
        stored = model_dir.load_config().train
        for key, value in overrides.items():
            if key in CONTINUABLE or value == getattr(stored, key):
                continue
            if key == "model":
                raise InputError(f"{model_dir.path}: holds a {stored.model!r} model, not {value!r} (use another --model-dir)")
            flag = "--" + key.replace("_", "-")
            raise InputError(f"{model_dir.path}: was trained with {flag} {getattr(stored, key)}, got {value} "
                             "(use another --model-dir to change it)")
        continuing = {k: v for k, v in overrides.items() if k in CONTINUABLE}
        if "steps" in continuing and "epochs" not in continuing:
            continuing["epochs"] = None
        if "epochs" in continuing and "steps" not in continuing:
            continuing["steps"] = None
        return dataclasses.replace(stored, **continuing).validate()
    base = default_config(overrides.get("model", "cnn"), overrides.get("dataset", "digits"))
    if "steps" in overrides and "epochs" not in overrides:
        base.epochs = None
    return dataclasses.replace(base, **overrides).validate()


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
    spec = ModelSpec(model_name or config.model, dataset.num_classes, preprocessing.input_shape, options)
    return RunConfig(config, spec, preprocessing, tuple(dataset.class_names))


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


def train(
    config: TrainConfig,
    model_dir: str | os.PathLike,
    dataset: Dataset | None = None,
    model: nn.Module | Callable[[], nn.Module] | None = None,
    callbacks: Sequence[Callback] = (),
    progress_stream=None,
    on_start: Callable[[RunConfig, nn.Module, torch.device], None] | None = None,
) -> TrainOutcome:
    """Train `config` into `model_dir` (continuing what is there) and evaluate on the test split.

    `model` replaces the registered model named by the config: a module, or a function that
    builds one (the Estimator's model_fn).
    """
    config.validate()
    directory = ModelDir(model_dir)
    set_determinism(config)
    device = resolve_device(config.device)
    dataset = dataset or load_dataset(config.dataset, config.data_dir, config.validation_size)
    problems = config.augment.problems(*dataset.image_shape[:2])
    if problems:
        raise InputError(f"dataset {dataset.name!r}: {problems[0]}")
    if directory.exists():
        run = directory.load_config()
        check_data_fits(run, dataset, directory)
        run.train = config
    else:
        custom = model is not None
        run = make_run_config(config, dataset, model_name=f"custom:{_name_of(model)}" if custom else None)
    directory.path.mkdir(parents=True, exist_ok=True)
    directory.save_config(run)
    torch.manual_seed(config.seed)
    net = _instantiate(model, run)
    train_batches = TensorBatches(dataset.train, run.preprocessing, config.batch_size, device, shuffle=True,
                                  seed=config.seed, augment_shift=config.augment_shift, drop_last=True,
                                  augment=config.augment)
    eval_size = max(config.batch_size, 1000)
    validation = TensorBatches(dataset.validation, run.preprocessing, eval_size, device)
    trainer = Trainer(net, run, directory, device, train_batches, validation, callbacks, progress_stream)
    if on_start:
        on_start(run, trainer.model, device)
    result = trainer.fit(max_steps_for(config, train_batches.steps_per_epoch))
    if result.steps_run:
        from .plots import save_training_curves

        save_training_curves(directory.path, directory.path / "curves.png")
    test = None
    if len(dataset.test):
        from .evaluation import record_evaluation

        test_batches = TensorBatches(dataset.test, run.preprocessing, eval_size, device)
        test = evaluate(trainer.eval_model, test_batches, run.class_names, device, config.precision,
                        trainer.global_step, "test")
        record_evaluation(directory, test, dataset.test)
    return TrainOutcome(run, result, test, trainer.eval_model)


def _name_of(model: Any) -> str:
    return type(model).__name__ if isinstance(model, nn.Module) else getattr(model, "__name__", "model")


def _instantiate(model: nn.Module | Callable[[], nn.Module] | None, run: RunConfig) -> nn.Module:
    if model is None:
        return build_model(run.model)
    if isinstance(model, nn.Module):
        return model
    built = model()
    if not isinstance(built, nn.Module):
        raise InputError(f"model function {_name_of(model)} returned {type(built).__name__}, not a torch.nn.Module")
    return built
