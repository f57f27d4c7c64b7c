"""`visionflow train` and `visionflow retrain`: flags → config → the engine."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..data.augment import FLIPS, PAD_MODES, STANDARDIZATIONS, TTA_LEVELS
from ..errors import InputError
from .common import S, backbone_help, csv_args, gather_csv_flags, loop_args


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train (or continue training) a model directory")
    train_args(p)
    p.set_defaults(run=cmd_train)
    p = sub.add_parser("retrain", help="retrain a pretrained network for the categories of an image folder")
    retrain_args(p)
    p.set_defaults(run=cmd_retrain)


def train_args(p: argparse.ArgumentParser) -> None:
    from ..data.catalog import DATASETS, dataset_names
    from ..models import model_names
    from ..engine.config import COMPILE_MODES, PRECISIONS, SCHEDULES

    d = _defaults()
    data = p.add_argument_group("data")
    data.add_argument("--dataset", default=S, choices=dataset_names(), metavar="NAME",
                      help="; ".join(f"{name}: {summary}" for name, (_, summary) in DATASETS.items())
                      + " [default digits]")
    data.add_argument("--data-dir", default=S,
                      help="read the dataset from DIR (cifar: TFRecord shards, binary or python batches, or their "
                           "archive; tfrecord: a directory, glob or file of shards; csv: a .csv/.csv.gz file, "
                           "directory, glob or URL) [default: found or downloaded]")
    data.add_argument("--validation-size", type=int, default=S,
                      help="examples held out of train [default: the dataset's, e.g. 5,000 for MNIST]")
    model = p.add_argument_group("model")
    model.add_argument("--model", default=S, help=f"registered model: {', '.join(model_names())} [default cnn]")
    model.add_argument("--dropout", type=float, default=S, help="dropout rate of the model's dropout layers "
                                                                "[default: the model's]")
    loop = p.add_argument_group("length and schedule")
    loop_args(loop, "passes over the training split", d)
    loop.add_argument("--schedule", choices=SCHEDULES, default=S, help=f"learning-rate schedule {d['schedule']}")
    loop.add_argument("--warmup", type=float, default=S, help=f"warm-up as a fraction of the run {d['warmup']}")
    loop.add_argument("--lr-start-factor", type=float, default=S,
                      help=f"--schedule linear: start at this fraction of --lr {d['lr_start_factor']}")
    loop.add_argument("--lr-end-factor", type=float, default=S,
                      help=f"--schedule linear: end at this fraction of --lr {d['lr_end_factor']}")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--momentum", type=float, default=S, help=f"for --optimizer momentum/nesterov, and muon's non-filter parameters {d['momentum']}")
    opt.add_argument("--weight-decay", type=float, default=S, help=f"L2 weight decay {d['weight_decay']}")
    opt.add_argument("--label-smoothing", type=float, default=S, help=f"{d['label_smoothing']}")
    opt.add_argument("--ema-decay", type=float, default=S,
                     help=f"evaluate a moving average of the weights, e.g. 0.9999 {d['ema_decay']}")
    opt.add_argument("--lookahead-every", type=int, default=S,
                     help=f"airbench lookahead: sync weights every N steps {d['lookahead_every']}")
    saving = p.add_argument_group("checkpoints and logging")
    saving.add_argument("--model-dir", default=None, help="where the run lives [default runs/MODEL-DATASET]")
    saving.add_argument("--checkpoint-every", type=int, default=S, help=f"save a checkpoint every N steps "
                                                                        f"{d['checkpoint_every']}")
    saving.add_argument("--keep-checkpoints", type=int, default=S, help=f"how many checkpoints to keep "
                                                                        f"{d['keep_checkpoints']}")
    saving.add_argument("--log-every", type=int, default=S, help=f"log a line every N steps {d['log_every']}")
    saving.add_argument("--log-device-placement", action="store_true", help="print where each parameter and layer lives")
    saving.add_argument("--json", action="store_true", help="print the final test evaluation as one JSON object")
    saving.add_argument("--print-config", action="store_true",
                        help="print the config this command would train with (recipe and flags resolved) and exit")
    device = p.add_argument_group("device and precision")
    device.add_argument("--device", default=S, help=f"auto, cpu, cuda, cuda:N or mps {d['device']}")
    device.add_argument("--precision", choices=PRECISIONS, default=S,
                        help=f"auto: bf16 on CUDA, else fp32; fp16 trains with dynamic loss scaling {d['precision']}")
    device.add_argument("--compile", action="store_true", default=S,
                        help="torch.compile the model (measured slower on short runs: see docs/benchmarks.md)")
    device.add_argument("--compile-mode", choices=COMPILE_MODES, default=S,
                        help="with --compile: reduce-overhead replays the step from CUDA graphs on a GPU [default default]")
    device.add_argument("--deterministic", action="store_true", default=S,
                        help="deterministic kernels: bit-exact reruns and resumes on CPU")
    device.add_argument("--seed", type=int, default=S, help=f"seed of initialisation, data order and distortions "
                                                           f"{d['seed']}")
    parallel = p.add_argument_group("data parallel (torch.distributed; see the README)")
    parallel.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                          help="start N data-parallel processes on this host through torchrun's elastic agent "
                               "(for several hosts run `torchrun ... -m visionflow train ...` yourself); "
                               "--batch-size is the global batch")
    parallel.add_argument("--sync-bn", action="store_true", default=S,
                          help="synchronise BatchNorm statistics across processes [default: each process's own]")
    look = p.add_argument_group("looking inside (TensorBoard, every --log-every steps)")
    look.add_argument("--summarize-activations", default=S, metavar="PATTERN[,PATTERN]",
                      help="histograms and zero fraction of these layers' outputs (globs of module paths, as "
                           "`visionflow inspect variables` names them: conv1, 'groups.*.conv2')")
    look.add_argument("--summarize-gradients", action="store_true", default=S,
                      help="each parameter's gradient L2 norm")
    augment_args(p, d)
    csv_args(p)


def _defaults() -> dict[str, str]:
    """"[default X, or the recipe's]" for every TrainConfig field, for help texts."""
    import dataclasses

    from ..engine.config import TrainConfig

    recipe_free = {"device", "precision", "seed", "deterministic", "compile"}
    out = {}
    config = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        shown = "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        out[f.name] = f"[default {shown}]" if f.name in recipe_free else f"[default {shown}, or the recipe's]"
    from ..data.augment import Augment

    augment = Augment()
    for f in dataclasses.fields(Augment):
        value = getattr(augment, f.name)
        shown = f"{value:g}" if isinstance(value, float) else " ".join(map(str, value)) if isinstance(value, tuple) \
            else str(value)
        out[f"augment.{f.name}"] = f"[default {shown}, or the recipe's]"
    return out


#: Flags (dests) that set `Augment` fields; `gather_augment_flags` makes them one partial "augment" override.
AUGMENT_FLAGS = ("crop", "pad", "pad_mode", "flip", "brightness", "contrast", "cutout", "standardize", "tta", "zoom",
                 "brightness_factor")


def augment_args(p: argparse.ArgumentParser, d: dict[str, str]) -> None:
    """The `--crop … --tta` flags of `visionflow train` (units: see data/augment.py)."""
    group = p.add_argument_group("input pipeline (augmentation and the evaluation view)")
    group.add_argument("--crop", type=int, default=S,
                       help=f"random N×N training crop; evaluation takes the central N×N {d['augment.crop']}")
    group.add_argument("--pad", type=int, default=S,
                       help=f"pad by N pixels before cropping (random translation) {d['augment.pad']}")
    group.add_argument("--augment-shift", type=int, default=S, metavar="N",
                       help="random translation by up to N pixels, zero-filled (the same as --pad N)")
    group.add_argument("--pad-mode", choices=PAD_MODES, default=S, help=f"{d['augment.pad_mode']}")
    group.add_argument("--flip", choices=FLIPS, default=S,
                       help=f"left-right flips: random, or alternating by epoch {d['augment.flip']}")
    group.add_argument("--zoom", type=float, default=S,
                       help=f"scale a random window keeping at least 1-F of each side back to full size "
                            f"{d['augment.zoom']}")
    group.add_argument("--brightness", type=float, default=S,
                       help=f"max brightness delta, fraction of the pixel range {d['augment.brightness']}")
    group.add_argument("--contrast", type=float, nargs=2, metavar=("LOWER", "UPPER"), default=S,
                       help=f"random contrast factor range (TF random_contrast) {d['augment.contrast']}")
    group.add_argument("--brightness-factor", type=float, default=S,
                       help=f"multiply pixels by a random factor in [1-F, 1+F], clipped {d['augment.brightness_factor']}")
    group.add_argument("--cutout", type=int, default=S,
                       help=f"zero a random N×N square of each training image {d['augment.cutout']}")
    group.add_argument("--standardize", choices=STANDARDIZATIONS, default=S,
                       help=f"channel: dataset mean/std; per_image: TF per_image_standardization "
                            f"{d['augment.standardize']}")
    group.add_argument("--tta", type=int, choices=TTA_LEVELS, default=S,
                       help=f"test-time augmentation: 0 none, 1 flip, 2 flip + 1-pixel translations {d['augment.tta']}")


def gather_augment_flags(flags: dict) -> dict:
    """Move the `AUGMENT_FLAGS` entries of parsed flags into one partial "augment" dict."""
    shift = flags.pop("augment_shift", None)
    partial = {k: flags.pop(k) for k in AUGMENT_FLAGS if k in flags}
    if shift is not None:
        if "pad" in partial and partial["pad"] != shift:
            raise InputError("--augment-shift is --pad under another name: give one of them")
        partial["pad"] = shift
    if "contrast" in partial:
        partial["contrast"] = tuple(partial["contrast"])
    if partial:
        flags["augment"] = partial
    return flags


def config_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The `TrainConfig` overrides the user gave to `visionflow train` (augment flags gathered)."""
    return gather_csv_flags(gather_augment_flags({k: v for k, v in vars(args).items()
                                                  if k not in ("command", "run", "model_dir", "log_device_placement",
                                                               "json", "print_config", "nproc_per_node")}))


