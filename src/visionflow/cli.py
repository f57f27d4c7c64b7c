"""The `visionflow` command: a thin face over the training engine and the model directory."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from .errors import VisionflowError

S = argparse.SUPPRESS


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _loop_args(p: argparse.ArgumentParser, epochs_help: str) -> None:
    """How long and how fast to train: shared by `train` and `retrain`."""
    from .config import OPTIMIZERS

    p.add_argument("--steps", type=int, default=S, help="train until global step N (continues a model dir)")
    p.add_argument("--epochs", type=float, default=S, help=epochs_help)
    p.add_argument("--batch-size", type=int, default=S)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=S)
    p.add_argument("--lr", type=float, default=S, help="peak learning rate")


def _train_args(p: argparse.ArgumentParser) -> None:
    from .datasets import DATASET_NAMES
    from .config import SCHEDULES

    p.add_argument("--model", default=S, help="registered model: mlp, cnn, cifar-cnn, resnet20/32/44/56/110 (-v2: pre-activation), fastnet (default cnn)")
    p.add_argument("--dataset", default=S, choices=DATASET_NAMES,
                   help="digits (embedded, offline; the default), mnist, fashion-mnist, cifar10, cifar100, "
                        "tfrecord (image TFRecord shards) or image-folder (one sub-folder per class, one image size)")
    p.add_argument("--data-dir", default=S,
                   help="read the dataset from DIR (cifar: TFRecord shards, binary or python batches, or their "
                        "archive; tfrecord: a directory, glob or file of shards)")
    p.add_argument("--model-dir", default=None, help="where the run lives (default runs/MODEL-DATASET)")
    _loop_args(p, "passes over the training split")
    p.add_argument("--momentum", type=float, default=S, help="for --optimizer momentum")
    p.add_argument("--weight-decay", type=float, default=S)
    p.add_argument("--schedule", choices=SCHEDULES, default=S, help="learning-rate schedule (default onecycle)")
    p.add_argument("--warmup", type=float, default=S, help="warm-up as a fraction of the run")
    p.add_argument("--label-smoothing", type=float, default=S)
    p.add_argument("--augment-shift", type=int, default=S, help="random translation by up to N pixels")
    p.add_argument("--lr-start-factor", type=float, default=S, help="--schedule linear: start at this fraction of --lr")
    p.add_argument("--lr-end-factor", type=float, default=S, help="--schedule linear: end at this fraction of --lr")
    p.add_argument("--ema-decay", type=float, default=S, help="evaluate a moving average of the weights (e.g. 0.9999)")
    p.add_argument("--lookahead-every", type=int, default=S, help="airbench lookahead: sync weights every N steps")
    p.add_argument("--dropout", type=float, default=S)
    p.add_argument("--validation-size", type=int, default=S, help="examples held out of train")
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--deterministic", action="store_true", default=S,
                   help="deterministic kernels: bit-exact reruns and resumes on CPU")
    p.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=S)
    p.add_argument("--compile", action="store_true", default=S, help="torch.compile the model (measured slower on short runs: see docs/benchmarks.md)")
    p.add_argument("--log-every", type=int, default=S, help="log a line every N steps")
    p.add_argument("--checkpoint-every", type=int, default=S, help="save a checkpoint every N steps")
    p.add_argument("--keep-checkpoints", type=int, default=S, help="how many checkpoints to keep")
    p.add_argument("--log-device-placement", action="store_true", help="print where each parameter and layer lives")
    p.add_argument("--json", action="store_true", help="print the final test evaluation as one JSON object")
    from .augment import add_augment_arguments

    add_augment_arguments(p, S)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="visionflow", description="Train, evaluate and use image classifiers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _train_args(sub.add_parser("train", help="train (or continue training) a model directory"))

    ev = sub.add_parser("evaluate", help="evaluate a model directory's checkpoint")
    ev.add_argument("--model-dir", required=True)
    ev.add_argument("--split", default="test", choices=("train", "validation", "test"))
    ev.add_argument("--step", type=int, default=None, help="checkpoint to evaluate (default: latest)")
    ev.add_argument("--data-dir", default=None)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--json", action="store_true", help="print results as JSON (one object per evaluation)")
    ev.add_argument("--watch", action="store_true", help="evaluate each new checkpoint until interrupted")
    ev.add_argument("--poll", type=float, default=2.0, help="seconds between checks with --watch")
    ev.add_argument("--timeout", type=float, default=None, help="with --watch: stop after N s with no new checkpoint (it stops anyway after the final one)")

    pr = sub.add_parser("predict", help="classify image files or .npy batches")
    pr.add_argument("--model-dir", default=None, help="the model directory (or use --server and --model-name)")
    pr.add_argument("--server", default=None, metavar="URL", help="ask a running `visionflow serve` instead")
    pr.add_argument("--model-name", default=None, help="with --server: the served model's name")
    pr.add_argument("--device", default="auto")
    pr.add_argument("--json", action="store_true", help="one JSON line per input image")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="PNG/JPEG image or .npy batch")

    bd = sub.add_parser("board", help="start TensorBoard on a model directory")
    bd.add_argument("--model-dir", required=True)
    bd.add_argument("--port", type=int, default=6006)
    bd.add_argument("--host", default="127.0.0.1")

    _export_args(sub.add_parser("export", help="export a model directory as a verified, servable version"))
    _serve_args(sub.add_parser("serve", help="serve exported versions (TF Serving REST and KServe V2 APIs)"))
    _retrain_args(sub.add_parser("retrain", help="retrain a pretrained network for the categories of an image folder"))
    _label_image_args(sub.add_parser("label-image", help="top labels of images by a model directory (label_image.py)"))
    _classify_image_args(sub.add_parser("classify-image", help="ImageNet top labels of images by a pretrained network"))
    _convert_args(sub.add_parser("convert", help="write a dataset as TFRecord shards of image examples"))
    return parser


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", required=True, help="the model directory whose latest checkpoint to export")
    p.add_argument("--export-base", required=True, help="directory of versions; writes EXPORT_BASE/<version>/")
    p.add_argument("--version", type=int, default=None, help="version number (default: the next one)")


def _serve_args(p: argparse.ArgumentParser) -> None:
    from .serving import DEFAULT_MAX_BODY_BYTES

    p.add_argument("--model-base-path", required=True, help="the export base (numbered version directories)")
    p.add_argument("--model-name", required=True, help="the name clients use in /v1/models/NAME and /v2/models/NAME")
    p.add_argument("--port", type=int, default=8501, help="TCP port (0: any free port, printed at start)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    p.add_argument("--version-policy", choices=("latest", "all", "specific"), default="latest")
    p.add_argument("--versions", type=int, nargs="+", default=(), metavar="N", help="with --version-policy specific")
    p.add_argument("--version-labels", nargs="+", default=(), metavar="LABEL=N",
                   help="version labels such as stable=1 (also read from BASE/labels.json)")
    p.add_argument("--max-batch-size", type=int, default=32, help="images per merged runtime call")
    p.add_argument("--batch-timeout-micros", type=int, default=1000,
                   help="how long a part-filled batch may wait for requests still arriving")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, help="larger requests get 413")
    p.add_argument("--runtime", choices=("auto", "onnxruntime", "torch"), default="auto",
                   help="auto: PyTorch on CUDA when available, else onnxruntime on CPU")
    p.add_argument("--intra-op-threads", type=int, default=0, help="onnxruntime threads per call (0: its default)")
    p.add_argument("--num-batch-threads", type=int, default=0,
                   help="batches run at once, each on its own thread; beyond the first, only full batches (0: one)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "board": cmd_board,
                "export": cmd_export, "serve": cmd_serve,
                "retrain": cmd_retrain, "label-image": cmd_label_image, "classify-image": cmd_classify_image,
                "convert": cmd_convert}[
            args.command](args)
    except VisionflowError as e:
        print(f"visionflow: error: {e}" if e.exit_code == 2 else f"visionflow: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("visionflow: interrupted", file=sys.stderr)
        return 130


def cmd_train(args: argparse.Namespace) -> int:
    from .modeldir import ModelDir
    from .training import resolve_config, train

    from .augment import gather_augment_flags

    flags = gather_augment_flags({k: v for k, v in vars(args).items()
                                  if k not in ("command", "model_dir", "log_device_placement", "json")})
    model_dir = args.model_dir or f"runs/{flags.get('model', 'cnn')}-{flags.get('dataset', 'digits')}"
    config = resolve_config(ModelDir(model_dir), flags)
    on_start = print_device_placement if args.log_device_placement else None
    outcome = train(config, model_dir, on_start=on_start)
    result, test = outcome.result, outcome.test
    if args.json:
        print(json.dumps({**(test.to_dict() if test else {}), "model_dir": model_dir,
                          "examples_per_sec": result.examples_per_sec, "train_seconds": result.seconds}))
        return 0
    if result.steps_run == 0:
        print(f"{model_dir}: already at global step {result.global_step}; nothing to train "
              "(raise --steps or --epochs to continue)")
    else:
        print(f"trained {result.steps_run} steps in {result.seconds:.1f} s ({result.examples_per_sec:,.0f} examples/s)")
    if test is not None:
        print(f"test accuracy {test.accuracy:.2%}  loss {test.loss:.4f}  global step {test.global_step}  "
              f"({test.count} examples) — model dir {model_dir}")
    return 0


def print_device_placement(run: Any, model: Any, device: Any) -> None:
    """Like TF's log_device_placement: every layer and parameter with its device."""
    print(f"device: {device}")
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        where = params[0].device if params else device
        print(f"layer {name or '(model)'} ({type(module).__name__}): {where}")
    for name, param in model.named_parameters():
        print(f"param {name} {tuple(param.shape)} {param.dtype}: {param.device}")
    sys.stdout.flush()


