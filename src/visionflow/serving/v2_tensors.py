"""KServe V2 / Open Inference Protocol tensors: infer requests in, infer responses out.

https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/ with Triton's
binary tensor data extension (what `tritonclient.http` sends by default): when the header
`Inference-Header-Content-Length: L` is present, the first L bytes of the body are the JSON
request and the rest holds the raw tensors of inputs whose `parameters.binary_data_size` is
set, in order.  Outputs come back binary the same way when asked for (`binary_data` per
output, or `binary_data_output` for all).

The model's one input `images` is accepted as
  UINT8 / INT* / UINT*    pixels 0–255, shape [N, H, W, C], [N, H, W] (greyscale) or [N, H*W*C]
  FP16 / FP32 / FP64      pixels 0–1, same shapes
  BYTES                   encoded images (PNG, JPEG, …), shape [N] or [N, 1]; in JSON each
                          element is a base64 string, in binary the raw file bytes
Outputs are `probabilities` FP32 [N, K] and `classes` INT64 [N]; Triton's classification
extension (`parameters.classification: k` on an output) returns the top k as BYTES
"score:index:label" strings, shape [N, k].
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from math import prod
from typing import Any, Sequence

import numpy as np
import orjson

from ..export.exportdir import INPUT_NAME, OUTPUT_NAMES
from ..preprocessing import Preprocessing
from .errors import bad_request
from .images import b64_bytes, decode_image, image_batch, numbers_array

NUMERIC_DATATYPES = {
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
OUTPUT_DATATYPES = {"probabilities": "FP32", "classes": "INT64"}
_MAX_DIMS = 8


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    classification: int = 0


@dataclass(frozen=True)
class InferRequest:
    images: np.ndarray
    outputs: tuple[RequestedOutput, ...]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, binary part) of a body, per `Inference-Header-Content-Length`."""
    if header_length is None:
        return body, b""
    if not re.fullmatch(r"[0-9]{1,12}", header_length) or int(header_length) > len(body):
        raise bad_request(f"Inference-Header-Content-Length {header_length!r} does not fit a body of {len(body)} bytes")
    n = int(header_length)
    return body[:n], body[n:]


def parse_infer(payload: dict[str, Any], binary: bytes, pre: Preprocessing) -> InferRequest:
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise bad_request(f"\"inputs\" must be a list of one tensor, {INPUT_NAME!r}")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise bad_request(f"unknown input {tensor.get('name')!r} (the model's input is {INPUT_NAME!r})")
    shape = check_shape(tensor.get("shape"))
    datatype = tensor.get("datatype")
    parameters = _parameters(tensor, "inputs[0]")
    if "shared_memory_region" in parameters:
        raise bad_request("shared memory inputs are not supported")
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or size != len(binary):
            raise bad_request(f"binary_data_size {size!r} does not match the {len(binary)} binary bytes sent")
        data: Any = binary
    elif binary:
        raise bad_request("binary data sent but no input has parameters.binary_data_size")
    elif "data" in tensor:
        data = tensor["data"]
    else:
        raise bad_request("input 'images' has no \"data\" and no binary data")
    images = v2_images(datatype, shape, data, pre)
    request_params = payload.get("parameters", {})
    if not isinstance(request_params, dict):
        raise bad_request("\"parameters\" must be an object")
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad_request("\"id\" must be a string")
    return InferRequest(images, _requested_outputs(payload.get("outputs"), request_params), request_id, request_params)


def encode_response(model_name: str, version: int, request: InferRequest, outputs: dict[str, np.ndarray],
                    class_names: Sequence[str]) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary tensors, the JSON header's length."""
    tensors, blobs = [], []
    for wanted in request.outputs:
        name, array = wanted.name, outputs[wanted.name]
        datatype = OUTPUT_DATATYPES[name]
        if wanted.classification:
            array = classification(outputs["probabilities"], wanted.classification, class_names)
            datatype = "BYTES"
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if wanted.binary:
            blob = bytes_tensor(array) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = [s.decode() for s in array.ravel()] if datatype == "BYTES" else array.ravel()
        tensors.append(tensor)
    reply: dict[str, Any] = {"model_name": model_name, "model_version": str(version), "outputs": tensors}
    if request.id is not None:
        reply["id"] = request.id
    header = orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY)
    return (header + b"".join(blobs), len(header)) if blobs else (header, None)


