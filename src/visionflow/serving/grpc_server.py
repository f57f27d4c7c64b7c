"""The gRPC transport: TF Serving's PredictionService and KServe V2's GRPCInferenceService on one
grpc.aio server, in the same event loop and on the same `Serving` (versions, batcher, metrics,
limits) as the REST endpoints — one serving core, two transports.

Every call goes through `_unary`: the request bytes are parsed inside the handler (a malformed
message is INVALID_ARGUMENT, not the INTERNAL grpc gives a failing deserializer), the
server's --request-timeout applies as it does to REST (DEADLINE_EXCEEDED), a `RequestError` becomes the
gRPC status that says what was wrong (see `STATUS`), and every call is counted in the Prometheus
metrics with the HTTP status of the same failure (TF Serving issue #1624 was gRPC missing there).
Messages larger than --grpc-max-message-mb are refused by grpc itself with RESOURCE_EXHAUSTED.
The standard health service (grpc.health.v1) says SERVING while a version is available (it
follows `Serving.version_listeners`), and server reflection (optional) describes the services
from the private descriptor pool.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

import grpc

from .core import Call, Serving, _deadline, log
from .errors import RequestError
from .grpc_messages import pool
from . import grpc_kserve, grpc_tfserving

#: A failure's HTTP status (as REST answers it) → the gRPC status code that says the same.
STATUS = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND, 405: grpc.StatusCode.UNIMPLEMENTED,
          408: grpc.StatusCode.DEADLINE_EXCEEDED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
          415: grpc.StatusCode.INVALID_ARGUMENT, 501: grpc.StatusCode.UNIMPLEMENTED,
          503: grpc.StatusCode.UNAVAILABLE, 504: grpc.StatusCode.DEADLINE_EXCEEDED}
#: (service name, method table) of every service served.
SERVICES = ((grpc_tfserving.SERVICE, grpc_tfserving.METHODS), (grpc_tfserving.MODEL_SERVICE, grpc_tfserving.MODEL_METHODS),
            (grpc_kserve.SERVICE, grpc_kserve.METHODS))

Handler = Callable[[bytes, Serving, Call], Awaitable[Any]]


class GrpcServer:
    """The grpc.aio server of one `Serving`; `start()` binds (port 0: the kernel picks one)."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving
        self.server: grpc.aio.Server | None = None
        self.health: Any = None
        self.port = 0
        self._health_update: asyncio.Task | None = None

    def _build(self) -> grpc.aio.Server:
        """The server with every service; made in the running event loop, which grpc.aio binds to."""
        options = self.serving.options
        size = options.grpc_max_message_bytes
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", size),
                                          ("grpc.max_send_message_length", size),
                                          ("grpc.so_reuseport", 0)])
        for service, methods in SERVICES:
            table = {name: _unary(handler, self.serving) for name, (handler, _) in methods.items()}
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, table),))
        from grpc_health.v1 import health, health_pb2_grpc

        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if options.grpc_reflection:
            from grpc_reflection.v1alpha import reflection

            names = [service for service, _ in SERVICES] + [reflection.SERVICE_NAME]
            reflection.enable_server_reflection(names, server, pool=pool())
        return server

    async def start(self) -> int:
        """Bind and start; returns the port (OSError when it cannot listen there)."""
        options = self.serving.options
        self.server = self._build()
        host = f"[{options.host}]" if ":" in options.host else options.host
        try:
            self.port = self.server.add_insecure_port(f"{host}:{options.grpc_port}")
        except RuntimeError as e:
            raise OSError(f"cannot listen on {options.host}:{options.grpc_port} for gRPC ({e}); --grpc-port auto takes "
                          "any free port, --grpc-port 0 serves REST alone") from None
        await self.server.start()
        await self._publish_health()
        self.serving.version_listeners.append(self._versions_changed)
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stop taking calls; answer those in flight for up to `grace_s` seconds."""
        if self._versions_changed in self.serving.version_listeners:
            self.serving.version_listeners.remove(self._versions_changed)
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace_s)

    def _versions_changed(self) -> None:
        self._health_update = asyncio.get_running_loop().create_task(self._publish_health())

    async def _publish_health(self) -> None:
        """SERVING for the server and each service while a version is available, else NOT_SERVING."""
        from grpc_health.v1 import health_pb2

        status = (health_pb2.HealthCheckResponse.SERVING if self.serving.versions.available
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("",) + tuple(service for service, _ in SERVICES):
            await self.health.set(name, status)


def _unary(handler: Handler, serving: Serving) -> grpc.RpcMethodHandler:
    timeout = serving.options.request_timeout_s

    async def run(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        call, start, status = Call(api="grpc_other"), time.perf_counter(), 200
        try:
            async with _deadline(timeout):
                reply = await handler(request, serving, call)
            return reply.SerializeToString()
        except RequestError as e:
            status = e.status
            await context.abort(STATUS.get(e.status, grpc.StatusCode.UNKNOWN), e.message)
        except TimeoutError:
            status = 504
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"no reply within {timeout:g} s (--request-timeout)")
        except asyncio.CancelledError:  # the client went away or its deadline passed
            status = 499
            raise
        except Exception:
            status = 500
            log.exception("gRPC %s failed", call.api)
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error (the server log has the details)")
        finally:
            serving.metrics.observe_request(call.model, call.version, call.api, status, time.perf_counter() - start)
        raise AssertionError("unreachable")  # abort() raised

    return grpc.unary_unary_rpc_method_handler(run)