def _print_eval(result: Any, as_json: bool, model_dir: str) -> None:
    if as_json:
        print(json.dumps(result.to_dict()), flush=True)
        return
    print(f"{result.split}: accuracy {result.accuracy:.2%}  loss {result.loss:.4f}  global step {result.global_step}  "
          f"({result.count} examples)")
    width = max(len(n) for n in result.class_names)
    print(f"  {'class':<{width}}  precision  recall")
    for name, p, r in zip(result.class_names, result.precision, result.recall):
        print(f"  {name:<{width}}  {p:9.4f}  {r:6.4f}")
    print(f"  confusion matrix: {model_dir}/confusion_{result.split}.png", flush=True)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_model_dir, watch

    if args.watch:
        watch(args.model_dir, lambda r: _print_eval(r, args.json, args.model_dir), args.split, args.device,
              args.poll, args.timeout, args.data_dir)
        return 0
    result = evaluate_model_dir(args.model_dir, args.split, args.device, args.step, args.data_dir)
    _print_eval(result, args.json, args.model_dir)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from .engine import predict_probabilities, resolve_device
    from .evaluation import load_model
    from .modeldir import ModelDir
    from .predict import prediction_lines, read_inputs, to_predictions

    if args.server is not None or args.model_dir is None:
        return _predict_remote(args)
    model_dir = ModelDir(args.model_dir)
    run = model_dir.load_config()
    batch, sources = read_inputs(args.inputs, run.preprocessing)  # bad inputs fail before the model loads
    run, model, _ = load_model(model_dir, resolve_device(args.device))
    x = run.preprocessing.normalize(torch.from_numpy(batch))
    probabilities = predict_probabilities(model, x, run.train.precision, tta=run.preprocessing.tta)
    predictions = to_predictions(probabilities, sources, run.class_names)
    for line in prediction_lines(predictions, sources, args.json):
        print(line)
    return 0


