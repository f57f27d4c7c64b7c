"""Running the app under uvicorn: bind (127.0.0.1 by default), start, print where to reach it.

The socket is bound before uvicorn starts, so `--port 0` works (the kernel picks a free port
and the banner names it) and a port already in use is a one-line error, exit code 2.  The
banner is printed once startup — including loading the first version — is complete.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import logging
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from ..errors import InputError
from ..export.exportdir import check_label, check_version, parse_version
from ..preprocessing import Preprocessing
from .app import build_app
from .core import ServeOptions, Serving
from .runtime import RuntimeOptions
from .transport import http_protocol
from .versions import VersionPolicy

if TYPE_CHECKING:
    import uvicorn

GIL_SWITCH_INTERVAL_S = 0.0001


def options_from_args(args: argparse.Namespace) -> ServeOptions:
    """`visionflow serve` flags → checked ServeOptions (InputError names the bad flag)."""
    labels = {}
    for item in args.version_labels:
        label, sep, version = item.partition("=")
        if not sep:
            raise InputError(f"--version-labels {item!r}: expected LABEL=VERSION, such as stable=1")
        labels[check_label(label, "--version-labels")] = parse_version(version, f"--version-labels {label}")
    for version in args.versions:
        check_version(version)
    runtime = RuntimeOptions(args.runtime, args.intra_op_threads, args.max_batch_size, args.batch_timeout_micros / 1e6,
                             args.num_batch_threads)
    return ServeOptions(args.model_name, Path(args.model_base_path), args.host, args.port, args.poll_seconds,
                        VersionPolicy(args.version_policy, tuple(args.versions)), labels, runtime,
                        args.max_body_bytes, args.request_timeout, args.idle_timeout, args.grpc_port,
                        int(args.grpc_max_message_mb * 2**20), args.grpc_reflection).check()


def serve(options: ServeOptions) -> int:
    import uvicorn

    options.check()
    # A batch thread whose runtime call has returned needs the GIL to hand its replies back; by
    # default it may wait 5 ms for the busy event loop to let go, while its core idles. 0.5 ms
    # measured ~10% more requests/s at saturation on 2 cores than 5 ms, and 0.1 ms another
    # 9-14% (two interleaved runs, docs/benchmarks.md).
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s visionflow serve %(levelname)s: %(message)s")
    sock = bind(options.host, options.port)
    app = build_app(options)
    config = uvicorn.Config(app, http=http_protocol(options.request_timeout_s), log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5, server_header=False, proxy_headers=False,
                            timeout_keep_alive=options.idle_timeout_s)
    server = _server_class()(config, app.serving)
    port = sock.getsockname()[1]
    run_on_fast_loop(_run(server, sock, lambda: print(banner(options, port, app.serving, server.grpc_port), flush=True)))
    return 0


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, with the gRPC transport started before it and stopped (answering
        calls in flight) before it shuts the app down — the lifespan's end unloads the versions."""

        def __init__(self, config: "uvicorn.Config", serving: Serving) -> None:
            super().__init__(config)
            self.grpc = None
            if serving.options.grpc_port is not None:
                from .grpc_server import GrpcServer

                self.grpc = GrpcServer(serving)
            self.grpc_port: int | None = None

        async def startup(self, sockets: Any = None) -> None:
            if self.grpc is not None:
                try:
                    self.grpc_port = await self.grpc.start()
                except OSError as e:
                    raise InputError(str(e)) from None
            await super().startup(sockets)
            if self.should_exit and self.grpc is not None:  # the app did not start: nothing will call shutdown
                await self.grpc.stop(0)

        async def shutdown(self, sockets: Any = None) -> None:
            if self.grpc is not None:
                await self.grpc.stop(self.config.timeout_graceful_shutdown or 5)
            await super().shutdown(sockets)

    return Server



def run_on_fast_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop's event loop when installed (C transports: far fewer CPU µs per request).

    uvicorn picks uvloop only inside `uvicorn.run`; `serve` starts the server on its own loop
    (to bind first and print the banner), so it makes the same choice here.
    """
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def _run(server: "uvicorn.Server", sock: socket.socket, on_ready: Callable[[], None]) -> None:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if server.started:
        on_ready()
    await task


def bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise InputError(f"--host {host!r}: cannot resolve ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this (Linux): without it a reply written as headers then body
    # waits for the client's delayed ACK (~40 ms) under Nagle's algorithm.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def banner(options: ServeOptions, port: int, serving: Serving, grpc_port: int | None = None) -> str:
    host = "127.0.0.1" if options.host in ("0.0.0.0", "") else ("::1" if options.host == "::" else options.host)
    root = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    name = options.model_name
    available = sorted(serving.versions.available)
    lines = [
        f"visionflow serve: model {name!r} from {options.base_path} "
        f"(policy {options.policy.kind}; versions available: {', '.join(map(str, available)) or 'none yet'})",
        f"  TF Serving REST  {root}/v1/models/{name}   (:predict, :classify, /metadata)",
        f"  KServe V2        {root}/v2/models/{name}   (/infer, /ready)",
        *([f"  gRPC             {host if ':' not in host else f'[{host}]'}:{grpc_port}   (tensorflow.serving.PredictionService, "
           f"inference.GRPCInferenceService, grpc.health.v1)"] if grpc_port else []),
        f"  metrics          {root}/monitoring/prometheus/metrics",
    ]
    if available:
        pre = serving.versions.available[available[-1]].signature.preprocessing
        lines.append(f"  try: curl -s {root}/v1/models/{name}:predict -d '{{\"instances\": [{{\"b64\": \"{_blank_png(pre)}\"}}]}}'")
    lines.append(f"ready on {root} (Ctrl-C to stop)")
    return "\n".join(lines)


def _blank_png(pre: Preprocessing) -> str:
    """A black image of the model's size, base64 PNG: a request that is valid as pasted."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("L" if pre.channels == 1 else "RGB", (pre.width, pre.height)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()
