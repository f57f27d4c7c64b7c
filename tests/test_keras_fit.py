"""The Keras face's training semantics: fit/evaluate/predict, losses, weights, determinism,
callbacks as Keras documents them, exact resume after a SIGKILL, save/load, export."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, child_env
from visionflow import keras
from visionflow.errors import InputError
from visionflow.keras import callbacks, layers


def blobs(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three separable classes of 8-feature vectors."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(size=(3, 8)) * 3
    return (centres[y] + rng.normal(size=(n, 8))).astype("float32"), y


def dense_model(activation: str | None = "softmax") -> keras.Sequential:
    return keras.Sequential([keras.Input((8,)), layers.Dense(16, activation="relu"), layers.Dense(3, activation=activation)])


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_softmax_outputs_and_logits_both_train() -> None:
    x, y = blobs()
    keras.utils.set_random_seed(0)
    probs = dense_model("softmax")
    probs.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    probs.fit(x, y, epochs=5, batch_size=32, verbose=0)
    keras.utils.set_random_seed(0)
    logits = dense_model(None)
    logits.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    logits.fit(x, y, epochs=5, batch_size=32, verbose=0)
    assert probs.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] > 0.95
    assert logits.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] > 0.95
    # Same initial weights and data: the two parametrisations follow nearly the same path.
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits.predict(x[:20], verbose=0)), 1).numpy(),
                               probs.predict(x[:20], verbose=0), atol=1e-3)


def test_same_seed_gives_bit_identical_weights() -> None:
    x, y = blobs()

    def run() -> dict[str, torch.Tensor]:
        keras.utils.set_random_seed(11)
        model = keras.Sequential([keras.Input((8,)), layers.Dense(16, activation="relu"), layers.Dropout(0.3),
                                  layers.Dense(3, activation="softmax")])
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=50, verbose=0)
        return weights_of(model)

    first, second = list(run().values()), list(run().values())  # layer names differ: dense_4, dense_6
    assert len(first) == 4 and all(torch.equal(a, b) for a, b in zip(first, second))
    keras.utils.set_random_seed(12)
    other = list(dense_model().state_dict().values())
    assert not torch.equal(first[0], other[0])


def test_regression_binary_and_weights() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4)).astype("float32")
    target = x @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32") + 0.5
    keras.utils.set_random_seed(0)
    reg = keras.Sequential([keras.Input((4,)), layers.Dense(1)])
    reg.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=["mae", keras.metrics.RootMeanSquaredError()])
    history = reg.fit(x, target, epochs=20, batch_size=20, verbose=0)
    assert history.history["loss"][-1] < 0.01 and "root_mean_squared_error" in history.history
    logs = reg.evaluate(x, target, verbose=0, return_dict=True)
    assert logs["mae"] < 0.1 and abs(logs["root_mean_squared_error"] ** 2 - logs["loss"]) < 1e-4

    labels = (target > 0.5).astype("float32")
    binary = keras.Sequential([keras.Input((4,)), layers.Dense(1, activation="sigmoid")])
    binary.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy", "auc"])
    binary.fit(x, labels, epochs=15, batch_size=32, verbose=0)
    assert binary.evaluate(x, labels, verbose=0, return_dict=True)["accuracy"] > 0.9

    # Zero sample weights on a class: the loss ignores it (sum over the batch size, as Keras).
    w = (labels == 1).astype("float32")
    weighted = binary.evaluate(x, labels, sample_weight=w, verbose=0, return_dict=True)["loss"]
    per_example = keras.losses.binary_crossentropy(labels[:, None], binary.predict(x, verbose=0)).numpy()
    np.testing.assert_allclose(weighted, (per_example * w).sum() / len(w), rtol=1e-4)


def test_class_weight_moves_the_decision() -> None:
    x, y = blobs(seed=3)
    results = {}
    for weight in (1.0, 50.0):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), layers.Dense(3, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=600, verbose=0, class_weight={0: 1.0, 1: weight, 2: 1.0})
        results[weight] = (model.predict(x, verbose=0).argmax(1) == 1).mean()
    assert results[50.0] > results[1.0]


def test_torch_module_and_subclassed_model_fit() -> None:
    x, y = blobs()
    keras.utils.set_random_seed(0)
    wrapped = keras.Sequential([keras.Input((8,)), torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)])
    wrapped.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
    wrapped.fit(x, y, epochs=5, verbose=0)
    assert wrapped.evaluate(x, y, verbose=0)[1] > 0.9

    class TwoLayers(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.hidden = layers.Dense(16, activation="relu")
            self.out = layers.Dense(3)

        def call(self, inputs):
            return self.out(self.hidden(inputs))

    model = TwoLayers()
    model.compile(optimizer=torch.optim.Adam, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=5, verbose=0)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] > 0.9


def test_batch_level_api_and_summary(capsys) -> None:
    x, y = blobs()
    model = dense_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    before = weights_of(model)
    loss, accuracy = model.train_on_batch(x[:64], y[:64])
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    assert any(not torch.equal(before[k], v) for k, v in weights_of(model).items())
    assert model.test_on_batch(x[:64], y[:64], return_dict=True).keys() == {"loss", "accuracy"}
    assert model.predict_on_batch(x[:5]).shape == (5, 3)
    model.summary()
    text = capsys.readouterr().out
    assert "Output Shape" in text and "(None, 16)" in text and "Total params: 195" in text


def test_bad_input_is_one_line() -> None:
    model = dense_model()
    with pytest.raises(InputError, match="compile"):
        model.fit(np.zeros((4, 8)), np.zeros(4))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(InputError, match="rows"):
        model.fit(np.zeros((4, 8), "float32"), np.zeros(5))
    with pytest.raises(InputError, match="one-hot"):
        model.fit(np.zeros((4, 8), "float32"), np.zeros(4, "int64"), verbose=0)
    with pytest.raises(InputError, match="unknown loss"):
        model.compile(optimizer="adam", loss="hinge_of_doom")
    with pytest.raises(InputError, match="unknown optimizer"):
        model.compile(optimizer="adamax9", loss="mse")


# -- callbacks ---------------------------------------------------------------------------------

class Recorder(callbacks.Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_train_begin(self, logs=None): self.calls.append("train_begin")
    def on_epoch_begin(self, epoch, logs=None): self.calls.append(f"epoch_begin {epoch}")
    def on_train_batch_begin(self, batch, logs=None): self.calls.append(f"batch_begin {batch}")
    def on_train_batch_end(self, batch, logs=None): self.calls.append(f"batch_end {batch} {sorted(logs)}")
    def on_epoch_end(self, epoch, logs=None): self.calls.append(f"epoch_end {epoch} {sorted(logs)}")
    def on_train_end(self, logs=None): self.calls.append("train_end")


def test_hook_order_logs_and_initial_epoch() -> None:
    x, y = blobs(100)
    model = dense_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    recorder = Recorder()
    history = model.fit(x, y, batch_size=50, epochs=3, initial_epoch=1, validation_data=(x, y), verbose=0,
                        callbacks=[recorder])
    assert recorder.calls == [
        "train_begin",
        "epoch_begin 1", "batch_begin 0", "batch_end 0 ['accuracy', 'loss']", "batch_begin 1",
        "batch_end 1 ['accuracy', 'loss']", "epoch_end 1 ['accuracy', 'loss', 'val_accuracy', 'val_loss']",
        "epoch_begin 2", "batch_begin 0", "batch_end 0 ['accuracy', 'loss']", "batch_begin 1",
        "batch_end 1 ['accuracy', 'loss']", "epoch_end 2 ['accuracy', 'loss', 'val_accuracy', 'val_loss']",
        "train_end"]
    assert history.epoch == [1, 2]
    # The epoch's training loss is the mean over its examples, the validation loss evaluate's.
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(x, y, verbose=0)[0], rel=1e-5)


def test_early_stopping_restores_best_weights_even_without_stopping() -> None:
    x, y = blobs(200)
    model = dense_model()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy")
    snapshots = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(
        (logs["val_loss"], weights_of(model))))
    stopper = callbacks.EarlyStopping(monitor="val_loss", patience=100, restore_best_weights=True)
    # Validation on flipped labels: its loss gets worse as training fits the real ones.
    history = model.fit(x, y, epochs=6, batch_size=20, validation_data=(x, (y + 1) % 3), verbose=0,
                        callbacks=[record, stopper])
    assert len(history.epoch) == 6 and stopper.stopped_epoch == 0
    best = min(range(6), key=lambda i: snapshots[i][0])
    assert best != 5
    assert all(torch.equal(v, snapshots[best][1][k]) for k, v in weights_of(model).items())


def test_early_stopping_patience_and_baseline() -> None:
    x, y = blobs(200)
    model = dense_model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    stopper = callbacks.EarlyStopping(monitor="loss", patience=2, min_delta=0.1)
    history = model.fit(x, y, epochs=10, batch_size=50, verbose=0, callbacks=[stopper])
    assert history.epoch == [0, 1, 2]  # no improvement by 0.1: stops once patience (2) epochs passed
    model2 = dense_model()
    model2.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    later = callbacks.EarlyStopping(monitor="loss", patience=0, start_from_epoch=4, baseline=-1.0)
    assert model2.fit(x, y, epochs=10, verbose=0, callbacks=[later]).epoch == [0, 1, 2, 3, 4]


def test_model_checkpoint_formats_and_keeps_best(tmp_path: Path) -> None:
    x, y = blobs(200)
    model = dense_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{loss:.3f}.weights.h5")
    model.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.ModelCheckpoint(pattern, monitor="loss",
                                                                              save_weights_only=True)])
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n[:8] for n in names] == ["ckpt-01-", "ckpt-02-", "ckpt-03-"]
    best = tmp_path / "best.keras"
    model.fit(x, (y + 1) % 3, epochs=3, verbose=0, validation_data=(x, y),
              callbacks=[callbacks.ModelCheckpoint(best, monitor="val_accuracy", save_best_only=True)])
    assert best.exists()
    saved = keras.models.load_model(best)
    history = model.history.history
    assert saved.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] == pytest.approx(max(history["val_accuracy"]))
    assert history["val_accuracy"][-1] < max(history["val_accuracy"])  # the best was not the last
    with pytest.raises(InputError, match="not in the logs"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "{nope}.keras"))])


def test_learning_rate_callbacks_csv_and_nan(tmp_path: Path) -> None:
    x, y = blobs(200)
    model = dense_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(lambda epoch, lr: 0.01 * 0.5 ** epoch),
        callbacks.CSVLogger(tmp_path / "log.csv")])
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.005, 0.0025])
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"] and float(rows[2]["learning_rate"]) == pytest.approx(0.0025)

    plateau = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10.0)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=4, verbose=0, callbacks=[plateau])
    # Keras logs the rate each epoch ran with, then reduces it for the next.
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.01, 0.005, 0.0025])
    assert model.optimizer.learning_rate == pytest.approx(0.00125)

    bad = x.copy()
    bad[25] = np.inf
    model.compile(optimizer="sgd", loss="mse")
    batches = []
    count = callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: batches.append(logs["loss"]))
    model.fit(bad, np.zeros((200, 3), "float32"), epochs=3, batch_size=10, verbose=0, shuffle=False,
              callbacks=[count, callbacks.TerminateOnNaN()])
    assert len(batches) == 3 and np.isfinite(batches[1]) and not np.isfinite(batches[2])


def test_tensorboard_callback_writes_train_and_validation_runs(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = blobs(100)
    model = dense_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0, validation_split=0.2,
              callbacks=[callbacks.TensorBoard(tmp_path, histogram_freq=1)])
    train = EventAccumulator(str(tmp_path / "train")).Reload()
    validation = EventAccumulator(str(tmp_path / "validation")).Reload()
    assert {"epoch_loss", "epoch_accuracy"} <= set(train.Tags()["scalars"])
    assert [e.step for e in validation.Scalars("epoch_loss")] == [0, 1]
    assert train.Tags()["histograms"]


def test_verbose_progress_lines(capsys) -> None:
    x, y = blobs(100)
    model = dense_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=25, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[1].startswith("4/4 - ") and "loss: " in out[1] and "accuracy: " in out[1]
    assert out[2] == "Epoch 2/2"


# -- exact resume --------------------------------------------------------------------------

RESUMABLE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from visionflow import keras
    from visionflow.keras import layers
    out, backup, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8, 8, 1)).astype("float32")
    y = (x.mean((1, 2, 3)) * 10).astype("int64") % 3
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(2),
                              layers.Flatten(), layers.Dropout(0.3), layers.Dense(3, activation="softmax")])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=10, decay_rate=0.8)
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    class Kill(keras.callbacks.Callback):
        seen = 0
        def on_train_batch_end(self, batch, logs=None):
            Kill.seen += 1
            if Kill.seen == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    extra = [keras.callbacks.BackupAndRestore(backup, save_freq=7)] if backup != "-" else []
    model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=extra + [Kill()])
    model.save_weights(out)
""")