def _predict_remote(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .predict import prediction_lines

    if args.server is None or args.model_name is None or args.model_dir is not None:
        raise InputError("predict needs --model-dir DIR, or --server URL with --model-name NAME (not both)")
    from .serving.client import predict_remote

    predictions, sources = predict_remote(args.server, args.model_name, args.inputs)
    print("\n".join(prediction_lines(predictions, sources, args.json)))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _require_extra("serve", "onnx", "onnxruntime", "onnxscript")
    from .export import export_model

    result = export_model(args.model_dir, args.export_base, args.version)
    check = result.verification
    print(f"exported {result.model} at global step {result.global_step} as version {result.version}: {result.path}")
    print(f"  verified: onnxruntime matches PyTorch on {check.examples} examples ({check.source}), "
          f"max |dp| {check.max_abs_diff:.1e} <= {check.tolerance:g}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    _require_extra("serve", "starlette", "uvicorn", "onnxruntime", "prometheus_client", "orjson")
    from .serving.server import options_from_args, serve

    return serve(options_from_args(args))


def _require_extra(extra: str, *modules: str) -> None:
    """A one-line error naming the pip command when an optional dependency is missing."""
    import importlib.util

    from .errors import InputError

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"{', '.join(missing)} not installed: pip install 'visionflow[{extra}]'")


def cmd_board(args: argparse.Namespace) -> int:
    from .modeldir import ModelDir

    directory = ModelDir(args.model_dir).path
    if not directory.is_dir():
        from .errors import InputError

        raise InputError(f"{directory}: model directory not found")
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", str(directory), "--port", str(args.port), "--host", args.host])
    url = board.launch()
    print(f"TensorBoard {url} (Ctrl-C to stop)", flush=True)
    import time

    while True:
        time.sleep(3600)


def _backbone_help() -> str:
    from .backbones import DEFAULT_BACKBONE, backbone_names

    return f"pretrained network: {', '.join(backbone_names())} or a timm name (default {DEFAULT_BACKBONE})"


def _retrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image-dir", default=None, help="one sub-folder of JPEG/PNG/WebP images per category")
    p.add_argument("--model-dir", required=True, help="where the retrained model goes (continued when it exists)")
    p.add_argument("--backbone", default=None, help=_backbone_help())
    p.add_argument("--weights", default=None, metavar="PATH", help="the backbone's weights (.safetensors or state dict)")
    p.add_argument("--bottleneck-dir", default=None, help="bottleneck cache (default $VISIONFLOW_CACHE/bottlenecks)")
    p.add_argument("--distortions", action="store_true", default=S,
                   help="random crop, flip and brightness per image and epoch (no bottleneck cache; slow)")
    p.add_argument("--fine-tune", action="store_true", default=S, help="train the whole network (slow)")
    p.add_argument("--validation-percentage", type=float, default=S, help="of each category (default 10)")
    p.add_argument("--testing-percentage", type=float, default=S, help="of each category (default 10)")
    _loop_args(p, "passes over the training split (default 30)")
    p.add_argument("--dropout", type=float, default=S, help="dropout before the new layer (default 0.2)")
    p.add_argument("--label-smoothing", type=float, default=S)
    p.add_argument("--seed", type=int, default=S)
    p.add_argument("--device", default=S, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--log-every", type=int, default=S, help="log a line every N steps")
    p.add_argument("--json", action="store_true", help="print the final test evaluation as one JSON object")


def cmd_retrain(args: argparse.Namespace) -> int:
    from .retrain import retrain

    fixed = ("command", "image_dir", "model_dir", "backbone", "weights", "bottleneck_dir", "json")
    flags = {k: v for k, v in vars(args).items() if k not in fixed}
    outcome = retrain(args.image_dir, args.model_dir, args.backbone, args.weights, args.bottleneck_dir, flags)
    result, test, log = outcome.result, outcome.test, outcome.log
    if args.json:
        print(json.dumps({**(test.to_dict() if test else {}), "model_dir": args.model_dir, "retrain": log}))
        return 0
    if result.steps_run == 0:
        print(f"{args.model_dir}: already at global step {result.global_step}; nothing to train "
              "(raise --steps or --epochs to continue)")
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


def _label_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-dir", default=None, help="a model directory (e.g. from `visionflow retrain`)")
    p.add_argument("--export", default=None, metavar="DIR", help="an exported version directory instead (EXPORT_BASE/N)")
    _top_k_args(p, "labels")


def _top_k_args(p: argparse.ArgumentParser, what: str) -> None:
    """The flags label-image and classify-image share: how many `what` per image, device, output, images."""
    p.add_argument("--top-k", type=int, default=5, help=f"{what} per image")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="one JSON line per image")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file or .npy batch")


def cmd_label_image(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .labeling import label_lines, label_with_export, label_with_model_dir

    if (args.model_dir is None) == (args.export is None):
        raise InputError("label-image needs --model-dir DIR or --export DIR (one of them)")
    if args.export is not None:
        results = label_with_export(args.export, args.images, args.top_k)
    else:
        results = label_with_model_dir(args.model_dir, args.images, args.top_k, args.device)
    print("\n".join(label_lines(results, "label", args.json)))
    return 0


def _classify_image_args(p: argparse.ArgumentParser) -> None:
    from .backbones import DEFAULT_BACKBONE

    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help=_backbone_help())
    p.add_argument("--weights", default=None, metavar="PATH", help="its weights (.safetensors or state dict)")
    _top_k_args(p, "ImageNet classes")


def cmd_classify_image(args: argparse.Namespace) -> int:
    from .imagenet import classify_images
    from .labeling import label_lines

    results = classify_images(args.images, args.backbone, args.weights, args.top_k, args.device)
    print("\n".join(label_lines(results, "classify", args.json)))
    return 0



def _convert_args(p: argparse.ArgumentParser) -> None:
    from .datasets import DATASET_NAMES

    p.add_argument("--dataset", required=True, choices=DATASET_NAMES, help="the dataset to write (as for train)")
    p.add_argument("--data-dir", default=None, help="where the dataset lives (as for train)")
    p.add_argument("--output", required=True, metavar="DIR", help="writes DIR/SPLIT-0000K-of-0000N.tfrecord and labels.txt")
    p.add_argument("--shards", type=int, default=1, help="files for the training split (the other splits get as "
                                                         "many records per file)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle that spreads records over the shards")
    p.add_argument("--validation-size", type=int, default=None,
                   help="hold out N training examples as a validation split (default: none)")
    p.add_argument("--validation-percentage", type=float, default=None, help="image folders: of each category (default 10)")
    p.add_argument("--testing-percentage", type=float, default=None, help="image folders: of each category (default 10)")


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    result = convert(args.dataset, args.output, args.shards, args.data_dir, args.seed, args.validation_size,
                     args.validation_percentage, args.testing_percentage)
    for split, count in result.records.items():
        files = len(result.shards[split])
        print(f"{split}: {count:,} records in {files} shard{'s' if files > 1 else ''}")
    print(f"wrote {result.output} (labels.txt: {len(result.class_names)} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
