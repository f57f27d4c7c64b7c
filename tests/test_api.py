import numpy as np
import pytest
import torch

import visionflow as vf
from visionflow.errors import InputError


def _arrays(n=240, seed=0):
    """A learnable 10x10 problem: the class is which quadrant holds the bright blob."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.integers(0, 40, (n, 10, 10)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 2)
        images[i, r * 5 : r * 5 + 5, c * 5 : c * 5 + 5] += 200
    return images, labels


def test_classifier_on_arrays_train_evaluate_predict(tmp_path):
    train, test = _arrays(), _arrays(80, seed=1)
    data = vf.dataset_from_arrays(train, test=test)
    clf = vf.Classifier(tmp_path / "m", model="mlp", steps=60, batch_size=32, log_every=20)
    outcome = clf.train(data)
    assert outcome.result.global_step == 60 and outcome.test.accuracy > 0.9
    assert clf.evaluate(data).accuracy == pytest.approx(outcome.test.accuracy)
    out = clf.predict(test[0][:5].astype(np.float32) / 255.0)
    assert out["probabilities"].shape == (5, 4) and list(out["classes"]) == list(test[1][:5])
    again = vf.Classifier(tmp_path / "m")  # reopened from the directory alone
    assert again.config.model == "mlp" and again.evaluate(data).global_step == 60


def test_custom_module_and_model_fn(tmp_path):
    data = vf.dataset_from_arrays(_arrays(), test=_arrays(80, seed=1))

    def model_fn():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 4))

    clf = vf.Classifier(tmp_path / "fn", model=model_fn, steps=80, batch_size=32, lr=0.01)
    assert clf.train(data).test.accuracy > 0.9
    assert "custom:model_fn" in (tmp_path / "fn" / "config.json").read_text()
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 4))
    clf = vf.Classifier(tmp_path / "mod", model=module, steps=80, batch_size=32, lr=0.01)
    clf.train(data)
    assert clf.predict(_arrays(8, seed=3)[0])["classes"].shape == (8,)
    bad = vf.Classifier(tmp_path / "bad", model=lambda: "not a module", steps=1)
    with pytest.raises(InputError, match="not a torch.nn.Module"):
        bad.train(data)


def test_callbacks_see_logs_epochs_checkpoints(tmp_path):
    seen = {"log": [], "epoch": [], "ckpt": []}

    class Recorder:
        def on_log(self, step, metrics):
            seen["log"].append((step, set(metrics)))

        def on_epoch_end(self, epoch, step, result):
            seen["epoch"].append(step)

        def on_checkpoint(self, step):
            seen["ckpt"].append(step)

    data = vf.dataset_from_arrays(_arrays(), test=_arrays(40, seed=1), validation=_arrays(40, seed=2))
    vf.Classifier(tmp_path / "m", model="mlp", steps=30, batch_size=24, log_every=10,
                  checkpoint_every=15).train(data, callbacks=[Recorder()])
    assert [s for s, _ in seen["log"]] == [10, 20, 30]
    assert seen["log"][0][1] == {"loss", "accuracy", "learning_rate", "examples_per_sec"}
    assert seen["ckpt"] == [15, 30] and seen["epoch"] == [10, 20, 30]


def test_flags_conflicting_with_directory(tmp_path):
    data = vf.dataset_from_arrays(_arrays(), test=_arrays(40, seed=1))
    vf.Classifier(tmp_path / "m", model="mlp", steps=5, batch_size=32).train(data)
    with pytest.raises(InputError, match="was trained with batch_size=32, got 64"):
        vf.Classifier(tmp_path / "m", model="mlp", batch_size=64)
    with pytest.raises(InputError, match="holds a 'mlp' model, not 'cnn'"):
        vf.Classifier(tmp_path / "m", model="cnn")


# -- the Estimator-style face: data, amounts, errors, custom parts, export --------------------

def test_evaluate_and_predict_on_arrays_do_the_obvious_thing(tmp_path):
    clf = vf.Classifier(tmp_path / "m", model="mlp", steps=60, batch_size=32, validation_size=40)
    outcome = clf.train(_arrays())
    assert outcome.result.validation is not None and outcome.result.validation.count == 40  # held out
    test_x, test_y = _arrays(80, seed=1)
    result = clf.evaluate((test_x, test_y))
    assert result.count == 80 and result.accuracy > 0.9
    nchw = clf.predict(test_x[:6, None])  # PyTorch's (N, C, H, W)
    assert list(nchw["classes"]) == list(clf.predict(test_x[:6])["classes"])
    with pytest.raises(InputError, match="float pixels must be in 0-1, got 0..16"):
        clf.predict(np.linspace(0, 16, 600).reshape(6, 10, 10))
    reopened = vf.Classifier(tmp_path / "m")
    with pytest.raises(InputError, match=r"trained on in-memory data \('arrays'\).*evaluate\(\(images, labels\)\)"):
        reopened.evaluate()
    assert reopened.evaluate((test_x, test_y)).count == 80


def test_each_train_call_trains_and_a_new_cycle_starts_low(tmp_path):
    rates = []

    class Rates(vf.Callback):
        def on_log(self, step, metrics):
            rates.append((step, metrics["learning_rate"]))

    data = vf.dataset_from_arrays(_arrays(), test=_arrays(80, seed=1))
    clf = vf.Classifier(tmp_path / "m", model="mlp", steps=40, batch_size=32, log_every=5)
    assert clf.train(data, callbacks=[Rates()]).result.global_step == 40
    assert clf.train(data, callbacks=[Rates()]).result.global_step == 80  # the same amount again
    assert clf.train(data, steps=10).result.global_step == 90
    assert clf.config.schedule_start == 80
    first, second = dict(rates[:8]), dict(rates[8:])
    # the second call's 40 steps run the same schedule again, warm-up and all — not the tail of a
    # schedule stretched over 80 steps, which would start at half its peak
    assert sorted(second) == [40 + s for s in sorted(first)]
    assert all(second[40 + s] == pytest.approx(first[s]) for s in first)
    with pytest.warns(UserWarning, match="already at global step 90; nothing trained"):
        assert clf.train(data, max_steps=90).result.steps_run == 0


def test_python_errors_use_python_names(tmp_path):
    with pytest.raises(InputError, match=r"^optimizer must be one of .* \(or a torch optimizer\)$"):
        vf.Classifier(tmp_path / "a", model="mlp", optimizer="rmsprop")
    with pytest.raises(InputError, match=r"^batch_size must be at least 1$"):
        vf.Classifier(tmp_path / "b", model="mlp", batch_size=0)
    with pytest.raises(InputError, match=r"augment\.crop must be 0 or more"):
        vf.Classifier(tmp_path / "c", model="mlp", augment=vf.TrainConfig().augment.__class__(crop=-1))


def test_custom_optimizer_loss_and_scheduler_train_and_resume(tmp_path):
    data = vf.dataset_from_arrays(_arrays(), test=_arrays(80, seed=1))
    seen = []

    def loss(logits, labels):
        seen.append(logits.shape)
        return torch.nn.functional.cross_entropy(logits, labels)

    def schedule(optimizer):
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)

    clf = vf.Classifier(tmp_path / "m", model="mlp", steps=30, batch_size=32, lr=3e-3,
                        optimizer=torch.optim.AdamW, loss=loss, lr_scheduler=schedule)
    outcome = clf.train(data)
    assert outcome.test.accuracy > 0.85 and seen
    config = (tmp_path / "m" / "config.json").read_text()
    assert '"custom:AdamW"' in config and '"custom:loss"' in config and '"custom:schedule"' in config
    again = vf.Classifier(tmp_path / "m", optimizer=torch.optim.AdamW, loss=loss, lr_scheduler=schedule)
    assert again.train(data, steps=5).result.global_step == 35
    from conftest import assert_one_line_error, run_in_process

    assert_one_line_error(run_in_process("train", "--model-dir", tmp_path / "m", "--steps", "50"),
                          "was trained with a custom optimizer (AdamW); continue it through the Python API")


def test_a_custom_module_exports_verified_and_serves(tmp_path):
    pytest.importorskip("onnxruntime")
    from visionflow.export.exportdir import ExportBase
    from visionflow.serving.batching import Arrivals
    from visionflow.serving.runtime import RuntimeOptions, load_version

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100, 4))
    clf = vf.Classifier(tmp_path / "m", model=net, steps=60, batch_size=32, lr=0.01)
    clf.train(_arrays())
    version = clf.export(tmp_path / "exports")
    assert (version / "model.onnx").is_file() and "custom:Sequential" in (version / "signature.json").read_text()
    served = load_version(ExportBase(tmp_path / "exports"), 1, RuntimeOptions(runtime="auto"), Arrivals())
    try:
        x = _arrays(8, seed=5)[0][..., None]
        assert list(served.runner.run(x)["classes"]) == list(clf.predict(x)["classes"])
    finally:
        served.batcher.close()
    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 2))
    result = vf.export_model(bare, tmp_path / "bare", example_input=np.zeros((4, 6, 6, 3), np.uint8),
                             class_names=["no", "yes"])
    assert result.verification.source == "example_input" and (result.path / "labels.txt").read_text() == "no\nyes\n"