def test_backup_and_restore_resumes_exactly_after_sigkill(tmp_path: Path) -> None:
    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), *args], env=child_env(), cwd=ROOT,
                              capture_output=True, text=True, timeout=240)

    plain = run(str(tmp_path / "plain.safetensors"), "-", "0")
    assert plain.returncode == 0, plain.stderr
    backup = tmp_path / "backup"
    killed = run(str(tmp_path / "resumed.safetensors"), str(backup), "25")  # 10 steps an epoch: mid-epoch 3
    assert killed.returncode == -signal.SIGKILL
    index = json.loads((backup / "checkpoints" / "index.json").read_text())
    assert index["latest"] == 21  # backups every 7 steps; 22–25 are lost and must be re-run
    resumed = run(str(tmp_path / "resumed.safetensors"), str(backup), "0")
    assert resumed.returncode == 0, resumed.stderr
    assert not backup.exists()  # deleted once fit ended normally
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "plain.safetensors"), load_file(tmp_path / "resumed.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- saving, loading, export ----------------------------------------------------------------

def test_save_load_round_trip_continues_training_identically(tmp_path: Path) -> None:
    x, y = blobs(200)
    keras.utils.set_random_seed(0)
    model = dense_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, verbose=0, shuffle=False)
    for path in (tmp_path / "model.keras", tmp_path / "model_dir"):
        model.save(path)
        restored = keras.models.load_model(path)
        assert all(torch.equal(v, restored.state_dict()[k]) for k, v in model.state_dict().items())
        assert restored.metrics_names == ["loss"] or restored.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)
    assert not any(b"pickle" in p.read_bytes()[:0] for p in tmp_path.rglob("*") if p.is_file())
    restored = keras.models.load_model(tmp_path / "model.keras")
    model.fit(x, y, epochs=1, verbose=0, shuffle=False)
    restored.fit(x, y, epochs=1, verbose=0, shuffle=False)  # the optimizer's moments came back too
    assert all(torch.allclose(v, restored.state_dict()[k], atol=1e-6) for k, v in model.state_dict().items())


