"""Benchmark: the character-level LSTM language model — visionflow vs a plain loop vs Keras 3.

Same corpus (tinyshakespeare, 90/10 split), same model (embedding 64 → 2×256 LSTM → dropout 0.1
→ linear over 65 characters), 64 streams × bptt 100, Adam 2e-3, gradient norm clipped at 1.0,
the hidden state carried across batches.  Each contender trains for the same wall-clock time;
then the validation split is scored by one streamed evaluation (10 streams, state carried:
visionflow's `evaluate_lm`, applied to every PyTorch contender's model):

  visionflow        `visionflow.lm.training.train_lm` (its recipe: bf16 autocast where the CPU
                    multiplies bf16 in hardware), stopped after the time by a callback
  visionflow fp32   the same in float32
  plain loop        the loop PyTorch users start from for this task (the structure of
                    pytorch/examples' word_language_model: batchify, get_batch, repackage the
                    hidden state, clip, step; written here), float32
  keras             Keras 3 on its TensorFlow backend (Embedding, two stateful LSTM layers,
                    Dropout, Dense; `fit` on the same streams, shuffle off), run in the Keras
                    environment given by --keras-python; its validation loss from `evaluate` on
                    the same layout

Reported: tokens/s of training (start-up excluded), the tokens trained, and the validation loss
(nats/char), perplexity and bits/char after the same time.

    python bench/lm.py --seconds 120 --keras-python /work/bench-keras-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from machine import cpu_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import visionflow  # noqa: E402
from visionflow.data.text import read_corpus  # noqa: E402
from visionflow.lm.evaluation import evaluate_lm  # noqa: E402
from visionflow.lm.training import train_lm  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
SETTINGS = {"embed": 64, "hidden": 256, "layers": 2, "dropout": 0.1, "batch_size": 64, "bptt": 100, "lr": 2e-3,
            "clip_norm": 1.0, "optimizer": "adam", "schedule": "constant", "valid_fraction": 0.1, "test_fraction": 0.0}


class StopAfter(visionflow.Callback):
    def __init__(self, seconds: float) -> None:
        self.seconds, self.started = seconds, None

    def on_step_end(self, step: int) -> None:
        if self.started is None:
            self.started = time.perf_counter()
        elif time.perf_counter() - self.started >= self.seconds:
            self.trainer.stop_training = True


def run_visionflow(seconds: float, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        stop = StopAfter(seconds)
        outcome = train_lm(str(CORPUS), Path(tmp) / "lm", "char",
                           {**SETTINGS, "steps": 10**6, "precision": precision, "log_every": 10**6,
                            "checkpoint_every": 10**6, "device": "cpu"}, progress_stream=open("/dev/null", "w"),
                           callbacks=[stop])
        return {"tokens_per_sec": outcome.tokens_per_sec, "tokens": outcome.global_step * 6400,
                "precision": outcome.run.train.precision, "valid_loss": outcome.valid.loss}


class PlainLM(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, SETTINGS["embed"])
        self.rnn = nn.LSTM(SETTINGS["embed"], SETTINGS["hidden"], SETTINGS["layers"], dropout=SETTINGS["dropout"],
                           batch_first=True)
        self.drop = nn.Dropout(SETTINGS["dropout"])
        self.decoder = nn.Linear(SETTINGS["hidden"], vocab)

    def forward(self, x, hidden=None):
        out, hidden = self.rnn(self.drop(self.encoder(x)), hidden)
        return self.decoder(self.drop(out)), hidden

    def step(self, x, hidden=None):  # what evaluate_lm calls
        return self.forward(x, hidden)


def run_plain(seconds: float, corpus) -> dict:
    torch.manual_seed(0)
    model = PlainLM(len(corpus.vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=SETTINGS["lr"])
    bsz, bptt = SETTINGS["batch_size"], SETTINGS["bptt"]
    n = len(corpus.train) // bsz
    data = torch.from_numpy(corpus.train[: n * bsz]).view(bsz, n)
    model.train()
    hidden, steps, started = None, 0, None
    while True:
        for i in range(0, n - 1 - bptt + 1, bptt):
            x, y = data[:, i:i + bptt], data[:, i + 1:i + 1 + bptt]
            if hidden is not None:
                hidden = tuple(h.detach() for h in hidden)
            optimizer.zero_grad()
            logits, hidden = model(x, hidden)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), SETTINGS["clip_norm"])
            optimizer.step()
            steps += 1
            if steps % 10 == 0:
                loss.item()
            if started is None:
                started = time.perf_counter()  # after the first step, as visionflow's clock
            elif time.perf_counter() - started >= seconds:
                elapsed = time.perf_counter() - started
                result = evaluate_lm(model, corpus.valid, 10, bptt, torch.device("cpu"), steps, "valid", "char")
                return {"tokens_per_sec": (steps - 1) * bsz * bptt / elapsed, "tokens": steps * bsz * bptt,
                        "precision": "fp32", "valid_loss": result.loss}
        hidden = None


KERAS = textwrap.dedent('''
    import json, sys, time
    import numpy as np
    import keras
    from keras import layers
    train, valid, vocab, seconds, s = np.load(sys.argv[1])["train"], np.load(sys.argv[1])["valid"], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
    def streams(ids, b, t):
        n = (len(ids) - 1) // b
        rows = ids[: n * b + 1]
        x = np.stack([rows[i * n:(i + 1) * n] for i in range(b)])
        y = np.stack([rows[i * n + 1:(i + 1) * n + 1] for i in range(b)])
        k = n // t
        # batch j = columns [j t, (j+1) t) of every row: samples ordered batch by batch
        xs = np.concatenate([x[:, j * t:(j + 1) * t] for j in range(k)])
        ys = np.concatenate([y[:, j * t:(j + 1) * t] for j in range(k)])
        return xs, ys, k
    def build(b):
        m = keras.Sequential([keras.Input(batch_shape=(b, None)), layers.Embedding(vocab, s["embed"]),
                              layers.LSTM(s["hidden"], return_sequences=True, stateful=True),
                              layers.LSTM(s["hidden"], return_sequences=True, stateful=True),
                              layers.Dropout(s["dropout"]), layers.Dense(vocab)])
        return m
    b, t = s["batch_size"], s["bptt"]
    x, y, k = streams(train, b, t)
    model = build(b)
    model.compile(optimizer=keras.optimizers.Adam(s["lr"], clipnorm=s["clip_norm"]),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    marks = []
    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            marks.append(time.perf_counter())
            if marks[-1] - marks[0] >= seconds:
                self.model.stop_training = True
    for epoch in range(1000):
        model.fit(x, y, batch_size=b, epochs=1, shuffle=False, verbose=0, callbacks=[Stop()])
        if marks[-1] - marks[0] >= seconds:
            break
        for layer in model.layers:
            if hasattr(layer, "reset_states"):
                layer.reset_states()
    steps = len(marks)
    rate = (steps - 1) * b * t / (marks[-1] - marks[0])
    evaluator = build(10)
    evaluator.set_weights(model.get_weights())
    evaluator.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    vx, vy, _ = streams(valid, 10, t)
    loss = evaluator.evaluate(vx, vy, batch_size=10, verbose=0)
    print(json.dumps({"tokens_per_sec": rate, "tokens": steps * b * t, "precision": "fp32", "valid_loss": float(loss),
                      "keras": keras.__version__, "backend": keras.backend.backend()}))
''')


def run_keras(python: str, seconds: float, corpus) -> dict | None:
    if not python or not Path(python).exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.npz"
        np.savez(data, train=corpus.train, valid=corpus.valid)
        script = Path(tmp) / "keras_lm.py"
        script.write_text(KERAS)
        proc = subprocess.run([python, str(script), str(data), str(len(corpus.vocab)), str(seconds), json.dumps(SETTINGS)],
                              capture_output=True, text=True, env={"KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2",
                                                                   "PATH": "/usr/bin:/bin"})
        if proc.returncode != 0:
            return {"error": proc.stderr[-1500:]}
        return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="training time of each contender")
    parser.add_argument("--keras-python", default="/work/bench-keras-venv/bin/python")
    parser.add_argument("--only", nargs="*", default=None, help="contenders to run")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    corpus = read_corpus(CORPUS, "char", (SETTINGS["valid_fraction"], SETTINGS["test_fraction"]))
    results: dict = {"machine": f"{cpu_model()}, {torch.get_num_threads()} threads",
                     "torch": torch.__version__, "seconds": args.seconds, "settings": SETTINGS}
    contenders = {"visionflow": lambda: run_visionflow(args.seconds, "auto"),
                  "visionflow_fp32": lambda: run_visionflow(args.seconds, "fp32"),
                  "plain_loop": lambda: run_plain(args.seconds, corpus),
                  "keras": lambda: run_keras(args.keras_python, args.seconds, corpus)}
    for name, run in contenders.items():
        if args.only and name not in args.only:
            continue
        out = run()
        if out is None:
            print(f"{name}: not available", flush=True)
            continue
        results[name] = out
        if "error" in out:
            print(f"{name}: failed: {out['error'][-300:]}", flush=True)
            continue
        out["valid_perplexity"] = math.exp(out["valid_loss"])
        out["valid_bits_per_char"] = out["valid_loss"] / math.log(2)
        print(f"{name:>16}: {out['tokens_per_sec']:8,.0f} tokens/s ({out['precision']})  {out['tokens']:>11,} tokens  "
              f"valid loss {out['valid_loss']:.4f}  ({out['valid_bits_per_char']:.3f} bits/char)", flush=True)
    if "plain_loop" in results:
        for name in ("visionflow", "visionflow_fp32", "keras"):
            if name in results and "error" not in results[name]:
                results[f"{name}_speed_ratio"] = results[name]["tokens_per_sec"] / results["plain_loop"]["tokens_per_sec"]
                print(f"{name} / plain loop: {results[f'{name}_speed_ratio']:.2f}x tokens/s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
