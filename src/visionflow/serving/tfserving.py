"""TensorFlow Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest).

  GET  /v1/models/NAME[/versions/N | /labels/L]             model status
  GET  /v1/models/NAME[/versions/N | /labels/L]/metadata    signature
  POST /v1/models/NAME[/versions/N | /labels/L]:predict     {"instances"} or {"inputs"}
  POST /v1/models/NAME[/versions/N | /labels/L]:classify    {"examples"}

Replies are TF Serving's, plus `model_version` (and the `x-model-version` header) naming the
version that answered, so clients can see a hot swap happen.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ..export.exportdir import Signature, TensorSpec
from ..preprocessing import Preprocessing
from .core import Call, Serving, json_response, require_method
from .errors import bad_request, not_found
from .rest_payloads import PredictRequest, parse_classify, parse_json, parse_predict

PATH = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                  r"(?:(?P<metadata>/metadata)|:(?P<verb>[^/:]+))?")
TF_DTYPES = {"uint8": "DT_UINT8", "float32": "DT_FLOAT", "int64": "DT_INT64"}


async def handle(request: Request, serving: Serving, call: Call) -> Response:
    match, version = serving.match_model_path(PATH, request, call)
    label = match["label"]
    verb = match["verb"]
    if verb is not None:
        call.api = f"tfs_{verb}" if verb in ("predict", "classify", "regress") else "tfs_unknown"
        require_method(request, "POST")
        if verb == "predict":
            return await _predict(request, serving, call, version, label)
        if verb == "classify":
            return await _classify(request, serving, call, version, label)
        if verb == "regress":
            raise bad_request(f"model {match['name']!r} is a classifier: it has no regress method (use :classify)")
        raise not_found(f"unknown method :{verb} (use :predict or :classify)")
    require_method(request, "GET")
    if match["metadata"]:
        call.api = "tfs_metadata"
        served = serving.versions.resolve(version, label)
        call.version = str(served.version)
        return json_response(metadata(match["name"], served.version, served.signature), version=served.version)
    call.api = "tfs_status"
    return json_response({"model_version_status": serving.versions.status(version, label)})


async def _predict(request: Request, serving: Serving, call: Call, version: int | None, label: str | None) -> Response:
    def parse(body: bytes, pre: Preprocessing) -> tuple[np.ndarray, PredictRequest]:
        parsed = parse_predict(parse_json(body), pre)
        return parsed.images, parsed

    served, parsed, outputs = await serving.infer(request, call, version, label, parse)
    probabilities, classes = outputs["probabilities"], outputs["classes"]
    if parsed.columnar:
        reply = {"outputs": {"probabilities": probabilities, "classes": classes}}
    else:
        reply = {"predictions": [{"probabilities": p, "classes": c} for p, c in zip(probabilities, classes.tolist())]}
    reply["model_version"] = str(served.version)
    return json_response(reply, version=served.version)


async def _classify(request: Request, serving: Serving, call: Call, version: int | None, label: str | None) -> Response:
    def parse(body: bytes, pre: Preprocessing) -> tuple[np.ndarray, None]:
        return parse_classify(parse_json(body), pre), None

    served, _, outputs = await serving.infer(request, call, version, label, parse)
    names = served.signature.class_names
    order = np.argsort(-outputs["probabilities"], axis=1, kind="stable")
    results = [[[names[j], p[j]] for j in row] for row, p in zip(order, outputs["probabilities"])]
    return json_response({"results": results, "model_version": str(served.version)}, version=served.version)


def metadata(name: str, version: int, signature: Signature) -> dict:
    """GetModelMetadata's reply; `visionflow_signature` adds what a client needs to send images."""
    signature_def = {"inputs": {t.name: _tensor_info(t) for t in signature.inputs},
                     "outputs": {t.name: _tensor_info(t) for t in signature.outputs},
                     "method_name": "tensorflow/serving/predict"}
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature_def}},
                         "visionflow_signature": signature_summary(signature)}}


def signature_summary(signature: Signature) -> dict:
    """What a client needs to send images (our addition to GetModelMetadata, REST and gRPC)."""
    return {"preprocessing": dataclasses.asdict(signature.preprocessing),
            "class_names": list(signature.class_names), "model": signature.model.name,
            "global_step": signature.global_step, "visionflow_version": signature.visionflow_version}


def _tensor_info(t: TensorSpec) -> dict:
    return {"dtype": TF_DTYPES.get(t.dtype, t.dtype), "name": f"{t.name}:0",
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in t.shape], "unknown_rank": False}}
