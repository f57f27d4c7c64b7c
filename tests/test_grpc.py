"""`visionflow serve`'s gRPC transport: real gRPC on loopback against a real server process.

TF Serving's PredictionService is called with messages built from our protos (and a tensor
serialised by TensorFlow's own generated TensorProto class, as tensorboard ships it), KServe V2's
GRPCInferenceService with the real `tritonclient.grpc` client.  One server answers the API tests;
the hot swap, graceful shutdown and limit tests start their own.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from google.protobuf import descriptor_pb2
from PIL import Image

from conftest import ROOT, run_cli
from serving_support import Server, metric, publish_copy, serve_first_version
from visionflow.export.exporter import export_model
from visionflow.serving.grpc_messages import DESCRIPTORS, array_to_tensor, message

SERVICE = "/tensorflow.serving.PredictionService/"


@pytest.fixture(scope="module")
def server(version_dir, tmp_path_factory):
    yield from serve_first_version(version_dir, tmp_path_factory, "--poll-seconds", "0.2", "--version-labels", "stable=1")


def rpc(target: str, method: str, request, reply: str, timeout: float = 30):
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(SERVICE + method, request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=message(reply).FromString)
        return call(request, timeout=timeout)


def predict_request(images=None, tensor=None, **spec):
    request = message("tensorflow.serving.PredictRequest")()
    request.model_spec.name = spec.pop("name", "digits")
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["images"].CopyFrom(tensor if tensor is not None else array_to_tensor(images))
    return request


def probabilities(reply) -> np.ndarray:
    out = reply.outputs["probabilities"]
    return np.frombuffer(out.tensor_content, "<f4").reshape([d.size for d in out.tensor_shape.dim])


def rest_probabilities(server: Server, images: np.ndarray) -> np.ndarray:
    status, _, reply = server.request("POST", "/v1/models/digits:predict", {"inputs": {"images": images.tolist()}})
    assert status == 200, reply
    return np.asarray(reply["outputs"]["probabilities"], dtype=np.float32)


def test_the_descriptor_set_is_what_protoc_makes_of_the_protos(tmp_path) -> None:
    from grpc_tools import protoc

    protos = DESCRIPTORS.parent
    files = sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))
    out = tmp_path / "set.binpb"
    assert protoc.main(["protoc", f"-I{protos}", f"-I{Path(protoc.__file__).parent / '_proto'}", "--include_imports",
                        f"--descriptor_set_out={out}", *files]) == 0
    built = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    committed = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTORS.read_bytes())
    assert {f.name: f for f in built.file} == {f.name: f for f in committed.file}


def test_predict_every_tensor_form_matches_rest(server, digits) -> None:
    target = server.grpc_target
    expected = rest_probabilities(server, digits)
    reply = rpc(target, "Predict", predict_request(digits), "tensorflow.serving.PredictResponse")
    np.testing.assert_allclose(probabilities(reply), expected, atol=1e-6)
    assert reply.model_spec.version.value == 1 and reply.model_spec.name == "digits"
    classes = reply.outputs["classes"]
    assert np.array_equal(np.frombuffer(classes.tensor_content, "<i8"), expected.argmax(1))
    # int_val instead of tensor_content, floats 0–1, (N, H, W) greyscale, and PNG strings
    as_ints = message("tensorflow.TensorProto")(dtype=4, int_val=digits.ravel().tolist())
    as_ints.tensor_shape.dim.extend([message("tensorflow.TensorShapeProto.Dim")(size=s) for s in digits.shape])
    floats = array_to_tensor((digits[..., 0] / 255.0).astype(np.float32))
    pngs = message("tensorflow.TensorProto")(dtype=7, string_val=[_png(image) for image in digits])
    pngs.tensor_shape.dim.add(size=len(digits))
    for tensor in (as_ints, floats, pngs):
        got = rpc(target, "Predict", predict_request(tensor=tensor), "tensorflow.serving.PredictResponse")
        np.testing.assert_allclose(probabilities(got), expected, atol=1e-5)
    # a tensor serialised by TensorFlow's own generated class (tensorboard ships TensorFlow's protos)
    from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

    theirs = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, tensor_content=digits.tobytes(),
                                    tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in digits.shape]))
    ours = message("tensorflow.TensorProto").FromString(theirs.SerializeToString())
    got = rpc(target, "Predict", predict_request(tensor=ours), "tensorflow.serving.PredictResponse")
    np.testing.assert_allclose(probabilities(got), expected, atol=1e-6)
    filtered = predict_request(digits[:2], version=1)
    filtered.output_filter.append("classes")
    assert list(rpc(target, "Predict", filtered, "tensorflow.serving.PredictResponse").outputs) == ["classes"]
    labelled = predict_request(digits[:2], version_label="stable", signature_name="serving_default")
    assert rpc(target, "Predict", labelled, "tensorflow.serving.PredictResponse").model_spec.version.value == 1


def _png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image[..., 0]).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize("change, code, fragment", [
    (lambda r: setattr(r.model_spec, "name", "other"), grpc.StatusCode.NOT_FOUND, "model 'other' is not served"),
    (lambda r: setattr(r.model_spec.version, "value", 7), grpc.StatusCode.NOT_FOUND, "7"),
    (lambda r: setattr(r.model_spec, "version_label", "canary"), grpc.StatusCode.NOT_FOUND, "canary"),
    (lambda r: setattr(r.model_spec, "signature_name", "train"), grpc.StatusCode.INVALID_ARGUMENT, "signature 'train'"),
    (lambda r: setattr(r.inputs["images"], "tensor_content", r.inputs["images"].tensor_content[:-5]),
     grpc.StatusCode.INVALID_ARGUMENT, "input 'images': 315 bytes of tensor_content for shape [5, 8, 8, 1]"),
    (lambda r: setattr(r.inputs["images"], "dtype", 10), grpc.StatusCode.INVALID_ARGUMENT, "dtype 10 is not supported"),
    (lambda r: r.inputs["images"].tensor_shape.dim[1].__setattr__("size", 4), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'images'"),
    (lambda r: r.inputs["images"].ClearField("tensor_shape"), grpc.StatusCode.INVALID_ARGUMENT, "tensor_shape is missing"),
    (lambda r: r.inputs["renamed"].CopyFrom(r.inputs.pop("images")), grpc.StatusCode.INVALID_ARGUMENT,
     "inputs must be exactly {'images'}"),
    (lambda r: r.output_filter.append("logits"), grpc.StatusCode.INVALID_ARGUMENT, "unknown output 'logits'"),
    (lambda r: r.inputs["images"].CopyFrom(_typed(4, [300] * 320, [5, 8, 8, 1])), grpc.StatusCode.INVALID_ARGUMENT,
     "input 'images'"),  # an int_val of 300 is no pixel (it must not wrap to 44)
    (lambda r: r.inputs["images"].CopyFrom(_typed(4, [7], [2**20, 8, 8, 1])), grpc.StatusCode.INVALID_ARGUMENT,
     "one value cannot fill shape"),  # 23 bytes must not allocate 64 M pixels
])
def test_bad_predict_requests_get_the_status_that_says_why(server, digits, change, code, fragment) -> None:
    request = predict_request(digits[:5])
    change(request)
    with pytest.raises(grpc.RpcError) as e:
        rpc(server.grpc_target, "Predict", request, "tensorflow.serving.PredictResponse")
    assert e.value.code() == code and fragment in e.value.details(), (e.value.code(), e.value.details())


def _typed(dtype: int, values: list, shape: list[int]):
    tensor = message("tensorflow.TensorProto")(dtype=dtype, int_val=values)
    tensor.tensor_shape.dim.extend([message("tensorflow.TensorShapeProto.Dim")(size=s) for s in shape])
    return tensor


def test_malformed_bytes_are_invalid_argument(server) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        call = channel.unary_unary(SERVICE + "Predict")
        with pytest.raises(grpc.RpcError) as e:
            call(b"\xff\xff\xff", timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid PredictRequest" in e.value.details()


def test_classify_and_metadata(server, digits) -> None:
    target = server.grpc_target
    request = message("tensorflow.serving.ClassificationRequest")()
    request.model_spec.name = "digits"
    for image in digits[:3]:
        example = request.input.example_list.examples.add()
        example.features.feature["images"].bytes_list.value.append(_png(image))
    reply = rpc(target, "Classify", request, "tensorflow.serving.ClassificationResponse")
    expected = rest_probabilities(server, digits[:3])
    for ranked, p in zip(reply.result.classifications, expected):
        assert ranked.classes[0].label == str(p.argmax()) and abs(ranked.classes[0].score - p.max()) < 1e-5
        assert len(ranked.classes) == 10
    metadata = message("tensorflow.serving.GetModelMetadataRequest")(metadata_field=["signature_def"])
    metadata.model_spec.name = "digits"
    reply = rpc(target, "GetModelMetadata", metadata, "tensorflow.serving.GetModelMetadataResponse")
    signatures = message("tensorflow.serving.SignatureDefMap")()
    assert reply.metadata["signature_def"].Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    assert default.inputs["images"].dtype == 4 and [d.size for d in default.inputs["images"].tensor_shape.dim] == [-1, 8, 8, 1]
    assert set(default.outputs) == {"probabilities", "classes"}
    with pytest.raises(grpc.RpcError) as e:
        rpc(target, "Regress", message("tensorflow.serving.RegressionRequest")(), "tensorflow.serving.RegressionResponse")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    status = message("tensorflow.serving.GetModelStatusRequest")()
    status.model_spec.name = "digits"
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary("/tensorflow.serving.ModelService/GetModelStatus",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=message("tensorflow.serving.GetModelStatusResponse").FromString)
        versions = call(status, timeout=10).model_version_status
    assert [(v.version, v.state, v.status.error_code) for v in versions] == [(1, 30, 0)]  # AVAILABLE, OK


def test_kserve_v2_with_tritonclient_grpc(server, digits) -> None:
    client = triton.InferenceServerClient(server.grpc_target)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    assert not client.is_model_ready("digits", "9")
    assert "classification" in client.get_server_metadata().extensions
    meta = client.get_model_metadata("digits")
    assert meta.inputs[0].datatype == "UINT8" and list(meta.inputs[0].shape) == [-1, 8, 8, 1]
    expected = rest_probabilities(server, digits)
    for datatype, data in (("UINT8", digits), ("FP32", (digits / 255.0).astype(np.float32))):
        tensor = triton.InferInput("images", list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        result = client.infer("digits", [tensor], outputs=[triton.InferRequestedOutput("probabilities"),
                                                            triton.InferRequestedOutput("classes", class_count=2)])
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)
        top = result.as_numpy("classes")
        assert top.shape == (16, 2) and [int(row[0].split(b":")[1]) for row in top] == expected.argmax(1).tolist()
    encoded = triton.InferInput("images", [2], "BYTES")
    encoded.set_data_from_numpy(np.array([_png(digits[0]), _png(digits[1])], dtype=object))
    result = client.infer("digits", [encoded])
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected[:2], atol=1e-5)
    from tritonclient.grpc import service_pb2, service_pb2_grpc  # Triton's own generated messages

    lying = service_pb2.ModelInferRequest(model_name="digits")
    lying.inputs.add(name="images", datatype="UINT8", shape=[2, 8, 8, 1])
    lying.raw_input_contents.append(digits[:2].tobytes()[:-1])
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as e:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(lying, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "127 bytes of binary data" in e.value.details()
    with pytest.raises(triton.InferenceServerException) as e:
        client.infer("nope", [tensor])
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_health_metrics_and_rest_beside_grpc(server, digits) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "tensorflow.serving.PredictionService", "inference.GRPCInferenceService"):
            assert stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status == \
                health_pb2.HealthCheckResponse.SERVING
    before = metric(server, "visionflow_requests_total", api="grpc_predict", code="200")

    def both(k: int) -> bool:
        if k % 2:
            return probabilities(rpc(server.grpc_target, "Predict", predict_request(digits[k:k + 1]),
                                     "tensorflow.serving.PredictResponse")).shape == (1, 10)
        return rest_probabilities(server, digits[k:k + 1]).shape == (1, 10)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(both, range(16)))
    assert metric(server, "visionflow_requests_total", api="grpc_predict", code="200") == before + 8
    with pytest.raises(grpc.RpcError):
        rpc(server.grpc_target, "Predict", predict_request(digits[:1], name="x"), "tensorflow.serving.PredictResponse")
    assert metric(server, "visionflow_requests_total", api="grpc_predict", code="404") >= 1
    assert metric(server, "visionflow_requests_total", model="x") == 0  # unknown names never become labels


def test_predict_cli_over_grpc_prints_what_local_predict_prints(server, model_dir, digits, tmp_path) -> None:
    import json

    from conftest import assert_one_line_error

    np.save(tmp_path / "batch.npy", digits[:6])
    local = run_cli("predict", "--model-dir", model_dir, tmp_path / "batch.npy", "--json")
    remote = run_cli("predict", "--server", f"grpc://{server.grpc_target}", "--model-name", "digits",
                     tmp_path / "batch.npy", "--json")
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    local_rows = [json.loads(line) for line in local.stdout.splitlines()]
    remote_rows = [json.loads(line) for line in remote.stdout.splitlines()]
    assert [(r["index"], r["class"], r["label"]) for r in remote_rows] == \
           [(r["index"], r["class"], r["label"]) for r in local_rows] and len(local_rows) == 6
    assert max(abs(a - b) for l, r in zip(local_rows, remote_rows)
               for a, b in zip(l["probabilities"], r["probabilities"])) <= 1e-4
    wrong = run_cli("predict", "--server", f"grpc://{server.grpc_target}", "--model-name", "nope", tmp_path / "batch.npy")
    assert_one_line_error(wrong, "GetModelMetadata: NOT_FOUND", "not served here")


def test_hot_swap_under_grpc_load_loses_no_call_and_shutdown_answers_in_flight(model_dir, version_dir, tmp_path) -> None:
    base = tmp_path / "base"
    publish_copy(version_dir, base, 1)
    server = Server(base, "--poll-seconds", "0.2", "--batch-timeout-micros", "200000", "--max-batch-size", "64")
    stop, failures, seen = threading.Event(), [], set()
    images = np.zeros((1, 8, 8, 1), np.uint8)

    def client() -> None:
        with grpc.insecure_channel(server.grpc_target) as channel:
            call = channel.unary_unary(SERVICE + "Predict", request_serializer=lambda m: m.SerializeToString(),
                                       response_deserializer=message("tensorflow.serving.PredictResponse").FromString)
            while not stop.is_set():
                try:
                    seen.add(call(predict_request(images), timeout=30).model_spec.version.value)
                except grpc.RpcError as e:
                    failures.append(f"{e.code()} {e.details()}")

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert export_model(model_dir, base).version == 2
        server.wait_for(lambda: 2 in seen, timeout=30)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [] and seen == {1, 2}
    # a call waiting in the batcher (200 ms batch timeout) when SIGTERM arrives is still answered
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(rpc, server.grpc_target, "Predict", predict_request(images),
                              "tensorflow.serving.PredictResponse")
        time.sleep(0.05)
        server.proc.send_signal(signal.SIGTERM)
        assert pending.result(timeout=30).model_spec.version.value == 2
    # uvicorn re-raises the signal once it has shut down cleanly, so the exit status is SIGTERM's
    assert server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Traceback" not in server.stop()


def test_message_limit_port_in_use_and_reflection(version_dir, digits, tmp_path) -> None:
    base = tmp_path / "base"
    publish_copy(version_dir, base, 1)
    server = Server(base, "--grpc-max-message-mb", "0.01", "--grpc-reflection")
    try:
        big = np.zeros((200, 8, 8, 1), np.uint8)  # 12.8 kB of pixels > 10.5 kB
        with pytest.raises(grpc.RpcError) as e:
            rpc(server.grpc_target, "Predict", predict_request(big), "tensorflow.serving.PredictResponse")
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        small = rpc(server.grpc_target, "Predict", predict_request(digits[:2]), "tensorflow.serving.PredictResponse")
        assert probabilities(small).shape == (2, 10)
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = {s.name for reply in replies for s in reply.list_services_response.service}
        assert {"tensorflow.serving.PredictionService", "inference.GRPCInferenceService"} <= names
        port = server.grpc_target.rsplit(":", 1)[1]
        taken = subprocess.run([sys.executable, "-m", "visionflow", "serve", "--model-base-path", str(base),
                                "--model-name", "digits", "--port", "0", "--grpc-port", port],
                               capture_output=True, text=True, timeout=120, cwd=ROOT,
                               env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})
        assert taken.returncode == 2 and "for gRPC" in taken.stderr and "Traceback" not in taken.stderr, taken.stderr
    finally:
        server.stop()
