"""The separate evaluator: `evaluate --watch` follows a training process running beside it."""

import json
import subprocess
import sys
import time

from conftest import child_env, run_cli


def test_watch_evaluates_new_checkpoints_while_training_runs(tmp_path):
    model_dir = tmp_path / "m"
    env = child_env()
    trainer = subprocess.Popen(
        [sys.executable, "-m", "visionflow", "train", "--model-dir", str(model_dir), "--steps", "400",
         "--batch-size", "32", "--checkpoint-every", "50", "--keep-checkpoints", "10"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = time.monotonic()
    try:
        watch = run_cli("evaluate", "--model-dir", model_dir, "--watch", "--json", "--poll", "0.2",
                        "--timeout", "120", timeout=300)
    finally:
        trainer.wait(120)
    # it stopped after evaluating the final checkpoint, not after 120 s without a new one
    assert time.monotonic() - started < 110
    assert trainer.returncode == 0
    assert watch.returncode == 0, watch.stderr
    results = [json.loads(line) for line in watch.stdout.splitlines()]
    steps = [r["global_step"] for r in results]
    assert len(steps) >= 2 and steps == sorted(set(steps)) and steps[-1] == 400
    assert results[-1]["accuracy"] > 0.8
    assert list((model_dir / "eval_test").glob("events.out.tfevents.*"))