def cmd_train(args: argparse.Namespace) -> int:
    from ..engine.modeldir import ModelDir
    from ..engine.recipes import resolve_config
    from ..engine.training import train

    if args.nproc_per_node is not None:
        return launch_torchrun(args.nproc_per_node, "train")
    flags = config_flags(args)
    model_dir = args.model_dir or f"runs/{flags.get('model', 'cnn')}-{flags.get('dataset', 'digits')}"
    config = resolve_config(ModelDir(model_dir, training=True), flags)
    if args.print_config:
        import dataclasses

        print(json.dumps({"model_dir": model_dir, "train": dataclasses.asdict(config)}, indent=2, sort_keys=True))
        return 0
    on_start = print_device_placement if args.log_device_placement else None
    outcome = train(config, model_dir, on_start=on_start, flags=True)
    if not reporting_process():
        return 0
    result, test = outcome.result, outcome.test
    if args.json:
        print(json.dumps({**(test.to_dict() if test else {}), "model_dir": model_dir,
                          "examples_per_sec": result.examples_per_sec, "train_seconds": result.seconds}))
        return 0
    if result.steps_run == 0:
        print(nothing_to_train(model_dir, result.global_step))
    else:
        print(f"trained {result.steps_run} steps in {result.seconds:.1f} s ({result.examples_per_sec:,.0f} examples/s)")
    if test is not None:
        print(f"test {test.headline()}  loss {test.loss:.4f}  global step {test.global_step}  "
              f"({test.count} examples) — model dir {model_dir}")
    return 0


