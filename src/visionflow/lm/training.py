"""`visionflow lm train`: an LSTM language model on the engine's one Trainer.

The corpus becomes token streams (data/token_batches.py); the Trainer runs the steps, logs,
TensorBoard, checkpoints and Ctrl-C as for images.  What is a language model's own is here: the
carried state reset at each epoch's first batch (`LMEpochs`), each epoch's streamed validation
(its loss and perplexity printed and in TensorBoard) driving the plateau schedule, the vocabulary
written with the first checkpoint, and the final valid/test evaluation into `eval_*.json`.

Resume: the model's carried state is in its state_dict (models/sequence.py), the plateau's best
loss in the scheduler state and the learning rate in the optimizer's, all in every checkpoint, so
a run killed at any step and started again ends with the uninterrupted run's weights.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

import torch

from ..core.cache import default_cache_dir
from ..core.devices import cpu_has_fast_bf16, resolve_device
from ..core.distributed import launched
from ..core.fsio import atomic_write_json, atomic_write_text, read_text
from ..data.text import SOURCES, TextCorpus, Vocabulary, fetch_corpus, read_corpus
from ..data.token_batches import TokenBatches
from ..engine.callbacks import Callback
from ..engine.config import TrainConfig
from ..engine.custom import Customizations
from ..engine.loop import Trainer
from ..engine.modeldir import ModelDir
from ..engine.plateau import PlateauDecay
from ..engine.training import max_steps_for, set_determinism
from ..errors import InputError
from ..models import ModelSpec, build_model
from .config import RECIPES, VOCAB_FILE, LMRunConfig, LMSettings
from .evaluation import LMResult, evaluate_lm

#: What may change when a run continues: how far and how it reports, not what it learns.
CONTINUABLE = {"steps", "epochs", "log_every", "checkpoint_every", "keep_checkpoints", "device", "corpus"}
TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
LM_FIELDS = {f.name for f in dataclasses.fields(LMSettings)}
MODEL_FIELDS = {"embed", "hidden", "layers", "dropout", "tie"}


@dataclass
class LMOutcome:
    run: LMRunConfig
    vocab: Vocabulary
    global_step: int
    steps_run: int
    tokens_per_sec: float
    valid: LMResult | None
    test: LMResult | None
    model: torch.nn.Module


def corpus_path(spec: str, cache_dir: Path | None = None, mirrors: Sequence[str] | None = None) -> Path:
    """A path as given, or a named corpus (ptb, tinyshakespeare) fetched into the cache."""
    path = Path(spec)
    if path.exists() or spec not in SOURCES:
        return path
    return fetch_corpus(spec, (cache_dir or default_cache_dir()) / "corpora" / spec, mirrors)


def load_vocab(directory: ModelDir) -> Vocabulary:
    path = directory.path / VOCAB_FILE
    if not path.exists():
        raise InputError(f"{directory.location}: no {VOCAB_FILE} (not a language model directory)")
    return Vocabulary.from_json(read_text(path), str(path))


def resolve_run(directory: ModelDir, corpus: str | None, overrides: dict[str, Any]) -> tuple[LMRunConfig | None, dict]:
    """The stored run (with the continuable overrides applied) or None, and the overrides left for a new run."""
    if not directory.exists():
        return None, overrides
    run = LMRunConfig.load(directory.config_path)
    for key, value in overrides.items():
        current = getattr(run.train, key, getattr(run.lm, key, run.model.options.get(key)))
        if key not in CONTINUABLE and value != current:
            raise InputError(f"{directory.location}: was trained with --{key.replace('_', '-')} {current}, "
                             f"got {value} (use another --model-dir to change it)")
    train_changes = {k: v for k, v in overrides.items() if k in TRAIN_FIELDS and k in CONTINUABLE}
    if {"steps", "epochs"} & set(overrides):
        train_changes.setdefault("steps", None if "epochs" in overrides else run.train.steps)
    run.train = dataclasses.replace(run.train, **train_changes)
    if corpus:
        run.lm = dataclasses.replace(run.lm, corpus=corpus)
    return run, {}


def new_run(corpus_spec: str, corpus: TextCorpus, level: str, overrides: dict[str, Any]) -> LMRunConfig:
    recipe = RECIPES[level]
    train_fields = {**recipe["train"], **{k: v for k, v in overrides.items() if k in TRAIN_FIELDS}}
    if "steps" in overrides and "epochs" not in overrides:
        train_fields.pop("epochs", None)
    train = TrainConfig(model="lstm", dataset=corpus.name, **train_fields)
    lm = LMSettings(**{**recipe["lm"], **{k: v for k, v in overrides.items() if k in LM_FIELDS}, "level": level,
                       "corpus": corpus_spec})
    options = {**recipe["model"], **{k: v for k, v in overrides.items() if k in MODEL_FIELDS}}
    return LMRunConfig(train, ModelSpec("lstm", len(corpus.vocab), (0, 0, 0), options), lm)


@dataclass
class ValidationStreams:
    """The validation split's ids and how they are read (streams × bptt)."""

    ids: Any
    streams: int
    bptt: int


