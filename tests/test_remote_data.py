"""Datasets addressed by URL (data/remote.py): shards from a real local HTTP server, a file://
and a memory:// fsspec URL read the same as the local files, with retries, atomically."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch

from test_shards import write_shard
from visionflow.data.catalog import load_dataset
from visionflow.engine.config import TrainConfig
from visionflow.engine.training import train
from visionflow.errors import InputError


@pytest.fixture
def shards(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VISIONFLOW_CACHE", str(tmp_path / "cache"))
    d = tmp_path / "site" / "shards"
    d.mkdir(parents=True)
    for j in range(2):
        write_shard(d / f"train-{j:05d}-of-00002.tfrecord", [i % 3 for i in range(j * 20, j * 20 + 20)])
    write_shard(d / "test-00000-of-00001.tfrecord", [0, 1, 2, 1, 0])
    (d / "labels.txt").write_text("a\nb\nc\n")
    return d


class _Server:
    """A real HTTP server on loopback serving `root`; `failures[path]` requests of a path answer 503 first."""

    def __init__(self, root: Path) -> None:
        self.failures: dict[str, int] = {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if server.failures.get(self.path, 0) > 0:
                    server.failures[self.path] -= 1
                    self.send_error(503, "try again")
                    return
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(shards):
    s = _Server(shards.parent)
    yield s
    s.close()


def _same(a, b) -> None:
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(a.split(split).images, b.split(split).images)
        np.testing.assert_array_equal(a.split(split).labels, b.split(split).labels)
    assert a.class_names == b.class_names == ("a", "b", "c")


def test_http_file_and_memory_urls_read_as_the_local_shards(shards, server) -> None:
    local = load_dataset("tfrecord", shards, validation_size=5)
    _same(load_dataset("tfrecord", f"{server.url}/shards/", validation_size=5), local)
    _same(load_dataset("tfrecord", shards.as_uri(), validation_size=5), local)
    memory = fsspec.filesystem("memory")
    for path in shards.iterdir():
        memory.pipe(f"/data/shards/{path.name}", path.read_bytes())
    _same(load_dataset("tfrecord", "memory://data/shards", validation_size=5), local)


def test_transient_errors_are_retried_and_missing_urls_are_one_line(shards, server) -> None:
    server.failures["/shards/train-00001-of-00002.tfrecord"] = 2  # two 503s, then the file
    loaded = load_dataset("tfrecord", f"{server.url}/shards/", validation_size=5)
    assert len(loaded.train) + len(loaded.validation) == 40
    assert server.failures["/shards/train-00001-of-00002.tfrecord"] == 0
    with pytest.raises(InputError, match="nowhere"):
        load_dataset("tfrecord", f"{server.url}/nowhere/")
    with pytest.raises(InputError, match="no fsspec backend|cloud"):
        load_dataset("tfrecord", "nosuchscheme://bucket/x")


def test_training_on_a_url_trains_the_same_model(shards, server, tmp_path) -> None:
    config = TrainConfig(model="mlp", dataset="tfrecord", steps=6, batch_size=10, validation_size=5, seed=1,
                         log_every=100)
    runs = {}
    for name, where in (("local", str(shards)), ("http", f"{server.url}/shards/")):
        outcome = train(TrainConfig(**{**config.__dict__, "data_dir": where}), tmp_path / name)
        runs[name] = outcome.model.state_dict()
    assert all(torch.equal(runs["local"][k], runs["http"][k]) for k in runs["local"])
