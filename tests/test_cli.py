import json
import re

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, run_cli, run_in_process, snapshot


def test_train_continue_and_nothing_to_do(tmp_path):
    d = tmp_path / "run"
    first = run_cli("train", "--model", "mlp", "--model-dir", d, "--steps", "30", "--log-every", "10",
                    "--checkpoint-every", "10")
    assert first.returncode == 0, first.stderr
    assert re.search(r"step 30/30  loss \d+\.\d+  accuracy [\d.]+%  lr [\d.e+-]+  [\d,]+ examples/s", first.stderr)
    assert "test accuracy" in first.stdout
    header = first.stderr.split("step 10/30")[0]  # printed before the first step
    assert f"visionflow: mlp on digits → {d} (new run)" in header and "1,259 train / 179 validation / 359 test" in header
    assert "recipe  adam lr 0.002, onecycle (warm-up 15%), batch 64, to step 30" in header
    assert json.loads((d / "checkpoints" / "index.json").read_text())["latest"] == 30
    config = json.loads((d / "config.json").read_text())
    assert config["model"]["name"] == "mlp" and config["train"]["steps"] == 30
    assert (d / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    assert list((d / "train").glob("events.out.tfevents.*")) and list((d / "eval_test").glob("events.*"))
    for png in ("curves.png", "confusion_test.png", "mistakes_test.png"):
        assert (d / png).read_bytes()[:4] == b"\x89PNG", png
    more = run_cli("train", "--model", "mlp", "--model-dir", d, "--steps", "50", "--log-every", "10", "--json")
    assert more.returncode == 0, more.stderr
    assert "step 40/50" in more.stderr and "step 20/" not in more.stderr  # continued, not restarted
    assert "resuming from step 30: checkpoints/ckpt-00000030" in more.stderr and "cycle from step 30" in more.stderr
    assert json.loads(more.stdout)["global_step"] == 50
    again = run_cli("train", "--model", "mlp", "--model-dir", d, "--steps", "50")
    assert again.returncode == 0 and "nothing to train" in again.stdout


def test_no_flags_trains_embedded_default(tmp_path):
    proc = run_cli("train", "--steps", "40", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model_dir"] == "runs/cnn-digits" and out["accuracy"] > 0.5 and out["count"] == 359
    assert (tmp_path / "runs" / "cnn-digits" / "checkpoints" / "index.json").exists()


def test_log_device_placement(tmp_path):
    proc = run_cli("train", "--model", "mlp", "--model-dir", tmp_path / "m", "--steps", "2",
                   "--log-device-placement", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "layer layers.1 (Linear): cpu" in proc.stdout
    assert "param layers.1.weight (128, 64) torch.float32: cpu" in proc.stdout


def test_evaluate_json_and_png(trained_digits):
    proc = run_cli("evaluate", "--model-dir", trained_digits, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert {"accuracy", "loss", "global_step"} <= result.keys() and result["global_step"] == 120
    assert result["accuracy"] > 0.8
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == result["count"]
    assert len(result["per_class"]) == 10 and 0 <= result["per_class"][3]["recall"] <= 1
    assert (trained_digits / "confusion_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    human = run_cli("evaluate", "--model-dir", trained_digits, "--split", "validation", "--step", "80")
    assert human.returncode == 0 and "validation: accuracy" in human.stdout and "global step 80" in human.stdout


def test_predict_images_and_npy(trained_digits, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.save(tmp_path / "batch.npy", digits.images[:20] / 16.0)  # float 0–1, like mnist.test.images
    big = Image.fromarray((digits.images[7] * 255 / 16).astype(np.uint8)).resize((64, 64))
    big.save(tmp_path / "seven.png")
    big.convert("RGB").save(tmp_path / "seven.jpg")
    proc = run_cli("predict", "--model-dir", trained_digits, "--json", tmp_path / "batch.npy", tmp_path / "seven.png",
                   tmp_path / "seven.jpg")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(l) for l in proc.stdout.splitlines()]
    assert len(rows) == 22
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-3 for r in rows)
    hits = sum(r["class"] == t for r, t in zip(rows[:20], digits.target[:20]))
    assert hits >= 16
    assert rows[20]["input"].endswith("seven.png") and rows[20]["label"] == str(rows[20]["class"])
    plain = run_cli("predict", "--model-dir", trained_digits, tmp_path / "seven.png")
    assert re.fullmatch(r".*seven\.png: \d \(\d\.\d{4}\)\n", plain.stdout)


def test_board_serves_tensorboard_on_the_next_port_when_its_own_is_taken(trained_digits):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from conftest import ROOT

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    taken = busy.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "visionflow", "board", "--model-dir", str(trained_digits),
                             "--port", str(taken)], env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"port {taken} is in use: TensorBoard took "), (first, proc.stderr.read() if proc.poll() else "")
        port = int(first.split()[-1])
        deadline = time.time() + 90
        while True:
            try:
                runs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5).read())
                break
            except OSError:
                assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else "timeout"
                time.sleep(0.5)
        assert "train" in runs and "eval_test" in runs and "." not in runs
        tags = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", timeout=10).read())
        assert {"loss", "accuracy", "learning_rate", "examples_per_sec"} <= set(tags["train"])
    finally:
        proc.terminate()
        proc.wait(10)
        busy.close()


