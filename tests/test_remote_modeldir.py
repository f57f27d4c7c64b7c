"""Model directories addressed by URL (engine/mirror.py): a run written to memory:// or file://
resumes from the URL on a machine with an empty cache and ends where the same run in a local
directory ends; the index goes up last, so a writer dying mid-push leaves a complete checkpoint; pruned
checkpoints go from the URL too; a read-only URL (a real HTTP server) evaluates but cannot be
trained into."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fsspec
import pytest
import torch

import visionflow.core.remote as remote
from conftest import child_env
from test_remote_data import _Server
from visionflow.data.base import dataset_from_arrays
from visionflow.engine.config import TrainConfig
from visionflow.engine.modeldir import ModelDir
from visionflow.engine.training import train
from visionflow.errors import InputError


def blobs():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (90, 6, 6, 1), generator=g, dtype=torch.uint8).numpy()
    labels = (images.reshape(90, -1).mean(1) > 127).astype("int64")
    return dataset_from_arrays((images[:60], labels[:60]), test=(images[60:], labels[60:]), class_names=["lo", "hi"])


def config(steps: int, **changes) -> TrainConfig:
    return TrainConfig(model="mlp", steps=steps, batch_size=10, seed=3, log_every=100, checkpoint_every=2,
                       device="cpu", **changes)


def weights(outcome) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in outcome.model.state_dict().items()}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VISIONFLOW_CACHE", str(tmp_path / "cache-a"))
    return tmp_path


def test_a_run_on_a_url_resumes_elsewhere_and_matches_a_local_run(cache, monkeypatch) -> None:
    ds = blobs()
    train(config(4), cache / "local", dataset=ds)  # 4 steps, then 4 more (a new learning-rate cycle)
    local = weights(train(config(8), cache / "local", dataset=ds))
    for url in ("memory://runs/mlp", (cache / "bucket" / "mlp").as_uri()):
        monkeypatch.setenv("VISIONFLOW_CACHE", str(cache / "cache-a"))
        train(config(4), url, dataset=ds)
        fs, root = fsspec.core.url_to_fs(url)
        names = sorted(p[len(root.rstrip("/")) + 1:] for p in fs.find(root))
        assert {"config.json", "labels.txt", "checkpoints/index.json", "checkpoints/ckpt-00000004.safetensors",
                "checkpoints/ckpt-00000004.state.safetensors", "eval_test.json"} <= set(names), names
        assert not [n for n in names if Path(n).name.startswith(".")]  # no temps, no probe left
        monkeypatch.setenv("VISIONFLOW_CACHE", str(cache / f"cache-b-{len(url)}"))  # another machine
        resumed = train(config(8), url, dataset=ds)
        assert resumed.result.global_step == 8 and resumed.result.steps_run == 4
        assert all(torch.equal(local[k], v) for k, v in weights(resumed).items())
        assert fs.cat(f"{root.rstrip('/')}/checkpoints/index.json") == \
            (ModelDir(url).path / "checkpoints" / "index.json").read_bytes()


def test_the_index_goes_up_last_and_a_failed_push_leaves_a_complete_checkpoint(cache, monkeypatch) -> None:
    ds = blobs()
    url = "memory://runs/order"
    order: list[str] = []
    real_put = remote.put_file

    def recording_put(fs, local, path, u):
        order.append(path.split("/order/", 1)[1])
        if path.endswith("index.json") and "checkpoints/ckpt-00000004.safetensors" in order:
            raise InputError("the writer died here")  # the push of step 4's index never lands
        real_put(fs, local, path, u)

    monkeypatch.setattr("visionflow.engine.mirror.put_file", recording_put)
    with pytest.raises(InputError, match="died"):
        train(config(4), url, dataset=ds)
    step2 = order[: order.index("checkpoints/index.json") + 1]
    assert step2.index("checkpoints/index.json") > max(step2.index("checkpoints/ckpt-00000002.safetensors"),
                                                          step2.index("checkpoints/ckpt-00000002.state.safetensors"))
    monkeypatch.setattr("visionflow.engine.mirror.put_file", real_put)
    monkeypatch.setenv("VISIONFLOW_CACHE", str(cache / "cache-b"))
    again = ModelDir(url)  # a fresh machine sees step 2, complete
    from visionflow.engine.checkpoint import load_checkpoint

    assert load_checkpoint(again.checkpoints).step == 2


def test_pruned_checkpoints_leave_the_url_after_the_index(cache) -> None:
    url = "memory://runs/pruned"
    train(config(8, keep_checkpoints=2), url, dataset=blobs())
    fs, root = fsspec.core.url_to_fs(url)
    kept = sorted(Path(p).name for p in fs.find(f"{root}/checkpoints") if "ckpt-" in p)
    assert kept == ["ckpt-00000006.safetensors", "ckpt-00000006.state.safetensors",
                    "ckpt-00000008.safetensors", "ckpt-00000008.state.safetensors"]


def test_a_read_only_url_evaluates_but_cannot_be_trained_into(cache) -> None:
    site = cache / "site"
    train(config(4), site / "run", dataset=blobs())
    server = _Server(site)
    try:
        url = f"{server.url}/run/"
        with pytest.raises(InputError, match="cannot be written"):
            train(config(6), url, dataset=blobs())
        mirrored = ModelDir(url)
        assert mirrored.location == url.rstrip("/") and mirrored.exists()
        assert (mirrored.checkpoints / "ckpt-00000004.safetensors").read_bytes() == \
            (site / "run" / "checkpoints" / "ckpt-00000004.safetensors").read_bytes()
        proc = subprocess.run([sys.executable, "-m", "visionflow", "evaluate", "--model-dir", url, "--dataset", "nope"],
                              capture_output=True, text=True, env=child_env(VISIONFLOW_CACHE=str(cache / "cache-c")),
                              timeout=120)
        assert proc.returncode == 2 and "nope" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        server.close()


def test_a_model_dir_url_without_a_backend_is_one_line(cache) -> None:
    with pytest.raises(InputError, match="no fsspec backend|cloud"):
        ModelDir("nosuchscheme://bucket/run")
    train(config(2), "memory://runs/same", dataset=blobs())
    fs = fsspec.filesystem("memory")
    fs.rm("/runs/same", recursive=True)  # the run was deleted at the URL: the mirror forgets it too
    assert not ModelDir("memory://runs/same").exists()


def test_a_reader_pushing_its_evaluation_never_touches_the_writers_checkpoints(cache) -> None:
    url = "memory://runs/shared"
    train(config(4), url, dataset=blobs())
    fs, root = fsspec.core.url_to_fs(url)
    index_before = fs.cat(f"{root}/checkpoints/index.json")
    fs.pipe(f"{root}/checkpoints/ckpt-00000006.safetensors", b"pushed ahead of its index by the writer")
    reader = ModelDir(url)  # an evaluator: its own mirror
    assert reader.path != ModelDir(url, training=True).path
    (reader.path / "eval_test.json").write_text('{"accuracy": 1.0}')
    reader.sync()
    assert fs.cat(f"{root}/eval_test.json") == b'{"accuracy": 1.0}'
    assert fs.cat(f"{root}/checkpoints/index.json") == index_before
    assert fs.exists(f"{root}/checkpoints/ckpt-00000006.safetensors")