class LMEpochs(Callback):
    """Reset the carried state at each epoch's first batch; validate at each epoch's end (print,
    TensorBoard, the plateau schedule); write the vocabulary before the first checkpoint."""

    def __init__(self, valid: ValidationStreams, vocab: Vocabulary, directory: ModelDir, stream: TextIO) -> None:
        self.valid, self.vocab, self.directory, self.stream = valid, vocab, directory, stream
        self.writer = None
        self.vocab_written = False  # checked once per fit, not every step

    def on_fit_start(self, trainer: Trainer) -> None:
        """The network's graph in TensorBoard (a new run's): embedding → LSTM → decoder, traced."""
        if trainer.global_step or not trainer.world.is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        model = trainer.model

        class LanguageModel(torch.nn.Module):  # the name TensorBoard shows
            def __init__(self) -> None:
                super().__init__()
                self.lm = model

            def forward(self, ids: torch.Tensor) -> torch.Tensor:
                return self.lm.step(ids)[0]

        model.eval()
        try:
            with SummaryWriter(str(self.directory.path / "train")) as writer, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's deprecation and constant-folding notes
                writer.add_graph(LanguageModel(), trainer.train_batches.inputs(1)[:1])
        finally:
            model.train()

    def on_epoch_start(self, epoch: int) -> None:
        trainer = self.trainer
        if trainer.global_step % trainer.train_batches.steps_per_epoch == 0:
            trainer.model.reset_state()

    def on_step_start(self, step: int) -> None:
        if self.vocab_written:
            return
        path = self.directory.path / VOCAB_FILE
        if self.trainer.world.is_main and not path.exists():  # with the run's first step: before any checkpoint
            atomic_write_text(path, self.vocab.to_json())
        self.vocab_written = True

    def on_epoch_end(self, epoch: int, step: int, result: Any) -> None:
        trainer = self.trainer
        if self.valid.ids is None or len(self.valid.ids) < 2 * self.valid.streams:
            return
        res = evaluate_lm(trainer.model, self.valid.ids, self.valid.streams, self.valid.bptt, trainer.device, step,
                          "valid", self.vocab.level)
        decayed = isinstance(trainer.scheduler, PlateauDecay) and trainer.scheduler.observe(res.loss)
        lr = trainer.optimizer.param_groups[0]["lr"]
        print(f"epoch {epoch + 1} (step {step}): validation loss {res.loss:.4f}  perplexity {res.perplexity:.2f}"
              + (f"  — no better: learning rate now {lr:.3g}" if decayed else ""), file=self.stream, flush=True)
        self._scalars(step, {"loss": res.loss, "perplexity": res.perplexity})
        if decayed and trainer.last_saved == step:
            trainer.save_checkpoint()  # the step's checkpoint holds the schedule as it now is

    def _scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.directory.path / "eval_valid"))
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def teardown(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def train_lm(corpus: str | None, model_dir: str | Path, level: str | None = None, overrides: dict[str, Any] | None = None,
             progress_stream: TextIO | None = None, callbacks: Sequence[Any] = (), mirrors: Sequence[str] | None = None
             ) -> LMOutcome:
    """Train (or continue) the language model in `model_dir` on `corpus` (a path or a named corpus)."""
    if launched():
        raise InputError("visionflow lm train runs in one process (not under torchrun)")
    overrides = dict(overrides or {})
    stream = progress_stream or sys.stderr
    directory = ModelDir(model_dir, training=True)
    directory.check_writable()
    run, overrides = resolve_run(directory, corpus, overrides)
    if run is None:
        if not corpus:
            raise InputError("--corpus is required for a new language model")
        level = level or (SOURCES[corpus].level if corpus in SOURCES and not Path(corpus).exists() else "word")
        lm = LMSettings(**{**RECIPES[level]["lm"], **{k: v for k, v in overrides.items() if k in LM_FIELDS}})
        text = read_corpus(corpus_path(corpus, mirrors=mirrors), level, (lm.valid_fraction, lm.test_fraction))
        run = new_run(corpus, text, level, overrides)
        vocab = text.vocab
    else:
        if level is not None and level != run.lm.level:
            raise InputError(f"{directory.location}: a {run.lm.level}-level model, not {level}-level")
        vocab = load_vocab(directory)
        if len(vocab) != run.model.num_classes:
            raise InputError(f"{directory.location}: {VOCAB_FILE} has {len(vocab):,} tokens, the model {run.model.num_classes:,}")
        text = read_corpus(corpus_path(run.lm.corpus, mirrors=mirrors), run.lm.level,
                           (run.lm.valid_fraction, run.lm.test_fraction), vocab)
    run.train.validate()
    run.lm.validate()
    device = resolve_device(run.train.device)
    if run.train.precision == "auto":  # decided once, stored with the run
        fast = device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16())
        run.train = dataclasses.replace(run.train, precision="bf16" if fast else "fp32")
    config = run.train
    set_determinism(config)
    torch.manual_seed(config.seed)
    net = build_model(run.model)
    batches = TokenBatches(text.train, config.batch_size, run.lm.bptt, device, f"{run.lm.corpus} (train)")
    custom = Customizations(lr_scheduler=(lambda opt: PlateauDecay(opt, config.plateau_factor))
                            if config.schedule == "plateau" else None)
    epochs = LMEpochs(ValidationStreams(text.valid, run.lm.eval_streams, run.lm.bptt), vocab, directory, stream)
    trainer = Trainer(net, run, directory, device, batches, None, [epochs, *callbacks], stream, custom)
    trainer.derived_metrics = lambda m: {"perplexity": math.exp(min(m["loss"], 700.0))}
    trainer.example_unit = "tokens"
    max_steps = max_steps_for(config, batches.steps_per_epoch)
    if max_steps > trainer.global_step:
        print(_header(run, trainer, text, max_steps, batches.steps_per_epoch), file=stream, flush=True)
    result = trainer.fit(max_steps)
    outcome = LMOutcome(run, vocab, trainer.global_step, result.steps_run, result.examples_per_sec, None, None, trainer.model)
    if result.steps_run:
        for split in ("valid", "test"):
            ids = text.split(split)
            if len(ids) >= 2 * run.lm.eval_streams:
                res = evaluate_lm(trainer.model, ids, run.lm.eval_streams, run.lm.bptt, device, trainer.global_step,
                                  split, run.lm.level)
                setattr(outcome, split, res)
                atomic_write_json(directory.path / f"eval_{split}.json", res.to_dict())
        directory.sync()
    return outcome


