"""Saving Keras-style models: safetensors for tensors, JSON for everything else — never a pickle.

`model.save("m.keras")` writes one zip file (`model.save("dir")`: a directory) holding
  config.json          {"architecture", "compile": {optimizer, loss, metrics}, "format"}
  model.safetensors    the weights, by layer name ("dense.linear.weight")
  optimizer.safetensors  the optimizer's state tensors (moments)
  optimizer.json       its step counts and settings
`load_model` rebuilds built-in layers from the JSON alone; a Lambda's function and a custom
class come from `custom_objects` (or `register_keras_serializable`), and a missing one is named
in the error.  Weights files (`save_weights`) are safetensors whatever their name.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from ..core.fsio import atomic_write_bytes
from ..engine.checkpoint import flatten_optimizer
from ..errors import InputError

FORMAT = "visionflow-keras/1"
MAX_ARCHIVE_BYTES = 8 << 30  # a saved model's decompressed size limit
_REGISTERED: dict[str, Any] = {}


def register_keras_serializable(package: str = "Custom", name: Optional[str] = None) -> Callable[[Any], Any]:
    """Decorator: let `load_model` rebuild this layer class (or function) by name."""
    def register(obj: Any) -> Any:
        _REGISTERED[name or obj.__name__] = obj
        return obj
    return register


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


class Saving:
    """save / save_weights / load_weights / export, mixed into `keras.Model`."""

    def _compile_config(self) -> Optional[dict[str, Any]]:
        if not getattr(self, "compiled", False):
            return None
        from .optimizers import TorchOptimizer

        optimizer = self.optimizer  # type: ignore[attr-defined]
        return {"optimizer": None if isinstance(optimizer, TorchOptimizer) else optimizer.get_config(),
                "loss": self.loss.name if type(self.loss).__name__ != "LossFunctionWrapper" else None,  # type: ignore[attr-defined]
                "loss_config": self.loss.get_config(),  # type: ignore[attr-defined]
                "metrics": [m if isinstance(m, str) else None for m in self._metric_specs]}  # type: ignore[attr-defined]

    def save(self, filepath: str | os.PathLike, overwrite: bool = True) -> Path:
        """Save architecture, weights, compile settings and optimizer state (see the module doc)."""
        path = Path(filepath)
        if path.exists() and not overwrite:
            raise InputError(f"{path}: exists (pass overwrite=True)")
        files = {"config.json": json.dumps({"format": FORMAT, "architecture": self.get_config(),  # type: ignore[attr-defined]
                                            "compile": self._compile_config()}, indent=1).encode(),
                 "model.safetensors": save_bytes(_weights(self))}  # type: ignore[arg-type]
        optimizer = getattr(getattr(self, "optimizer", None), "torch_optimizer", None)
        if optimizer is not None:
            tensors, meta = flatten_optimizer(optimizer.state_dict())
            files["optimizer.safetensors"] = save_bytes(tensors)
            files["optimizer.json"] = json.dumps(meta).encode()
        if path.suffix in (".keras", ".zip"):
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
                for name, data in files.items():
                    archive.writestr(name, data)
            atomic_write_bytes(path, buffer.getvalue())
        else:
            if path.exists() and not path.is_dir():
                raise InputError(f"{path}: not a directory (name a .keras file to save one file)")
            path.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                atomic_write_bytes(path / name, data)
        return path

    def save_weights(self, filepath: str | os.PathLike, overwrite: bool = True) -> Path:
        """The weights alone, as one safetensors file (names: layer name, then the tensor's)."""
        path = Path(filepath)
        if path.exists() and not overwrite:
            raise InputError(f"{path}: exists (pass overwrite=True)")
        atomic_write_bytes(path, save_bytes(_weights(self)))  # type: ignore[arg-type]
        return path

    def load_weights(self, filepath: str | os.PathLike, skip_mismatch: bool = False, by_name: bool = False) -> list[str]:
        """Load weights saved by `save_weights` or `save`, matching them by name.

        Every weight of this model must be in the file with its shape, else InputError listing
        each missing or mismatched one (name and shapes).  `skip_mismatch=True` loads what matches
        and leaves the rest as they are (a warning lists them) — TF Saver's partial restore, e.g. a
        trained feature extractor under a new head; `by_name=True` ignores the file's weights this
        model does not have.  Returns the names that were not loaded.
        """
        tensors = read_weights(Path(filepath))
        own = self.state_dict()  # type: ignore[attr-defined]
        problems, skipped = [], []
        for name, value in own.items():
            given = tensors.get(name)
            if given is None:
                problems.append(f"{name} {tuple(value.shape)}: not in the file")
            elif tuple(given.shape) != tuple(value.shape):
                problems.append(f"{name}: model {tuple(value.shape)}, file {tuple(given.shape)}")
        extra = sorted(set(tensors) - set(own))
        if extra and not (by_name or skip_mismatch):
            problems += [f"{name} {tuple(tensors[name].shape)}: in the file, not in the model" for name in extra]
        if problems and not skip_mismatch:
            raise InputError(f"{filepath}: weights do not match the model: " + "; ".join(problems))
        if problems:
            warnings.warn(f"{filepath}: not loaded: " + "; ".join(problems), stacklevel=2)
        with torch.no_grad():
            for name, value in own.items():
                given = tensors.get(name)
                if given is not None and tuple(given.shape) == tuple(value.shape):
                    value.copy_(given)
                else:
                    skipped.append(name)
        return skipped

    def export(self, export_base: str | os.PathLike, version: Optional[int] = None,
               class_names: Optional[list[str]] = None) -> Path:
        """A verified, servable version of this image classifier under `export_base`: the same
        signature, ONNX graph and serving as `visionflow export` (inputs (H, W, C), 1 or 3 channels)."""
        from ..engine.checkpoint import save_checkpoint
        from ..engine.config import RunConfig, TrainConfig
        from ..engine.modeldir import ModelDir
        from ..export.exporter import export_model
        from ..models.keras.network import network_from_config
        from .training import input_contract

        shape = getattr(self, "input_shape", None)
        if shape is None or len(shape) != 4 or shape[-1] not in (1, 3):
            raise InputError(f"export serves image classifiers taking (H, W, 1 or 3) inputs; this model takes {shape}")
        example = getattr(self, "_example_input", None)
        if example is None:
            example = torch.rand((8,) + tuple(shape[1:]))
        spec, pre = input_contract(self, example)  # type: ignore[arg-type]
        names = tuple(class_names or (str(i) for i in range(spec.num_classes)))
        run = RunConfig(TrainConfig(model="keras", dataset="arrays"), spec, pre, names)
        with tempfile.TemporaryDirectory() as tmp:
            directory = ModelDir(tmp)
            directory.save_config(run)
            save_checkpoint(directory.checkpoints, 0, self, None, {}, 1)  # type: ignore[arg-type]
            network = network_from_config(spec.options["architecture"]).for_serving()
            return export_model(tmp, export_base, version, model=network).path


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, a saved model directory or a .keras file."""
    if path.is_dir():
        path = path / "model.safetensors"
    try:
        if zipfile.is_zipfile(path):
            return load_bytes(_read_member(path, "model.safetensors"))
        return load_bytes(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (SafetensorError, ValueError, OSError) as e:
        raise InputError(f"{path}: not a safetensors weights file ({e})") from None


def _read_member(path: Path, name: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(name)
            if info.file_size > MAX_ARCHIVE_BYTES:
                raise InputError(f"{path}: {name} is {info.file_size:,} bytes, over the {MAX_ARCHIVE_BYTES:,} limit")
            return archive.read(name)
    except KeyError:
        raise InputError(f"{path}: not a saved model ({name} missing)") from None
    except zipfile.BadZipFile as e:
        raise InputError(f"{path}: damaged archive ({e})") from None


def _read(path: Path, name: str) -> Optional[bytes]:
    if path.is_dir():
        member = path / name
        return member.read_bytes() if member.exists() else None
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a saved model (neither a directory nor a .keras archive)")
    with zipfile.ZipFile(path) as archive:
        if name not in archive.namelist():
            return None
    return _read_member(path, name)
