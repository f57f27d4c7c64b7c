"""The fuzz harness: seeded mutations of real files, run through the product's own entry points.

Run by tests/test_fuzz.py as a child process (python tests/fuzzing.py --cases N --seed S), whose
address space is capped with `resource.setrlimit` once its imports are done, so a reader that
allocated what a lying header declares would die of MemoryError here instead of passing.  It
builds a small corpus of real files — IDX files, a .npy batch, PNG and JPEG images, TFRecord
shards, CIFAR binary and python batches, a trained model directory and its export — then, for
each case, mutates one file (byte flips, truncation, inserted bytes, header lies, decompression
bombs, huge declared shapes), runs the command a user would run on it in this process, and
prints one JSON line: the exit code, stderr, whether a model directory changed, peak memory.
The parent asserts: exit 0 or 2 (a 4xx for the server's parsers), one stderr line naming the
file (or record), no traceback, and model directories byte-identical after a failure.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import pickle
import random
import resource
import shutil
import struct
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: Address space the cases may add on top of what the imports mapped (bytes).
HEADROOM = 1536 * 2**20


# -- mutations ---------------------------------------------------------------------------------

def flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    out = bytearray(data)
    n = rng.randint(1, 8)
    for _ in range(n):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out), f"{n} bit flips"


def truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.randrange(len(data))
    return data[:cut], f"truncated to {cut} bytes"


def insert(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    i = rng.randrange(len(data) + 1)
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    return data[:i] + junk + data[i:], f"{len(junk)} bytes inserted at {i}"


def overwrite_int(data: bytes, rng: random.Random, offsets: list[int], fmt: str) -> tuple[bytes, str]:
    """A header lie: one integer field set to a huge (or zero) value."""
    i = rng.choice(offsets)
    size = struct.calcsize(fmt)
    value = rng.choice([0, 1, 2**31 - 1, 2**32 - 1, 10**9, 2**16])
    value &= (1 << (8 * size)) - 1
    return data[:i] + struct.pack(fmt, value) + data[i + size:], f"field at {i} set to {value}"


GENERIC = (flip, truncate, insert)


# -- the corpus --------------------------------------------------------------------------------

class Corpus:
    """Real files of every kind, written once; each case works on a fresh copy."""

    def __init__(self, root: Path) -> None:
        from PIL import Image

        import visionflow as vf
        from visionflow.data.catalog import load_dataset
        from visionflow.engine.config import TrainConfig
        from visionflow.formats.idx import write_idx
        from visionflow.formats.tfexample import image_example
        from visionflow.formats.tfrecord import write_records

        self.root = root
        digits = load_dataset("digits")
        images, labels = digits.test.images[:40], digits.test.labels[:40]
        mnist = root / "pristine" / "mnist"
        write_idx(mnist / "train-images-idx3-ubyte.gz", np.repeat(np.repeat(images[..., 0], 3, 1), 3, 2)[:, 2:, 2:][:, :20, :20])
        write_idx(mnist / "train-labels-idx1-ubyte.gz", labels.astype(np.uint8))
        write_idx(mnist / "t10k-images-idx3-ubyte", np.repeat(np.repeat(images[:10, ..., 0], 3, 1), 3, 2)[:, :20, :20])
        write_idx(mnist / "t10k-labels-idx1-ubyte", labels[:10].astype(np.uint8))
        files = root / "pristine" / "files"
        files.mkdir(parents=True)
        np.save(files / "batch.npy", images[:6, ..., 0])
        Image.fromarray(images[0, ..., 0]).resize((24, 24)).save(files / "digit.png")
        Image.fromarray(images[1, ..., 0]).resize((24, 24)).convert("RGB").save(files / "digit.jpg", quality=90)
        shards = root / "pristine" / "shards"
        shards.mkdir()
        png = [(files / "digit.png").read_bytes(), _png(images[2, ..., 0])]
        write_records(shards / "train-00000-of-00001.tfrecord",
                      [image_example(_png(images[i, ..., 0]), int(labels[i]), "png", 8, 8, str(labels[i]))
                       for i in range(12)])
        del png
        self._cifar(root / "pristine" / "cifar")
        model = root / "pristine" / "model"
        vf.train(TrainConfig(model="mlp", dataset="digits", steps=6, batch_size=32, checkpoint_every=3,
                             log_every=3, device="cpu"), model, progress_stream=io.StringIO())
        from visionflow.export.exporter import export_model

        self.export = export_model(model, root / "pristine" / "export", 1).path
        self.pristine = root / "pristine"

    @staticmethod
    def _cifar(directory: Path) -> None:
        rng = np.random.default_rng(0)
        binary = directory / "bin"
        binary.mkdir(parents=True)
        for name in (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin"):
            records = np.concatenate([rng.integers(0, 10, (4, 1)), rng.integers(0, 256, (4, 3072))], axis=1)
            (binary / name).write_bytes(records.astype(np.uint8).tobytes())
        python = directory / "py"
        python.mkdir()
        for i, name in enumerate((*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")):
            batch = {b"batch_label": b"batch", b"labels": [int(x) for x in rng.integers(0, 10, 4)],
                     b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"filenames": [b"a"] * 4}
            (python / name).write_bytes(pickle.dumps(batch, protocol=2 if i % 2 else 4))

    def fresh(self, name: str) -> Path:
        target = self.root / "work" / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(self.pristine / name, target)
        return target


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


# -- running a case ----------------------------------------------------------------------------

def run_cli(*args: object) -> tuple[int, str]:
    """`visionflow ARGS` in this process: (exit code, stderr); a crash is exit 99 with its traceback."""
    from conftest import run_in_process

    try:
        proc = run_in_process(*args)
    except BaseException:  # what the product let through: the parent reports it
        return 99, traceback.format_exc()
    return proc.returncode, proc.stderr


def digest(directory: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(directory)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


class Harness:
    def __init__(self, corpus: Corpus, seed: int) -> None:
        self.corpus = corpus
        self.rng = random.Random(seed)
        self.seed = seed

    def case(self, target: str, path: Path, mutate: Callable[[bytes], tuple[bytes, str]],
             command: Callable[[Path], tuple], watched: Path | None = None) -> None:
        original = path.read_bytes()
        data, how = mutate(original)
        path.write_bytes(data)
        before = digest(watched) if watched is not None else None
        code, stderr = run_cli(*command(path))
        changed = digest(watched) != before if watched is not None else False
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"target": target, "file": path.name, "mutation": how, "exit": code, "stderr": stderr,
                          "dir_changed": changed, "peak_rss_kb": peak, "seed": self.seed}), flush=True)

    def mutation(self, extra: tuple = ()) -> Callable[[bytes], tuple[bytes, str]]:
        choice = self.rng.choice(GENERIC + extra)
        return lambda data: choice(data, self.rng)


def run(corpus: Corpus, seed: int, n: int) -> None:
    h = Harness(corpus, seed)
    work = corpus.root / "work"
    out = corpus.root / "out"

    def clean_out() -> Path:
        shutil.rmtree(out, ignore_errors=True)
        return out

    # IDX datasets, through `convert` (which reads every file whole)
    lies = lambda d, r: overwrite_int(d, r, [4, 8, 12], ">I")  # noqa: E731  (IDX dims)
    for i in range(n):
        mnist = corpus.fresh("mnist")
        raw = mnist / "t10k-images-idx3-ubyte"
        h.case("idx", raw, h.mutation((lies,)),
               lambda p: ("convert", "--dataset", "mnist", "--data-dir", p.parent, "--output", clean_out()))
    for i in range(n // 2):  # compressed: mutate the decompressed content, and bombs
        mnist = corpus.fresh("mnist")
        gz = mnist / "train-images-idx3-ubyte.gz"

        def gz_mutation(data: bytes, rng: random.Random = h.rng) -> tuple[bytes, str]:
            content = gzip.decompress(data)
            if rng.random() < 0.3:  # a bomb: the declared size, then far more zeros
                return gzip.compress(content + b"\0" * (64 * 2**20), 1), "decompression bomb (+64 MB)"
            mutated, how = rng.choice(GENERIC + (lies,))(content, rng)
            return gzip.compress(mutated), f"content: {how}"

        h.case("idx.gz", gz, gz_mutation,
               lambda p: ("convert", "--dataset", "mnist", "--data-dir", p.parent, "--output", clean_out()))

    # .npy batches and image files, through `predict`
    model = corpus.pristine / "model"
    npy_lie = lambda d, r: (d[:10] + d[10:].replace(b"(6, 8, 8)", b"(6000000000, 8, 8)"), "shape lie")  # noqa: E731
    for i in range(n):
        files = corpus.fresh("files")
        h.case("npy", files / "batch.npy", h.mutation((npy_lie,)), lambda p: ("predict", "--model-dir", model, p))
    png_lie = lambda d, r: overwrite_int(d, r, [16, 20], ">I")  # noqa: E731  (IHDR width, height)
    jpg_lie = lambda d, r: _jpeg_size_lie(d, r)  # noqa: E731
    for i in range(n):
        files = corpus.fresh("files")
        h.case("png", files / "digit.png", h.mutation((png_lie,)), lambda p: ("predict", "--model-dir", model, p))
        h.case("jpeg", files / "digit.jpg", h.mutation((jpg_lie,)), lambda p: ("predict", "--model-dir", model, p))

    # TFRecord shards: framing through `convert`, the images inside through `train` (decodes them)
    tf_lie = lambda d, r: overwrite_int(d, r, [0], "<Q")  # noqa: E731  (the first record's length)
    for i in range(n):
        shards = corpus.fresh("shards")
        shard = shards / "train-00000-of-00001.tfrecord"
        if i % 2:
            h.case("tfrecord", shard, h.mutation((tf_lie,)),
                   lambda p: ("convert", "--dataset", "tfrecord", "--data-dir", p, "--output", clean_out()))
        else:
            h.case("tfrecord", shard, h.mutation((tf_lie,)),
                   lambda p: ("train", "--dataset", "tfrecord", "--data-dir", p, "--model", "mlp", "--steps", "1",
                              "--model-dir", clean_out(), "--device", "cpu"))

    # CIFAR binary and python batches, through `convert`
    for i in range(n):
        cifar = corpus.fresh("cifar")
        form = "bin" if i % 2 else "py"
        name = h.rng.choice(["data_batch_1", "test_batch"]) + (".bin" if form == "bin" else "")
        h.case(f"cifar-{form}", cifar / form / name, h.mutation(),
               lambda p: ("convert", "--dataset", "cifar10", "--data-dir", p.parent, "--output", clean_out()))

    # the model directory's files, through `evaluate`, `predict` and `train` (resume)
    for i in range(n):
        m = corpus.fresh("model")
        files = sorted(p for p in m.rglob("*") if p.is_file() and not p.name.startswith("events"))
        target = h.rng.choice(files)
        command = h.rng.choice([
            lambda p: ("evaluate", "--model-dir", m, "--device", "cpu"),
            lambda p: ("predict", "--model-dir", m, "--device", "cpu", corpus.pristine / "files" / "batch.npy"),
            lambda p: ("train", "--model-dir", m, "--steps", "9", "--device", "cpu"),
        ])
        h.case("model-dir", target, h.mutation(), command, watched=m)

    # an exported version's files, through `label-image --export`
    for i in range(n // 2):
        export = corpus.fresh("export")
        version = export / "1"
        target = version / h.rng.choice(["signature.json", "labels.txt", "model.onnx"])
        h.case("export", target, h.mutation(),
               lambda p: ("label-image", "--export", version, corpus.pristine / "files" / "batch.npy"),
               watched=export)

    shutil.rmtree(work, ignore_errors=True)
    server_parsers(corpus, h, n)


def _jpeg_size_lie(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    i = data.find(b"\xff\xc0")
    if i < 0:
        return flip(data, rng)
    return overwrite_int(data, rng, [i + 5, i + 7], ">H")


def server_parsers(corpus: Corpus, h: Harness, n: int) -> None:
    """The server's request parsers on mutated bodies: a value or a 4xx RequestError, never more."""
    from visionflow.export.exportdir import Signature
    from visionflow.serving.errors import RequestError
    from visionflow.serving.rest_payloads import parse_classify, parse_json, parse_predict
    from visionflow.serving.v2_tensors import parse_infer, split_body

    pre = Signature.load(corpus.export / "signature.json").preprocessing
    pixels = np.load(corpus.pristine / "files" / "batch.npy")[:2].tolist()
    png = (corpus.pristine / "files" / "digit.png").read_bytes()
    import base64

    bodies = {
        "predict": (json.dumps({"instances": pixels}).encode(), lambda b: parse_predict(parse_json(b), pre)),
        "predict-b64": (json.dumps({"instances": [{"b64": base64.b64encode(png).decode()}]}).encode(),
                        lambda b: parse_predict(parse_json(b), pre)),
        "classify": (json.dumps({"examples": [{"image": {"b64": base64.b64encode(png).decode()}}]}).encode(),
                     lambda b: parse_classify(parse_json(b), pre)),
        "v2-infer": (json.dumps({"inputs": [{"name": "images", "datatype": "UINT8", "shape": [2, 8, 8, 1],
                                             "data": np.asarray(pixels).ravel().tolist()}]}).encode(),
                     lambda b: parse_infer(parse_json(split_body(b, None)[0]), split_body(b, None)[1], pre)),
    }
    for i in range(2 * n):
        kind = h.rng.choice(sorted(bodies))
        body, parse = bodies[kind]
        mutated, how = h.mutation()(body)
        try:
            parse(mutated)
            code, stderr = 0, ""
        except RequestError as e:
            code, stderr = e.status, e.message
        except BaseException:
            code, stderr = 99, traceback.format_exc()
        print(json.dumps({"target": f"server-{kind}", "file": "request body", "mutation": how, "exit": code,
                          "stderr": stderr, "dir_changed": False,
                          "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "seed": h.seed}),
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=10, help="cases per target")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ["VISIONFLOW_CACHE"] = tempfile.mkdtemp(prefix="vf-fuzz-cache-")
    with tempfile.TemporaryDirectory(prefix="vf-fuzz-") as tmp:
        corpus = Corpus(Path(tmp))
        # From here on, no allocation may go past what the imports mapped plus HEADROOM.
        mapped = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (mapped + HEADROOM, hard))
        print(json.dumps({"limit_bytes": mapped + HEADROOM}), flush=True)
        run(corpus, args.seed, args.cases)
    shutil.rmtree(os.environ["VISIONFLOW_CACHE"], ignore_errors=True)


if __name__ == "__main__":
    main()
