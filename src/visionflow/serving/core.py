"""What every endpoint shares: options, the served versions, request bodies, errors, replies.

Every endpoint goes through `endpoint()`, which turns a `RequestError` into its 4xx reply,
anything unexpected into a logged 500, and records the request in the metrics.  Inference
endpoints go through `Serving.infer()`, which holds the version (a lease) from before the
body is read until the reply is built, and queues the decoded images on its batcher.
The protocols (tfserving, kserve) build on this module; app.py routes requests to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..core.limits import IDLE_TIMEOUT_S, MAX_BODY_BYTES, REQUEST_TIMEOUT_S, RETIRE_DRAIN_S
from ..errors import InputError
from ..export.exportdir import ExportBase, parse_version
from ..preprocessing import Preprocessing
from .batching import Arrivals, BatcherClosed, Outputs
from .errors import RequestError, bad_request, not_found
from .monitoring import ServingMetrics
from .runtime import RuntimeOptions, ServedVersion, load_version
from .versions import ModelVersions, VersionPolicy, VersionState

log = logging.getLogger("visionflow.serve")

OFFLOAD_BYTES = 2**20  # bodies larger than this are decoded in a worker thread, off the event loop
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
T = TypeVar("T")


@dataclass(frozen=True)
class ServeOptions:
    model_name: str
    base_path: Path
    host: str = "127.0.0.1"
    port: int = 8501
    poll_seconds: float = 1.0
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: dict[str, int] = field(default_factory=dict)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    max_body_bytes: int = MAX_BODY_BYTES
    request_timeout_s: float = REQUEST_TIMEOUT_S
    idle_timeout_s: float = IDLE_TIMEOUT_S
    #: gRPC beside REST on `host`: None for none, 0 for any free port.
    grpc_port: int | None = None
    grpc_max_message_bytes: int = 64 * 2**20
    grpc_reflection: bool = False

    def check(self) -> "ServeOptions":
        if not MODEL_NAME.fullmatch(self.model_name):
            raise InputError(f"--model-name {self.model_name!r}: use letters, digits, '.', '_' and '-' "
                             "(starting with a letter or digit)")
        if not self.base_path.is_dir():
            raise InputError(f"{self.base_path}: model base path is not a directory")
        checks = [(self.poll_seconds > 0, "--poll-seconds must be positive"),
                  (self.runtime.max_batch_size >= 1, "--max-batch-size must be at least 1"),
                  (self.runtime.batch_timeout_s >= 0, "--batch-timeout-micros must be 0 or more"),
                  (self.runtime.batch_threads >= 0, "--num-batch-threads must be 0 (auto) or more"),
                  (self.max_body_bytes >= 1024, "--max-body-bytes must be at least 1024"),
                  (self.request_timeout_s > 0, "--request-timeout must be positive"),
                  (self.idle_timeout_s > 0, "--idle-timeout must be positive"),
                  (0 <= self.port <= 65535, "--port must be 0 to 65535"),
                  (self.grpc_port is None or 0 <= self.grpc_port <= 65535, "--grpc-port must be 0 to 65535"),
                  (self.grpc_port is None or self.grpc_port != self.port or self.port == 0,
                   f"--port {self.port} is also the gRPC port: give --grpc-port another port (or 0 for no gRPC)"),
                  (2**10 <= self.grpc_max_message_bytes < 2**31, "--grpc-max-message-mb must be from 0.001 to 2047")]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        return self


@dataclass
class Call:
    """What an endpoint learned about its request, for the metrics (and whether it is still
    reading the body, which decides 408 or 504 when the request times out)."""

    api: str = "other"
    model: str = ""
    version: str = ""
    reading_body: bool = False


class Serving:
    """What all endpoints share: the options, the model's versions, metrics and arrivals."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.metrics = ServingMetrics()
        self.arrivals = Arrivals()
        #: Called (on the event loop) after any version changes state — a transport's own health
        #: reporting follows the versions here instead of polling them.
        self.version_listeners: list[Callable[[], None]] = []
        self.versions = ModelVersions(options.model_name, ExportBase(options.base_path), options.policy, self._load,
                                      options.version_labels, self._on_change,
                                      drain_seconds=max(RETIRE_DRAIN_S, options.request_timeout_s + 5.0))

    def match_model_path(self, pattern: re.Pattern, request: Request, call: Call) -> tuple[re.Match, int | None]:
        """Match `/v1|v2/models/{rest}` against `pattern` (with groups `name` and `version`).

        Only the configured model name is served, and versions are integers: nothing in a
        request path ever becomes a file system path.
        """
        match = pattern.fullmatch(request.path_params["rest"])
        if match is None:
            raise not_found(f"{request.url.path}: no such endpoint")
        self.check_model(match["name"], call)
        return match, path_version(match["version"])

    def check_model(self, name: str, call: Call) -> None:
        """404 unless `name` is the served model; only then does it become the call's metrics label,
        so no request can add label values to the metrics page (every transport checks here)."""
        if name != self.options.model_name:
            raise not_found(f"model {name!r} is not served here (this server serves {self.options.model_name!r})")
        call.model = name

    async def read_body(self, request: Request, call: Call) -> bytes:
        """The body, at most `max_body_bytes` (413 beyond), gzip/deflate content decoded."""
        limit = self.options.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not re.fullmatch(r"[0-9]{1,18}", declared):
                raise bad_request("invalid Content-Length")
            if int(declared) > limit:
                raise _too_large(limit)
        chunks, size, more = [], 0, True
        call.reading_body = True
        while more:  # the ASGI messages themselves: Starlette's stream() adds an async generator
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise bad_request("client disconnected before sending the whole body")
            chunk, more = message.get("body", b""), message.get("more_body", False)
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        call.reading_body = False
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        return body if encoding == "identity" else _decompress(body, encoding, limit)

    async def infer(self, request: Request, call: Call, version: int | None, label: str | None,
                    parse: Callable[[bytes, Preprocessing], tuple[np.ndarray, T]]) -> tuple[ServedVersion, T, Outputs]:
        """Read, decode and run one inference request on the version it names."""

        async def decode(pre: Preprocessing) -> tuple[np.ndarray, T]:
            body = await self.read_body(request, call)
            if len(body) > OFFLOAD_BYTES:
                return await asyncio.to_thread(parse, body, pre)
            return parse(body, pre)

        return await self.run(call, version, label, decode)

    async def run(self, call: Call, version: int | None, label: str | None,
                  decode: Callable[[Preprocessing], Awaitable[tuple[np.ndarray, T]]]) -> tuple[ServedVersion, T, Outputs]:
        """Run one inference on the version `version` or `label` names (the latest when neither):
        `decode(preprocessing)` gives the request's (n, H, W, C) uint8 images and what else the
        reply needs.  The version is leased until the outputs are back, so a hot swap never
        unloads it under the request; every transport (REST, gRPC) comes through here."""
        with self.versions.lease(version, label) as served:
            call.version = str(served.version)
            with self.arrivals.arriving():
                images, parsed = await decode(served.signature.preprocessing)
            # no longer arriving *before* it is queued, or the worker would wait for it in vain
            try:
                outputs = await served.batcher.submit(images)
            except BatcherClosed:
                raise RequestError(503, f"version {served.version} was unloaded before this request reached it "
                                        "(it outlasted the drain deadline); retry") from None
        return served, parsed, outputs

    def _load(self, version: int) -> ServedVersion:
        return load_version(self.versions.base, version, self.options.runtime, self.arrivals, self._on_batch)

    def _on_batch(self, version: int, size: int, seconds: float) -> None:
        self.metrics.observe_batch(self.options.model_name, version, size, seconds)

    def _on_change(self, version: int, state: VersionState) -> None:
        self.metrics.available.labels(self.options.model_name, str(version)).set(state.state == "AVAILABLE")
        if state.error:
            self.metrics.load_failures.labels(self.options.model_name).inc()
        for listener in self.version_listeners:
            listener()


