"""TensorFlow Serving's gRPC `tensorflow.serving.PredictionService` (what TF Serving answers on
port 8500), on the same versions, batcher and limits as the REST endpoints.

  Predict           inputs {"images": TensorProto} — DT_UINT8 (or another integer type) pixels
                    0–255, DT_HALF/DT_FLOAT/DT_DOUBLE pixels 0–1, shaped [N, H, W, C], [N, H, W]
                    or [N, H*W*C]; or DT_STRING encoded images (PNG, JPEG, …) shaped [N] or [N, 1];
                    outputs "probabilities" DT_FLOAT [N, K] and "classes" DT_INT64 [N]
                    (`output_filter` picks some)
  Classify          tf.Examples whose "images" feature holds encoded image bytes (bytes_list) or
                    pixels (int64_list 0–255 / float_list 0–1); classes ranked per example
  GetModelMetadata  metadata_field "signature_def": the SignatureDefMap ("serving_default");
                    "visionflow_signature" (our addition): the preprocessing and class names as
                    JSON in a google.protobuf.StringValue, which `visionflow predict` reads
  Regress, MultiInference   UNIMPLEMENTED (an image classifier has no regression signature)

and the status half of `tensorflow.serving.ModelService` (`MODEL_SERVICE`): GetModelStatus, the
versions and their states as REST's /v1/models/NAME reports them.

`model_spec` names the model (NOT_FOUND for another), a version or a version label (the latest
when neither), and a signature: "" or "serving_default".
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable, TypeVar

import numpy as np

from ..export.exportdir import INPUT_NAME, OUTPUT_NAMES, Signature, TensorSpec
from ..preprocessing import Preprocessing
from .core import OFFLOAD_BYTES, Call, Serving
from .errors import RequestError, bad_request, not_found
from .grpc_messages import DT_INT64, DT_STRING, DT_UINT8, array_to_tensor, message, tensor_to_array
from .images import decode_image, image_batch
from .tfserving import signature_summary

SERVICE = "tensorflow.serving.PredictionService"
T = TypeVar("T")
SIGNATURES = ("", "serving_default")
_TF_DTYPE = {"uint8": DT_UINT8, "float32": 1, "int64": DT_INT64}


def model_version(request: Any, serving: Serving, call: Call) -> tuple[int | None, str | None]:
    """The version (or label) `request.model_spec` asks for, after checking its name and signature."""
    spec = request.model_spec
    serving.check_model(spec.name, call)
    if spec.signature_name not in SIGNATURES:
        raise bad_request(f"signature {spec.signature_name!r} not found (the model has 'serving_default')")
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        if spec.version.value < 1:
            raise not_found(f"version {spec.version.value} does not exist (versions are positive integers)")
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _reply_spec(response: Any, name: str, version: int, signature_name: str = "serving_default") -> None:
    response.model_spec.name = name
    response.model_spec.version.value = version
    response.model_spec.signature_name = signature_name


async def off_loop(size: int, work: Callable[[], T]) -> T:
    """`work()`, in a worker thread when the request is large (more than OFFLOAD_BYTES, as REST
    decodes large bodies), so parsing and decoding megabytes never stall the event loop."""
    return await asyncio.to_thread(work) if size > OFFLOAD_BYTES else work()


async def predict(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_predict"
    request = await off_loop(len(raw), lambda: parse(raw, "tensorflow.serving.PredictRequest"))
    version, label = model_version(request, serving, call)
    unknown = set(request.inputs) - {INPUT_NAME}
    if unknown or INPUT_NAME not in request.inputs:
        raise bad_request(f"inputs must be exactly {{{INPUT_NAME!r}}}, got {sorted(request.inputs)}")
    wanted = list(request.output_filter) or list(OUTPUT_NAMES)
    for name in wanted:
        if name not in OUTPUT_NAMES:
            raise bad_request(f"output_filter: unknown output {name!r} (the model has {', '.join(OUTPUT_NAMES)})")

    async def decode(pre: Preprocessing) -> tuple[np.ndarray, None]:
        return await off_loop(len(raw), lambda: tensor_images(request.inputs[INPUT_NAME], pre, f"input {INPUT_NAME!r}")), None

    served, _, outputs = await serving.run(call, version, label, decode)
    response = message("tensorflow.serving.PredictResponse")()
    _reply_spec(response, serving.options.model_name, served.version)
    for name in dict.fromkeys(wanted):
        response.outputs[name].CopyFrom(array_to_tensor(outputs[name]))
    return response


def tensor_images(tensor: Any, pre: Preprocessing, where: str) -> np.ndarray:
    """A request's image tensor → (N, H, W, C) uint8 for the model (see the module docstring)."""
    values, shape, dtype = tensor_to_array(tensor, where)
    if dtype == DT_STRING:
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or not values:
            raise bad_request(f"{where}: DT_STRING images must have shape [N] or [N, 1] with N ≥ 1, got {list(shape)}")
        return np.concatenate([decode_image(bytes(b), pre, f"{where}[{i}]") for i, b in enumerate(values)])
    assert isinstance(values, np.ndarray)
    if values.dtype.kind == "f":
        values = values.astype(np.float64)
    return image_batch(values, pre, where)


