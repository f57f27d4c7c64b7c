"""KServe V2 / Open Inference Protocol endpoints (what `tritonclient.http` speaks).

  GET  /v2                                         server metadata
  GET  /v2/health/live, /v2/health/ready           200 when true, 400 when false (as the spec says)
  GET  /v2/models/NAME[/versions/N]                model metadata
  GET  /v2/models/NAME[/versions/N]/ready
  POST /v2/models/NAME[/versions/N]/infer          tensors in JSON or Triton's binary extension
"""

from __future__ import annotations

import re

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ..core.version import VERSION
from ..export.exportdir import TensorSpec
from ..preprocessing import Preprocessing
from .core import Call, Serving, json_response, require_method
from .errors import not_found
from .rest_payloads import parse_json
from .runtime import ServedVersion
from .v2_tensors import OUTPUT_DATATYPES, InferRequest, encode_response, parse_infer, split_body

PATH = re.compile(r"(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<tail>/ready|/infer)?")
EXTENSIONS = ["binary_tensor_data", "classification"]


async def server_metadata(request: Request, serving: Serving, call: Call) -> Response:
    require_method(request, "GET")
    call.api = "v2_server_metadata"
    return json_response({"name": "visionflow", "version": VERSION, "extensions": EXTENSIONS})


async def health(request: Request, serving: Serving, call: Call) -> Response:
    require_method(request, "GET")
    what = request.path_params["what"]
    if what in ("live", "ready"):
        call.api = f"v2_{what}"
    if what == "live":
        return json_response({"live": True})
    if what == "ready":
        ready = bool(serving.versions.available)
        return json_response({"ready": ready}, 200 if ready else 400)
    raise not_found(f"{request.url.path}: no such endpoint (use /v2/health/live or /v2/health/ready)")


async def handle(request: Request, serving: Serving, call: Call) -> Response:
    match, version = serving.match_model_path(PATH, request, call)
    if match["tail"] == "/infer":
        call.api = "v2_infer"
        require_method(request, "POST")
        return await _infer(request, serving, call, version)
    require_method(request, "GET")
    if match["tail"] == "/ready":
        call.api = "v2_model_ready"
        ready = version in serving.versions.available if version is not None else bool(serving.versions.available)
        return json_response({"name": match["name"], "ready": ready}, 200 if ready else 400)
    call.api = "v2_model_metadata"
    served = serving.versions.resolve(version)
    call.version = str(served.version)
    signature = served.signature
    return json_response({
        "name": match["name"],
        "versions": [str(v) for v in sorted(serving.versions.available)],
        "platform": platform_of(served),
        "inputs": _tensors(signature.inputs, {"images": "UINT8"}),
        "outputs": _tensors(signature.outputs, OUTPUT_DATATYPES),
        "parameters": {"class_names": list(signature.class_names), "version": str(served.version)},
    }, version=served.version)


def platform_of(served: ServedVersion) -> str:
    """The V2 `platform` of a loaded version: which runtime answers for it."""
    return "onnxruntime_onnx" if served.runner.description.startswith("onnxruntime") else "pytorch_libtorch"


def _tensors(specs: tuple[TensorSpec, ...], datatypes: dict[str, str]) -> list[dict]:
    return [{"name": t.name, "datatype": datatypes[t.name], "shape": list(t.shape)} for t in specs]


async def _infer(request: Request, serving: Serving, call: Call, version: int | None) -> Response:
    header_length = request.headers.get("inference-header-content-length")

    def parse(body: bytes, pre: Preprocessing) -> tuple[np.ndarray, InferRequest]:
        json_part, binary = split_body(body, header_length)
        parsed = parse_infer(parse_json(json_part), binary, pre)
        return parsed.images, parsed

    served, parsed, outputs = await serving.infer(request, call, version, None, parse)
    body, json_length = encode_response(serving.options.model_name, served.version, parsed, outputs,
                                        served.signature.class_names)
    headers = {"x-model-version": str(served.version)}
    if json_length is None:
        return Response(body, 200, headers, media_type="application/json")
    headers["inference-header-content-length"] = str(json_length)
    return Response(body, 200, headers, media_type="application/octet-stream")