@pytest.mark.parametrize("args, fragments", [
    (["train", "--bogus"], ["unrecognized arguments: --bogus"]),
    (["train", "--optimizer", "rmsprop"], ["invalid choice: 'rmsprop'"]),
    (["train", "--lr", "-1", "--steps", "1"], ["--lr must be positive"]),
    (["train", "--device", "cuda:7", "--steps", "1"], ["--device cuda:7"]),
    (["evaluate", "--model-dir", "/nonexistent/x"], ["/nonexistent/x: not a visionflow model directory"]),
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
])
def test_bad_invocations_are_one_line(tmp_path, args, fragments):
    assert_one_line_error(run_cli(*args, "--model-dir", tmp_path / "m") if args[0] == "train" else run_cli(*args),
                          *fragments)


def test_model_dir_of_another_model_is_refused_and_untouched(trained_digits):
    before = snapshot(trained_digits)
    proc = run_cli("train", "--model", "mlp", "--model-dir", trained_digits, "--steps", "200")
    assert_one_line_error(proc, str(trained_digits), "holds a 'cnn' model, not 'mlp'")
    proc = run_cli("train", "--model-dir", trained_digits, "--lr", "0.5", "--steps", "200")
    assert_one_line_error(proc, "was trained with --lr 0.002, got 0.5")
    assert snapshot(trained_digits) == before


def test_bad_predict_inputs(trained_digits, tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5, 5)))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    before = snapshot(trained_digits)
    for name, fragment in [("junk.png", "not a readable image"), ("wrong.npy", "does not hold 8x8x1 images"),
                           ("obj.npy", "not a readable .npy array"), ("missing.png", "file not found")]:
        assert_one_line_error(run_in_process("predict", "--model-dir", trained_digits, tmp_path / name),
                              str(tmp_path / name), fragment)
    assert snapshot(trained_digits) == before


def test_corrupt_idx_data_dir(tmp_path):
    from visionflow.formats.idx import write_idx

    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(data / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (30, 28, 28), dtype=np.uint8))
        write_idx(data / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, 30).astype(np.uint8))
    good = run_cli("train", "--dataset", "mnist", "--data-dir", data, "--validation-size", "5", "--model-dir",
                   tmp_path / "m", "--steps", "2", "--model", "mlp")
    assert good.returncode == 0, good.stderr
    before = snapshot(tmp_path / "m")
    raw = (data / "train-images-idx3-ubyte.gz")
    import gzip

    body = gzip.decompress(raw.read_bytes())
    raw.write_bytes(gzip.compress(body[:-100]))
    proc = run_in_process("train", "--dataset", "mnist", "--data-dir", data, "--validation-size", "5",
                          "--model-dir", tmp_path / "m", "--steps", "4", "--model", "mlp")
    assert_one_line_error(proc, str(raw), "truncated")
    raw.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + body[4:] + b"\x00" * 9))
    proc = run_in_process("train", "--dataset", "mnist", "--data-dir", data, "--validation-size", "5",
                          "--model-dir", tmp_path / "m", "--steps", "4", "--model", "mlp")
    assert_one_line_error(proc, str(raw), "oversized")
    raw.write_bytes(gzip.compress(b"\x00\x00\x0a\x03" + body[4:]))
    proc = run_in_process("train", "--dataset", "mnist", "--data-dir", data, "--validation-size", "5",
                          "--model-dir", tmp_path / "m", "--steps", "4", "--model", "mlp")
    assert_one_line_error(proc, str(raw), "bad magic number 0x00000a03")
    raw.write_bytes(gzip.compress(body))
    labels = data / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.full(30, 10, np.uint8))
    proc = run_in_process("train", "--dataset", "mnist", "--data-dir", data, "--validation-size", "5",
                          "--model-dir", tmp_path / "m", "--steps", "4", "--model", "mlp")
    assert_one_line_error(proc, str(labels), "label 10 at record 0 out of range 0..9")
    assert snapshot(tmp_path / "m") == before


