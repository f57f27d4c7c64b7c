"""`visionflow serve`: real HTTP on loopback against a real server process.

One server (version 1 of a cnn on the 8x8 digits) answers the API tests; the version
lifecycle tests (hot swap under load, broken and half-written versions) start their own.
The request-body parsers are property-tested in process with hypothesis.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import pytest
import torch
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from conftest import assert_one_line_error, run_cli
from serving_support import Server, metric, publish_copy, serve_first_version
from visionflow.engine.evaluation import load_model
from visionflow.engine.modeldir import ModelDir
from visionflow.errors import InputError
from visionflow.export.exportdir import Signature
from visionflow.export.exporter import export_model
from visionflow.infer.predict import predict_probabilities
from visionflow.preprocessing import Preprocessing
from visionflow.serving.errors import RequestError
from visionflow.serving.images import numbers_array
from visionflow.serving.rest_payloads import parse_classify, parse_json, parse_predict
from visionflow.serving.runtime import OnnxRunner, TorchRunner
from visionflow.serving.v2_tensors import NUMERIC_DATATYPES, parse_infer, split_body

PREDICT = "/v1/models/digits:predict"
INFER = "/v2/models/digits/infer"


@pytest.fixture(scope="module")
def server(version_dir, tmp_path_factory):
    yield from serve_first_version(version_dir, tmp_path_factory, "--poll-seconds", "0.2", "--version-labels",
                                   "stable=1", "--max-body-bytes", "300000")


@pytest.fixture(scope="module")
def local_probabilities(model_dir):
    """What `visionflow predict --model-dir` computes for (N, 8, 8, 1) uint8 images."""
    run, model, _ = load_model(ModelDir(model_dir), torch.device("cpu"))
    return lambda images: predict_probabilities(model, run.preprocessing.normalize(torch.tensor(images)),
                                                "fp32").numpy()


def png_b64(image: np.ndarray, size: tuple[int, int] | None = None) -> str:
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if size is not None:
        picture = picture.resize(size)
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


# -- TF Serving REST ---------------------------------------------------------------------------


def test_banner_names_urls_and_a_working_curl_example(server):
    text = "\n".join(server.banner)
    assert f"{server.url}/v1/models/digits" in text and f"{server.url}/v2/models/digits" in text
    assert f"{server.url}/monitoring/prometheus/metrics" in text and server.url.startswith("http://127.0.0.1:")
    body = re.search(r"-d '(.*)'$", next(l for l in server.banner if "curl" in l)).group(1)
    status, _, reply = server.request("POST", PREDICT, body.encode())
    assert status == 200 and len(reply["predictions"]) == 1


def test_model_status_by_name_version_and_label(server):
    available = [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    for path in ("/v1/models/digits", "/v1/models/digits/versions/1", "/v1/models/digits/labels/stable"):
        status, _, reply = server.request("GET", path)
        assert (status, reply) == (200, {"model_version_status": available}), path
    for path, fragment in [("/v1/models/other", "not served here"), ("/v1/models/digits/versions/7", "version 7"),
                           ("/v1/models/digits/labels/canary", "no version label 'canary'"),
                           ("/v1/models/digits/versions/x1", "not a version"),
                           ("/v1/models/..%2F..%2Fetc", "no such endpoint"), ("/nowhere", "no such endpoint")]:
        status, _, reply = server.request("GET", path)
        assert status == 404 and fragment in reply["error"], (path, reply)


def test_metadata_describes_the_signature(server, model_dir):
    for path in ("/v1/models/digits/metadata", "/v1/models/digits/versions/1/metadata",
                 "/v1/models/digits/labels/stable/metadata"):
        status, headers, reply = server.request("GET", path)
        assert status == 200 and headers["x-model-version"] == "1"
        assert reply["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
        signature = reply["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["inputs"]["images"]["dtype"] == "DT_UINT8"
        assert [d["size"] for d in signature["inputs"]["images"]["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
        assert set(signature["outputs"]) == {"probabilities", "classes"}
        summary = reply["metadata"]["visionflow_signature"]
        run = ModelDir(model_dir).load_config()
        assert summary["preprocessing"]["mean"] == list(run.preprocessing.mean)
        assert summary["class_names"] == list(run.class_names) and summary["model"] == "cnn"


def test_predict_every_input_form_matches_local_predict(server, digits, local_probabilities):
    images = digits[:3]
    want = local_probabilities(images)
    forms = {
        "instances uint8 HxW": {"instances": images[..., 0].tolist()},
        "instances HxWxC": {"instances": images.tolist()},
        "instances flat": {"instances": images.reshape(3, -1).tolist()},
        "instances floats 0-1": {"instances": (images / 255.0).tolist()},
        "instances b64 png": {"instances": [{"b64": png_b64(x)} for x in images]},
        "instances named": {"instances": [{"images": {"b64": png_b64(x)}} for x in images]},
        "inputs batch": {"inputs": images.tolist()},
        "inputs named": {"inputs": {"images": images[..., 0].tolist()}, "signature_name": "serving_default"},
        "inputs b64 list": {"inputs": [{"b64": png_b64(x)} for x in images]},
    }
    for name, body in forms.items():
        for path in (PREDICT, "/v1/models/digits/versions/1:predict", "/v1/models/digits/labels/stable:predict"):
            status, headers, reply = server.request("POST", path, body)
            assert status == 200, (name, reply)
            assert reply["model_version"] == "1" and headers["x-model-version"] == "1"
            if "inputs" in body:
                probabilities, classes = np.array(reply["outputs"]["probabilities"]), reply["outputs"]["classes"]
            else:
                probabilities = np.array([p["probabilities"] for p in reply["predictions"]])
                classes = [p["classes"] for p in reply["predictions"]]
            assert np.abs(probabilities - want).max() <= 1e-4, name
            assert classes == want.argmax(1).tolist(), name


def test_predict_resizes_encoded_images_of_another_size(server, digits, local_probabilities):
    """A 32x32 RGB JPEG is converted to greyscale and resized to 8x8 as `visionflow predict` would."""
    big = Image.fromarray(digits[0, :, :, 0]).resize((32, 32)).convert("RGB")
    out = io.BytesIO()
    big.save(out, format="JPEG", quality=95)
    status, _, reply = server.request("POST", PREDICT, {"instances": [{"b64": base64.b64encode(out.getvalue()).decode()}]})
    assert status == 200
    resized = Image.open(io.BytesIO(out.getvalue())).convert("L").resize((8, 8), Image.BILINEAR)
    want = local_probabilities(np.asarray(resized, dtype=np.uint8).reshape(1, 8, 8, 1))
    assert np.abs(np.array(reply["predictions"][0]["probabilities"]) - want[0]).max() <= 1e-4


def test_classify_ranks_labels(server, digits, local_probabilities):
    body = {"examples": [{"images": {"b64": png_b64(digits[0])}}, {"images": digits[1][..., 0].tolist()}]}
    status, _, reply = server.request("POST", "/v1/models/digits:classify", body)
    assert status == 200 and len(reply["results"]) == 2
    want = local_probabilities(digits[:2])
    for result, p in zip(reply["results"], want):
        labels, scores = zip(*result)
        assert list(labels) == [str(k) for k in np.argsort(-p, kind="stable")]
        assert np.abs(np.array(scores) - np.sort(p)[::-1]).max() <= 1e-4


BAD_REQUESTS = [
    (PREDICT, b"{not json", 400, "not valid JSON"),
    (PREDICT, b"[1, 2]", 400, "must be a JSON object"),
    (PREDICT, {"instances": [], "inputs": []}, 400, "exactly one of"),
    (PREDICT, {}, 400, "exactly one of"),
    (PREDICT, {"instances": []}, 400, "non-empty list"),
    (PREDICT, {"instances": [[1, 2, 3]]}, 400, "does not hold 8x8x1 images"),
    (PREDICT, {"instances": [[[1] * 8] * 7 + [[1] * 7]]}, 400, "not a rectangular array"),
    (PREDICT, {"instances": [[["a"] * 8] * 8]}, 400, "must be numbers, not strings"),
    (PREDICT, {"instances": [[[True] * 8] * 8]}, 400, "must be numbers, not booleans"),
    (PREDICT, {"instances": [[[300] * 8] * 8]}, 400, "integer pixels must be in 0-255"),
    (PREDICT, {"instances": [[[-1] * 8] * 8]}, 400, "integer pixels must be in 0-255"),
    (PREDICT, {"instances": [[[2.5] * 8] * 8]}, 400, "float pixels must be in 0-1"),
    (PREDICT, {"instances": [[[10**30] * 8] * 8]}, 400, "pixels must be in"),
    (PREDICT, {"instances": [{"b64": "%%%not base64%%%"}]}, 400, "not valid base64"),
    (PREDICT, {"instances": [{"b64": base64.b64encode(b"GIF89a garbage").decode()}]}, 400, "not a readable image"),
    (PREDICT, {"instances": [{"b64": 12}]}, 400, "must be a string"),
    (PREDICT, {"instances": [{"pixels": [1]}]}, 400, "unknown input(s) pixels"),
    (PREDICT, {"instances": [None]}, 400, "expected an image"),
    (PREDICT, {"inputs": [[1, 2], [3, 4]]}, 400, "does not hold 8x8x1 images"),
    (PREDICT, {"inputs": {"images": 3}}, 400, "non-empty batch"),
    (PREDICT, {"instances": [[[0] * 8] * 8], "signature_name": "other"}, 400, "unknown signature_name"),
    (PREDICT, {"instances": [[[0] * 8] * 8], "extra": 1}, 400, "unknown field(s) extra"),
    ("/v1/models/digits:regress", {"instances": [[[0] * 8] * 8]}, 400, "no regress method"),
    ("/v1/models/digits:explain", {}, 404, "unknown method :explain"),
    ("/v1/models/digits:classify", {"examples": [{"pixels": 1}]}, 400, "has no 'images' feature"),
    ("/v1/models/digits:classify", {"examples": "x"}, 400, "non-empty list"),
    ("/v1/models/digits/versions/99:predict", {"instances": [[[0] * 8] * 8]}, 404, "version 99"),
    ("/v1/models/other:predict", {"instances": [[[0] * 8] * 8]}, 404, "not served here"),
    (INFER, {"inputs": []}, 400, "list of one tensor"),
    (INFER, {"inputs": [{"name": "x", "shape": [1], "datatype": "UINT8", "data": [1]}]}, 400, "unknown input 'x'"),
    (INFER, {"inputs": [{"name": "images", "shape": [1, 8, 8, 1], "datatype": "UINT8", "data": [1, 2]}]}, 400,
     "2 values for shape [1, 8, 8, 1]"),
    (INFER, {"inputs": [{"name": "images", "shape": [1, 64], "datatype": "BOOL", "data": [True] * 64}]}, 400,
     "datatype 'BOOL' is not supported"),
    (INFER, {"inputs": [{"name": "images", "shape": [1, 64], "datatype": "INT32", "data": [0.5] * 64}]}, 400,
     "hold non-integers"),
    (INFER, {"inputs": [{"name": "images", "shape": [1, -64], "datatype": "UINT8", "data": [0] * 64}]}, 400,
     "non-negative integers"),
    (INFER, {"inputs": [{"name": "images", "shape": [2], "datatype": "BYTES", "data": ["AAAA", "!!"]}]}, 400,
     "not valid base64"),
    (INFER, {"inputs": [{"name": "images", "shape": [1, 64], "datatype": "UINT8", "data": [0] * 64}],
             "outputs": [{"name": "logits"}]}, 400, "unknown output 'logits'"),
    ("/v2/models/digits/versions/5/infer", {}, 404, "version 5"),
]


@pytest.mark.parametrize("path,body,status,fragment", BAD_REQUESTS, ids=[f"{i}" for i in range(len(BAD_REQUESTS))])
def test_bad_requests_get_4xx_with_an_error_message(server, path, body, status, fragment):
    got, headers, reply = server.request("POST", path, body)
    assert got == status and headers["content-type"] == "application/json", (got, reply)
    assert fragment in reply["error"], reply["error"]


def test_protocol_level_errors_are_4xx(server):
    conn = server.connection()
    binary_header = orjson.dumps({"inputs": [{"name": "images", "shape": [1, 64], "datatype": "UINT8",
                                              "parameters": {"binary_data_size": 64}}]})
    cases = [
        ("GET", PREDICT, None, {}, 405, "takes POST"),
        ("POST", "/v1/models/digits", b"{}", {}, 405, "takes GET"),
        ("POST", PREDICT, b"x" * 300_001, {}, 413, "larger than the server's limit"),
        ("POST", PREDICT, gzip.compress(b" " * 400_000), {"Content-Encoding": "gzip"}, 413, "limit"),
        ("POST", PREDICT, b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
        ("POST", PREDICT, b"{}", {"Content-Encoding": "br"}, 415, "not supported"),
        ("POST", INFER, b"{}", {"Inference-Header-Content-Length": "99"}, 400, "does not fit a body of 2 bytes"),
        ("POST", INFER, binary_header + b"\0" * 10, {"Inference-Header-Content-Length": str(len(binary_header))},
         400, "binary_data_size 64 does not match the 10 binary bytes sent"),
    ]
    for method, path, body, headers, status, fragment in cases:
        got, _, reply = server.request(method, path, body, headers)
        assert got == status and fragment in reply["error"], (path, got, reply)
    # a declared body larger than the limit is refused before it is sent, on a kept-alive connection
    status, _, reply = server.request("POST", PREDICT, b"{}", {"Content-Length": "999999999"}, conn=None)
    assert status == 413
    gzipped = gzip.compress(json.dumps({"instances": [[[0] * 8] * 8]}).encode())
    status, _, reply = server.request("POST", PREDICT, gzipped, {"Content-Encoding": "gzip"}, conn=conn)
    assert status == 200 and len(reply["predictions"]) == 1
    conn.close()


def test_chunked_bodies_are_read_whole_limited_and_a_dropped_one_is_harmless(server, digits):
    body = json.dumps({"instances": digits[:3].tolist()}).encode()
    conn = server.connection()
    conn.request("POST", PREDICT, body=iter([body[i : i + 97] for i in range(0, len(body), 97)]),
                 encode_chunked=True)  # no Content-Length: the limit is checked as the chunks arrive
    response = conn.getresponse()
    assert response.status == 200 and len(json.loads(response.read())["predictions"]) == 3
    conn.request("POST", PREDICT, body=iter([b" " * 100_000] * 4), encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and "limit" in json.loads(response.read())["error"]
    conn.close()
    with socket.create_connection((server.host, server.port)) as raw:  # hangs up half-way through a body
        raw.sendall(f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode() + b"[" * 100)
    status, _, reply = server.request("POST", PREDICT, {"instances": digits[:1].tolist()})
    assert status == 200 and len(reply["predictions"]) == 1  # (no traceback: checked when the server stops)


# -- KServe V2 ----------------------------------------------------------------------------------


def test_v2_health_metadata_and_infer_with_tritonclient(server, digits, local_probabilities):
    client = triton.InferenceServerClient(f"{server.host}:{server.port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    assert not client.is_model_ready("digits", "2") and not client.is_model_ready("other")
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "classification"]
    meta = client.get_model_metadata("digits")
    # `--runtime auto`: PyTorch where CUDA is present, onnxruntime otherwise
    assert meta["versions"] == ["1"]
    assert meta["platform"] == ("pytorch_libtorch" if torch.cuda.is_available() else "onnxruntime_onnx")
    assert meta["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 8, 8, 1]}]
    want = local_probabilities(digits)

    for binary in (True, False):
        images = triton.InferInput("images", list(digits.shape), "UINT8")
        images.set_data_from_numpy(digits, binary_data=binary)
        outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary),
                   triton.InferRequestedOutput("classes", binary_data=not binary)]
        result = client.infer("digits", [images], model_version="1", outputs=outputs, request_id="r1")
        assert np.abs(result.as_numpy("probabilities") - want).max() <= 1e-4
        assert result.as_numpy("classes").tolist() == want.argmax(1).tolist()
        assert result.get_response()["model_version"] == "1" and result.get_response()["id"] == "r1"

    floats = triton.InferInput("images", [4, 64], "FP32")
    floats.set_data_from_numpy((digits[:4].reshape(4, 64) / 255.0).astype(np.float32))
    result = client.infer("digits", [floats])
    assert np.abs(result.as_numpy("probabilities") - want[:4]).max() <= 1e-4

    encoded = triton.InferInput("images", [2], "BYTES")
    encoded.set_data_from_numpy(np.array([base64.b64decode(png_b64(x)) for x in digits[:2]], dtype=object))
    top = client.infer("digits", [encoded], outputs=[triton.InferRequestedOutput("classes", class_count=3)])
    rows = top.as_numpy("classes")
    assert rows.shape == (2, 3)
    for row, p in zip(rows, want[:2]):
        assert [int(item.decode().split(":")[1]) for item in row] == np.argsort(-p, kind="stable")[:3].tolist()

    with pytest.raises(triton.InferenceServerException, match="version 9"):
        client.infer("digits", [floats], model_version="9")
    wrong = triton.InferInput("images", [1, 7, 7, 1], "UINT8")
    wrong.set_data_from_numpy(np.zeros((1, 7, 7, 1), np.uint8))
    with pytest.raises(triton.InferenceServerException, match=r"\[400\].*does not hold 8x8x1 images"):
        client.infer("digits", [wrong])
    client.close()


# -- batching, metrics, predict --server -------------------------------------------------------


def test_concurrent_requests_are_batched_and_metered(server, digits):
    errors: list[str] = []

    def client(seed: int) -> None:
        conn = server.connection()
        for i in range(12):
            image = digits[(seed + i) % len(digits)]
            status, _, reply = server.request("POST", PREDICT, {"instances": [image.tolist()]}, conn=conn)
            if status != 200:
                errors.append(str(reply))
        conn.close()

    before = metric(server, "visionflow_batch_size_sum")
    calls_before = metric(server, "visionflow_batch_size_count")
    singles_before = metric(server, "visionflow_batch_size_bucket", le="1.0")
    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    text = server.request("GET", "/monitoring/prometheus/metrics")[2].decode()
    assert metric(server, "visionflow_batch_size_sum") - before == 16 * 12
    calls = metric(server, "visionflow_batch_size_count") - calls_before
    singles = metric(server, "visionflow_batch_size_bucket", le="1.0") - singles_before
    assert calls > singles, "no runtime call ever held more than one request"
    assert calls < 16 * 12
    assert metric(server, "visionflow_requests_total", api="tfs_predict", code="200", model="digits", version="1") >= 192
    assert metric(server, "visionflow_request_errors_total", api="tfs_predict", code="400", version="1") > 0
    assert metric(server, "visionflow_request_latency_seconds_count", api="v2_infer", version="1") > 0
    assert metric(server, "visionflow_model_version_available", model="digits", version="1") == 1
    assert not re.search(r'code="5\d\d"', text), "a request got a 5xx"


def test_predict_cli_against_the_server_prints_what_local_predict_prints(server, model_dir, digits, tmp_path):
    Image.fromarray(digits[0, :, :, 0]).resize((24, 24)).save(tmp_path / "seven.png")
    np.save(tmp_path / "batch.npy", digits[1:4] / 255.0)
    inputs = [tmp_path / "seven.png", tmp_path / "batch.npy"]
    remote = ("--server", server.url, "--model-name")
    commands = [("--model-dir", model_dir, "--json"), (*remote, "digits", "--json"), (*remote, "digits"), (*remote, "nope")]
    with ThreadPoolExecutor(len(commands)) as pool:
        local, remote, plain, wrong = pool.map(lambda flags: run_cli("predict", *flags, *inputs), commands)
    assert local.returncode == remote.returncode == plain.returncode == 0, remote.stderr
    local_rows = [json.loads(line) for line in local.stdout.splitlines()]
    remote_rows = [json.loads(line) for line in remote.stdout.splitlines()]
    assert [(r["input"], r["index"], r["class"], r["label"]) for r in remote_rows] == \
           [(r["input"], r["index"], r["class"], r["label"]) for r in local_rows]
    assert max(abs(a - b) for l, r in zip(local_rows, remote_rows)
               for a, b in zip(l["probabilities"], r["probabilities"])) <= 1e-4
    assert [line.split(" (")[0] for line in plain.stdout.splitlines()] == [
        f"{tmp_path / 'seven.png'}: {local_rows[0]['label']}",
        *(f"{tmp_path / 'batch.npy'}[{i}]: {local_rows[1 + i]['label']}" for i in range(3))]
    assert_one_line_error(wrong, "404", "not served here")


# -- versions: hot swap, broken and half-written versions ----------------------------------------


def test_hot_swap_under_load_loses_no_request(model_dir, version_dir, tmp_path):
    """Versions 2 and 3 are exported into the base while 6 clients keep predicting."""
    base = tmp_path / "base"
    publish_copy(version_dir, base, 1)
    server = Server(base, "--poll-seconds", "0.2")
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(6)]
    failures: list[str] = []
    body = orjson.dumps({"instances": [[[0] * 8] * 8]})

    def client(k: int) -> None:
        conn = server.connection()
        while not stop.is_set():
            try:
                status, headers, reply = server.request("POST", PREDICT, body, conn=conn)
            except OSError as e:
                failures.append(repr(e))
                conn.close()
                conn = server.connection()
                continue
            if status != 200 or headers["x-model-version"] != reply["model_version"]:
                failures.append(f"{status} {reply}")
            else:
                seen[k].append(reply["model_version"])
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        for version in (2, 3):
            assert export_model(model_dir, base).version == version
            server.wait_for(lambda: any(s and s[-1] == str(version) for s in seen), timeout=30)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        log = server.stop()
    assert failures == []
    for replies in seen:
        order = [int(v) for v in replies]
        assert order == sorted(order), "a client saw an older version after a newer one"
    assert sum(map(len, seen)) > 100 and {"1", "2", "3"} <= {v for s in seen for v in s}
    assert "version 2 is AVAILABLE" in log and "version 1 unloaded" in log and "version 2 unloaded" in log


def test_broken_and_half_written_versions_are_skipped(version_dir, tmp_path):
    base = tmp_path / "base"
    publish_copy(version_dir, base, 1)
    staging = base / ".2.x9.tmp"  # an export in progress
    staging.mkdir()
    shutil.copy(version_dir / "signature.json", staging / "signature.json")
    incomplete = base / "3"  # files still being copied in
    incomplete.mkdir()
    shutil.copy(version_dir / "signature.json", incomplete / "signature.json")
    corrupt = publish_copy(version_dir, base, 4)
    (corrupt / "model.onnx").write_bytes(b"\x08\x07 this is not a protobuf")
    (base / "labels.json").write_text(json.dumps({"stable": 1}))
    server = Server(base, "--poll-seconds", "0.2")
    try:
        assert server.request("GET", "/v1/models/digits/labels/stable")[0] == 200
        status, _, reply = server.request("GET", "/v1/models/digits")
        states = {s["version"]: s for s in reply["model_version_status"]}
        assert states["1"]["state"] == "AVAILABLE" and states["4"]["state"] == "END"
        # onnxruntime's words, or the ONNX checker's where `--runtime auto` picked PyTorch on CUDA
        assert re.search("INVALID_PROTOBUF|model.onnx: onnx.checker rejects the export", states["4"]["status"]["error_message"])
        assert "2" not in states and "3" not in states
        status, _, reply = server.request("POST", PREDICT, {"instances": [[[0] * 8] * 8]})
        assert status == 200 and reply["model_version"] == "1"
        for name in ("model.onnx", "model.safetensors", "labels.txt"):  # the copy completes: 3 loads
            shutil.copy(version_dir / name, incomplete / name)
        server.wait_for(lambda: server.request("POST", PREDICT, {"instances": [[[0] * 8] * 8]})[2]["model_version"] == "3")
        shutil.rmtree(base / "3")  # rolling back: the newest complete version that loads is 1 again (4 is broken)
        server.wait_for(lambda: server.request("POST", PREDICT, {"instances": [[[0] * 8] * 8]})[2]["model_version"] == "1")
    finally:
        log = server.stop()
    assert "version 3 is incomplete (missing model.onnx, model.safetensors, labels.txt)" in log
    assert "version 4 not loaded" in log
    assert log.count("version 4 not loaded") == 1  # not retried while its files are unchanged
    assert "Traceback" not in log


def test_torch_runtime_matches_onnxruntime(version_dir, digits):
    """`--runtime torch` (PyTorch, CUDA where present) rebuilds the same graph from model.safetensors."""
    signature = Signature.load(version_dir / "signature.json")
    reference = OnnxRunner(version_dir / "model.onnx", signature, 1).run(digits)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = TorchRunner(version_dir, signature, device).run(digits)
    assert np.abs(result["probabilities"] - reference["probabilities"]).max() <= 1e-4
    assert (result["classes"] == reference["classes"]).all() and result["classes"].dtype == np.int64


def test_torch_runtime_refuses_a_version_whose_onnx_is_broken(version_dir, tmp_path):
    """Which versions load must not depend on the runtime: PyTorch reads model.safetensors, but a
    broken model.onnx still makes the version unloadable, as it is for onnxruntime."""
    broken = shutil.copytree(version_dir, tmp_path / "1")
    (broken / "model.onnx").write_bytes(b"\x08\x07 this is not a protobuf")
    with pytest.raises(InputError, match="model.onnx: onnx.checker rejects the export"):
        TorchRunner(broken, Signature.load(broken / "signature.json"), "cpu")


# -- the parsers, property-tested --------------------------------------------------------------

TINY = Preprocessing(channels=1, height=2, width=2, mean=(0.5,), std=(0.25,))
RGB = Preprocessing(channels=3, height=3, width=2, mean=(0.5,) * 3, std=(0.25,) * 3)
leaves = (st.none() | st.booleans() | st.integers(-300, 300) | st.floats(-2, 2, allow_nan=False)
          | st.text(max_size=4) | st.just({"b64": "iVBORw0KGgo="}))
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["images", "b64", "x"]), inner, max_size=2), max_leaves=40)
bodies = st.dictionaries(st.sampled_from(["instances", "inputs", "signature_name", "examples", "context", "x"]),
                         json_values, max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_any_json_body_parses_or_is_a_400(payload):
    for parse in (lambda: parse_predict(payload, TINY).images, lambda: parse_classify(payload, TINY)):
        try:
            images = parse()
        except RequestError as e:
            assert e.status == 400 and e.message
            continue
        assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == (2, 2, 1) and len(images)


pixel_lists = st.recursive(st.integers(-3, 258) | st.booleans() | st.floats(0, 1) | st.none(),
                           lambda inner: st.lists(inner, min_size=1, max_size=4), max_leaves=60)


@settings(max_examples=400, deadline=None)
@given(pixel_lists | st.lists(st.lists(st.integers(0, 255), min_size=3, max_size=3), min_size=1, max_size=3))
def test_pixel_lists_convert_as_numpy_would(value):
    """The uint8 shortcut in `numbers_array` gives NumPy's array, or the same 400 as the general way."""
    try:
        expected = np.asarray(value)
    except (ValueError, TypeError):
        expected = None
    try:
        array = numbers_array(value, "x")
    except RequestError as e:
        assert expected is None or expected.dtype.kind not in "iuf", e.message
        return
    assert expected is not None and expected.dtype.kind in "iuf"
    assert array.shape == expected.shape and np.array_equal(array, expected)
    if array.dtype == np.uint8 and expected.dtype != np.uint8:  # the shortcut: only integers 0-255
        assert expected.dtype.kind in "iu" and (expected.size == 0 or (expected.min() >= 0 and expected.max() <= 255))


