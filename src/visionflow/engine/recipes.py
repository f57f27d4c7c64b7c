"""Which config a run trains with: the model's recipe for its dataset, the user's flags, and — for
a directory that already holds a run — that run's own settings.

Recipes live beside their models (models/*.py, `register_model(..., recipes=...)`); this module
turns one into a `TrainConfig` and reconciles it with what the user asked for.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from ..data.augment import Augment
from ..errors import InputError
from ..models import LANGUAGE_MODELS, recipe_for
from .config import TrainConfig
from .modeldir import ModelDir

#: Settings that may change when a run is continued; any other flag must match the directory.
CONTINUABLE = {"sync_bn", "steps", "epochs", "log_every", "checkpoint_every", "keep_checkpoints", "device", "data_dir",
               "deterministic", "compile", "compile_mode", "summarize_activations", "summarize_gradients"}
#: A model with no recipe for a dataset trains with TrainConfig's defaults for this many epochs.
DEFAULT_EPOCHS = 10


def config_from_recipe(base: TrainConfig, recipe: Mapping[str, Any]) -> TrainConfig:
    """`base` with a recipe's overrides; its "augment" may be a dict of some of Augment's fields."""
    recipe = dict(recipe)
    if isinstance(recipe.get("augment"), Mapping):
        recipe["augment"] = dataclasses.replace(Augment(), **recipe["augment"])
    return dataclasses.replace(base, **recipe)


def default_config(model: str = "cnn", dataset: str = "digits") -> TrainConfig:
    """The recommended recipe for `model` on `dataset` (TrainConfig defaults where none is known)."""
    recipe = recipe_for(model, dataset) or {"epochs": DEFAULT_EPOCHS}
    return config_from_recipe(TrainConfig(model=model, dataset=dataset), recipe)


def resolve_config(model_dir: ModelDir, overrides: dict[str, Any], base: TrainConfig | None = None,
                   flags: bool = True) -> TrainConfig:
    """The config to train with: the directory's own when it holds a run, else the recipe.

    On a directory that holds a run, flags outside CONTINUABLE must agree with it: a model
    directory is one model, trained one way.  An "augment" ("csv") override may be a dict of
    some of `Augment`'s (`CsvOptions`') fields: they replace those of the recipe's (or the stored
    run's) distortions (CSV reading).
    `base` replaces the model's recipe for a new run (retrain has its own).  Errors name settings
    as command-line flags, or as Python keywords when `flags` is False.
    """
    if overrides.get("model") in LANGUAGE_MODELS:
        raise InputError(f"{overrides['model']} is a language model: train it with `visionflow lm train --corpus TEXT`")
    if base is None:
        base = default_config(overrides.get("model", "cnn"), overrides.get("dataset", "digits"))
    for part in ("augment", "csv"):
        if isinstance(overrides.get(part), dict):
            stored_part = getattr(model_dir.load_config().train if model_dir.exists() else base, part)
            overrides = {**overrides, part: dataclasses.replace(stored_part, **overrides[part])}
    if model_dir.exists():
        stored = model_dir.load_config().train
        for key, value in overrides.items():
            if key in CONTINUABLE or value == getattr(stored, key):
                continue
            other = "another --model-dir" if flags else "another model directory"
            if key == "model":
                raise InputError(f"{model_dir.location}: holds a {stored.model!r} model, not {value!r} (use {other})")
            if flags:
                setting, given = f"--{key.replace('_', '-')} {getattr(stored, key)}", f"{value}"
            else:
                setting, given = f"{key}={getattr(stored, key)!r}", f"{value!r}"
            raise InputError(f"{model_dir.location}: was trained with {setting}, got {given} (use {other} to change it)")
        continuing = {k: v for k, v in overrides.items() if k in CONTINUABLE}
        if "steps" in continuing and "epochs" not in continuing:
            continuing["epochs"] = None
        if "epochs" in continuing and "steps" not in continuing:
            continuing["steps"] = None
        return dataclasses.replace(stored, **continuing).validate(flags)
    if "steps" in overrides and "epochs" not in overrides:
        base = dataclasses.replace(base, epochs=None)
    return dataclasses.replace(base, **overrides).validate(flags)
