"""`visionflow export` and `visionflow serve`: from a model directory to a running server."""

from __future__ import annotations

import argparse

from .common import require_extra


def add_commands(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="export a model directory as a verified, servable version")
    ex.add_argument("--model-dir", required=True, help="the model directory whose latest checkpoint to export")
    ex.add_argument("--export-base", required=True, help="directory of versions; writes EXPORT_BASE/<version>/")
    ex.add_argument("--version", type=int, default=None, help="version number (default: the next one)")
    ex.set_defaults(run=cmd_export)
    serve_args(sub.add_parser("serve", help="serve exported versions (TF Serving and KServe V2 APIs, REST and gRPC)"))


def serve_args(p: argparse.ArgumentParser) -> None:
    from ..core.limits import IDLE_TIMEOUT_S, MAX_BODY_BYTES, REQUEST_TIMEOUT_S

    p.add_argument("--model-base-path", required=True, help="the export base (numbered version directories)")
    p.add_argument("--model-name", required=True, help="the name clients use in /v1/models/NAME and /v2/models/NAME")
    p.add_argument("--port", type=int, default=8501, help="TCP port (0: any free port, printed at start)")
    p.add_argument("--grpc-port", default="8500", type=_grpc_port, metavar="N|auto",
                   help="gRPC port of TF Serving's PredictionService and KServe V2's GRPCInferenceService, on the "
                        "same host (0: no gRPC; auto: any free port, printed at start)")
    p.add_argument("--grpc-max-message-mb", type=_megabytes, default=64.0, metavar="MB",
                   help="largest gRPC request or reply, MB (bigger: RESOURCE_EXHAUSTED; grpc itself allows 4)")
    p.add_argument("--grpc-reflection", action="store_true", help="enable gRPC server reflection (grpcurl, Postman)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    p.add_argument("--version-policy", choices=("latest", "all", "specific"), default="latest",
                   help="which versions to serve: the newest that loads, all of them, or those of --versions")
    p.add_argument("--versions", type=int, nargs="+", default=(), metavar="N", help="with --version-policy specific")
    p.add_argument("--version-labels", nargs="+", default=(), metavar="LABEL=N",
                   help="version labels such as stable=1 (also read from BASE/labels.json)")
    p.add_argument("--max-batch-size", type=int, default=32, help="images per merged runtime call")
    p.add_argument("--batch-timeout-micros", type=int, default=1000,
                   help="how long a part-filled batch may wait for requests still arriving")
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="larger REST requests get 413 "
                                                                              "(gRPC: --grpc-max-message-mb)")
    p.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT_S, metavar="SECONDS",
                   help="headers within this of a request's first byte; body and reply within this of the headers "
                        "(408 / 504 past it)")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S, metavar="SECONDS",
                   help="close a connection with no request in progress after this long")
    p.add_argument("--runtime", choices=("auto", "onnxruntime", "torch"), default="auto",
                   help="auto: PyTorch on CUDA when available, else onnxruntime on CPU")
    p.add_argument("--intra-op-threads", type=int, default=0, help="onnxruntime threads per call (0: its default)")
    p.add_argument("--num-batch-threads", type=int, default=0,
                   help="batches run at once, each on its own thread; beyond the first, only full batches (0: one)")
    p.set_defaults(run=cmd_serve)


def _grpc_port(text: str) -> int | None:
    """--grpc-port: "auto" → 0 (the kernel picks), "0" → None (no gRPC), else the port."""
    if text == "auto":
        return 0
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number or auto, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0 to 65535)")
    return port or None


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of megabytes, got {text!r}") from None
    if not 0.001 <= value < 2048:
        raise argparse.ArgumentTypeError(f"{text} MB: must be from 0.001 to 2047")
    return value


def cmd_export(args: argparse.Namespace) -> int:
    require_extra("serve", "onnx", "onnxruntime", "onnxscript")
    from ..export.exporter import export_model

    result = export_model(args.model_dir, args.export_base, args.version)
    check = result.verification
    print(f"exported {result.model} at global step {result.global_step} as version {result.version}: {result.path}")
    print(f"  verified: onnxruntime matches PyTorch on {check.examples} examples ({check.source}), "
          f"max |dp| {check.max_abs_diff:.1e} <= {check.tolerance:g}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    require_extra("serve", "starlette", "uvicorn", "onnxruntime", "prometheus_client", "orjson")
    if args.grpc_port is not None:
        require_extra("serve", "grpc", "grpc_health")
    from ..serving.server import options_from_args, serve

    return serve(options_from_args(args))
