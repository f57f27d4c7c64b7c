"""Shared by test_export.py and test_serving.py: small trained models, exports, a real server.

Trained model directories and the first export are made once per test session (whichever
module asks first) and only read afterwards; every test that changes an export base works
on its own copy.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import child_env

MODEL_KINDS = ("cnn", "mlp")
_trained: dict[str, Path] = {}
_exported: dict[str, Path] = {}


def trained_models(factory) -> dict[str, Path]:
    """`cnn` and `mlp` model dirs on the embedded digits, trained a few steps through the Python API.

    (In-process: a `visionflow train` subprocess would spend most of its time importing.)
    """
    if not _trained:
        from visionflow.engine.recipes import default_config
        from visionflow.engine.training import train

        root = factory.mktemp("trained")
        for kind in MODEL_KINDS:
            config = dataclasses.replace(default_config(kind), steps=8, batch_size=32, epochs=None)
            train(config, root / kind, progress_stream=io.StringIO())
            _trained[kind] = root / kind
    return dict(_trained)


def exported_version(kind: str, factory) -> Path:
    """A pristine exported version directory of `kind` (in an export base of its own, version 1)."""
    if kind not in _exported:
        from visionflow.export.exporter import export_model

        _exported[kind] = export_model(trained_models(factory)[kind], factory.mktemp(f"export-{kind}"), 1).path
    return _exported[kind]


def publish_copy(version_dir: Path, base: Path, version: int) -> Path:
    """Copy an export into `base` as `version` the way the exporter publishes: staged, then renamed."""
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=base))
    shutil.copytree(version_dir, staging, dirs_exist_ok=True)
    os.rename(staging, base / str(version))
    return base / str(version)


class Server:
    """`python -m visionflow serve` on a free loopback port, as a user would start it."""

    def __init__(self, base: Path, *flags: str, name: str = "digits") -> None:
        self.base, self.name = base, name
        env = child_env()
        grpc = () if "--grpc-port" in flags else ("--grpc-port", "auto")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "visionflow", "serve", "--model-base-path", str(base), "--model-name", name,
             "--port", "0", *grpc, *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.banner = self._read_banner(timeout=90)
        self.url = self.banner[-1].split()[2]
        self.host, port = self.url.removeprefix("http://").split(":")
        self.port = int(port)
        grpc_lines = [line.split()[1] for line in self.banner if line.strip().startswith("gRPC ")]
        self.grpc_target = grpc_lines[0] if grpc_lines else None  # HOST:PORT
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True)
        self._reader.start()

    def _read_banner(self, timeout: float) -> list[str]:
        lines, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"server exited ({self.proc.wait()}): {self.proc.stderr.read()}")
            lines.append(line.rstrip("\n"))
            if line.startswith("ready on "):
                return lines
        raise AssertionError(f"server not ready after {timeout} s: {lines}")

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        return self.stderr

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                conn: http.client.HTTPConnection | None = None) -> tuple[int, dict[str, str], Any]:
        """(status, headers, body parsed as JSON when it is JSON) of one request.

        `body` may be bytes (sent as is) or any JSON value.
        """
        own = conn is None
        conn = conn or self.connection()
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        try:
            conn.request(method, path, body=data, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
            reply_headers = {k.lower(): v for k, v in response.getheaders()}
        finally:
            if own:
                conn.close()
        parsed = json.loads(raw) if reply_headers.get("content-type", "").startswith("application/json") else raw
        return response.status, reply_headers, parsed

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"condition not met within {timeout} s; server log:\n{self.stderr}")


def metric(server: "Server", name: str, **labels: str) -> float:
    """The sum of the samples of Prometheus metric `name` whose labels include `labels`."""
    import re

    text = server.request("GET", "/monitoring/prometheus/metrics")[2].decode()
    total = 0.0
    for match in re.finditer(r"^(\w+)(?:\{(.*)\})? (\S+)$", text, re.MULTILINE):
        sample_labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if match[1] == name and labels.items() <= sample_labels.items():
            total += float(match[3])
    return total


def serve_first_version(version_dir: Path, factory, *flags: str) -> Iterator["Server"]:
    """A server of `version_dir` published as version 1 of a new base, for a module-scoped fixture:
    yields it, then stops it and checks its log holds no traceback."""
    base = factory.mktemp("served")
    publish_copy(version_dir, base, 1)
    server = Server(base, *flags)
    yield server
    log = server.stop()
    assert "Traceback" not in log and "internal server error" not in log, log


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """The trained cnn of `trained_models`."""
    return trained_models(tmp_path_factory)["cnn"]


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory) -> Path:
    """The cnn's pristine export."""
    return exported_version("cnn", tmp_path_factory)


@pytest.fixture(scope="module")
def digits():
    """16 test images of the embedded digits, (16, 8, 8, 1) uint8."""
    from visionflow.data.catalog import load_dataset

    return load_dataset("digits").test.images[:16]