def launch_torchrun(processes: int, command: str) -> int:
    """Run this same command in `processes` data-parallel processes under torchrun's elastic agent
    (standalone rendezvous on this host), without the --nproc-per-node flag; its exit status."""
    import os

    from ..core.distributed import launched

    if processes < 1:
        raise InputError(f"--nproc-per-node must be at least 1, not {processes}")
    if launched():
        raise InputError("--nproc-per-node: already running under torchrun; leave the flag out")
    argv = sys.argv[1:]
    rest, skip = [], False
    for arg in argv[argv.index(command) + 1:]:
        if skip:
            skip = False
        elif arg == "--nproc-per-node":
            skip = True
        elif not arg.startswith("--nproc-per-node="):
            rest.append(arg)
    from torch.distributed.run import main as torchrun

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    try:
        torchrun(["--standalone", "--nproc-per-node", str(processes), "-m", "visionflow", command, *rest])
    except Exception as e:  # torchrun's ChildFailedError names the failed rank, exit code and cause
        print(f"visionflow {command}: {e}", file=sys.stderr)
        return 1
    return 0


def reporting_process() -> bool:
    """Leave the torchrun process group (if any) once training is done; whether this process
    prints the command's report (rank 0 reports for all)."""
    from ..core.distributed import leave, world

    main_process = world().is_main
    leave()
    return main_process


def nothing_to_train(model_dir: str, step: int) -> str:
    return f"{model_dir}: already at global step {step}; nothing to train (raise --steps or --epochs to continue)"


