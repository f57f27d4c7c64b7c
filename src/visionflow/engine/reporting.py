"""What a run shows on the terminal: a header before the first step, then progress — a live bar
on a terminal, plain lines when piped."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from ..core.progress import Progress
from .callbacks import Callback

if TYPE_CHECKING:
    from .loop import Trainer
    from .metrics import EvalResult


class ProgressReporter(Callback):
    """One line per log interval and per validation, under a step bar when the stream is a TTY."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.progress: Progress | None = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.progress = Progress(trainer.max_steps, trainer.global_step, stream=self.stream)

    def on_step_end(self, step: int) -> None:
        assert self.progress is not None
        self.progress.advance(1)

    def on_log(self, step: int, metrics: dict[str, float]) -> None:
        assert self.progress is not None and self.trainer is not None
        loss = metrics["loss"]
        quality = (f"perplexity {metrics['perplexity']:.2f}" if "perplexity" in metrics
                   else f"RMSE {loss ** 0.5:.4g}" if self.trainer.run.train.loss == "mse"
                   else f"accuracy {metrics['accuracy']:.2%}" if "accuracy" in metrics else "")
        self.progress.describe(f"loss {loss:.4f}  {quality}")
        processes = self.trainer.world.size
        per_rank = f" per process × {processes}" if processes > 1 else ""
        self.progress.log(f"step {step}/{self.trainer.max_steps}  loss {loss:.4f}  {quality}  "
                          f"lr {metrics['learning_rate']:.2e}  {metrics['examples_per_sec']:,.0f} "
                          f"{self.trainer.example_unit}/s{per_rank}")

    def on_epoch_end(self, epoch: int, step: int, result: "EvalResult | None") -> None:
        if result is not None and self.progress is not None:
            self.progress.log(f"epoch {epoch + 1} (step {step}): validation {result.headline()}  "
                              f"loss {result.loss:.4f}")

    def teardown(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None


def run_header(trainer: "Trainer", data_name: str, sizes: tuple[int, int, int], max_steps: int,
               resumed_from: int | None) -> str:
    """The lines printed before a run's first step: where it goes, the data, the model, the
    resolved recipe, and whether it starts or resumes (and from which checkpoint)."""
    import dataclasses

    from ..core.devices import autocast_dtype
    from ..data.augment import Augment

    run, cfg = trainer.run, trainer.config
    per_epoch = trainer.train_batches.steps_per_epoch
    pre = run.preprocessing
    n_train, n_val, n_test = sizes
    params = sum(p.numel() for p in trainer.model.parameters())
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    dtype = autocast_dtype(trainer.device, cfg.precision)
    precision = {None: "fp32"}.get(dtype, str(dtype).replace("torch.", "").replace("bfloat16", "bf16 autocast")
                                   .replace("float16", "fp16 autocast + loss scaling"))
    if resumed_from is None:
        start = "new run"
    else:
        start = f"resuming from step {resumed_from}: checkpoints/ckpt-{resumed_from:08d}"
    schedule = cfg.schedule if cfg.schedule.startswith("custom:") else (
        f"{cfg.schedule}" + (f" (warm-up {cfg.warmup:.0%})" if cfg.warmup and cfg.schedule != "constant" else ""))
    if cfg.schedule_start:
        schedule += f", cycle from step {cfg.schedule_start}"
    extras = [f"weight decay {cfg.weight_decay:g}" if cfg.weight_decay else "",
              f"label smoothing {cfg.label_smoothing:g}" if cfg.label_smoothing else "",
              f"EMA {cfg.ema_decay:g}" if cfg.ema_decay else "",
              f"lookahead every {cfg.lookahead_every}" if cfg.lookahead_every else "",
              f"loss {cfg.loss[7:]}" if cfg.loss.startswith("custom:") else ""]
    default = Augment()
    augment = ", ".join(f"{f.name} {getattr(cfg.augment, f.name)}" for f in dataclasses.fields(Augment)
                        if getattr(cfg.augment, f.name) != getattr(default, f.name)) or "none"
    epochs = max_steps / per_epoch if per_epoch else 0
    return "\n".join([
        f"visionflow: {run.model.name} on {data_name} → {trainer.model_dir.location} ({start})",
        f"  data    {n_train:,} train / {n_val:,} validation / {n_test:,} test, "
        f"{pre.height}×{pre.width}×{pre.channels}, {len(run.class_names)} classes",
        f"  model   {params:,} parameters ({trainable:,} trainable) on {trainer.device}, {precision}"
        + (f", data-parallel over {trainer.world.size} processes ({'sync' if cfg.sync_bn else 'per-process'} "
           f"BatchNorm)" if trainer.world.active else ""),
        f"  recipe  {cfg.optimizer} lr {cfg.lr:g}, {schedule}, batch {cfg.batch_size}"
        + (f" ({cfg.batch_size // trainer.world.size} per process)" if trainer.world.active else "") + ", "
        f"to step {max_steps:,} ({epochs:.3g} epochs of {per_epoch:,} steps)"
        + "".join(f", {e}" for e in extras if e),
        f"  augment {augment}",
    ])
