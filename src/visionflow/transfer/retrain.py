"""`visionflow retrain`: a pretrained network retrained for new categories from a folder of images.

TensorFlow's image-retraining tutorial, on the visionflow engine:

1. the image folder (one sub-folder per category) is split by file-name hash (data/imagefolder.py);
2. each image's bottleneck — the frozen backbone's pooled features — is computed once and cached
   on disk, keyed by backbone, weights, preprocessing and the image's content (bottlenecks.py);
3. a new linear layer is trained over the bottlenecks by the engine's `Trainer` — the one training
   loop — as part of a `TransferClassifier` (backbone + layer), so every checkpoint is the whole
   model and the directory evaluates, predicts, exports and serves like any other;
4. validation accuracy is reported during training, test accuracy at the end.

`--distortions` trains on randomly zoomed, flipped and brightened images instead
(`data.augment.RETRAIN_DISTORTIONS`: a new input every epoch, so no cache), and `--fine-tune`
trains the whole network (the backbone changes, so no cache either).  Both run the backbone at
every step and are much slower on a CPU.

Besides the usual files, the model directory gets `retrain_log.json`: the backbone and where its
weights came from, images per category and split, the files skipped (unreadable) or ignored (not
images), and what the bottlenecks cost (from the cache / computed / backbone forward passes).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from ..core.devices import resolve_device
from ..core.distributed import barrier, check_global_batch, world
from ..core.distributed import join as join_world
from ..core.fsio import atomic_write_json
from ..data.augment import RETRAIN_DISTORTIONS
from ..data.base import SPLITS, Split
from ..data.batches import TensorBatches
from ..data.imagefolder import ImageFile, ImageFolder, read_images, scan_image_folder, warn_skipped
from ..errors import InputError
from ..models import ModelSpec, build_model
from ..models.backbones import DEFAULT_BACKBONE, get_backbone
from ..models.pretrained import Weights, load_pretrained, state_digest
from ..models.transfer import TransferClassifier
from ..engine.checkpoint import load_checkpoint
from ..engine.config import RunConfig, TrainConfig
from ..engine.loop import TrainResult, Trainer
from ..engine.evaluation import evaluate, record_evaluation
from ..engine.metrics import EvalResult
from ..engine.modeldir import ModelDir
from ..engine.recipes import config_from_recipe, default_config, resolve_config
from ..engine.reporting import run_header
from ..engine.training import max_steps_for, set_determinism
from .bottlenecks import BottleneckCache, BottleneckStats, compute_bottlenecks, default_bottleneck_dir

LOG_FILE = "retrain_log.json"
MODEL = "transfer"
DATASET = "image-folder"
IMAGE_EVAL_BATCH = 64  # images per evaluation batch when the backbone runs (memory, not speed)

#: Whole-network fine-tuning wants a small learning rate and few epochs (over the transfer
#: model's own recipe, models/transfer.py).
FINE_TUNE_RECIPE: dict[str, Any] = {"epochs": 5, "batch_size": 32, "lr": 1e-4}


@dataclass
class RetrainOutcome:
    """What a retrain run did: its config, training result, final validation and test evaluations,
    model, bottleneck costs, and the run log written to the model directory."""

    run: RunConfig
    result: TrainResult
    validation: EvalResult | None
    test: EvalResult | None
    model: TransferClassifier
    bottlenecks: BottleneckStats | None
    log: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Data:
    train: TensorBatches
    validation: TensorBatches
    test: TensorBatches
    test_images: Split  # decoded test images, for the grid of mistakes
    folder: ImageFolder
    bottlenecks: BottleneckStats | None


def resolve_retrain_config(model_dir: ModelDir, image_dir: str | os.PathLike | None,
                           overrides: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a retrain run: the directory's own when it holds one (flags must agree,
    as with `train`), else the transfer model's recipe (and FINE_TUNE_RECIPE with fine_tune) under
    `overrides`.  A true "distortions" override stands for `RETRAIN_DISTORTIONS`."""
    overrides = dict(overrides)
    if "distortions" in overrides:
        wanted = overrides.pop("distortions")
        if model_dir.exists():
            had = model_dir.load_config().train.augment.distorts
            if wanted != had:
                raise InputError(f"{model_dir.location}: was trained with --distortions {had}, got {wanted} "
                                 "(use another --model-dir to change it)")
        elif wanted:
            overrides["augment"] = RETRAIN_DISTORTIONS
    overrides.update(model=MODEL, dataset=DATASET)
    if image_dir is not None:
        overrides["data_dir"] = str(image_dir)
    if not model_dir.exists() and image_dir is None:
        raise InputError("retrain needs --image-dir DIR for a new model directory")
    base = default_config(MODEL, DATASET)
    if overrides.get("fine_tune"):
        base = config_from_recipe(base, FINE_TUNE_RECIPE)
    return resolve_config(model_dir, overrides, base=base)


