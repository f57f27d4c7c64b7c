"""A trained language model directory: its latest checkpoint loaded, evaluated on a split, sampled."""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.devices import resolve_device
from ..data.text import read_corpus
from ..engine.evaluation import load_weights
from ..engine.modeldir import ModelDir
from ..models import build_model
from .config import LMRunConfig
from .evaluation import LMResult, evaluate_lm, sample
from .training import corpus_path, load_vocab


def load_lm(model_dir: str | Path, device: torch.device) -> tuple[ModelDir, LMRunConfig, torch.nn.Module, int]:
    """(directory, run, model in eval mode on `device`, its global step) from the latest checkpoint."""
    directory = ModelDir(model_dir)
    run = LMRunConfig.load(directory.config_path)
    model = build_model(run.model)
    step = load_weights(directory, model, run.model.name)
    return directory, run, model.to(device).eval(), step


def evaluate_model_dir(model_dir: str | Path, split: str = "valid", corpus: str | None = None,
                       device: str = "auto") -> LMResult:
    dev = resolve_device(device)
    directory, run, model, step = load_lm(model_dir, dev)
    vocab = load_vocab(directory)
    text = read_corpus(corpus_path(corpus or run.lm.corpus), run.lm.level, (run.lm.valid_fraction, run.lm.test_fraction),
                       vocab)
    return evaluate_lm(model, text.split(split), run.lm.eval_streams, run.lm.bptt, dev, step, split, run.lm.level)


def sample_model_dir(model_dir: str | Path, prompt: str, length: int, temperature: float = 1.0,
                     top_k: int | None = None, seed: int = 0, device: str = "cpu") -> str:
    dev = resolve_device(device)
    directory, _, model, _ = load_lm(model_dir, dev)
    return sample(model, load_vocab(directory), prompt, length, temperature, top_k, seed, dev)
