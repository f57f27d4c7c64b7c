"""The gRPC transport: TF Serving's PredictionService and KServe V2's GRPCInferenceService on one
grpc.aio server, in the same event loop and on the same `Serving` (versions, batcher, metrics,
limits) as the REST endpoints — one serving core, two transports.

Every call goes through `_unary`: the request bytes are parsed inside the handler (a malformed
message is INVALID_ARGUMENT, not the INTERNAL grpc gives a failing deserializer), the
server's --request-timeout applies as it does to REST (DEADLINE_EXCEEDED), a `RequestError` becomes the
gRPC status that says what was wrong (see `STATUS`), and every call is counted in the Prometheus
metrics with the HTTP status of the same failure (TF Serving issue #1624 was gRPC missing there).
Messages larger than --grpc-max-message-mb are refused by grpc itself with RESOURCE_EXHAUSTED.
The standard health service (grpc.health.v1) says SERVING while a version is available, and
server reflection (optional) describes the services from the private descriptor pool.
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
#: How often the health service's status follows the versions (seconds).
HEALTH_POLL_S = 0.5

Handler = Callable[[bytes, Serving, Call], Awaitable[Any]]


class GrpcServer:
    """The grpc.aio server of one `Serving`; `start()` binds (port 0: the kernel picks one)."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving
        self.server: grpc.aio.Server | None = None
        self.health: Any = None
        self.port = 0
        self._watch: asyncio.Task | None = None

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
        from grpc_health.v1 import health_pb2_grpc

        self.health = _health_servicer(self.serving)
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
        self._watch = asyncio.create_task(self._follow_versions())
        return self.port

    async def stop(self, grace_s: float) -> None:
        """Stop taking calls; answer those in flight for up to `grace_s` seconds."""
        if self._watch is not None:
            self._watch.cancel()
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace_s)

    async def _follow_versions(self) -> None:
        from grpc_health.v1 import health_pb2

        serving, last = health_pb2.HealthCheckResponse.SERVING, None
        while True:
            status = serving if self.serving.versions.available else health_pb2.HealthCheckResponse.NOT_SERVING
            if status != last:
                for name in ("",) + tuple(service for service, _ in SERVICES):
                    await self.health.set(name, status)
                last = status
            await asyncio.sleep(HEALTH_POLL_S)


def _health_servicer(serving: Serving) -> Any:
    """grpc.health.v1 whose Check answers from the versions at call time (Watch streams follow the
    statuses `_follow_versions` sets, every HEALTH_POLL_S)."""
    from grpc_health.v1 import health, health_pb2

    names = {"", *(service for service, _ in SERVICES)}

    class Health(health.aio.HealthServicer):
        async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request.service not in names:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
            status = (health_pb2.HealthCheckResponse.SERVING if serving.versions.available and not self._gracefully_shutting_down
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            return health_pb2.HealthCheckResponse(status=status)

    return Health()


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

