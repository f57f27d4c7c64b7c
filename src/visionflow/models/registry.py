"""The model registry: names → factories, with each model's default training recipes.

Like timm's, this module imports no model file.  A model module registers its factories with
`@register_model(name, recipes=...)` when imported; `models/__init__.py` is the one place that
lists the model modules and the names each registers (`declare`), and a module is imported the
first time one of its models is built or its recipe is asked for.  So listing names
(`visionflow --help`) and reading a saved `ModelSpec` (serving, export signatures) import
neither torch nor any network.

A recipe is a dict of `TrainConfig` overrides for one dataset ("*": any dataset without its
own); nested settings (`augment`) are dicts of their fields.  It lives beside the model it
trains, so a new model lands in one module plus one `declare` line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ..errors import InputError
from .spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn

Factory = Callable[..., "nn.Module"]

_FACTORIES: dict[str, Factory] = {}
_RECIPES: dict[str, dict[str, dict[str, Any]]] = {}
_DECLARED: dict[str, str] = {}  # model name → the module that registers it


def declare(module: str, names: Iterable[str]) -> None:
    """Say that importing `module` registers `names` (checked when the module is imported)."""
    for name in names:
        _DECLARED[name] = module


def register_model(name: str, recipes: Mapping[str, Mapping[str, Any]] | None = None) -> Callable[[Factory], Factory]:
    """Decorator: make `factory(num_classes=, input_shape=, **options)` buildable by name.

    `recipes` maps a dataset name (or "*") to the TrainConfig overrides that train this model
    well on it; see the module docstring.
    """

    def add(factory: Factory) -> Factory:
        _FACTORIES[name] = factory
        _RECIPES[name] = {dataset: dict(recipe) for dataset, recipe in (recipes or {}).items()}
        return factory

    return add


def model_names() -> list[str]:
    """Every buildable name: the declared ones (not yet imported) and any registered since."""
    return sorted(set(_DECLARED) | set(_FACTORIES))


def _load(name: str) -> None:
    module = _DECLARED.get(name)
    if name not in _FACTORIES and module is not None:
        importlib.import_module(module)
        if name not in _FACTORIES:
            raise RuntimeError(f"{module} is declared to register model {name!r} but did not")


def get_factory(name: str) -> Factory:
    _load(name)
    if name not in _FACTORIES:
        raise InputError(f"unknown model {name!r} (choose one of: {', '.join(model_names())})")
    return _FACTORIES[name]


def recipe_for(name: str, dataset: str) -> dict[str, Any]:
    """The recipe of `name` for `dataset` (its "*" recipe when it has none for it); {} when none."""
    _load(name)
    recipes = _RECIPES.get(name, {})
    return dict(recipes.get(dataset) or recipes.get("*") or {})


def build_model(spec: ModelSpec) -> "nn.Module":
    factory = get_factory(spec.name)
    try:
        return factory(num_classes=spec.num_classes, input_shape=tuple(spec.input_shape), **spec.options)
    except TypeError as e:
        raise InputError(f"model {spec.name!r}: bad options {spec.options}: {e}") from None