def _header(run: LMRunConfig, trainer: Trainer, text: TextCorpus, max_steps: int, per_epoch: int) -> str:
    cfg, lm, opts = run.train, run.lm, run.model.options
    start = "new run" if not trainer.global_step else f"resuming from step {trainer.global_step}"
    params = sum(p.numel() for p in trainer.model.parameters())
    schedule = f"plateau /{1 / cfg.plateau_factor:g}" if cfg.schedule == "plateau" else cfg.schedule
    return "\n".join([
        f"visionflow: lstm language model ({lm.level} level) on {text.name} → {trainer.model_dir.location} ({start})",
        f"  data    {len(text.train):,} train / {len(text.valid):,} valid / {len(text.test):,} test tokens, "
        f"vocabulary {len(text.vocab):,}",
        f"  model   {opts.get('layers')}×{opts.get('hidden')} LSTM, embedding {opts.get('embed')}, dropout "
        f"{opts.get('dropout')}{', tied' if opts.get('tie') else ''}: {params:,} parameters on {trainer.device}",
        f"  recipe  {cfg.optimizer} lr {cfg.lr:g}, {schedule}, clip {cfg.clip_norm}, {cfg.batch_size} streams × bptt "
        f"{lm.bptt}, to step {max_steps:,} ({max_steps / per_epoch:.3g} epochs of {per_epoch:,} steps)"])
