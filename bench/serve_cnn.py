"""Benchmark: `visionflow serve` on a 28×28 `cnn` export — HTTP requests/s and latency vs in-process onnxruntime.

One run, one machine, the same single-image inputs for both contenders:
  server      a real `visionflow serve` process, sent TF Serving `:predict` requests of one 28×28
              image as JSON pixel rows over keep-alive HTTP/1.1 connections, one per client, by
              `wrk` (C, event-driven: ~35 µs of CPU per request, which on a 2-core machine it
              takes from the server) when installed, else by threads of this process with
              pre-built requests (`KeepAliveClient`, ~70 µs per request)
  in-process  the same model.onnx in an onnxruntime session in this process, called with the
              same one-image batches by the same number of threads: the ceiling the server
              would reach with free HTTP, JSON and batching

With `--transport grpc` the server is sent TF Serving gRPC `Predict` calls of the same images
(raw uint8 tensor_content) on the server's gRPC port, by `--client-processes` client processes
(grpc's C core does the HTTP/2 work; each process sends pre-serialised requests from threads
and reads the reply bytes, ~40 µs of CPU per call), so one Python process's GIL does not cap
the load; `--transport both` measures REST and gRPC side by side in one run.

Closed loop at 1, 2, 4, 8, 16, 32, 64 concurrent clients (each sends its next request when the
previous one is answered): requests/s and p50/p99 latency.  Then `--pairs` back-to-back rounds
of the server at its best client count and in-process at one caller per core: the throughput
ratio is their median.  Then an open loop at half the server's saturation rate (requests sent
on a fixed schedule whatever the replies do; latency counted from the scheduled send time, so
queueing is not hidden): p50/p99 there.

    python bench/serve_cnn.py                      # MNIST from ../shared/data/mnist when present
    python bench/serve_cnn.py --client python      # no wrk (apt-get install wrk)
    python bench/serve_cnn.py --json results.json
    python bench/serve_cnn.py --transport both --client python
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from visionflow.engine.recipes import default_config  # noqa: E402
from visionflow.engine.training import train  # noqa: E402
from visionflow.export.exporter import export_model  # noqa: E402

CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def trained_cnn(directory: Path, steps: int) -> tuple[Path, np.ndarray]:
    """A 28×28 cnn trained `steps` steps (MNIST when available, else random 28×28 arrays) and test images."""
    from visionflow.data.base import dataset_from_arrays
    from visionflow.data.catalog import load_dataset

    if (MNIST / "train-images-idx3-ubyte.gz").exists():
        dataset = load_dataset("mnist", MNIST)
        config = dataclasses.replace(default_config("cnn", "mnist"), data_dir=str(MNIST))
    else:
        rng = np.random.default_rng(0)
        images, labels = rng.integers(0, 256, (2048, 28, 28), dtype=np.uint8), rng.integers(0, 10, 2048)
        dataset = dataset_from_arrays((images, labels), test=(images[:512], labels[:512]))
        config = default_config("cnn", "digits")
    config = dataclasses.replace(config, steps=steps, epochs=None, batch_size=32, checkpoint_every=10**9)
    train(config, directory, dataset=dataset, progress_stream=io.StringIO())
    return directory, dataset.test.images[:256]


def start_server(base: Path, threads: int, max_batch: int, timeout_us: int,
                 batch_threads: int = 1, runtime: str = "onnxruntime", grpc: bool = False) -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "visionflow", "serve", "--model-base-path", str(base),
                             "--model-name", "cnn", "--port", "0", "--grpc-port", "auto" if grpc else "0", "--runtime", runtime,
                             "--intra-op-threads", str(threads),
                             "--max-batch-size", str(max_batch), "--batch-timeout-micros", str(timeout_us),
                             "--num-batch-threads", str(batch_threads)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    for line in proc.stdout:
        if line.strip().startswith("gRPC "):
            proc.grpc_target = line.split()[1]  # type: ignore[attr-defined]
        if line.startswith("ready on "):
            host, port = line.split()[2].removeprefix("http://").split(":")
            return proc, host, int(port)
    raise SystemExit(f"server did not start (exit code {proc.wait()})")


def grpc_requests(images: np.ndarray) -> list[bytes]:
    """Serialised TF Serving PredictRequests of one image each (uint8 tensor_content)."""
    from visionflow.serving.grpc_messages import array_to_tensor, message

    out = []
    for image in images:
        request = message("tensorflow.serving.PredictRequest")()
        request.model_spec.name = "cnn"
        request.inputs["images"].CopyFrom(array_to_tensor(image[None]))
        out.append(request.SerializeToString())
    return out


def grpc_load(target: str, requests_file: Path, clients: int, seconds: float, processes: int,
              rate: float | None = None, cpu_of: int | None = None) -> dict:
    """Closed loop (or, with `rate`, an open loop at `rate` calls/s) of `clients` callers spread over
    `processes` worker processes of this script; rate, p50/p99, failures, server CPU per call."""
    per = [clients // processes + (k < clients % processes) for k in range(processes)]
    commands = [[sys.executable, __file__, "--grpc-worker", target, str(requests_file), str(n), str(seconds),
                 str(rate * n / clients if rate else 0)] for n in per if n]
    cpu0 = process_cpu_seconds(cpu_of) if cpu_of else 0.0
    workers = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in commands]
    outs = [json.loads(w.communicate()[0]) for w in workers]
    cpu = process_cpu_seconds(cpu_of) - cpu0 if cpu_of else 0.0
    latencies = [x for out in outs for x in out["latencies"]]
    summary = _summary(latencies, seconds, sum(out["failures"] for out in outs))
    summary["cpu_us_per_request"] = cpu / max(1, summary["requests"]) * 1e6
    return summary


def grpc_worker(target: str, requests_file: str, clients: int, seconds: float, rate: float) -> None:
    """One load-generator process: `clients` threads calling Predict with pre-serialised requests,
    the replies read as bytes (a caller that parsed them would only add its own CPU)."""
    import grpc

    requests = json.loads(Path(requests_file).read_text())
    bodies = [bytes.fromhex(r) for r in requests]
    channel = grpc.insecure_channel(target)
    call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
    for body in bodies[:4]:
        call(body, timeout=30)

    def caller(k: int):
        counter = [k]

        def one() -> bool:
            counter[0] += 1
            try:
                call(bodies[counter[0] % len(bodies)], timeout=30)
                return True
            except grpc.RpcError:
                return False

        return one

    run = open_loop(caller, rate, seconds, clients, raw=True) if rate else closed_loop(caller, clients, seconds, raw=True)
    latencies: list[float] = run["latencies"]
    print(json.dumps({"latencies": latencies, "failures": run["failures"]}))


def process_cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) used so far by process `pid` (default: this one)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def closed_loop(call_factory, clients: int, seconds: float, cpu_of: int | None = None, raw: bool = False) -> dict:
    """`clients` threads calling as fast as answers come: rate, latency percentiles, CPU per request.

    `cpu_of` is the process whose CPU time is charged to the requests (default: this one); `raw`
    adds every latency in seconds (a load-generator process hands them to the parent to merge).
    """
    stop, start_gate = threading.Event(), threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0]

    def run(k: int) -> None:
        call = call_factory(k)
        call()  # warm the connection
        start_gate.wait()
        out = latencies[k]
        while not stop.is_set():
            t = time.perf_counter()
            if not call():
                failures[0] += 1
            out.append(time.perf_counter() - t)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0, cpu0 = time.perf_counter(), process_cpu_seconds(cpu_of)
    time.sleep(seconds)
    stop.set()
    elapsed, cpu = time.perf_counter() - t0, process_cpu_seconds(cpu_of) - cpu0
    for t in threads:
        t.join()
    summary = _summary([x for xs in latencies for x in xs], elapsed, failures[0])
    summary["cpu_us_per_request"] = cpu / max(1, summary["requests"]) * 1e6
    if raw:
        summary["latencies"] = [x for xs in latencies for x in xs]
    return summary


def open_loop(call_factory, rate: float, seconds: float, clients: int = 16, raw: bool = False) -> dict:
    """Requests on a fixed schedule at `rate`/s spread over `clients` threads; latency from the scheduled time."""
    stop_at = time.perf_counter() + 0.5 + seconds
    begin = time.perf_counter() + 0.5
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0]

    def run(k: int) -> None:
        call = call_factory(k)
        call()
        period = clients / rate
        due = begin + k * period / clients
        while due < stop_at:
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            if not call():
                failures[0] += 1
            latencies[k].append(time.perf_counter() - due)
            due += period

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = _summary([x for xs in latencies for x in xs], seconds, failures[0])
    if raw:
        summary["latencies"] = [x for xs in latencies for x in xs]
    return summary


def _summary(latencies: list[float], seconds: float, failures: int) -> dict:
    ms = np.array(latencies) * 1e3
    return {"requests_per_sec": len(ms) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "requests": len(ms), "failures": failures}


class KeepAliveClient:
    """A lean HTTP/1.1 keep-alive client: sends pre-built requests, reads each reply by Content-Length.

    http.client parses every reply's headers with the email package, which costs more CPU
    than the server spends on the request; on a 2-core machine that would measure the
    client.  This sends the same bytes any client would and reads the whole reply.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def post_request(self, path: str, body: bytes) -> bytes:
        return (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def send(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of the reply to one raw request."""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        length = next(int(l.split(b":", 1)[1]) for l in lines[1:] if l.lower().startswith(b"content-length:"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk


def http_caller(host: str, port: int, bodies: list[bytes]):
    def factory(k: int):
        client = KeepAliveClient(host, port)
        requests = [client.post_request("/v1/models/cnn:predict", body) for body in bodies]
        counter = [k]

        def call() -> bool:
            counter[0] += 1
            return client.send(requests[counter[0] % len(requests)])[0] == 200

        return call

    return factory


WRK_SCRIPT = """
local requests, i = {}, 0
init = function(args)
  for k, body in ipairs(bodies) do
    requests[k] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, body)
  end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""


def wrk_closed_loop(host: str, port: int, bodies: list[bytes], clients: int, seconds: float, pid: int,
                    workdir: Path) -> dict:
    """`clients` keep-alive connections driven by wrk (one thread): rate, p50/p99, server CPU per request."""
    script = workdir / "predict.lua"
    lua_bodies = ", ".join(json.dumps(body.decode()) for body in bodies)
    script.write_text(f'path = "/v1/models/cnn:predict"\nbodies = {{{lua_bodies}}}\n{WRK_SCRIPT}')
    cpu0 = process_cpu_seconds(pid)
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--latency", "-s", str(script),
                          f"http://{host}:{port}/"], capture_output=True, text=True, check=True).stdout
    cpu = process_cpu_seconds(pid) - cpu0
    requests = int(re.search(r"(\d+) requests in", out)[1])
    elapsed = _wrk_seconds(re.search(r"requests in ([\d.]+\w+),", out)[1])
    failures = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    failures += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    latency = {q: _wrk_seconds(v) * 1e3 for q, v in re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M)}
    return {"requests_per_sec": requests / elapsed, "p50_ms": latency["50"], "p99_ms": latency["99"],
            "requests": requests, "failures": failures, "cpu_us_per_request": cpu / max(1, requests) * 1e6}