def print_device_placement(run: Any, model: Any, device: Any) -> None:
    """Like TF's log_device_placement: every layer and parameter with its device (under torchrun,
    every process prints its own, each line prefixed with its rank)."""
    from ..core.distributed import world

    w = world()
    if w.active:
        import builtins

        def print(*args, **kwargs):  # noqa: A001 - this function's lines, labelled by rank
            builtins.print(f"[rank {w.rank}]", *args, **kwargs)
    else:
        from builtins import print
    print(f"device: {device}")
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        where = params[0].device if params else device
        print(f"layer {name or '(model)'} ({type(module).__name__}): {where}")
    for name, param in model.named_parameters():
        print(f"param {name} {tuple(param.shape)} {param.dtype}: {param.device}")
    sys.stdout.flush()


def retrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                   help="retrain in N data-parallel processes on this host through torchrun (--batch-size is global)")
    p.add_argument("--image-dir", default=None, help="one sub-folder of JPEG/PNG/WebP images per category")
    p.add_argument("--model-dir", required=True, help="where the retrained model goes (continued when it exists)")
    p.add_argument("--backbone", default=None, help=backbone_help())
    p.add_argument("--weights", default=None, metavar="PATH", help="the backbone's weights (.safetensors or state dict)")
    p.add_argument("--bottleneck-dir", default=None, help="bottleneck cache (default $VISIONFLOW_CACHE/bottlenecks)")
    p.add_argument("--distortions", action="store_true", default=S,
                   help="random zoom, flip and brightness per image and epoch (no bottleneck cache; slow)")
    p.add_argument("--fine-tune", action="store_true", default=S, help="train the whole network (slow)")
    p.add_argument("--validation-percentage", type=float, default=S, help="of each category (default 10)")
    p.add_argument("--testing-percentage", type=float, default=S, help="of each category (default 10)")
    loop_args(p, "passes over the training split [default 30; 5 with --fine-tune]",
              {"batch_size": "[default 64; 32 with --fine-tune]", "lr": "[default 1e-3; 1e-4 with --fine-tune]",
               "optimizer": "[default adam]"})
    p.add_argument("--dropout", type=float, default=S, help="dropout before the new layer (default 0.2)")
    p.add_argument("--label-smoothing", type=float, default=S, help="[default 0.1]")
    p.add_argument("--seed", type=int, default=S, help="seed of the new layer's initialisation and the data order "
                                                      "[default 0]")
    p.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:N or mps [default auto]")
    p.add_argument("--log-every", type=int, default=S, help="log a line every N steps")
    p.add_argument("--json", action="store_true", help="print the final test evaluation as one JSON object")


def cmd_retrain(args: argparse.Namespace) -> int:
    from ..transfer.retrain import retrain

    if args.nproc_per_node is not None:
        return launch_torchrun(args.nproc_per_node, "retrain")
    fixed = ("command", "run", "image_dir", "model_dir", "backbone", "weights", "bottleneck_dir", "json",
             "nproc_per_node")
    flags = {k: v for k, v in vars(args).items() if k not in fixed}
    outcome = retrain(args.image_dir, args.model_dir, args.backbone, args.weights, args.bottleneck_dir, flags)
    if not reporting_process():
        return 0
    result, test, log = outcome.result, outcome.test, outcome.log
    if args.json:
        print(json.dumps({**(test.to_dict() if test else {}), "model_dir": args.model_dir, "retrain": log}))
        return 0
    if result.steps_run == 0:
        print(nothing_to_train(args.model_dir, result.global_step))
    else:
        print(f"retrained {log['backbone']} ({log['mode']}) for {len(outcome.run.class_names)} categories: "
              f"{result.steps_run} steps in {result.seconds:.1f} s")
    if outcome.bottlenecks is not None:
        b = outcome.bottlenecks
        print(f"bottlenecks: {b.cached} from the cache, {b.computed} computed in {b.seconds:.1f} s")
    if log["skipped"] or log["ignored"]:
        print(f"skipped {len(log['skipped'])} unreadable image(s), ignored {len(log['ignored'])} other file(s): "
              f"see {args.model_dir}/retrain_log.json")
    if outcome.validation is not None:
        print(f"validation accuracy {outcome.validation.accuracy:.2%}  ({outcome.validation.count} images)")
    if test is not None:
        print(f"test accuracy {test.accuracy:.2%}  loss {test.loss:.4f}  ({test.count} images) — model dir {args.model_dir}")
    return 0
