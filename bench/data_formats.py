"""Benchmark: how fast the real CIFAR-10 TFRecord shards become arrays, and which decoders to use.

Data: ../shared/data/cifar10-jpeg (tf.train.Example records, 32×32 JPEG + label).  Measured,
each the best of `--repeats` passes over the same records in one process:

  framing        reading records with every CRC-32C checked (tfrecord.read_records)
  Example decode the hand-written protobuf wire-format parser visionflow had before (loaded from
                 git history, commit PARSER_COMMIT) against protobuf's upb backend (tfexample.py):
                 whole Examples to {name: values}, and the image-and-label fast path
  JPEG decode    PIL one by one, torchvision.io.decode_jpeg batched, TorchCodec decode_jpeg batched
  dataset        load_dataset("cifar10") on all 60,000 records: cold (decoding) and from the
                 decoded-array cache
  CSV            (--csv) real MNIST written as "label,pixel0,...,pixel783" CSV (plain and gzip)
                 and a tabular file of 20 float columns: visionflow's reader (pyarrow's streaming
                 parser, checks, uint8 packing) against pandas.read_csv + the same conversion,
                 with pandas' C engine and its pyarrow engine (pip install pandas)

    python bench/data_formats.py --records 10000
    python bench/data_formats.py --csv --csv-rows 60000
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from machine import cpu_model, describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from visionflow.formats.tfexample import Example, image_record, parse_example  # noqa: E402
from visionflow.formats.tfrecord import read_records  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"
#: The last commit whose tfrecord.py decoded Examples by hand.
PARSER_COMMIT = "afcd668"


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def hand_parser():
    """The pre-protobuf `parse_example`, from git history (None when git or the commit is missing)."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{PARSER_COMMIT}:src/visionflow/tfrecord.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("visionflow._old_tfrecord", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__dict__["__package__"] = "visionflow"
    exec(compile(source, "old_tfrecord.py", "exec"), module.__dict__)
    return module.parse_example


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10000, help="records of the test shard for the micro-benchmarks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-dataset", action="store_true", help="skip the 60,000-record load")
    parser.add_argument("--csv", action="store_true", help="only the CSV readers")
    parser.add_argument("--csv-rows", type=int, default=60000, help="MNIST training images in the CSV file")
    args = parser.parse_args()
    if args.csv:
        return csv_readers(args.csv_rows, args.repeats)
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    print(f"# {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"torch {torch.__version__}, protobuf {__import__('google.protobuf').protobuf.__version__}")
    shard = CIFAR / "test-00000-of-00001.tfrecord"
    records = []
    for data in read_records(shard):
        records.append(data)
        if len(records) == args.records:
            break
    n = len(records)

    def per(seconds: float) -> str:
        return f"{seconds / n * 1e6:7.1f} µs/record  ({n / seconds:,.0f}/s)"

    def framing():
        for i, _ in enumerate(read_records(shard)):
            if i + 1 == n:
                break

    print(f"framing + CRC-32C          {per(best(framing, args.repeats))}")
    old = hand_parser()
    if old is not None:
        print(f"Example, hand-written      {per(best(lambda: [old(r) for r in records], args.repeats))}")
    print(f"Example, protobuf upb      {per(best(lambda: [parse_example(r) for r in records], args.repeats))}")
    if old is not None:
        def old_fast():
            for r in records:
                e = old(r)
                e["image/encoded"][0], e["image/class/label"][0]
        print(f"image+label, hand-written  {per(best(old_fast, args.repeats))}")
    print(f"image+label, protobuf upb  {per(best(lambda: [image_record(r) for r in records], args.repeats))}")
    print(f"  (protobuf backend: {__import__('google.protobuf.internal.api_implementation', fromlist=['Type']).Type()},"
          f" Example class {Example.DESCRIPTOR.full_name})")

    jpegs = [image_record(r).encoded for r in records]
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in jpegs]
    from PIL import Image

    def pil():
        out = np.empty((n, 32, 32, 3), np.uint8)
        for i, b in enumerate(jpegs):
            with Image.open(io.BytesIO(b)) as image:
                out[i] = np.asarray(image.convert("RGB"))
        return out

    decoders = {"PIL, one by one": pil}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg as tv_decode

        decoders["torchvision.io, batched"] = lambda: tv_decode(tensors, mode="RGB")
    try:
        from torchcodec.decoders import decode_jpeg as tc_decode

        decoders["TorchCodec, batched"] = lambda: tc_decode(tensors, mode="RGB")
    except Exception as e:  # not installed or built for another torch
        print(f"  (TorchCodec unavailable: {e})")
    reference = pil()
    for name, fn in decoders.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            seconds = best(fn, args.repeats)
            out = fn()
        same = np.array_equal(reference, out if isinstance(out, np.ndarray) else torch.stack(out).permute(0, 2, 3, 1).numpy())
        print(f"JPEG {name:<22}{per(seconds)}  {'pixel-identical to PIL' if same else 'DIFFERS from PIL'}")

    if not args.skip_dataset:
        from visionflow.data.catalog import load_dataset

        with tempfile.TemporaryDirectory() as cache:
            os.environ["VISIONFLOW_CACHE"] = cache
            started = time.perf_counter()
            ds = load_dataset("cifar10", CIFAR, validation_size=0)
            cold = time.perf_counter() - started
            warm = best(lambda: load_dataset("cifar10", CIFAR, validation_size=0), args.repeats)
        total = len(ds.train) + len(ds.test)
        print(f"load_dataset cifar10 ({total:,} images): cold {cold:.2f} s ({total / cold:,.0f} images/s, "
              f"incl. writing the cache), cached {warm:.2f} s")


def csv_readers(rows: int, repeats: int) -> None:
    """Rows per second of visionflow's CSV reader and pandas' on the same files, same output."""
    import pandas as pd
    import pyarrow

    from visionflow.formats.csv_table import CsvOptions, read_csv_columns, write_csv_columns
    from visionflow.formats.idx import read_idx

    mnist = ROOT.parent / "shared" / "data" / "mnist"
    images = read_idx(mnist / "train-images-idx3-ubyte.gz")[:rows].reshape(-1, 784)
    labels = read_idx(mnist / "train-labels-idx1-ubyte.gz")[:rows].astype(np.int64)
    rng = np.random.default_rng(0)
    table = rng.normal(size=(rows * 4, 20)).astype(np.float32)
    print(f"# {describe()}, Python {platform.python_version()}, pyarrow {pyarrow.__version__}, pandas {pd.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        files = {"mnist.csv": (labels, images, "pixel"), "mnist.csv.gz": (labels, images, "pixel"),
                 "tabular.csv": (np.arange(len(table)) % 7, table, "feature")}
        for name, (y, x, prefix) in files.items():
            path = Path(tmp) / name
            write_csv_columns(path, y, x, [f"{prefix}{j}" for j in range(x.shape[1])])
            pixels = prefix == "pixel"
            dtype = np.uint8 if pixels else np.float32

            def ours() -> np.ndarray:
                return read_csv_columns(path, CsvOptions(), pixels=pixels).features

            def pandas(engine: str) -> np.ndarray:
                frame = pd.read_csv(path, engine=engine)
                return frame.iloc[:, 1:].to_numpy(dtype)

            reference = pandas("c")
            assert np.array_equal(ours(), reference), name
            mb = path.stat().st_size / 1e6
            t_ours = best(ours, repeats)
            t_c = best(lambda: pandas("c"), repeats)
            t_arrow = best(lambda: pandas("pyarrow"), repeats)
            n = len(y)
            print(f"{name:<13} {n:,} rows × {x.shape[1] + 1} columns, {mb:.0f} MB: visionflow {n / t_ours:,.0f} rows/s"
                  f" ({t_ours:.2f} s) | pandas C {n / t_c:,.0f} rows/s ({t_c:.2f} s) → {t_c / t_ours:.2f}× | pandas "
                  f"pyarrow engine {n / t_arrow:,.0f} rows/s ({t_arrow:.2f} s) → {t_arrow / t_ours:.2f}×")


if __name__ == "__main__":
    main()
