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
    with pytest.raises(InputError, match="was trained with --batch-size 32, got 64"):
        vf.Classifier(tmp_path / "m", model="mlp", batch_size=64)
    with pytest.raises(InputError, match="holds a 'mlp' model, not 'cnn'"):
        vf.Classifier(tmp_path / "m", model="cnn")
