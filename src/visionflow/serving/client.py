"""`visionflow predict --server URL --model-name NAME INPUT...`: local inputs, remote model.

Reads the inputs exactly as local `predict` does (images resized to the model's size, .npy
batches in any accepted layout) using the preprocessing the server reports in its metadata,
sends them to TF Serving's `:predict` in chunks, and returns the same `Prediction`s, so the
output is the same as with `--model-dir`.  Standard library HTTP; a `grpc://HOST:PORT` server is
asked over gRPC instead (PredictionService's GetModelMetadata and Predict, pixels as raw uint8
tensor_content).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Sequence

import numpy as np
import torch

from ..core.typed import from_dict
from ..errors import InputError
from ..infer.predict import Prediction, read_inputs, to_predictions
from ..preprocessing import Preprocessing

CHUNK = 256  # images per request: bounded bodies, whatever the size of a .npy batch
GRPC_CHUNK_BYTES = 16 * 2**20  # pixels per gRPC request, at most
TIMEOUT_S = 60


def predict_remote(server: str, model_name: str, inputs: Sequence[str]) -> tuple[list[Prediction], list[str]]:
    """Predictions for `inputs` from the server, and the source name of each."""
    if server.startswith("grpc://"):
        return _predict_grpc(server, model_name, inputs)
    root = _root(server)
    model = f"{root}/v1/models/{urllib.parse.quote(model_name, safe='')}"
    info = _call(f"{model}/metadata")
    try:
        summary = info["metadata"]["visionflow_signature"]
        pre = from_dict(Preprocessing, summary["preprocessing"], f"{model}/metadata")
        class_names = summary["class_names"]
    except (KeyError, TypeError) as e:
        raise InputError(f"{model}/metadata: not a visionflow server's metadata (missing {e})") from None
    batch, sources = read_inputs(inputs, pre)
    rows = []
    for start in range(0, len(batch), CHUNK):
        reply = _call(f"{model}:predict", {"inputs": {"images": batch[start : start + CHUNK].tolist()}})
        rows.append(np.asarray(reply["outputs"]["probabilities"], dtype=np.float32))
    return to_predictions(torch.from_numpy(np.concatenate(rows)), sources, class_names), sources


def _predict_grpc(server: str, model_name: str, inputs: Sequence[str]) -> tuple[list[Prediction], list[str]]:
    try:
        import grpc
    except ImportError:
        raise InputError("grpcio not installed: pip install 'visionflow[serve]'") from None

    from .grpc_messages import array_to_tensor, message

    target = server.removeprefix("grpc://").rstrip("/")
    if "/" in target or not target.rpartition(":")[2].isdigit():
        raise InputError(f"--server {server!r}: expected grpc://HOST:PORT, such as grpc://127.0.0.1:8500")
    service = "/tensorflow.serving.PredictionService/"
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 * 2**20),
                                                ("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        def rpc(method: str, request: Any, reply: str) -> Any:
            call = channel.unary_unary(service + method, request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=message(reply).FromString)
            try:
                return call(request, timeout=TIMEOUT_S)
            except grpc.RpcError as e:
                raise InputError(f"{server}: {method}: {e.code().name} {e.details()}") from None

        request = message("tensorflow.serving.GetModelMetadataRequest")(metadata_field=["visionflow_signature"])
        request.model_spec.name = model_name
        info = rpc("GetModelMetadata", request, "tensorflow.serving.GetModelMetadataResponse")
        text = message("google.protobuf.StringValue")()
        if "visionflow_signature" not in info.metadata or not info.metadata["visionflow_signature"].Unpack(text):
            raise InputError(f"{server}: not a visionflow server (no visionflow_signature metadata)")
        summary = json.loads(text.value)
        pre = from_dict(Preprocessing, summary["preprocessing"], f"{server} metadata")
        batch, sources = read_inputs(inputs, pre)
        chunk = max(1, min(CHUNK, GRPC_CHUNK_BYTES // max(1, batch[0].nbytes)))  # well under the 64 MB limit
        rows = []
        for start in range(0, len(batch), chunk):
            request = message("tensorflow.serving.PredictRequest")(output_filter=["probabilities"])
            request.model_spec.name = model_name
            request.inputs["images"].CopyFrom(array_to_tensor(batch[start : start + chunk]))
            reply = rpc("Predict", request, "tensorflow.serving.PredictResponse")
            out = reply.outputs["probabilities"]
            rows.append(np.frombuffer(out.tensor_content, dtype="<f4").reshape([d.size for d in out.tensor_shape.dim]))
    return to_predictions(torch.from_numpy(np.concatenate(rows).copy()), sources, summary["class_names"]), sources


def _root(server: str) -> str:
    url = server if "://" in server else f"http://{server}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--server {server!r}: expected a URL such as http://127.0.0.1:8501 (or grpc://HOST:8500)")
    return url.rstrip("/")


def _call(url: str, payload: Any | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise InputError(f"{url}: {e.code} {_error_text(e)}") from None
    except (urllib.error.URLError, OSError) as e:
        raise InputError(f"{url}: cannot reach the server ({getattr(e, 'reason', e)})") from None
    except json.JSONDecodeError:
        raise InputError(f"{url}: the reply is not JSON") from None


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason
