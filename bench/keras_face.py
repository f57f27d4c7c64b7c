"""Benchmark: the keras.io "simple MNIST convnet" trained three ways on CPU.

Contenders (same script, same data, same model, batch size, epochs, seed and thread count):
  keras-torch  Keras 3 with KERAS_BACKEND=torch
  keras-tf     Keras 3 on TensorFlow
  visionflow   visionflow's Keras face, `from visionflow import keras`

Model: Input(28,28,1) -> Conv2D(32,3,relu) -> MaxPool(2) -> Conv2D(64,3,relu) -> MaxPool(2)
       -> Flatten -> Dropout(0.5) -> Dense(10, softmax); adam, categorical_crossentropy, accuracy.
Data:  MNIST read from the IDX .gz files in --data-dir with numpy+gzip, scaled to float32 [0, 1].

Each contender runs in its own interpreter (the Keras peers in a virtualenv that has keras,
torch and tensorflow; visionflow in the interpreter running this script), one after another,
never in parallel. Training is `model.fit(x, y, batch_size, epochs=1, verbose=0)` called
--epochs times so that every epoch is timed from outside with only the API all three share.

Units: examples/s is training examples per second of wall-clock fit time. With --epochs >= 2
it is the steady rate over epochs 2..N (the first epoch pays tracing/warm-up, reported
separately as first_epoch_seconds); with one epoch it is the overall rate. Seconds are
wall-clock; test_accuracy is the fraction of the 10,000 test images classified correctly.
Threads: torch intra-op threads and TensorFlow intra-op threads are set to --threads
(default os.cpu_count()).

    .venv/bin/python bench/keras_face.py --epochs 2 --json keras_face.json --markdown keras_face.md
    # one contender alone (prints one JSON line):
    /work/bench-keras-venv/bin/python bench/keras_face.py --worker keras-tf --epochs 1 --train-limit 6000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import struct
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = "/work/bench-keras-venv/bin/python"
BACKENDS = ("keras-torch", "keras-tf", "visionflow")
PEERS = ("keras-torch", "keras-tf")


# ----------------------------------------------------------------------------- worker

def read_idx(path: Path):
    import numpy as np

    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(data_dir: Path, train_limit: int | None):
    images = lambda name: (read_idx(data_dir / name).astype("float32") / 255.0)[..., None]
    x, y = images("train-images-idx3-ubyte.gz"), read_idx(data_dir / "train-labels-idx1-ubyte.gz")
    xt, yt = images("t10k-images-idx3-ubyte.gz"), read_idx(data_dir / "t10k-labels-idx1-ubyte.gz")
    return x[:train_limit], y[:train_limit], xt, yt


def import_keras(backend: str, threads: int):
    """Import the Keras of `backend` and set its intra-op thread count; returns (keras, versions, threads)."""
    if backend == "visionflow":
        sys.path.insert(0, str(ROOT / "src"))
        import torch

        import visionflow
        from visionflow import keras

        torch.set_num_threads(threads)
        versions = {"visionflow": visionflow.__version__, "torch": torch.__version__}
        return keras, versions, {"torch_intra_op": torch.get_num_threads()}
    os.environ["KERAS_BACKEND"] = {"keras-torch": "torch", "keras-tf": "tensorflow"}[backend]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    versions = {"keras": keras.__version__}
    if backend == "keras-torch":
        import torch

        torch.set_num_threads(threads)
        versions["torch"] = torch.__version__
        return keras, versions, {"torch_intra_op": torch.get_num_threads()}
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    versions["tensorflow"] = tf.__version__ + f" ({'tensorflow-cpu' if _installed('tensorflow-cpu') else 'tensorflow'})"
    return keras, versions, {"tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                             "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads() or "default"}


def _installed(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
        return True
    except PackageNotFoundError:
        return False


def build_model(keras):
    layers = keras.layers
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])


def run_worker(args) -> dict:
    keras, versions, threads = import_keras(args.worker, args.threads)
    x, y, xt, yt = load_mnist(Path(args.data_dir), args.train_limit)
    y, yt = keras.utils.to_categorical(y, 10), keras.utils.to_categorical(yt, 10)
    keras.utils.set_random_seed(args.seed)
    model = build_model(keras)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    epoch_seconds = []
    for _ in range(args.epochs):
        t = time.perf_counter()
        model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
        epoch_seconds.append(time.perf_counter() - t)
    t = time.perf_counter()
    test_loss, test_accuracy = model.evaluate(xt, yt, verbose=0)[:2]
    eval_seconds = time.perf_counter() - t
    steady = epoch_seconds[1:] or epoch_seconds
    return {
        "backend": args.worker, "versions": versions, "threads": threads,
        "examples_per_sec": len(x) * len(steady) / sum(steady),
        "examples_per_sec_scope": "epochs 2..N" if args.epochs >= 2 else "overall",
        "overall_examples_per_sec": len(x) * args.epochs / sum(epoch_seconds),
        "fit_seconds": sum(epoch_seconds), "first_epoch_seconds": epoch_seconds[0],
        "epoch_seconds": epoch_seconds, "eval_seconds": eval_seconds,
        "test_loss": float(test_loss), "test_accuracy": float(test_accuracy),
        "train_examples": len(x), "epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
        "jit_compile": getattr(model, "jit_compile", None), "python": sys.executable,
    }


# ----------------------------------------------------------------------------- driver

def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()}


def run_one(backend: str, python: str, args) -> dict:
    cmd = [python, __file__, "--worker", backend, "--data-dir", str(args.data_dir), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--threads", str(args.threads)]
    if args.train_limit:
        cmd += ["--train-limit", str(args.train_limit)]
    print(f"running {backend} ({python}) ...", flush=True)
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=args.timeout)
    except FileNotFoundError:
        return {"backend": backend, "failed": True, "error": f"interpreter not found: {python}"}
    except subprocess.TimeoutExpired:
        return {"backend": backend, "failed": True, "error": f"timed out after {args.timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    err = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    return {"backend": backend, "failed": True, "returncode": proc.returncode,
            "error": err[-1] if err else f"exit {proc.returncode}, no JSON line"}


def markdown(report: dict) -> str:
    m = report["machine"]
    out = [f"Simple MNIST convnet, {report['epochs']} epoch(s) of {report['train_examples']} examples, batch "
           f"{report['batch_size']}, {report['threads']} threads; {m['cpu']}, {m['cores']} cores. "
           "examples/s: training examples per wall-clock second"
           + (" over epochs 2..N." if report["epochs"] >= 2 else "."), "",
           "| backend | versions | examples/s | fit s | test accuracy | visionflow / this |",
           "|---|---|---:|---:|---:|---:|"]
    for name, r in report["results"].items():
        if r.get("failed"):
            out.append(f"| {name} | — | failed: {r['error'].replace('|', '/')} | | | |")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
        ratio = report["ratios"].get(f"visionflow/{name}")
        out.append(f"| {name} | {versions} | {r['examples_per_sec']:,.0f} | {r['fit_seconds']:.1f} | "
                   f"{r['test_accuracy']:.2%} | {'—' if ratio is None else f'{ratio:.2f}x'} |")
    return "\n".join(out) + "\n"


def run_driver(args) -> None:
    pythons = {"keras-torch": args.keras_torch_python, "keras-tf": args.keras_tf_python, "visionflow": sys.executable}
    report = {"machine": machine(), "epochs": args.epochs, "batch_size": args.batch_size,
              "train_examples": args.train_limit or 60000, "threads": args.threads, "seed": args.seed, "results": {}}
    print(f"{report['machine']['cpu']}, {report['machine']['cores']} cores, {args.threads} threads", flush=True)
    for backend in args.only or BACKENDS:
        report["results"][backend] = run_one(backend, pythons[backend], args)
    results = report["results"]
    ok = {name: r for name, r in results.items() if not r.get("failed")}
    report["ratios"] = {f"visionflow/{p}": ok["visionflow"]["examples_per_sec"] / ok[p]["examples_per_sec"]
                        for p in PEERS if p in ok and "visionflow" in ok}
    print(f"\n{'backend':<12} {'examples/s':>11} {'first ep s':>10} {'fit s':>8} {'test acc':>9}  versions")
    for name, r in results.items():
        if r.get("failed"):
            print(f"{name:<12} FAILED: {r['error']}")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in r["versions"].items())
        print(f"{name:<12} {r['examples_per_sec']:>11,.0f} {r['first_epoch_seconds']:>10.1f} {r['fit_seconds']:>8.1f} "
              f"{r['test_accuracy']:>9.2%}  {versions}")
    for k, v in report["ratios"].items():
        print(f"{k}: {v:.2f}x examples/s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(markdown(report))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", choices=BACKENDS, help="run one contender in this interpreter, print one JSON line")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "mnist"))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--train-limit", type=int, default=None, help="first N training examples (default all 60000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads for torch and TF")
    p.add_argument("--keras-torch-python", default=BENCH_VENV)
    p.add_argument("--keras-tf-python", default=BENCH_VENV)
    p.add_argument("--only", nargs="+", choices=BACKENDS, help="run only these contenders")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per contender")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--markdown", help="write a small Markdown table here")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)), flush=True)
    else:
        run_driver(args)


if __name__ == "__main__":
    main()