def _wrk_seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def batch_stats(host: str, port: int) -> tuple[float, float]:
    """(runtime calls, images) so far, from the server's Prometheus metrics."""
    client = KeepAliveClient(host, port)
    _, body = client.send(f"GET /monitoring/prometheus/metrics HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    client.sock.close()
    values = {"count": 0.0, "sum": 0.0}
    for line in body.decode().splitlines():
        for kind in values:
            if line.startswith(f"visionflow_batch_size_{kind}{{"):
                values[kind] += float(line.rsplit(" ", 1)[1])
    return values["count"], values["sum"]


def session_caller(session, images: np.ndarray):
    def factory(k: int):
        counter = [k]

        def call() -> bool:
            image = images[counter[0] % len(images)][None]
            counter[0] += 1
            session.run(["probabilities", "classes"], {"images": image})
            return True

        return call

    return factory


def rate(run: dict) -> float:
    return run["requests_per_sec"]


def paired_saturation(server_runs: dict, local_runs: dict, pairs: int, measure_server, measure_in_process) -> dict:
    """The server at its saturation point and in-process at one caller per core, back to back `pairs` times.

    This machine's speed drifts within minutes, and unevenly: one-image calls (each reads the
    dense layer's 12.85 MB of weights for one image) measured 870–1,670 µs seconds apart while
    batches of 32 held 400–408 µs per image.  A ratio of two maxima taken minutes apart measures
    that drift as much as the server; ratios of back-to-back measurements, and their median, less.
    """
    server_clients = max(server_runs, key=lambda c: rate(server_runs[c]))
    local_clients = len(os.sched_getaffinity(0))  # one caller per usable core: more only queue
    rounds = []
    for _ in range(pairs):
        rounds.append((rate(measure_server(server_clients)), rate(measure_in_process(local_clients))))
    ratios = [server / local for server, local in rounds]
    return {"server_clients": server_clients, "in_process_clients": local_clients, "rounds": rounds,
            "ratios": ratios, "median_ratio": float(np.median(ratios))}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--grpc-worker":
        target, requests_file, clients, seconds, rate_ = sys.argv[2:7]
        return grpc_worker(target, requests_file, int(clients), float(seconds), float(rate_))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument("--steps", type=int, default=20, help="training steps (throughput does not depend on accuracy)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads, server and in-process")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY),
                        help="closed-loop client counts to measure")
    parser.add_argument("--server-threads", type=int, default=None,
                        help="the server's --intra-op-threads (default: --threads)")
    parser.add_argument("--runtime", default="onnxruntime",
                        help="the server's --runtime (torch: PyTorch, on CUDA when present; the in-process "
                             "contender stays onnxruntime on CPU)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-timeout-micros", type=int, default=1000)
    parser.add_argument("--num-batch-threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2,
                        help="measure each point this many times, alternating contenders; keep the best")
    parser.add_argument("--pairs", type=int, default=5,
                        help="back-to-back rounds of both contenders at their saturation points (the ratio's median)")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="REST closed-loop load generator (auto: wrk when installed)")
    parser.add_argument("--transport", choices=("rest", "grpc", "both"), default="rest",
                        help="what the server is sent: TF Serving REST :predict, gRPC Predict, or both in turn")
    parser.add_argument("--client-processes", type=int, default=2, help="--transport grpc: load-generator processes")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    import onnxruntime as ort

    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "python"
    transports = ("rest", "grpc") if args.transport == "both" else (args.transport,)
    packages = ("torch", "onnxruntime", "uvicorn", "starlette", "httptools", "uvloop", "orjson") + (
        ("grpcio",) if "grpc" in transports else ())
    results: dict = {"machine": describe(), "python": platform.python_version(), "load_average": os.getloadavg(),
                     "versions": {p: package_version(p) for p in packages},
                     "settings": vars(args), "in_process": {}, **{t: {} for t in transports}}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, images = trained_cnn(Path(tmp) / "cnn", args.steps)
        exported = export_model(model_dir, Path(tmp) / "base")
        bodies = [json.dumps({"instances": [image[..., 0].tolist()]}).encode() for image in images[:64]]
        requests_file = Path(tmp) / "grpc_requests.json"
        if "grpc" in transports:
            requests_file.write_text(json.dumps([r.hex() for r in grpc_requests(images[:64])]))
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(exported.path / "model.onnx"), options, providers=["CPUExecutionProvider"])
        batch = images[: args.max_batch_size]
        session.run(None, {"images": batch})
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < args.seconds:
            session.run(None, {"images": batch})
            n += len(batch)
        results["in_process_batched_images_per_sec"] = n / (time.perf_counter() - t)

        server_threads = args.threads if args.server_threads is None else args.server_threads
        proc, host, port = start_server(exported.path.parent, server_threads, args.max_batch_size,
                                        args.batch_timeout_micros, args.num_batch_threads, args.runtime,
                                        grpc="grpc" in transports)

        def measure(transport: str, clients: int) -> dict:
            calls, served = batch_stats(host, port)
            if transport == "grpc":
                run = grpc_load(proc.grpc_target, requests_file, clients, args.seconds, min(args.client_processes, clients),
                                cpu_of=proc.pid)
            elif args.client == "wrk":
                run = wrk_closed_loop(host, port, bodies, clients, args.seconds, proc.pid, Path(tmp))
            else:
                run = closed_loop(http_caller(host, port, bodies), clients, args.seconds, cpu_of=proc.pid)
            calls_after, served_after = batch_stats(host, port)
            run["mean_batch"] = (served_after - served) / max(1.0, calls_after - calls)
            return run

        def measure_in_process(clients: int) -> dict:
            return closed_loop(session_caller(session, images), clients, args.seconds)

        def half_load(transport: str, offered: float) -> dict:
            if transport == "grpc":
                return grpc_load(proc.grpc_target, requests_file, 16, args.seconds, args.client_processes, rate=offered)
            return open_loop(http_caller(host, port, bodies), offered, args.seconds)

        try:
            print(f"{'clients':>7}  {'transport':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'batch':>5} "
                  f"{'CPU µs':>6}   {'in-process req/s':>16} {'p50 ms':>7} {'p99 ms':>7}  ratio", flush=True)
            for clients in args.concurrency:
                runs: dict = {t: [] for t in transports}
                locals_ = []
                for _ in range(args.rounds):  # alternate, keep each contender's best: the machine may be shared
                    for transport in transports:
                        runs[transport].append(measure(transport, clients))
                    locals_.append(measure_in_process(clients))
                local = max(locals_, key=rate)
                results["in_process"][clients] = local
                for transport in transports:
                    server = max(runs[transport], key=rate)
                    results[transport][clients] = server
                    print(f"{clients:>7}  {transport:>9} {server['requests_per_sec']:>8,.0f} {server['p50_ms']:>7.2f} "
                          f"{server['p99_ms']:>7.2f} {server['mean_batch']:>5.1f} {server['cpu_us_per_request']:>6.0f}   "
                          f"{local['requests_per_sec']:>16,.0f} {local['p50_ms']:>7.2f} {local['p99_ms']:>7.2f}  "
                          f"{rate(server) / rate(local):.2f}", flush=True)
            ceiling = max(map(rate, results["in_process"].values()))
            summary = {}
            for transport in transports:
                saturation = max(map(rate, results[transport].values()))
                paired = paired_saturation(results[transport], results["in_process"], args.pairs,
                                           lambda c: measure(transport, c), measure_in_process)
                half = min((half_load(transport, saturation / 2) for _ in range(args.rounds)), key=lambda r: r["p99_ms"])
                summary[transport] = {"saturation": saturation, "ratio": saturation / ceiling, "paired": paired,
                                      "half_load": half, "failures": sum(r["failures"] for r in results[transport].values())
                                      + half["failures"]}
        finally:
            proc.terminate()
            proc.wait()
    results.update(in_process_saturation=ceiling, summary=summary)
    batched = results["in_process_batched_images_per_sec"]
    for transport, s in summary.items():
        paired, half = s["paired"], s["half_load"]
        print(f"{transport}: saturation {s['saturation']:,.0f} req/s = {s['ratio']:.2f}x in-process {ceiling:,.0f} req/s "
              f"(batch 1, one caller per core), {s['saturation'] / batched:.2f}x in-process batches of "
              f"{args.max_batch_size} on one runtime thread ({batched:,.0f} images/s)")
        print(f"  paired at saturation ({paired['server_clients']} clients vs {paired['in_process_clients']} in-process "
              f"callers, {len(paired['ratios'])} back-to-back rounds): ratio median {paired['median_ratio']:.2f}, "
              f"range {min(paired['ratios']):.2f}-{max(paired['ratios']):.2f}")
        print(f"  half load ({s['saturation'] / 2:,.0f} req/s offered, {half['requests_per_sec']:,.0f} done): "
              f"p50 {half['p50_ms']:.2f} ms, p99 {half['p99_ms']:.2f} ms; failed requests: {s['failures']}")
    print(f"load generators: REST {args.client}, gRPC {args.client_processes} processes; {results['machine']}; "
          f"python {results['python']}; " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
