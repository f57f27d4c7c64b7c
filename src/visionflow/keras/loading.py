"""`load_model`: a model saved by `model.save` rebuilt from its JSON and safetensors alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from safetensors.torch import load as load_bytes

from ..engine.checkpoint import Checkpoint, restore_optimizer
from ..errors import InputError
from ..models.keras.network import network_from_config
from .losses import ALIASES as LOSSES
from .model import Model, Sequential
from .optimizers import from_config
from .saving import _REGISTERED, FORMAT, _read, read_weights


def load_model(filepath: str | os.PathLike, custom_objects: Optional[Mapping[str, Any]] = None,
               compile: bool = True, safe_mode: bool = True) -> Any:
    """Rebuild a model saved by `model.save` (architecture, weights, compile settings, optimizer state)."""
    path = Path(filepath)
    raw = _read(path, "config.json")
    if raw is None:
        raise InputError(f"{path}: not a saved model (config.json missing)")
    try:
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: config.json is not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise InputError(f"{path}: not a visionflow Keras model (format {config.get('format') if isinstance(config, dict) else None!r})")
    objects = {**_REGISTERED, **dict(custom_objects or {})}
    try:
        model = network_from_config(config["architecture"], objects, cls=Model, stack_cls=Sequential)
    except (KeyError, TypeError) as e:
        raise InputError(f"{path}: config.json: bad architecture ({type(e).__name__}: {e})") from None
    weights = read_weights(path)
    model.load_weights(path) if weights else None
    settings = config.get("compile")
    if compile and settings and settings.get("optimizer") and settings.get("loss") in LOSSES:
        loss = LOSSES[settings["loss"]](**{k: v for k, v in settings.get("loss_config", {}).items()
                                           if k not in ("name", "reduction")})
        metrics = [m for m in settings.get("metrics", []) if m is not None]
        model.compile(optimizer=from_config(settings["optimizer"]), loss=loss, metrics=metrics)
        state, meta = _read(path, "optimizer.safetensors"), _read(path, "optimizer.json")
        if state is not None and meta is not None:
            try:
                settings_meta = json.loads(meta)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise InputError(f"{path}: optimizer.json is not valid JSON ({e})") from None
            optimizer = model.optimizer.build([p for p in model.parameters() if p.requires_grad])
            restore_optimizer(optimizer, Checkpoint(0, {}, load_bytes(state), settings_meta))
    return model
