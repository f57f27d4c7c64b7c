"""The model directory: the single source of truth of a run.

  config.json         RunConfig (training config, model spec, preprocessing, class names)
  labels.txt          one class name per line
  checkpoints/        see checkpoint.py
  events.out.*        TensorBoard training summaries; eval_<split>/ holds evaluation summaries
  eval_<split>.json   the latest evaluation results; confusion_<split>.png their plot,
                      mistakes_<split>.png a grid of misclassified examples
  curves.png          training and validation loss/accuracy against global step
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.fsio import atomic_write_text
from ..errors import InputError
from .config import RunConfig


class ModelDir:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def eval_dir(self, split: str) -> Path:
        return self.path / f"eval_{split}"

    def exists(self) -> bool:
        return self.config_path.exists()

    def load_config(self) -> RunConfig:
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path}: not a directory")
        return RunConfig.load(self.config_path)

    def save_config(self, config: RunConfig) -> None:
        atomic_write_text(self.config_path, config.to_json())
        atomic_write_text(self.path / "labels.txt", "".join(f"{name}\n" for name in config.class_names))
