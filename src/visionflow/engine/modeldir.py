"""The model directory: the single source of truth of a run.

  config.json         RunConfig (training config, model spec, preprocessing, class names)
  labels.txt          one class name per line
  checkpoints/        see checkpoint.py
  events.out.*        TensorBoard training summaries; eval_<split>/ holds evaluation summaries
  eval_<split>.json   the latest evaluation results; confusion_<split>.png their plot,
                      mistakes_<split>.png a grid of misclassified examples
  curves.png          training and validation loss/accuracy against global step

A model directory may be a URL (`s3://…`, `gs://…`, `file://…`, anything fsspec writes): it is
then a local mirror of the URL (engine/mirror.py says what a reader of the URL can rely on), and
`sync()` pushes what changed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.fsio import atomic_write_text
from ..core.remote import is_url
from ..errors import InputError
from .config import RunConfig


class ModelDir:
    def __init__(self, path: str | os.PathLike, training: bool = False) -> None:
        """`training`: opened by the run that trains into it (a URL's mirror is then its own)."""
        self.mirror = None
        if is_url(path):
            from .mirror import Mirror

            self.mirror = Mirror(os.fspath(path), "train" if training else "read")
            self.path = self.mirror.local
        else:
            self.path = Path(path)

    @property
    def location(self) -> str:
        """What the user named: the URL, or the local path."""
        return self.mirror.url if self.mirror is not None else str(self.path)

    def sync(self) -> None:
        """Push what changed to the URL (nothing for a local directory); only the writing process calls it."""
        if self.mirror is not None:
            self.mirror.push()

    def refresh(self) -> None:
        """Fetch the URL's newest index and checkpoint (a watcher's poll; nothing for a local directory)."""
        if self.mirror is not None:
            self.mirror.pull(checkpoint_only=True)

    def check_writable(self) -> None:
        if self.mirror is not None:
            self.mirror.check_writable()

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
            raise InputError(f"{self.location}: not a directory")
        return RunConfig.load(self.config_path)

    def save_config(self, config: RunConfig) -> None:
        atomic_write_text(self.config_path, config.to_json())
        if config.class_names:  # a language model has none (its vocabulary is vocab.json)
            atomic_write_text(self.path / "labels.txt", "".join(f"{name}\n" for name in config.class_names))