def test_integer_pixel_lists_take_the_uint8_shortcut():
    assert numbers_array(np.arange(784).reshape(1, 28, 28).clip(0, 255).tolist(), "x").dtype == np.uint8
    assert numbers_array([[1, 2], [3, 256]], "x").dtype == np.int64  # out of range: the general way (a 400 later)
    assert numbers_array([[0.5, 1], [0, 1]], "x").dtype == np.float64


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 4), st.just(3), st.just(2), st.just(3))),
       st.sampled_from(["hwc", "flat", "floats", "b64", "named", "columnar", "columnar_b64"]))
def test_pixels_round_trip_through_every_predict_form(images, form):
    n = len(images)
    instances = {"hwc": images.tolist(), "flat": images.reshape(n, -1).tolist(),
                 "floats": (images / 255.0).tolist(), "b64": [{"b64": png_b64(x)} for x in images],
                 "named": [{"images": x.tolist()} for x in images]}
    if form.startswith("columnar"):
        value = [{"b64": png_b64(x)} for x in images] if form == "columnar_b64" else images.tolist()
        payload = {"inputs": {"images": value}}
    else:
        payload = {"instances": instances[form]}
    parsed = parse_predict(parse_json(orjson.dumps(payload)), RGB)
    assert parsed.columnar == form.startswith("columnar")
    assert np.array_equal(parsed.images, images)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([*NUMERIC_DATATYPES, "BYTES", "BOOL"]),
       st.lists(st.integers(0, 13), min_size=1, max_size=4),
       st.lists(st.integers(-2, 300) | st.floats(0, 1), max_size=30))