async def classify(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_classify"
    request = await off_loop(len(raw), lambda: parse(raw, "tensorflow.serving.ClassificationRequest"))
    version, label = model_version(request, serving, call)
    examples, context = _examples(request.input)

    async def decode(pre: Preprocessing) -> tuple[np.ndarray, None]:
        def images() -> np.ndarray:
            return np.concatenate([_example_image(example, context, pre, f"examples[{i}]")
                                   for i, example in enumerate(examples)])

        return await off_loop(len(raw), images), None

    served, _, outputs = await serving.run(call, version, label, decode)
    names = served.signature.class_names
    response = message("tensorflow.serving.ClassificationResponse")()
    _reply_spec(response, serving.options.model_name, served.version)
    probabilities = outputs["probabilities"]
    order = np.argsort(-probabilities, axis=1, kind="stable")
    for row, p in zip(order, probabilities):
        ranked = response.result.classifications.add()
        for j in row:
            ranked.classes.add(label=names[j], score=float(p[j]))
    return response


def _examples(request_input: Any) -> tuple[list[Any], Any]:
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples, context = list(request_input.example_list.examples), None
    elif kind == "example_list_with_context":
        examples = list(request_input.example_list_with_context.examples)
        context = request_input.example_list_with_context.context
    else:
        raise bad_request("input must hold an example_list or an example_list_with_context")
    if not examples:
        raise bad_request("input holds no examples")
    return examples, context


def _example_image(example: Any, context: Any, pre: Preprocessing, where: str) -> np.ndarray:
    features = example.features.feature
    if INPUT_NAME not in features and context is not None and INPUT_NAME in context.features.feature:
        features = context.features.feature
    if INPUT_NAME not in features:
        raise bad_request(f"{where}: has no {INPUT_NAME!r} feature")
    feature = features[INPUT_NAME]
    kind = feature.WhichOneof("kind")
    where = f"{where}.{INPUT_NAME}"
    if kind == "bytes_list":
        values = feature.bytes_list.value
        if len(values) != 1:
            raise bad_request(f"{where}: bytes_list must hold one encoded image, holds {len(values)}")
        return decode_image(bytes(values[0]), pre, where)
    if kind == "int64_list":
        return image_batch(np.asarray(feature.int64_list.value, dtype=np.int64)[None], pre, where)
    if kind == "float_list":
        return image_batch(np.asarray(feature.float_list.value, dtype=np.float64)[None], pre, where)
    raise bad_request(f"{where}: feature is empty")


async def get_model_metadata(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_metadata"
    request = parse(raw, "tensorflow.serving.GetModelMetadataRequest")
    version, label = model_version(request, serving, call)
    fields = list(request.metadata_field)
    known = ("signature_def", "visionflow_signature")
    if not fields or any(f not in known for f in fields):
        raise bad_request(f"metadata_field must name one or more of {', '.join(known)}, got {fields}")
    with serving.versions.lease(version, label) as served:
        call.version = str(served.version)
        signature = served.signature
    response = message("tensorflow.serving.GetModelMetadataResponse")()
    _reply_spec(response, serving.options.model_name, served.version, "")
    if "signature_def" in fields:
        response.metadata["signature_def"].Pack(signature_def_map(signature))
    if "visionflow_signature" in fields:
        summary = json.dumps(signature_summary(signature))
        response.metadata["visionflow_signature"].Pack(message("google.protobuf.StringValue")(value=summary))
    return response


def signature_def_map(signature: Signature) -> Any:
    """The export's signature as TF Serving's SignatureDefMap with one "serving_default"."""
    signatures = message("tensorflow.serving.SignatureDefMap")()
    default = signatures.signature_def["serving_default"]
    default.method_name = "tensorflow/serving/predict"
    for specs, target in ((signature.inputs, default.inputs), (signature.outputs, default.outputs)):
        for spec in specs:
            _tensor_info(spec, target[spec.name])
    return signatures


def _tensor_info(spec: TensorSpec, info: Any) -> None:
    info.name = f"{spec.name}:0"
    info.dtype = _TF_DTYPE[spec.dtype]
    for size in spec.shape:
        info.tensor_shape.dim.add(size=int(size))


async def unimplemented(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_other"
    raise RequestError(501, "this server serves an image classifier: use Predict, Classify or GetModelMetadata")


def parse(raw: bytes, full_name: str) -> Any:
    from google.protobuf.message import DecodeError

    try:
        return message(full_name).FromString(raw)
    except DecodeError as e:
        raise bad_request(f"request is not a valid {full_name.rsplit('.', 1)[-1]} ({e})") from None


async def get_model_status(raw: Any, serving: Serving, call: Call) -> Any:
    call.api = "grpc_status"
    request = parse(raw, "tensorflow.serving.GetModelStatusRequest")
    version, label = model_version(request, serving, call)
    response = message("tensorflow.serving.GetModelStatusResponse")()
    states = message("tensorflow.serving.ModelVersionStatus").State
    for status in serving.versions.status(version, label):
        entry = response.model_version_status.add(version=int(status["version"]), state=states.Value(status["state"]))
        entry.status.error_code = 0 if status["status"]["error_code"] == "OK" else 2
        entry.status.error_message = status["status"]["error_message"]
    return response


MODEL_SERVICE = "tensorflow.serving.ModelService"
MODEL_METHODS = {"GetModelStatus": (get_model_status, "tensorflow.serving.GetModelStatusResponse")}

#: method → (handler, response message), the service's whole table.
METHODS = {
    "Predict": (predict, "tensorflow.serving.PredictResponse"),
    "Classify": (classify, "tensorflow.serving.ClassificationResponse"),
    "GetModelMetadata": (get_model_metadata, "tensorflow.serving.GetModelMetadataResponse"),
    "Regress": (unimplemented, "tensorflow.serving.RegressionResponse"),
    "MultiInference": (unimplemented, "tensorflow.serving.MultiInferenceResponse"),
}