def v2_images(datatype: Any, shape: tuple[int, ...], data: Any, pre: Preprocessing) -> np.ndarray:
    """The `images` input → (N, H, W, C) uint8.  `data`: the raw bytes (binary extension, gRPC's
    raw_input_contents), JSON values, or — gRPC's `contents` — a list of values (bytes for BYTES)."""
    where = "input 'images'"
    if datatype == "BYTES":
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise bad_request(f"{where}: BYTES images must have shape [N] or [N, 1], got {list(shape)}")
        items = (_bytes_elements(data) if isinstance(data, bytes) else
                 data if isinstance(data, list) and all(isinstance(x, bytes) for x in data) and data else
                 _b64_elements(data, where))
        if len(items) != prod(shape) or not items:
            raise bad_request(f"{where}: shape {list(shape)} wants {prod(shape)} images, got {len(items)}")
        return np.concatenate([decode_image(b, pre, f"{where}[{i}]") for i, b in enumerate(items)])
    if datatype not in NUMERIC_DATATYPES:
        raise bad_request(f"{where}: datatype {datatype!r} is not supported "
                          f"(use UINT8, another integer type, FP16/FP32/FP64, or BYTES for encoded images)")
    dtype = np.dtype(NUMERIC_DATATYPES[datatype]).newbyteorder("<")
    if isinstance(data, bytes):
        if len(data) != prod(shape) * dtype.itemsize:
            raise bad_request(f"{where}: {len(data)} bytes of binary data for shape {list(shape)} of {datatype} "
                              f"(expected {prod(shape) * dtype.itemsize})")
        array = np.frombuffer(data, dtype=dtype)
    else:
        array = numbers_array(data, where)
        if array.size != prod(shape):
            raise bad_request(f"{where}: {array.size} values for shape {list(shape)}")
        if datatype.startswith("FP"):
            array = array.astype(np.float64)  # JSON writes 0.0 and 1.0 as integers
        elif array.dtype.kind == "f":
            raise bad_request(f"{where}: datatype {datatype} but the data hold non-integers")
    return image_batch(array.reshape(shape), pre, where)


def check_shape(value: Any) -> tuple[int, ...]:
    if (not isinstance(value, list) or not 1 <= len(value) <= _MAX_DIMS
            or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**31 for d in value)):
        raise bad_request(f"input 'images': \"shape\" must be a list of 1 to {_MAX_DIMS} non-negative integers")
    return tuple(value)


def _parameters(tensor: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = tensor.get("parameters", {})
    if not isinstance(parameters, dict):
        raise bad_request(f"{where}: \"parameters\" must be an object")
    return parameters


def _requested_outputs(outputs: Any, request_params: dict[str, Any]) -> tuple[RequestedOutput, ...]:
    default_binary = request_params.get("binary_data_output", False) is True
    if outputs is None:
        return tuple(RequestedOutput(name, default_binary) for name in OUTPUT_NAMES)
    if not isinstance(outputs, list) or not outputs:
        raise bad_request("\"outputs\" must be a non-empty list")
    wanted = []
    for i, item in enumerate(outputs):
        if not isinstance(item, dict) or item.get("name") not in OUTPUT_NAMES:
            name = item.get("name") if isinstance(item, dict) else item
            raise bad_request(f"outputs[{i}]: unknown output {name!r} (the model has {', '.join(OUTPUT_NAMES)})")
        parameters = _parameters(item, f"outputs[{i}]")
        if "shared_memory_region" in parameters:
            raise bad_request("shared memory outputs are not supported")
        k = parameters.get("classification", 0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise bad_request(f"outputs[{i}]: \"classification\" must be a non-negative integer")
        binary = parameters.get("binary_data", default_binary)
        wanted.append(RequestedOutput(item["name"], binary is True, k))
    return tuple(wanted)


def classification(probabilities: np.ndarray, k: int, class_names: Sequence[str]) -> np.ndarray:
    """Triton's classification extension: top-k "score:index:label" per row, shape [N, k]."""
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    rows = [[f"{probabilities[r, j]:.6f}:{j}:{class_names[j]}".encode() for j in row] for r, row in enumerate(top)]
    return np.array(rows, dtype=object).reshape(len(rows), k)


def bytes_tensor(array: np.ndarray) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in array.ravel())


def _bytes_elements(data: bytes) -> list[bytes]:
    """Triton's binary BYTES layout: each element is a 4-byte little-endian length, then the bytes."""
    items, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise bad_request("input 'images': truncated BYTES element length")
        (n,) = struct.unpack_from("<I", data, offset)
        if offset + 4 + n > len(data):
            raise bad_request("input 'images': BYTES element longer than the binary data")
        items.append(data[offset + 4 : offset + 4 + n])
        offset += 4 + n
    return items


def _b64_elements(data: Any, where: str) -> list[bytes]:
    flat = data
    while isinstance(flat, list) and flat and all(isinstance(x, list) for x in flat):
        flat = [y for x in flat for y in x]
    if not isinstance(flat, list):
        raise bad_request(f"{where}: BYTES data must be a list of base64 strings")
    return [b64_bytes(x, f"{where}[{i}]") for i, x in enumerate(flat)]