def test_v2_json_tensors_parse_or_are_a_400(datatype, shape, data):
    try:
        request = parse_infer({"inputs": [{"name": "images", "shape": shape, "datatype": datatype, "data": data}]},
                              b"", TINY)
    except RequestError as e:
        assert e.status == 400
        return
    assert request.images.shape == (shape[0], 2, 2, 1) and request.images.dtype == np.uint8


@settings(max_examples=100, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 3), st.just(2), st.just(2), st.just(1))),
       st.sampled_from(["UINT8", "INT32", "FP32", "FP64"]), st.booleans())
def test_v2_tensors_from_the_real_client_round_trip(images, datatype, binary):
    """Bodies built by tritonclient's InferInput, JSON or binary, decode to the same pixels."""
    values = images.astype(NUMERIC_DATATYPES[datatype])
    if datatype.startswith("FP"):
        values = values / np.asarray(255, dtype=values.dtype)
    tensor = triton.InferInput("images", list(images.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    header = orjson.dumps({"inputs": [tensor._get_tensor()]})
    raw = tensor._get_binary_data() or b""
    json_part, binary_part = split_body(header + raw, str(len(header)) if raw else None)
    request = parse_infer(parse_json(json_part), binary_part, TINY)
    assert np.array_equal(request.images, images)