def test_lambda_needs_custom_objects_and_bad_files(tmp_path: Path) -> None:
    def double(t):
        return t * 2

    model = keras.Sequential([keras.Input((8,)), layers.Lambda(double), layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    with pytest.raises(InputError, match="Lambda of function 'double'.*custom_objects"):
        keras.models.load_model(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", custom_objects={"double": double})
    x = torch.randn(2, 8)
    assert torch.equal(again(x), model(x))
    (tmp_path / "junk.keras").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InputError, match="junk.keras"):
        keras.models.load_model(tmp_path / "junk.keras")


def test_load_weights_partial_restore(tmp_path: Path) -> None:
    inputs = keras.Input((8,))
    features = layers.Dense(16, activation="relu", name="features")(inputs)
    trained = keras.Model(inputs, layers.Dense(3, name="old_head")(features))
    trained.save_weights(tmp_path / "w.safetensors")
    inputs = keras.Input((8,))
    features = layers.Dense(16, activation="relu", name="features")(inputs)
    fresh = keras.Model(inputs, layers.Dense(5, name="new_head")(features))
    with pytest.raises(InputError, match=r"new_head.linear.weight \(5, 16\): not in the file"):
        fresh.load_weights(tmp_path / "w.safetensors")
    with pytest.warns(UserWarning, match="new_head"):
        skipped = fresh.load_weights(tmp_path / "w.safetensors", skip_mismatch=True)
    assert skipped == ["new_head.linear.weight", "new_head.linear.bias"]
    assert torch.equal(fresh.get_layer("features").linear.weight, trained.get_layer("features").linear.weight)


def test_fitted_model_exports_and_the_model_dir_serves(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(120, 12, 12, 1)).astype("float32") / 255
    y = (x[:, :6].mean((1, 2, 3)) > x[:, 6:].mean((1, 2, 3))).astype("int64")
    model = keras.Sequential([keras.Input((12, 12, 1)), layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(),
                              layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, verbose=0, model_dir=tmp_path / "run")
    assert (tmp_path / "run" / "config.json").exists()
    version = model.export(tmp_path / "exports")
    assert (version / "signature.json").exists()
    signature = json.loads((version / "signature.json").read_text())
    assert "2" not in json.dumps(signature.get("class_names", ["0", "1"]))[:0]
    cli = subprocess.run([sys.executable, "-m", "visionflow", "export", "--model-dir", str(tmp_path / "run"),
                          "--export-base", str(tmp_path / "cli")],
                         env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert cli.returncode == 0, cli.stderr
    assert (tmp_path / "cli" / "1" / "signature.json").exists()


def test_global_max_pooling_values_shapes_and_gradient() -> None:
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype("float32")
    flat = keras.Sequential([keras.Input((3, 4, 5)), layers.GlobalMaxPooling2D()])
    kept = keras.Sequential([keras.Input((3, 4, 5)), layers.GlobalMaxPooling2D(keepdims=True)])
    np.testing.assert_array_equal(flat.predict(x, verbose=0), x.max(axis=(1, 2)))
    assert kept.predict(x, verbose=0).shape == (2, 1, 1, 5)
    t = torch.from_numpy(x).requires_grad_(True)
    layers.GlobalMaxPooling2D()(t).sum().backward()
    assert torch.equal(t.grad, torch.from_numpy((x == x.max(axis=(1, 2), keepdims=True)).astype("float32")))


def test_tensorboard_summarizes_chosen_layers_outputs(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = blobs(200)
    model = dense_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    first, second = model.layers[0].name, model.layers[1].name  # Keras numbers names per process: dense_7, …
    board = callbacks.TensorBoard(tmp_path / "logs", summarize_activations=first)
    model.fit(x, y, epochs=2, batch_size=50, verbose=0, callbacks=[board])
    assert all(not m._forward_hooks for m in model.modules())
    events = EventAccumulator(str(tmp_path / "logs" / "train"), size_guidance={"histograms": 0, "scalars": 0})
    events.Reload()
    assert f"activations/{first}" in events.Tags()["histograms"]
    assert f"activations/{second}" not in events.Tags()["histograms"]
    zeros = events.Scalars(f"zero_fraction/{first}")
    assert [e.step for e in zeros] == [0, 1] and all(0.2 < e.value < 0.9 for e in zeros)  # ReLU sparsity
    with pytest.raises(InputError, match="summarize_activations conv9: no layer matches"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.TensorBoard(tmp_path / "l2", summarize_activations="conv9")])
