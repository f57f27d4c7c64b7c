"""The gRPC contracts' messages, and tensors in and out of them.

`protos/` holds our own .proto files of the two wire contracts — TensorFlow Serving's
`tensorflow.serving.PredictionService` (with the TensorFlow messages it uses) and KServe V2's
`inference.GRPCInferenceService` (Triton's field numbers, so `tritonclient.grpc` interoperates)
— and `protos/descriptors.binpb`, the FileDescriptorSet protoc compiled from them
(tests/test_grpc.py recompiles it with grpcio-tools and compares).  The message classes are built
from it in a private descriptor pool: TensorFlow, tensorflow-serving-api or tritonclient may
register the same message names in protobuf's default pool in the same process, and a second
registration there is an error.  No generated `_pb2` modules, no TensorFlow.
"""

from __future__ import annotations

import functools
from math import prod
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .errors import bad_request

DESCRIPTORS = Path(__file__).with_name("protos") / "descriptors.binpb"
#: Most dimensions a request tensor may have.
MAX_DIMS = 8
#: Most values a single typed value may be broadcast to (TF's one-value fill): bounds what a
#: tiny request can make the server allocate.
MAX_FILL = 1 << 24

#: TensorFlow DataType numbers (tensorflow/core/framework/types.proto) ↔ numpy.
DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING, DT_INT64 = 1, 2, 3, 4, 5, 6, 7, 9
DT_UINT16, DT_HALF, DT_UINT32, DT_UINT64 = 17, 19, 22, 23
TF_NUMPY = {DT_FLOAT: np.float32, DT_DOUBLE: np.float64, DT_INT32: np.int32, DT_UINT8: np.uint8,
            DT_INT16: np.int16, DT_INT8: np.int8, DT_INT64: np.int64, DT_UINT16: np.uint16, DT_HALF: np.float16,
            DT_UINT32: np.uint32, DT_UINT64: np.uint64}
TF_NAMES = {DT_FLOAT: "DT_FLOAT", DT_DOUBLE: "DT_DOUBLE", DT_INT32: "DT_INT32", DT_UINT8: "DT_UINT8",
            DT_INT16: "DT_INT16", DT_INT8: "DT_INT8", DT_STRING: "DT_STRING", DT_INT64: "DT_INT64",
            DT_UINT16: "DT_UINT16", DT_HALF: "DT_HALF", DT_UINT32: "DT_UINT32", DT_UINT64: "DT_UINT64"}
_NUMPY_TF = {np.dtype(v): k for k, v in TF_NUMPY.items()}
#: Which repeated field of TensorProto holds each dtype's values when tensor_content is empty.
_TF_VALUES = {DT_FLOAT: "float_val", DT_DOUBLE: "double_val", DT_INT32: "int_val", DT_UINT8: "int_val",
              DT_INT16: "int_val", DT_INT8: "int_val", DT_UINT16: "int_val", DT_INT64: "int64_val",
              DT_HALF: "half_val", DT_UINT32: "uint32_val", DT_UINT64: "uint64_val"}
#: KServe V2 datatype → which repeated field of InferTensorContents holds it.
V2_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
               "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
               "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
               "FP64": "fp64_contents", "BYTES": "bytes_contents"}


@functools.lru_cache(maxsize=1)
def _pool() -> descriptor_pool.DescriptorPool:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:  # dependencies come first in protoc's --include_imports output
        pool.Add(file)
    return pool


@functools.lru_cache(maxsize=None)
def message(full_name: str) -> Any:
    """The message class of `full_name` (e.g. "tensorflow.serving.PredictRequest")."""
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(full_name))


def pool() -> descriptor_pool.DescriptorPool:
    """The private pool (server reflection describes the services from it)."""
    return _pool()


def tensor_to_array(tensor: Any, where: str) -> tuple[np.ndarray | list[bytes], tuple[int, ...], int]:
    """A `tensorflow.TensorProto` → (numpy values, or the string_val bytes for DT_STRING), its
    shape, its dtype number.  The values' count must match the shape (or be one value, which TF
    broadcasts); tensor_content must be exactly the shape's bytes: a 400 otherwise."""
    shape = _tf_shape(tensor, where)
    count = prod(shape)
    dtype = tensor.dtype
    if dtype == DT_STRING:
        items = list(tensor.string_val)
        if len(items) != count:
            raise bad_request(f"{where}: shape {list(shape)} wants {count} strings, string_val holds {len(items)}")
        return items, shape, dtype
    if dtype not in TF_NUMPY:
        raise bad_request(f"{where}: dtype {dtype} is not supported (use DT_UINT8, another integer type, "
                          "DT_HALF/DT_FLOAT/DT_DOUBLE, or DT_STRING for encoded images)")
    np_type = np.dtype(TF_NUMPY[dtype]).newbyteorder("<")
    if tensor.tensor_content:
        expected = count * np_type.itemsize
        if len(tensor.tensor_content) != expected:
            raise bad_request(f"{where}: {len(tensor.tensor_content)} bytes of tensor_content for shape "
                              f"{list(shape)} of {TF_NAMES[dtype]} (expected {expected})")
        return np.frombuffer(tensor.tensor_content, dtype=np_type).reshape(shape), shape, dtype
    values = getattr(tensor, _TF_VALUES[dtype])
    if dtype == DT_HALF:
        array = np.asarray(values, dtype=np.uint16).view(np.float16)
    else:  # read wide: an int_val of 300 for DT_UINT8 must fail the pixel check, not wrap to 44
        array = np.asarray(values, dtype=np.uint64 if dtype == DT_UINT64 else np.float64 if np_type.kind == "f"
                           else np.int64)
    if len(array) == 1 and count != 1:
        if count > MAX_FILL:
            raise bad_request(f"{where}: one value cannot fill shape {list(shape)} (at most {MAX_FILL:,} values)")
        array = np.full(count, array[0], dtype=array.dtype)
    if len(array) != count:
        raise bad_request(f"{where}: shape {list(shape)} wants {count} values, {_TF_VALUES[dtype]} holds {len(array)}")
    return array.reshape(shape), shape, dtype


def array_to_tensor(array: np.ndarray) -> Any:
    """A numpy array → `tensorflow.TensorProto` with its bytes in tensor_content (one copy)."""
    array = np.ascontiguousarray(array)
    dtype = _NUMPY_TF[array.dtype]
    tensor = message("tensorflow.TensorProto")(dtype=dtype, tensor_content=array.tobytes())
    tensor.tensor_shape.dim.extend([message("tensorflow.TensorShapeProto.Dim")(size=int(d)) for d in array.shape])
    return tensor


def _tf_shape(tensor: Any, where: str) -> tuple[int, ...]:
    if not tensor.HasField("tensor_shape") or tensor.tensor_shape.unknown_rank:
        raise bad_request(f"{where}: tensor_shape is missing (a known shape is needed)")
    dims = tuple(d.size for d in tensor.tensor_shape.dim)
    if not 1 <= len(dims) <= MAX_DIMS or any(d < 0 or d >= 2**31 for d in dims):
        raise bad_request(f"{where}: tensor_shape must have 1 to {MAX_DIMS} dimensions of 0 or more, got {list(dims)}")
    return dims


def v2_contents(tensor: Any, where: str) -> list[Any]:
    """The values of a V2 `InferInputTensor` sent in `contents` (not raw), as a flat list."""
    field = V2_CONTENTS.get(tensor.datatype)
    if field is None:
        raise bad_request(f"{where}: datatype {tensor.datatype!r} cannot be sent in contents")
    return list(getattr(tensor.contents, field))
