"""Typed run configuration, saved as `config.json` in the model directory.

`TrainConfig` holds every hyperparameter and run setting; `RunConfig` adds what the data
decided (model spec, preprocessing, class names).  Together they let `train`, `evaluate` and
`predict` rebuild everything from the directory alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..core.fsio import read_text
from ..core.typed import from_dict
from ..data.augment import RETRAIN_DISTORTIONS, Augment
from ..formats.csv_table import CsvOptions
from ..errors import InputError
from ..models.spec import ModelSpec
from ..preprocessing import Preprocessing

FORMAT_VERSION = 1
#: "muon": orthogonalised momentum for conv filters, nesterov SGD for the rest (engine.muon).
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adagrad", "muon")
SCHEDULES = ("constant", "onecycle", "cosine", "linear", "step", "plateau")
#: See core.devices: auto (bf16 on CUDA, else fp32), fp32, bf16, fp16 (with loss scaling).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: torch.compile modes; "reduce-overhead" replays the compiled step from CUDA graphs on a GPU.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass
class TrainConfig:
    """Hyperparameters and run settings; units are given where they matter.

    `steps` (a global step to train up to, like the Estimator's max_steps) wins over
    `epochs` (passes over the training split).  `warmup` is a fraction of the run.
    `validation_percentage` and `testing_percentage` split an image-folder dataset (percent of
    each category, chosen by file-name hash); `fine_tune` is `visionflow retrain`'s mode that
    trains the pretrained backbone too.

    `augment` holds the input pipeline's distortions and the evaluation-time choices tied to
    them (central crop, standardization, test-time augmentation): see `data.augment.Augment`.
    `csv` says how `--dataset csv` files are read (label column, header, defaults, image shape).
    Schedules: "linear" rises linearly from `lr_start_factor`·lr to lr over `warmup`, then falls
    linearly to `lr_end_factor`·lr (airbench's triangle); "step" divides lr by 10 at 50% and
    again at 75% of the run (He et al.'s CIFAR schedule), after any warmup; "plateau" keeps lr
    until a validation loss fails to improve, then multiplies it by `plateau_factor` (the PTB
    language model's /4; engine/plateau.py).  `clip_norm` rescales the gradient whenever its
    global L2 norm exceeds it (none when None).  `summarize_activations` (globs of module paths)
    and `summarize_gradients` put intermediate outputs and per-parameter gradient norms in
    TensorBoard every `log_every` steps (engine/monitor.py).  `ema_decay` keeps
    an exponential moving average of the weights (TF's ExponentialMovingAverage with
    num_updates = global step, so the decay is min(ema_decay, (1 + step) / (10 + step))) that
    evaluation, checkpoints' weights and export use.  `lookahead_every` > 0 enables airbench's
    lookahead from epoch `lookahead_start_epoch` on: every that many steps the weights move to
    an average whose decay rises as lookahead_decay**every · progress³, and are reset to it at
    each epoch end.

    `schedule_start` is the global step the current learning-rate cycle began at: 0 for a new
    run; raising the target of a run (more `steps` or `epochs`) starts a new cycle from the step
    it has reached, so the rate warms up and decays again over the added steps instead of jumping
    back to the middle of a stretched schedule.  `loss` is "cross_entropy", "mse" (mean squared
    error: the loss of regression targets, `csv.regression`, which sets it) or, for a loss function
    given through the Python API, "custom:NAME"; `optimizer` and `schedule` likewise.

    Under torchrun, `batch_size` is the global batch, split evenly over the processes, and the
    schedule, epochs, steps and data order are those of one process with that batch.  BatchNorm
    layers normalise each process's part of the batch on its own (cifar10_estimator's towers)
    unless `sync_bn`, which synchronises their statistics across processes (GPU/NCCL).
    """

    model: str = "cnn"
    dataset: str = "digits"
    data_dir: Optional[str] = None
    validation_size: Optional[int] = None
    validation_percentage: Optional[float] = None
    testing_percentage: Optional[float] = None
    steps: Optional[int] = None
    epochs: Optional[float] = None
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    warmup: float = 0.15
    label_smoothing: float = 0.0
    augment: Augment = field(default_factory=Augment)
    csv: CsvOptions = field(default_factory=CsvOptions)
    lr_start_factor: float = 0.0
    lr_end_factor: float = 0.0
    ema_decay: Optional[float] = None
    lookahead_every: int = 0
    lookahead_decay: float = 0.95
    lookahead_start_epoch: int = 3
    fine_tune: bool = False
    dropout: Optional[float] = None
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    sync_bn: bool = False
    log_every: int = 100
    checkpoint_every: int = 500
    keep_checkpoints: int = 5
    schedule_start: int = 0
    loss: str = "cross_entropy"
    clip_norm: Optional[float] = None
    plateau_factor: float = 0.25
    summarize_activations: str = ""
    summarize_gradients: bool = False

    def validate(self, flags: bool = True) -> "TrainConfig":
        """Raise InputError for the first setting out of range, named as a command-line flag
        (`--batch-size`) or, with `flags` False, as the Python keyword (`batch_size`)."""
        checks = [
            (self.batch_size >= 1, "{batch_size} must be at least 1"),
            (self.steps is None or self.steps >= 0, "{steps} must be 0 or more"),
            (self.epochs is None or self.epochs > 0, "{epochs} must be positive"),
            (self.lr > 0, "{lr} must be positive"),
            (self.optimizer in OPTIMIZERS or self.optimizer.startswith("custom:"),
             f"{{optimizer}} must be one of {', '.join(OPTIMIZERS)}" + ("" if flags else " (or a torch optimizer)")),
            (self.schedule in SCHEDULES or self.schedule.startswith("custom:"),
             f"{{schedule}} must be one of {', '.join(SCHEDULES)}"),
            (0 <= self.warmup < 1, "{warmup} must be in [0, 1)"),
            (0 <= self.label_smoothing < 1, "{label_smoothing} must be in [0, 1)"),
            (self.log_every >= 1, "{log_every} must be at least 1"),
            (self.checkpoint_every >= 1, "{checkpoint_every} must be at least 1"),
            (self.keep_checkpoints >= 1, "{keep_checkpoints} must be at least 1"),
            (self.precision in PRECISIONS, f"{{precision}} must be one of {', '.join(PRECISIONS)}"),
            (self.compile_mode in COMPILE_MODES, f"{{compile_mode}} must be one of {', '.join(COMPILE_MODES)}"),
            ((self.validation_percentage or 0) + (self.testing_percentage or 0) < 100
             and min(self.validation_percentage or 0, self.testing_percentage or 0) >= 0,
             "{validation_percentage} and {testing_percentage} must be 0 or more and leave some images to train on"),
            (self.ema_decay is None or 0 < self.ema_decay < 1, "{ema_decay} must be in (0, 1)"),
            (self.lookahead_every >= 0, "{lookahead_every} must be 0 or more"),
            (0 < self.lookahead_decay < 1, "{lookahead_decay} must be in (0, 1)"),
            (self.lr_start_factor >= 0 and self.lr_end_factor >= 0, "{lr_start_factor} and {lr_end_factor} must be 0 or more"),
            (not (self.ema_decay and self.lookahead_every), "{ema_decay} and {lookahead_every} cannot be combined"),
            (self.dropout is None or 0 <= self.dropout < 1, "{dropout} must be in [0, 1)"),
            (self.momentum >= 0 and self.weight_decay >= 0, "{momentum} and {weight_decay} must be 0 or more"),
            (self.seed >= 0, "{seed} must be 0 or more"),
            (self.clip_norm is None or self.clip_norm > 0, "{clip_norm} must be positive"),
            (0 < self.plateau_factor < 1, "{plateau_factor} must be in (0, 1)"),
            (0 <= self.schedule_start <= (self.steps if self.steps is not None else self.schedule_start),
             "{schedule_start} must be between 0 and {steps}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message.format_map(SettingNames(flags)))
        if self.dataset != "csv" and self.csv != CsvOptions():
            raise InputError(("--label-column, --header, --delimiter, --column-defaults, --image-shape and "
                              "--regression apply to --dataset csv" if flags else
                              "csv=CsvOptions(...) applies to dataset='csv'") + f", not {self.dataset}")
        if self.regression and self.loss == "cross_entropy":
            return dataclasses.replace(self, loss="mse").validate(flags)
        if self.loss == "mse" and not self.regression:
            raise InputError("loss mse is for regression targets: " +
                             ("--dataset csv --regression" if flags else "dataset='csv', csv=CsvOptions(regression=True)"))
        if self.regression and self.loss != "mse" and not self.loss.startswith("custom:"):
            raise InputError(f"regression targets take loss mse, not {self.loss}")
        problems = self.augment.problems(flags=flags)
        if problems:
            raise InputError(problems[0])
        return self


    @property
    def regression(self) -> bool:
        """Whether the run predicts numbers (a CSV label column read as targets), not classes."""
        return self.dataset == "csv" and self.csv.regression


class SettingNames(dict):
    """`{field}` in a message → the command-line flag (`--batch-size`) or the Python name (`batch_size`)."""

    def __init__(self, flags: bool) -> None:
        super().__init__()
        self.flags = flags

    def __missing__(self, key: str) -> str:
        return "--" + key.replace("_", "-") if self.flags else key


@dataclass
class RunConfig:
    """Everything stored in `config.json`: the training config plus what the data fixed."""

    train: TrainConfig
    model: ModelSpec
    preprocessing: Preprocessing
    class_names: tuple[str, ...] = field(default_factory=tuple)
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    def not_an_image_classifier(self) -> Optional[str]:
        """Why export, serving and `predict` (which take images and answer with classes) cannot
        use this run — a regression, or a model of tabular features — or None when they can."""
        if self.train.regression:
            return "predicts numbers (a CSV regression)"
        if self.preprocessing.dtype != "uint8":
            return "takes tabular features (CSV columns), not images"
        return None

    @classmethod
    def from_json(cls, text: str, source: str = "config.json") -> "RunConfig":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{source}: not valid JSON ({e})") from None
        if isinstance(raw, dict) and raw.get("kind") == "lm":
            raise InputError(f"{source}: holds a language model (use visionflow lm evaluate / lm sample)")
        config = from_dict(cls, _migrate(raw, source), source)
        if config.format != FORMAT_VERSION:
            raise InputError(f"{source}: format {config.format} is not supported (expected {FORMAT_VERSION})")
        return config

    @classmethod
    def load(cls, path: Path) -> "RunConfig":
        if not path.exists():
            raise InputError(f"{path.parent}: not a visionflow model directory (no config.json)")
        return cls.from_json(read_text(path), str(path))


def _migrate(raw: Any, source: str) -> Any:
    """Bring a config.json of an earlier version to this one's fields (same format number).

    0.1.0 described two distortions outside `augment`: `augment_shift` N (a random translation
    by up to N pixels, zero-filled: `augment.pad` N) and retrain's `distortions` flag (now the
    `RETRAIN_DISTORTIONS` settings of `augment`).  The distortions are the same; their random
    draws come from other streams, so a resumed run's images differ from what 0.1.0 would have drawn.
    """
    train = raw.get("train") if isinstance(raw, dict) else None
    if not isinstance(train, dict) or not {"augment_shift", "distortions"} & set(train):
        return raw
    train = dict(train)
    augment = train.get("augment", {})
    shift, distortions = train.pop("augment_shift", 0), train.pop("distortions", False)
    if not isinstance(augment, dict) or isinstance(shift, bool) or not isinstance(shift, int):
        raise InputError(f"{source}: fields 'augment' and 'augment_shift' must be an object and an int")
    augment = dict(augment)
    if shift:
        if augment.get("pad"):
            raise InputError(f"{source}: augment_shift {shift} and augment.pad {augment['pad']} together "
                             "cannot be expressed by this version (one translation per image)")
        augment["pad"] = shift
    if distortions is True:
        retrain = dataclasses.asdict(RETRAIN_DISTORTIONS)
        augment.update({key: retrain[key] for key in ("zoom", "flip", "brightness_factor")})
    train["augment"] = augment
    return {**raw, "train": train}
