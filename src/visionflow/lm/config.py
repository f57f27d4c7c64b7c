"""A language model's run: `config.json` (LMRunConfig) and `vocab.json` in its model directory.

`LMSettings` holds what only a language model has — the token level, the truncation length of
backpropagation (`bptt`, tokens), the corpus and its split, the evaluation streams — beside the
engine's `TrainConfig` (optimizer, learning rate and schedule, `batch_size` = parallel streams,
steps/epochs, clipping, seed) and the `ModelSpec` (vocabulary size and the network's sizes).

Recipes by level: "word" is the PTB tutorial's (2×200 LSTM, bptt 35, 20 streams, SGD at 20
divided by 4 on a validation plateau, gradients clipped at 0.25 — pytorch/examples' defaults);
"char" is char-rnn's (2×256 LSTM, bptt 100, 64 streams, Adam 2e-3, clip 1.0).  Precision "auto"
is decided when a run starts and stored: bf16 autocast on CUDA and on CPUs that multiply bf16 in
hardware (AMX, AVX-512 BF16), else float32.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.fsio import read_text
from ..core.typed import from_dict
from ..engine.config import TrainConfig
from ..errors import InputError
from ..models import ModelSpec

FORMAT_VERSION = 1
VOCAB_FILE = "vocab.json"


@dataclass
class LMSettings:
    level: str = "word"
    bptt: int = 35
    corpus: str = ""
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    eval_streams: int = 10

    def validate(self) -> None:
        if self.bptt < 1 or self.eval_streams < 1:
            raise InputError("--bptt and --eval-batch-size must be at least 1")


RECIPES: dict[str, dict[str, Any]] = {
    "word": {"train": {"optimizer": "sgd", "lr": 20.0, "schedule": "plateau", "plateau_factor": 0.25,
                       "clip_norm": 0.25, "batch_size": 20, "epochs": 6.0, "log_every": 200,
                       "checkpoint_every": 1000, "precision": "auto"},
             "model": {"embed": 200, "hidden": 200, "layers": 2, "dropout": 0.2, "tie": False},
             "lm": {"bptt": 35}},
    "char": {"train": {"optimizer": "adam", "lr": 2e-3, "schedule": "constant", "clip_norm": 1.0,
                       "batch_size": 64, "epochs": 20.0, "log_every": 50, "checkpoint_every": 500,
                       "precision": "auto"},
             "model": {"embed": 64, "hidden": 256, "layers": 2, "dropout": 0.1, "tie": False},
             "lm": {"bptt": 100, "valid_fraction": 0.1, "test_fraction": 0.0}},
}


@dataclass
class LMRunConfig:
    """Everything in a language model's config.json."""

    train: TrainConfig
    model: ModelSpec
    lm: LMSettings
    kind: str = "lm"
    format: int = FORMAT_VERSION
    class_names: tuple[str, ...] = field(default_factory=tuple)  # none: the vocabulary is vocab.json

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> "LMRunConfig":
        if not path.exists():
            raise InputError(f"{path.parent}: not a visionflow model directory (no config.json)")
        try:
            raw = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(raw, dict) or raw.get("kind") != "lm":
            raise InputError(f"{path.parent}: holds an image model, not a language model "
                             "(use visionflow train/evaluate/predict)")
        config = from_dict(cls, raw, str(path))
        if config.format != FORMAT_VERSION:
            raise InputError(f"{path}: format {config.format} is not supported (expected {FORMAT_VERSION})")
        return config
