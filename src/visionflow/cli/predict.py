"""`visionflow predict`, `label-image` and `classify-image`: trained models on new inputs."""

from __future__ import annotations

import argparse

from ..errors import InputError
from .common import backbone_help, top_k_args


def add_commands(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="classify image files or .npy batches")
    pr.add_argument("--model-dir", default=None, help="the model directory (or use --server and --model-name)")
    pr.add_argument("--server", default=None, metavar="URL", help="ask a running `visionflow serve` instead: "
                    "http://HOST:8501 (REST) or grpc://HOST:8500")
    pr.add_argument("--model-name", default=None, help="with --server: the served model's name")
    pr.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    pr.add_argument("--json", action="store_true", help="one JSON line per input image")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="PNG/JPEG image or .npy batch")
    pr.set_defaults(run=cmd_predict)

    li = sub.add_parser("label-image", help="top labels of images by a model directory (label_image.py)")
    li.add_argument("--model-dir", default=None, help="a model directory (e.g. from `visionflow retrain`)")
    li.add_argument("--export", default=None, metavar="DIR", help="an exported version directory instead (EXPORT_BASE/N)")
    top_k_args(li, "labels")
    li.set_defaults(run=cmd_label_image)

    from ..models.backbones import DEFAULT_BACKBONE

    ci = sub.add_parser("classify-image", help="ImageNet top labels of images by a pretrained network")
    ci.add_argument("--backbone", default=DEFAULT_BACKBONE, help=backbone_help())
    ci.add_argument("--weights", default=None, metavar="PATH", help="its weights (.safetensors or state dict)")
    top_k_args(ci, "ImageNet classes")
    ci.set_defaults(run=cmd_classify_image)


def cmd_predict(args: argparse.Namespace) -> int:
    if args.server is not None or args.model_dir is None:
        return _predict_remote(args)
    import torch

    from ..core.devices import resolve_device
    from ..infer.predict import predict_probabilities, prediction_lines, read_inputs, to_predictions
    from ..engine.evaluation import load_model
    from ..engine.modeldir import ModelDir

    model_dir = ModelDir(args.model_dir)
    run = model_dir.load_config()
    problem = run.not_an_image_classifier()
    if problem:
        from ..errors import InputError

        raise InputError(f"{model_dir.location}: this model {problem}; `predict` takes images "
                         "(use it from Python: Classifier(model_dir).predict)")
    batch, sources = read_inputs(args.inputs, run.preprocessing)  # bad inputs fail before the model loads
    run, model, _ = load_model(model_dir, resolve_device(args.device))
    x = run.preprocessing.normalize(torch.from_numpy(batch))
    probabilities = predict_probabilities(model, x, run.train.precision, tta=run.preprocessing.tta)
    predictions = to_predictions(probabilities, sources, run.class_names)
    for line in prediction_lines(predictions, sources, args.json):
        print(line)
    return 0


def _predict_remote(args: argparse.Namespace) -> int:
    if args.server is None or args.model_name is None or args.model_dir is not None:
        raise InputError("predict needs --model-dir DIR, or --server URL with --model-name NAME (not both)")
    from ..infer.predict import prediction_lines
    from ..serving.client import predict_remote

    predictions, sources = predict_remote(args.server, args.model_name, args.inputs)
    print("\n".join(prediction_lines(predictions, sources, args.json)))
    return 0


def cmd_label_image(args: argparse.Namespace) -> int:
    from ..infer.labeling import label_lines, label_with_export, label_with_model_dir

    if (args.model_dir is None) == (args.export is None):
        raise InputError("label-image needs --model-dir DIR or --export DIR (one of them)")
    if args.export is not None:
        results = label_with_export(args.export, args.images, args.top_k)
    else:
        results = label_with_model_dir(args.model_dir, args.images, args.top_k, args.device)
    print("\n".join(label_lines(results, args.json)))
    return 0


def cmd_classify_image(args: argparse.Namespace) -> int:
    from ..infer.imagenet import classify_images
    from ..infer.labeling import label_lines

    results = classify_images(args.images, args.backbone, args.weights, args.top_k, args.device)
    print("\n".join(label_lines(results, args.json)))
    return 0