def retrain(image_dir: str | os.PathLike | None, model_dir: str | os.PathLike, backbone: str | None = None,
            weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
            overrides: dict[str, Any] | None = None, progress_stream: TextIO | None = None) -> RetrainOutcome:
    """Retrain `backbone` for the categories of `image_dir` into `model_dir` (continuing what is there).

    `overrides` are TrainConfig fields (epochs, lr, distortions, fine_tune, validation_percentage,
    ...).  `weights` is a local weights file (see pretrained.py); `cache_dir` holds bottlenecks
    (default $VISIONFLOW_CACHE/bottlenecks).  Raises InputError for a folder with too few images,
    unknown backbone, missing weights, or a model directory trained another way.
    """
    directory = ModelDir(model_dir, training=True)
    config = resolve_retrain_config(directory, image_dir, overrides or {})
    stream = progress_stream or sys.stderr
    set_determinism(config)
    w, device = join_world(resolve_device(config.device))
    check_global_batch(config.batch_size, w, flags=True)
    if w.is_main:
        directory.check_writable()
    folder = scan_image_folder(config.data_dir, config.validation_percentage, config.testing_percentage)
    folder.check_enough()
    run, net, weights_used = _prepare_model(directory, config, folder, backbone, weights)
    skipped: list[dict[str, str]] = []

    def on_skip(path: Path, reason: str) -> None:
        warn_skipped(path, reason)
        skipped.append({"file": str(path), "reason": reason})

    data = _prepare_data(run, net, folder, weights_used, cache_dir, device, on_skip, stream)
    trainer = Trainer(net, run, directory, device, data.train, data.validation, (), stream)
    max_steps = max_steps_for(config, data.train.steps_per_epoch)
    if max_steps > trainer.global_step and w.is_main:
        sizes = (data.train.num_examples, data.validation.num_examples, data.test.num_examples)
        print(run_header(trainer, f"{data.folder.root} ({training_mode(config)})", sizes, max_steps,
                         trainer.global_step or None), file=stream, flush=True)
    result = trainer.fit(max_steps)
    barrier()
    validation = test = None
    if data.validation.num_examples:
        validation = evaluate(trainer.model, data.validation, run.class_names, device, config.precision,
                              trainer.global_step, "validation")
    if data.test.num_examples:
        test = evaluate(trainer.model, data.test, run.class_names, device, config.precision, trainer.global_step, "test")
    log = _run_log(run, data, weights_used, cache_dir, skipped, result, validation, test)
    if directory.exists() and w.is_main:  # a run that has trained nothing has no directory to record into
        if test is not None:
            record_evaluation(directory, test, data.test_images)
        atomic_write_json(directory.path / LOG_FILE, log)
    if result.steps_run and w.is_main:
        from ..engine.plots import save_training_curves

        save_training_curves(directory.path, directory.path / "curves.png", test)
    if w.is_main:
        directory.sync()
    barrier()
    return RetrainOutcome(run, result, validation, test, trainer.model, data.bottlenecks, log)  # type: ignore[arg-type]


def training_mode(config: TrainConfig) -> str:
    """"bottlenecks" (a new layer over cached features), "distortions" or "fine-tune"."""
    distorts = config.augment.distorts
    if config.fine_tune:
        return "fine-tune" + (" with distortions" if distorts else "")
    return "distortions" if distorts else "bottlenecks"


def _prepare_model(directory: ModelDir, config: TrainConfig, folder: ImageFolder, backbone: str | None,
                   weights: str | os.PathLike | None) -> tuple[RunConfig, TransferClassifier, Weights]:
    """The run config and the model, with pretrained weights (new run) or the latest checkpoint's."""
    if directory.exists():
        run = directory.load_config()
        stored = run.model.options.get("backbone")
        if backbone is not None and backbone != stored:
            raise InputError(f"{directory.location}: was retrained from backbone {stored!r}, not {backbone!r} "
                             "(use another --model-dir)")
        if tuple(folder.class_names) != tuple(run.class_names):
            raise InputError(f"{folder.root}: categories {', '.join(folder.class_names)} differ from the ones "
                             f"{directory.location} was trained on ({', '.join(run.class_names)})")
        run.train = config
    else:
        chosen = get_backbone(backbone or DEFAULT_BACKBONE)
        spec = ModelSpec(MODEL, len(folder.class_names), chosen.preprocessing.input_shape,
                         {"backbone": chosen.name, "dropout": float(config.dropout or 0.0)})
        run = RunConfig(config, spec, chosen.preprocessing, tuple(folder.class_names))
    torch.manual_seed(config.seed)
    net = build_model(run.model)
    if not isinstance(net, TransferClassifier):
        raise InputError(f"{directory.location}: holds a {run.model.name!r} model, not a retrained one")
    ckpt = load_checkpoint(directory.checkpoints, with_state=False) if directory.exists() else None
    if ckpt is not None:
        try:
            net.load_state_dict(ckpt.weights)
        except RuntimeError as e:
            raise InputError(f"{directory.checkpoints}: checkpoint {ckpt.step} does not fit this model "
                             f"({str(e).strip().splitlines()[0]})") from None
        used = Weights(f"{directory.checkpoints} (step {ckpt.step})", state_digest(net.backbone.state_dict()))
    else:
        used = load_pretrained(net.backbone, get_backbone(run.model.options["backbone"]), weights)
    net.set_fine_tune(config.fine_tune)
    return run, net, used


