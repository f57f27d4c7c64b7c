"""The server's limits in time and size: slow and idle clients are cut off, a slow client never
holds up a hot swap, and no request can grow the metrics page."""

from __future__ import annotations

import gzip
import json
import re
import socket
import time
import uuid

import pytest

from serving_support import Server, exported_version, publish_copy, serve_first_version
from visionflow.serving.monitoring import APIS

pytest.importorskip("uvicorn")
PREDICT = "/v1/models/digits:predict"


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    return exported_version("mlp", tmp_path_factory)


@pytest.fixture(scope="module")
def strict_server(version_dir, tmp_path_factory):
    yield from serve_first_version(version_dir, tmp_path_factory, "--request-timeout", "1", "--idle-timeout", "1")


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_an_idle_connection_is_closed(strict_server):
    sock = _connect(strict_server)
    started = time.monotonic()
    assert _read_all(sock) == b""  # the server hung up
    assert 0.8 < time.monotonic() - started < 5


def test_headers_sent_a_byte_at_a_time_get_408_and_a_closed_connection(strict_server):
    sock = _connect(strict_server)
    started = time.monotonic()
    sock.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n")
    reply = b""
    try:
        for _ in range(40):  # would take 8 s
            sock.sendall(b"X")
            time.sleep(0.2)
    except OSError:
        pass
    reply = _read_all(sock)
    assert reply.startswith(b"HTTP/1.1 408") and b"request headers not received" in reply
    assert time.monotonic() - started < 5


def test_a_body_that_trickles_in_gets_408(strict_server):
    sock = _connect(strict_server)
    started = time.monotonic()
    sock.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                 b"content-length: 1000\r\n\r\n{\"instances\": [")
    try:
        for _ in range(40):
            sock.sendall(b" ")
            time.sleep(0.2)
    except OSError:
        pass
    reply = _read_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and "not received within 1 s" in json.loads(body)["error"]
    assert time.monotonic() - started < 5


def test_a_truncated_gzip_body_is_a_bad_encoding_not_bad_json(strict_server):
    body = gzip.compress(json.dumps({"instances": [[[0] * 8] * 8]}).encode())[:-10]
    status, _, reply = strict_server.request("POST", PREDICT, body, {"content-encoding": "gzip"})
    assert status == 400 and reply["error"] == "body is not valid gzip data (truncated)"


def test_metric_labels_come_from_a_closed_set(strict_server):
    def page() -> str:
        return strict_server.request("GET", "/monitoring/prometheus/metrics")[2].decode()

    def series(text: str) -> set[str]:
        return {line.rsplit(" ", 1)[0] for line in text.splitlines() if not line.startswith("#")}

    page()
    seen = []
    for batch in range(2):
        names = [uuid.uuid4().hex for _ in range(100)]
        for name in names:
            assert strict_server.request("GET", f"/v2/health/{name}")[0] == 404
            assert strict_server.request("POST", f"/v1/models/digits:{name}", {})[0] == 404
        text = page()
        assert not any(name in text for name in names)
        assert set(re.findall(r'api="([^"]*)"', text)) <= APIS
        seen.append(series(text))
    assert seen[0] == seen[1]  # 100 more distinct paths added no time series


def test_a_slow_client_on_the_old_version_does_not_hold_up_a_new_one(version_dir, tmp_path):
    base = tmp_path / "base"
    publish_copy(version_dir, base, 1)
    server = Server(base, "--poll-seconds", "0.2", "--request-timeout", "6")
    try:
        sock = _connect(server)  # a request to version 1 whose body never finishes: it holds v1
        sock.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\ncontent-length: 1000\r\n\r\n{")
        time.sleep(0.5)
        started = time.monotonic()
        publish_copy(version_dir, base, 2)

        def status() -> dict:
            return {s["version"]: s["state"] for s in server.request("GET", "/v1/models/digits")[2]["model_version_status"]}

        states = server.wait_for(lambda: (s := status()).get("2") == "AVAILABLE" and s, timeout=5)
        assert time.monotonic() - started < 5 and states["1"] == "UNLOADING"
        assert server.request("POST", PREDICT, {"instances": [[[0] * 8] * 8]})[2]["model_version"] == "2"
        reply = _read_all(sock)  # the slow client gets its 408 at its deadline; then v1 is closed
        assert reply.startswith(b"HTTP/1.1 408")
        server.wait_for(lambda: status().get("1") == "END", timeout=10)
    finally:
        log = server.stop()
    assert "Traceback" not in log, log
