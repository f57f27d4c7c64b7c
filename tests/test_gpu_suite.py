"""The GPU suite is known to work before a GPU appears: its smoke run on CPU, and its data pack
rebuilding CIFAR-10's JPEGs byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import CIFAR_DIR, MNIST_DIR, ROOT, child_env, needs_cifar, needs_mnist


@needs_cifar
def test_the_pack_rebuilds_every_jpeg_byte_for_byte(tmp_path):
    import itertools

    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_data import pack, unpack

    from visionflow.data.shards import iter_image_records
    from visionflow.formats.tfrecord import frame_record, read_records

    small = tmp_path / "cifar"
    small.mkdir()
    for name in ("train-00000-of-00005.tfrecord", "test-00000-of-00001.tfrecord"):
        (small / name).write_bytes(b"".join(frame_record(r) for r in itertools.islice(read_records(CIFAR_DIR / name), 300)))
    (small / "labels.txt").write_text((CIFAR_DIR / "labels.txt").read_text())
    info = pack(tmp_path / "pack", small, tmp_path / "no-mnist")
    assert info["images"] == 600 and info["bytes"] < 0.45 * sum(p.stat().st_size for p in small.glob("*.tfrecord"))
    out = unpack(tmp_path / "pack", tmp_path / "out", shards=1)
    original = [r.encoded for s in sorted(small.glob("*.tfrecord")) for _, r in iter_image_records(s)]
    rebuilt = [r.encoded for s in sorted(out["cifar10"].glob("*.tfrecord")) for _, r in iter_image_records(s)]
    assert sorted(rebuilt) == sorted(original)


@needs_cifar
@needs_mnist
def test_the_suite_smoke_run_runs_every_part_on_cpu(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--smoke", "--out", str(tmp_path),
                           "--pack", str(tmp_path / "no-pack")], capture_output=True, text=True, env=child_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert {name: part["status"] for name, part in results["parts"].items()} == dict.fromkeys(
        ["fastnet", "cnn", "retrain", "serving", "throughput", "resnet56"], "ok")
    assert all(part["result"] for part in results["parts"].values())
    assert results["seconds"] < 120
    section = (tmp_path / "benchmarks-section.md").read_text()
    assert section.startswith("## GPU suite") and "| fastnet | ok" in section and MNIST_DIR.exists()


def test_peers_travel_in_the_pack_and_import_from_it(tmp_path):
    """airbench's package is unpacked from an sdist (only its package and egg-info, safely) into
    site/, importable with its version readable; the record script is copied to peers/."""
    import tarfile

    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_data import add_peers

    src = tmp_path / "airbench-0.1.8"
    (src / "airbench").mkdir(parents=True)
    (src / "airbench" / "__init__.py").write_text("ANSWER = 42\n")
    (src / "airbench.egg-info").mkdir()
    (src / "airbench.egg-info" / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: airbench\nVersion: 0.1.8\n")
    (src / "setup.py").write_text("raise SystemExit('never run')\n")
    sdist = tmp_path / "airbench-0.1.8.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(src, arcname="airbench-0.1.8")
    script = tmp_path / "airbench94_muon.py"
    script.write_text("# the record script\n")
    added = add_peers(tmp_path / "pack", sdist, script)
    assert len(added) == 2 and not (tmp_path / "pack" / "site" / "setup.py").exists()
    assert (tmp_path / "pack" / "peers" / "airbench94_muon.py").read_text() == "# the record script\n"
    probe = ("import airbench, importlib.metadata as m; print(airbench.ANSWER, m.version('airbench'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**child_env(), "PYTHONPATH": str(tmp_path / "pack" / "site")}, cwd=tmp_path)
    assert out.stdout.split() == ["42", "0.1.8"], out.stderr


def test_the_record_scripts_own_time_is_read_from_its_final_row():
    sys.path.insert(0, str(ROOT / "bench"))
    from fastnet_vs_airbench import record_seconds

    printed = ("---------------------------------------------------------------\n"
               "|  run     |  epoch  |  train_acc  |  val_acc  |  tta_val_acc  |  time_seconds  |\n"
               "|       0  |      7  |     0.9400  |   0.9012  |               |        1.3100  |\n"
               "|          |   eval  |     0.9400  |   0.9012  |       0.9071  |        1.4520  |\n")
    assert record_seconds(printed) == 1.452
    assert record_seconds("|  0  |  7  |  0.9  |  0.9  |   |  1.3  |\n") is None


def test_only_the_wheels_this_python_lacks_are_installed(tmp_path):
    """The lent machines reach no registry: the pack's wheels are installed offline, the missing ones
    alone, into a directory put on the path."""
    import zipfile

    sys.path.insert(0, str(ROOT / "bench"))
    from gpu_suite import install_missing_wheels

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name, body in (("vfprobe", "ANSWER = 7\n"), ("numpy", "raise SystemExit('shadowed numpy')\n")):
        info = f"{name}-0.1.dist-info"
        files = {f"{name}/__init__.py": body,
                 f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
                 f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
        files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
        with zipfile.ZipFile(wheels / f"{name}-0.1-py3-none-any.whl", "w") as wheel:
            for path, text in files.items():
                wheel.writestr(path, text)
    target = install_missing_wheels(wheels, tmp_path / "site")
    try:
        assert target == str(tmp_path / "site")
        assert sorted(p.name for p in (tmp_path / "site").iterdir() if not p.name.endswith(".dist-info")) == ["vfprobe"]
        probe = subprocess.run([sys.executable, "-c", "import vfprobe, numpy; print(vfprobe.ANSWER)"],
                               capture_output=True, text=True, env={**child_env(), "PYTHONPATH": target})
        assert probe.stdout.strip() == "7", probe.stderr
        assert install_missing_wheels(tmp_path / "none", tmp_path / "site2") is None
    finally:
        sys.path.remove(target)