def test_divergence_stops_with_exit_3_and_keeps_last_checkpoint(tmp_path):
    d = tmp_path / "m"
    ok = run_cli("train", "--model", "mlp", "--model-dir", d, "--steps", "20", "--checkpoint-every", "10",
                 "--optimizer", "sgd", "--lr", "0.01", "--schedule", "constant")
    assert ok.returncode == 0, ok.stderr
    config = json.loads((d / "config.json").read_text())
    config["train"]["lr"] = 1e12  # continue the same run with an absurd learning rate
    (d / "config.json").write_text(json.dumps(config))
    before = {k: v for k, v in snapshot(d).items() if k.startswith("checkpoints/")}
    proc = run_cli("train", "--model", "mlp", "--model-dir", d, "--steps", "200", "--checkpoint-every", "10",
                   "--log-every", "5")
    assert proc.returncode == 3, proc.stderr
    match = re.search(r"loss diverged \((NaN|inf)\) at step (\d+)", proc.stderr)
    assert match and 20 < int(match.group(2)) <= 30, proc.stderr
    after = {k: v for k, v in snapshot(d).items() if k.startswith("checkpoints/")}
    assert after == before


def test_ctrl_c_writes_a_checkpoint_on_the_way_out_and_the_run_resumes_there(tmp_path):
    import signal
    import subprocess
    import sys

    from conftest import child_env

    d = tmp_path / "run"
    args = [sys.executable, "-m", "visionflow", "train", "--model", "mlp", "--model-dir", str(d), "--steps", "100000",
            "--log-every", "20", "--checkpoint-every", "100000", "--device", "cpu"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env())
    for line in proc.stderr:
        if line.startswith("step 40/"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    match = re.search(r"interrupted at step (\d+): checkpoint written", err)
    assert match, err
    step = int(match.group(1))
    assert json.loads((d / "checkpoints" / "index.json").read_text())["latest"] == step >= 40
    again = run_cli("train", "--model", "mlp", "--model-dir", d, "--steps", str(step + 20), "--device", "cpu")
    assert again.returncode == 0 and f"resuming from step {step}" in again.stderr


def test_help_version_bare_command_and_print_config():
    from conftest import run_in_process

    bare = run_in_process()
    assert bare.returncode == 0 and "train" in bare.stdout and "classify-image" in bare.stdout
    assert run_cli("--version").stdout.strip() == "visionflow 0.1.0"
    helptext = run_in_process("train", "--help").stdout
    for group in ("data:", "model:", "length and schedule:", "optimisation:", "checkpoints and logging:",
                  "device and precision:", "input pipeline"):
        assert group in helptext
    assert "peak learning rate [default 0.002, or the recipe's]" in " ".join(helptext.split())
    printed = run_in_process("train", "--model", "resnet56", "--dataset", "cifar10", "--print-config")
    config = json.loads(printed.stdout)["train"]
    assert printed.returncode == 0 and config["epochs"] == 160 and config["augment"]["pad"] == 4


def test_predict_warns_about_greyscale_images_for_a_colour_model(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from conftest import run_in_process
    from visionflow.data.base import dataset_from_arrays
    from visionflow.engine.config import TrainConfig
    from visionflow.engine.training import train

    rng = np.random.default_rng(0)
    data = dataset_from_arrays((rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8), np.arange(64) % 2))
    train(TrainConfig(model="mlp", steps=2, batch_size=32, device="cpu"), tmp_path / "rgb", data,
          progress_stream=io.StringIO())
    Image.new("L", (8, 8), 128).save(tmp_path / "grey.png")
    proc = run_in_process("predict", "--model-dir", tmp_path / "rgb", tmp_path / "grey.png")
    assert proc.returncode == 0
    assert "grey.png is greyscale but the model takes RGB images; converted" in proc.stderr