def json_response(payload: Any, status: int = 200, version: int | None = None) -> Response:
    headers = {"x-model-version": str(version)} if version is not None else None
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status, headers,
                    media_type="application/json")


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def endpoint(handler: Callable[[Request, Serving, Call], Awaitable[Response]],
             serving: Serving) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: errors as `{"error": ...}` replies, a deadline of `request_timeout_s` (408
    when the body is still arriving then, 504 when the reply is not ready), every request counted
    and timed."""
    timeout = serving.options.request_timeout_s

    async def run(request: Request) -> Response:
        call, start = Call(), time.perf_counter()
        try:
            async with _deadline(timeout):
                response = await handler(request, serving, call)
        except RequestError as e:
            response = error_response(e.status, e.message)
        except TimeoutError:
            if call.reading_body:  # the rest of the body may still come: this connection cannot go on
                response = error_response(408, f"request body not received within {timeout:g} s (--request-timeout)")
                response.headers["connection"] = "close"
            else:
                response = error_response(504, f"no reply within {timeout:g} s (--request-timeout)")
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            response = error_response(500, "internal server error (the server log has the details)")
        serving.metrics.observe_request(call.model, call.version, call.api, response.status_code,
                                        time.perf_counter() - start)
        return response

    return run


@contextlib.asynccontextmanager
async def _deadline_310(seconds: float) -> AsyncIterator[None]:
    """asyncio.timeout for Python 3.10: cancel the task at the deadline, raise TimeoutError."""
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        yield
    except asyncio.CancelledError:
        if fired:
            raise TimeoutError from None
        raise
    finally:
        handle.cancel()


_deadline = getattr(asyncio, "timeout", _deadline_310)


def path_version(text: str | None) -> int | None:
    """The N of a `/versions/N` path segment; a 404 when it is not a version number."""
    if text is None:
        return None
    try:
        return parse_version(text, "version")
    except InputError as e:
        raise not_found(str(e)) from None


def require_method(request: Request, method: str) -> None:
    if request.method != method:
        raise RequestError(405, f"{request.url.path} takes {method}, not {request.method}")


def _too_large(limit: int) -> RequestError:
    return RequestError(413, f"request body is larger than the server's limit of {limit:,} bytes (--max-body-bytes)")


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding not in ("gzip", "deflate"):
        raise RequestError(415, f"Content-Encoding {encoding!r} is not supported (use gzip or deflate)")
    decoder = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error as e:
        raise bad_request(f"body is not valid {encoding} data ({e})") from None
    if len(out) > limit:
        raise _too_large(limit)
    if not decoder.eof:
        raise bad_request(f"body is not valid {encoding} data (truncated)")
    return out
