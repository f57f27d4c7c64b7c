"""Evaluation: the loop over a split, and evaluating a model directory — once, or every new
checkpoint as it appears (`--watch`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.devices import autocast_for, resolve_device
from ..core.distributed import gather_rows, world
from ..core.fsio import atomic_write_json
from ..data.base import Split
from ..data.batches import TensorBatches
from ..errors import InputError
from ..models import build_model
from ..preprocessing import tta_logits
from .checkpoint import latest_step, load_checkpoint, read_index
from .config import RunConfig
from .metrics import EvalResult
from .modeldir import ModelDir
from .plots import save_confusion_png, save_mistakes_grid, save_regression_png
from .run_data import dataset_for_run
from .summaries import write_eval_summary


@torch.no_grad()
def evaluate(model: nn.Module, batches: TensorBatches, class_names: Sequence[str], device: torch.device,
             precision: str = "auto", global_step: int = 0, split: str = "test",
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> EvalResult:
    """Loss, accuracy and confusion matrix of `model` over every example of `batches`.

    Inputs are prepared by the batches' preprocessing (central crop, standardization) and the
    logits averaged over its test-time augmentation views (`Preprocessing.tta`), if any.  The
    loss is cross-entropy, or `loss_fn`'s batch means weighted by batch size.
    """
    model.eval()
    k = len(class_names)
    w = world()
    local = batches.shard(w.rank, w.size) if w.active else batches
    autocast = autocast_for(device, precision)
    logits_parts, label_parts = [], []
    for x, y in local.epoch(0):
        with autocast():
            logits_parts.append(tta_logits(model, x, batches.tta).float())
        label_parts.append(y)
    logits = torch.cat(logits_parts) if logits_parts else torch.zeros((0, k), device=device)
    labels = torch.cat(label_parts) if label_parts else torch.zeros(0, dtype=torch.long, device=device)
    if w.active:  # every rank ends with every example's logits, in the single-process order
        logits, labels = gather_rows(logits), gather_rows(labels)
    count = len(labels)
    if labels.is_floating_point():
        return _regression(logits[:, 0], labels, class_names, global_step, split)
    if loss_fn is None:
        loss_sum = F.cross_entropy(logits, labels, reduction="sum").double()
    else:  # batch means weighted by batch size, over the batches one process would have seen
        size = batches.batch_size
        loss_sum = sum((loss_fn(logits[i:i + size], labels[i:i + size]).double() * len(labels[i:i + size])
                        for i in range(0, count, size)), torch.zeros((), dtype=torch.float64, device=device))
    predicted = logits.argmax(1)
    matrix = torch.bincount(labels * k + predicted, minlength=k * k).view(k, k).cpu().numpy()
    accuracy = float(np.trace(matrix) / count) if count else 0.0
    return EvalResult(float(loss_sum.item() / count) if count else 0.0, accuracy, count, matrix,
                      tuple(class_names), global_step, split, predicted.cpu().numpy(),
                      torch.softmax(logits, dim=1).cpu().numpy())


def _regression(predicted: torch.Tensor, targets: torch.Tensor, names: Sequence[str], global_step: int,
                split: str) -> EvalResult:
    """MSE (the loss), RMSE, MAE and R² of predicted values against float targets, in float64."""
    p, t = predicted.double(), targets.double()
    count = len(t)
    mse = float((p - t).square().mean()) if count else 0.0
    total = float((t - t.mean()).square().sum()) if count else 0.0
    r2 = 1.0 - mse * count / total if total > 0 else 0.0
    metrics = {"rmse": mse ** 0.5, "mae": float((p - t).abs().mean()) if count else 0.0, "r2": r2}
    return EvalResult(mse, 0.0, count, np.zeros((0, 0), np.int64), tuple(names), global_step, split,
                      p.float().cpu().numpy(), None, metrics)


def load_model(model_dir: ModelDir, device: torch.device, step: int | None = None,
               model: nn.Module | None = None) -> tuple[RunConfig, nn.Module, int]:
    """Rebuild the model of `model_dir` and load checkpoint `step` (default: the latest)."""
    run = model_dir.load_config()
    if model is None:
        if run.model.name.startswith("custom:"):
            raise InputError(f"{model_dir.location}: holds a custom model ({run.model.name[7:]}); "
                             "load it through the Python API with the same module")
        model = build_model(run.model)
    at = load_weights(model_dir, model, run.model.name, step)
    model.to(device=device, memory_format=torch.channels_last).eval()
    return run, model, at


def load_weights(model_dir: ModelDir, model: nn.Module, name: str, step: int | None = None) -> int:
    """Load checkpoint `step` (default: the latest) of `model_dir` into `model` (named `name` in
    errors); returns the checkpoint's global step."""
    ckpt = load_checkpoint(model_dir.checkpoints, step, with_state=False)
    if ckpt is None:
        raise InputError(f"{model_dir.location}: no checkpoint yet (train first)")
    try:
        model.load_state_dict(ckpt.weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise InputError(f"{model_dir.checkpoints}: checkpoint {ckpt.step} does not fit model {name!r} ({first})") from None
    return ckpt.step


def record_evaluation(model_dir: ModelDir, result: EvalResult, data: Split | None = None) -> None:
    """Results JSON, confusion-matrix PNG, a grid of mistakes (given the data), and the same in
    TensorBoard (scalars, both pictures, a precision–recall curve per class), all in the model dir."""
    atomic_write_json(model_dir.path / f"eval_{result.split}.json", result.to_dict())
    if result.regression is not None:
        pictures = {} if data is None else {
            "predicted_vs_true": save_regression_png(result, data.labels, model_dir.path / f"regression_{result.split}.png")}
        write_eval_summary(model_dir.eval_dir(result.split), result, None, pictures)
        model_dir.sync()
        return
    pictures = {"confusion_matrix": save_confusion_png(result, model_dir.path / f"confusion_{result.split}.png")}
    if data is not None:
        mistakes = model_dir.path / f"mistakes_{result.split}.png"
        if save_mistakes_grid(data.images, data.labels, result, mistakes):
            pictures["mistakes"] = mistakes.read_bytes()
    write_eval_summary(model_dir.eval_dir(result.split), result, data.labels if data is not None else None, pictures)
    model_dir.sync()


def evaluate_model_dir(path: str | Path, split: str = "test", device: str = "auto", step: int | None = None,
                       data_dir: str | None = None, record: bool = True) -> EvalResult:
    model_dir = ModelDir(path)
    run = model_dir.load_config()
    dev = resolve_device(device)
    dataset = dataset_for_run(run, data_dir, split=split)
    return _evaluate_loaded(model_dir, run, dataset.split(split), dev, step, record, split)


def _evaluate_loaded(model_dir: ModelDir, run: RunConfig, data, device: torch.device, step: int | None,
                     record: bool, split: str) -> EvalResult:
    run, model, step = load_model(model_dir, device, step)
    batches = TensorBatches(data, run.preprocessing, 1000, device)
    result = evaluate(model, batches, run.class_names, device, run.train.precision, step, split)
    if record:
        record_evaluation(model_dir, result, data)
    return result


def watch(path: str | Path, on_result: Callable[[EvalResult], None], split: str = "test", device: str = "auto",
          poll_seconds: float = 2.0, timeout: float | None = None, data_dir: str | None = None) -> int:
    """Evaluate the newest checkpoint of `path` whenever one appears, until interrupted,
    `timeout` s pass without one (cifar10_eval.py's loop), or the checkpoint of the step the
    training stops at has been evaluated (as TensorFlow's train_and_evaluate stops).

    Returns how many checkpoints were evaluated.  When training outpaces evaluation the
    checkpoints in between are skipped, and one pruned before we got to it is skipped too.
    """
    model_dir = ModelDir(path)
    dev = resolve_device(device)
    run = dataset = None
    done: set[int] = set()
    evaluated = 0
    last_new = time.monotonic()
    while timeout is None or time.monotonic() - last_new < timeout:
        model_dir.refresh()
        if run is None and model_dir.exists():
            run = model_dir.load_config()
            dataset = dataset_for_run(run, data_dir, split=split)
        index = read_index(model_dir.checkpoints) if run is not None else None
        pending = [s for s in (index or {}).get("steps", []) if s not in done]
        for step in sorted(pending)[-1:]:
            done.update(pending)
            try:
                result = _evaluate_loaded(model_dir, run, dataset.split(split), dev, step, True, split)
            except InputError:
                if latest_step(model_dir.checkpoints) != step:
                    continue
                raise
            on_result(result)
            evaluated += 1
            last_new = time.monotonic()
            if step >= index.get("max_steps", float("inf")):
                return evaluated
        time.sleep(poll_seconds)
    return evaluated