def _prepare_data(run: RunConfig, net: TransferClassifier, folder: ImageFolder, weights: Weights,
                  cache_dir: str | os.PathLike | None, device: torch.device, on_skip, stream: TextIO) -> _Data:
    """Batches for the run's mode: cached bottlenecks, or decoded images when the backbone trains
    or the images are distorted.  Unreadable images are dropped (and the folder checked again)."""
    config, pre = run.train, run.preprocessing
    if training_mode(config) == "bottlenecks":
        cache = BottleneckCache(cache_dir or default_bottleneck_dir(), get_backbone(run.model.options["backbone"]),
                                weights, pre)
        net.backbone.to(device=device, memory_format=torch.channels_last)
        w = world()
        if not w.is_main:
            barrier()  # rank 0 fills the cache first; the others then read every bottleneck from it
        found = compute_bottlenecks(folder.files, net.backbone, pre, cache, device, on_skip=on_skip)
        if w.is_main:
            barrier()
        stats = found.stats
        if w.is_main:
            print(f"bottlenecks of {len(found.files)} images: {stats.cached} from the cache, {stats.computed} "
                  f"computed ({stats.forward_passes} backbone passes) in {stats.seconds:.1f} s — {cache.directory}",
                  file=stream, flush=True)
        folder = _only(folder, found.files)
        folder.check_enough()
        labels = found.labels
        parts = {name: np.array([f.split == name for f in found.files], dtype=bool) for name in SPLITS}
        batches = {name: TensorBatches(Split(found.features[parts[name]], labels[parts[name]]), None,
                                       config.batch_size, device, shuffle=name == "train", seed=config.seed,
                                       drop_last=name == "train", rank=w.rank if name == "train" else 0,
                                       world_size=w.size if name == "train" else 1)
                   for name in SPLITS}
        test_images, _ = read_images(folder.split("test"), pre, on_skip)
        test_split = Split(test_images, labels[parts["test"]])
        return _Data(batches["train"], batches["validation"], batches["test"], test_split, folder, stats)
    splits, readable = {}, []
    for name in SPLITS:
        images, kept = read_images(folder.split(name), pre, on_skip)
        splits[name] = Split(images, np.array([f.label for f in kept], dtype=np.int64))
        readable += kept
    folder = _only(folder, readable)
    folder.check_enough()
    w = world()
    train = TensorBatches(splits["train"], pre, config.batch_size, device, shuffle=True, seed=config.seed,
                          drop_last=True, augment=config.augment, rank=w.rank, world_size=w.size)
    evaluation = {name: TensorBatches(splits[name], pre, IMAGE_EVAL_BATCH, device) for name in ("validation", "test")}
    return _Data(train, evaluation["validation"], evaluation["test"], splits["test"], folder, None)


def _only(folder: ImageFolder, readable: list[ImageFile]) -> ImageFolder:
    """`folder` without the images that could not be read."""
    return folder.without({f.path for f in folder.files} - {f.path for f in readable})


def _run_log(run: RunConfig, data: _Data, weights: Weights, cache_dir: str | os.PathLike | None,
             skipped: list[dict[str, str]], result: TrainResult, validation: EvalResult | None,
             test: EvalResult | None) -> dict[str, Any]:
    stats = data.bottlenecks
    return {
        "image_dir": str(data.folder.root),
        "backbone": run.model.options.get("backbone"),
        "weights": dataclasses.asdict(weights),
        "mode": training_mode(run.train),
        "categories": data.folder.counts(),
        "skipped": skipped,
        "ignored": [str(p) for p in data.folder.ignored],
        "bottlenecks": None if stats is None else {
            **dataclasses.asdict(stats), "cache_dir": str(cache_dir or default_bottleneck_dir())},
        "global_step": result.global_step,
        "steps_run": result.steps_run,
        "train_seconds": result.seconds,
        "validation_accuracy": validation.accuracy if validation else None,
        "test_accuracy": test.accuracy if test else None,
    }
