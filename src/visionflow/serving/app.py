"""The ASGI application: the route table, lifespan (version watching) and the metrics endpoint.

A new protocol is a module of endpoints built on `core` (as tfserving.py and kserve.py are)
and a line in `ServingApp.routes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
from typing import Any, AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from . import kserve, tfserving
from .core import Call, ServeOptions, Serving, endpoint, log, require_method
from .errors import not_found


class ServingApp:
    """The ASGI application: `serving` (state shared by all endpoints) and the routes to its endpoints.

    HTTP requests are dispatched here, by a full match of the path against each route's
    pattern, straight to the endpoint; Starlette's `Router` only runs the lifespan.  Every
    endpoint already turns its own errors (wrong method included) into `{"error": ...}`
    replies, so Starlette's routing layers (route objects, request/response wrapper, exception
    wrapper) only added CPU time: ~10% of the event loop's time per `:predict` request, whose
    whole budget is a few hundred µs.
    """

    def __init__(self, options: ServeOptions) -> None:
        self.serving = serving = Serving(options)
        self.routes = [
            (re.compile(r"/v1/models/(?P<rest>.*)", re.S), endpoint(tfserving.handle, serving)),
            (re.compile(r"/v2"), endpoint(kserve.server_metadata, serving)),
            (re.compile(r"/v2/health/(?P<what>[^/]+)"), endpoint(kserve.health, serving)),
            (re.compile(r"/v2/models/(?P<rest>.*)", re.S), endpoint(kserve.handle, serving)),
            (re.compile(r"/monitoring/prometheus/metrics"), endpoint(_metrics, serving)),
        ]
        self.no_route = endpoint(_no_route, serving)
        self.router = Router(lifespan=self._lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        path, run = scope["path"], self.no_route
        for pattern, route in self.routes:
            if match := pattern.fullmatch(path):
                scope["path_params"], run = match.groupdict(), route
                break
        response = await run(Request(scope, receive, send))
        await response(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        versions, options = self.serving.versions, self.serving.options
        await versions.refresh()
        # Everything alive now (torch, onnxruntime, the first version) lives as long as the server:
        # keep it out of the garbage collector's sweeps, which would otherwise stop the event loop
        # for ~0.1 s whenever a full collection runs under load.
        gc.freeze()
        if not versions.available:
            log.warning("model %s: no loadable version in %s yet; waiting for one", options.model_name,
                        options.base_path)
        watcher = asyncio.create_task(versions.watch(options.poll_seconds))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await versions.close()


def build_app(options: ServeOptions) -> ServingApp:
    return ServingApp(options)


async def _metrics(request: Request, serving: Serving, call: Call) -> Response:
    require_method(request, "GET")
    call.api = "metrics"
    return Response(serving.metrics.render(), media_type=serving.metrics.content_type)


async def _no_route(request: Request, serving: Serving, call: Call) -> Response:
    raise not_found(f"{request.method} {request.url.path}: no such endpoint")
