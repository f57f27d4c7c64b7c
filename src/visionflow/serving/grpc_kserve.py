"""KServe V2's gRPC `inference.GRPCInferenceService` (what `tritonclient.grpc` speaks), on the
same versions, batcher and limits as the REST endpoints.

  ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata
  ModelInfer   the input `images` as in the REST protocol (v2_tensors.py): UINT8 / other
               integers 0–255, FP16/FP32/FP64 0–1, or BYTES encoded images — sent either in
               `raw_input_contents` (row-major little-endian; BYTES as 4-byte-length-prefixed
               elements) or typed in `contents`.  Outputs come back in `raw_output_contents`
               (as Triton answers gRPC), `probabilities` FP32 [N, K] and `classes` INT64 [N];
               an output's `classification` parameter k returns the top k as BYTES
               "score:index:label" (Triton's classification extension).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.version import VERSION
from ..export.exportdir import INPUT_NAME, OUTPUT_NAMES, parse_version
from ..errors import InputError
from ..preprocessing import Preprocessing
from .core import Call, Serving
from .errors import bad_request, not_found
from .grpc_messages import message, v2_contents
from .grpc_tfserving import off_loop, parse
from .kserve import EXTENSIONS, platform_of
from .v2_tensors import OUTPUT_DATATYPES, bytes_tensor, check_shape, classification, v2_images

SERVICE = "inference.GRPCInferenceService"


async def server_live(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_v2_live"
    parse(raw, "inference.ServerLiveRequest")
    return message("inference.ServerLiveResponse")(live=True)


async def server_ready(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_v2_ready"
    parse(raw, "inference.ServerReadyRequest")
    return message("inference.ServerReadyResponse")(ready=bool(serving.versions.available))


async def server_metadata(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_v2_server_metadata"
    parse(raw, "inference.ServerMetadataRequest")
    return message("inference.ServerMetadataResponse")(name="visionflow", version=VERSION, extensions=EXTENSIONS)


def _model(name: str, version_text: str, serving: Serving, call: Call) -> int | None:
    serving.check_model(name, call)
    if not version_text:
        return None
    try:
        return parse_version(version_text, "model_version")
    except InputError as e:
        raise not_found(str(e)) from None


async def model_ready(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_v2_model_ready"
    request = parse(raw, "inference.ModelReadyRequest")
    version = _model(request.name, request.version, serving, call)
    available = serving.versions.available
    return message("inference.ModelReadyResponse")(ready=version in available if version is not None else bool(available))


async def model_metadata(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_v2_model_metadata"
    request = parse(raw, "inference.ModelMetadataRequest")
    version = _model(request.name, request.version, serving, call)
    with serving.versions.lease(version, None) as served:
        call.version = str(served.version)
        signature = served.signature
        platform = platform_of(served)
    response = message("inference.ModelMetadataResponse")(
        name=request.name, versions=[str(v) for v in sorted(serving.versions.available)], platform=platform)
    for spec in signature.inputs:
        response.inputs.add(name=spec.name, datatype="UINT8", shape=list(spec.shape))
    for spec in signature.outputs:
        response.outputs.add(name=spec.name, datatype=OUTPUT_DATATYPES[spec.name], shape=list(spec.shape))
    return response


async def model_infer(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_v2_infer"
    request = await off_loop(len(raw), lambda: parse(raw, "inference.ModelInferRequest"))
    version = _model(request.model_name, request.model_version, serving, call)
    if len(request.inputs) != 1 or request.inputs[0].name != INPUT_NAME:
        raise bad_request(f"inputs must be one tensor named {INPUT_NAME!r}, got {[t.name for t in request.inputs]}")
    tensor = request.inputs[0]
    if request.raw_input_contents and len(request.raw_input_contents) != 1:
        raise bad_request(f"{len(request.raw_input_contents)} raw_input_contents for 1 input")
    wanted = _wanted(request.outputs)
    shape = check_shape(list(tensor.shape))

    async def decode(pre: Preprocessing) -> tuple[np.ndarray, None]:
        def images() -> np.ndarray:
            data = request.raw_input_contents[0] if request.raw_input_contents else v2_contents(tensor, "input 'images'")
            return v2_images(tensor.datatype, shape, data, pre)

        return await off_loop(len(raw), images), None

    served, _, outputs = await serving.run(call, version, None, decode)
    response = message("inference.ModelInferResponse")(model_name=request.model_name, model_version=str(served.version),
                                                       id=request.id)
    for name, k in wanted:
        array, datatype = outputs[name], OUTPUT_DATATYPES[name]
        if k:
            array, datatype = classification(outputs["probabilities"], k, served.signature.class_names), "BYTES"
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(bytes_tensor(array) if datatype == "BYTES" else
                                            np.ascontiguousarray(array).tobytes())
    return response


def _wanted(outputs: Any) -> list[tuple[str, int]]:
    """(name, top-k for the classification extension or 0) of each requested output."""
    if not outputs:
        return [(name, 0) for name in OUTPUT_NAMES]
    wanted = []
    for i, output in enumerate(outputs):
        if output.name not in OUTPUT_NAMES:
            raise bad_request(f"outputs[{i}]: unknown output {output.name!r} (the model has {', '.join(OUTPUT_NAMES)})")
        k = 0
        if "classification" in output.parameters:
            value = output.parameters["classification"]
            k = value.int64_param if value.WhichOneof("parameter_choice") == "int64_param" else -1
            if k < 0:
                raise bad_request(f"outputs[{i}]: \"classification\" must be a non-negative int64_param")
        wanted.append((output.name, k))
    return wanted


#: method → (handler, response message), the service's whole table.
METHODS = {
    "ServerLive": (server_live, "inference.ServerLiveResponse"),
    "ServerReady": (server_ready, "inference.ServerReadyResponse"),
    "ModelReady": (model_ready, "inference.ModelReadyResponse"),
    "ServerMetadata": (server_metadata, "inference.ServerMetadataResponse"),
    "ModelMetadata": (model_metadata, "inference.ModelMetadataResponse"),
    "ModelInfer": (model_infer, "inference.ModelInferResponse"),
}
