"""The parts of transfer learning, each on its own: folder split, crop geometry, bottleneck cache,
distortions, the composed model, the EfficientNet-PyTorch renaming, and top-k output."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from visionflow.data.augment import RETRAIN_DISTORTIONS
from visionflow.data.base import Split
from visionflow.data.batches import TensorBatches
from visionflow.data.distort import Draws, draw_epoch, photometric, zoom
from visionflow.data.imagefolder import scan_image_folder, which_set
from visionflow.engine.config import RunConfig
from visionflow.errors import InputError
from visionflow.infer.labeling import label_lines, rank
from visionflow.models.backbones import get_backbone
from visionflow.models.efficientnet_weights import to_timm_names
from visionflow.models.pretrained import Weights, read_state_dict
from visionflow.models.transfer import TransferClassifier
from visionflow.preprocessing import Preprocessing
from visionflow.transfer.bottlenecks import BottleneckCache, compute_bottlenecks

PRE = Preprocessing(3, 8, 8, (0.5,) * 3, (0.5,) * 3, "bilinear", 0.875)


def _photo(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (20, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


class TinyBackbone(nn.Module):
    """A real (small) feature extractor: conv → global average pool → (N, 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)).mean(dim=(2, 3))


def test_which_set_is_retrains_file_name_hash():
    assert which_set("cat_nohash_1.jpg", 10, 10) == which_set("cat.jpg", 10, 10) == which_set("cat_nohash_9.png", 10, 10)
    assert which_set("dir/a/photo.jpg", 10, 10) == which_set("photo.jpg", 10, 10)
    counts = Counter(which_set(f"img{i}.jpg", 10, 10) for i in range(20000))
    assert abs(counts["validation"] / 20000 - 0.10) < 0.01 and abs(counts["test"] / 20000 - 0.10) < 0.01
    assert all(which_set(f"img{i}.jpg", 0, 0) == "train" for i in range(100))


def test_scan_lists_categories_and_ignores_other_files(tmp_path):
    _photo(tmp_path / "roses" / "a.jpg", (255, 0, 0))
    _photo(tmp_path / "roses" / "B.PNG", (255, 0, 0))
    _photo(tmp_path / "daisy" / "c.webp", (255, 255, 255))
    (tmp_path / "daisy" / "notes.txt").write_text("x")
    (tmp_path / "daisy" / ".DS_Store").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "README.md").write_text("x")
    folder = scan_image_folder(tmp_path)
    assert folder.class_names == ("daisy", "roses")
    assert [(f.path.name, f.label) for f in folder.files] == [("c.webp", 0), ("B.PNG", 1), ("a.jpg", 1)]
    assert sorted(p.name for p in folder.ignored) == ["README.md", "notes.txt"]
    with pytest.raises(InputError, match="image directory not found"):
        scan_image_folder(tmp_path / "nope")


def test_central_crop_keeps_the_middle_and_none_stretches():
    framed = Image.new("RGB", (256, 256), (255, 0, 0))
    framed.paste((255, 255, 255), (16, 16, 240, 240))  # a 16-pixel red frame around white
    crop = Preprocessing(3, 224, 224, (0.5,) * 3, (0.5,) * 3, "bicubic", 0.875)
    assert (crop.fit_image(framed) == 255).all()  # 256 = floor(224 / 0.875): the frame is cut away exactly
    stretch = Preprocessing(3, 224, 224, (0.5,) * 3, (0.5,) * 3, "bilinear", None)
    assert tuple(stretch.fit_image(framed)[0, 0]) == (255, 0, 0)
    wide = Image.new("RGB", (512, 256), (0, 0, 255))
    wide.paste((255, 255, 255), (144, 16, 368, 240))  # exactly the central 224×224 after scaling (none needed)
    out = crop.fit_image(wide)
    assert out.shape == (224, 224, 3) and (out == 255).all()


def test_old_config_without_the_new_fields_still_loads():
    raw = {"train": {"model": "cnn", "dataset": "digits"}, "model": {"name": "cnn", "num_classes": 10,
           "input_shape": [1, 8, 8], "options": {}},
           "preprocessing": {"channels": 1, "height": 8, "width": 8, "mean": [0.1], "std": [0.3], "resize": "bilinear"},
           "class_names": list("0123456789"), "format": 1}
    run = RunConfig.from_json(json.dumps(raw))
    assert run.preprocessing.crop is None and run.train.validation_percentage is None
    assert not run.train.augment.distorts and not run.train.fine_tune


def test_bottleneck_cache_keys_and_recomputation(tmp_path):
    backbone = get_backbone("efficientnet_lite0")
    weights = Weights("a", "0" * 64)
    cache = BottleneckCache(tmp_path / "cache", backbone, weights, PRE)
    assert cache.directory == BottleneckCache(tmp_path / "cache", backbone, Weights("b", "0" * 64), PRE).directory
    assert cache.directory != BottleneckCache(tmp_path / "cache", backbone, Weights("a", "1" * 64), PRE).directory
    assert cache.directory != BottleneckCache(tmp_path / "cache", backbone, weights,
                                              Preprocessing(3, 8, 8, (0.4,) * 3, (0.5,) * 3, "bilinear", 0.875)).directory

    folder_root = tmp_path / "photos"
    for i, color in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        _photo(folder_root / ("x" if i < 2 else "y") / f"{i}.png", color)
    (folder_root / "y" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    files = scan_image_folder(folder_root, 0, 0).files
    net = TinyBackbone().eval()
    skipped = []
    first = compute_bottlenecks(files, net, PRE, cache, torch.device("cpu"), batch_size=2,
                                on_skip=lambda p, r: skipped.append(p.name))
    assert skipped == ["broken.jpg"] and first.features.shape == (3, 4) and list(first.labels) == [0, 0, 1]
    assert (first.stats.computed, first.stats.cached, first.stats.forward_passes) == (3, 0, 2)
    again = compute_bottlenecks(files, net, PRE, cache, torch.device("cpu"), on_skip=lambda p, r: None)
    assert (again.stats.computed, again.stats.cached, again.stats.forward_passes) == (0, 3, 0)
    assert np.array_equal(again.features, first.features)
    _photo(folder_root / "x" / "1.png", (10, 20, 30))  # new content: only this image is recomputed
    changed = compute_bottlenecks(files, net, PRE, cache, torch.device("cpu"), on_skip=lambda p, r: None)
    assert (changed.stats.computed, changed.stats.cached) == (1, 2)
    cache.path_for("f" * 64).parent.mkdir(parents=True, exist_ok=True)
    cache.path_for("f" * 64).write_bytes(b"garbage")
    assert cache.get("f" * 64) is None


def test_retrain_distortions_are_drawn_within_their_ranges():
    d = draw_epoch(RETRAIN_DISTORTIONS, 20000, 16, 16, seed=3, epoch=1)
    kept, cx, cy = d.zoom.unbind(1)
    assert kept.min() > 0.9 - 1e-6 and kept.max() <= 1.0 and kept.min() < 0.901 and kept.max() > 0.999
    assert (cx.abs() <= 1 - kept + 1e-6).all() and (cy.abs() <= 1 - kept + 1e-6).all()
    assert d.factor.min() >= 0.9 and d.factor.max() < 1.1 and 0.47 < d.flip.float().mean() < 0.53
    assert d.top is None and d.brightness is None  # nothing else is drawn


def test_zoom_scales_the_kept_window_back_to_full_size_and_brightness_factor_clips():
    images = torch.randint(0, 256, (2, 3, 16, 16)).float()
    assert torch.allclose(zoom(images, torch.tensor([[1.0, 0.0, 0.0]] * 2)), images, atol=1e-3)
    # half of each side, centred on the top-left quarter: that quarter scaled up 2x (the last output
    # row and column blend with the pixels beyond the window, which a crop-then-resize cannot see)
    quarter = zoom(images, torch.tensor([[0.5, -0.5, -0.5]] * 2))
    want = torch.nn.functional.interpolate(images[:, :, :8, :8], scale_factor=2, mode="bilinear", align_corners=False)
    assert torch.allclose(quarter[..., :15, :15], want[..., :15, :15], atol=1e-3)
    brighter = photometric(images, Draws(factor=torch.tensor([1.5, 0.5])))
    assert torch.equal(brighter[0], (images[0] * 1.5).clamp(0, 255)) and torch.equal(brighter[1], images[1] * 0.5)
    assert brighter.max() <= 255


def test_distorted_photo_batches_replay_exactly_from_any_batch():
    split = Split(np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), dtype=np.uint8), np.arange(20) % 2)
    batches = TensorBatches(split, PRE, 4, "cpu", shuffle=True, seed=5, drop_last=True, augment=RETRAIN_DISTORTIONS)
    full = list(batches.epoch(2))
    resumed = list(batches.epoch(2, start=3))
    assert len(full) == 5 and len(resumed) == 2
    for (x, y), (rx, ry) in zip(full[3:], resumed):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    assert full[0][0].shape == (4, 3, 8, 8)
    plain = next(iter(TensorBatches(split, PRE, 4, "cpu", shuffle=True, seed=5, drop_last=True).epoch(2)))[0]
    assert not torch.equal(full[0][0], plain)  # the distortions did change the images


def test_transfer_classifier_takes_images_or_bottlenecks_and_freezes_its_backbone():
    torch.manual_seed(0)
    net = TransferClassifier(TinyBackbone(), 4, 3, dropout=0.0)
    images = torch.randn(5, 3, 8, 8)
    net.eval()
    assert torch.allclose(net(images), net(net.backbone(images)))
    net.train()
    assert not net.backbone.training and net.dropout.training
    assert not any(p.requires_grad for p in net.backbone.parameters())
    net.set_fine_tune(True)
    assert net.backbone.training and all(p.requires_grad for p in net.backbone.parameters())
    features = np.random.default_rng(1).standard_normal((10, 4)).astype(np.float32)
    (x, y), *_ = TensorBatches(Split(features, np.arange(10) % 3), None, 4, "cpu").epoch(0)
    assert torch.equal(x, torch.from_numpy(features[:4])) and net(x).shape == (4, 3)


def test_efficientnet_pytorch_names_cover_timm_lite0_exactly():
    backbone = get_backbone("efficientnet_lite0")
    model = backbone.build(num_classes=1000)
    state = read_state_dict(backbone.bundled_weights())
    renamed = to_timm_names(state, model, "lite0")
    assert set(renamed) == set(model.state_dict())
    assert all(renamed[k].shape == v.shape for k, v in model.state_dict().items())
    with pytest.raises(InputError, match="unexpected EfficientNet-PyTorch parameter"):
        to_timm_names({**state, "_blocks.0._odd.weight": torch.zeros(1)}, model, "lite0")
    with pytest.raises(InputError, match="block 16 does not exist"):
        to_timm_names({**state, "_blocks.16._bn0.weight": torch.zeros(1)}, model, "lite0")


def test_unknown_backbone_is_one_line():
    with pytest.raises(InputError, match="unknown backbone 'nope'.*efficientnet_lite0"):
        get_backbone("nope")


def test_top_k_ranking_and_lines():
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    ranked = rank(probabilities, ["a.jpg", "b.jpg"], ("cat", "dog", "emu"), 5)
    assert [r.label for r in ranked[0].top] == ["dog", "emu", "cat"]
    assert [r.label for r in ranked[1].top] == ["cat", "dog", "emu"]  # ties keep class order
    assert label_lines(ranked[:1]) == ["dog (score = 0.70000)", "emu (score = 0.20000)", "cat (score = 0.10000)"]
    assert label_lines(ranked)[:2] == ["a.jpg:", "dog (score = 0.70000)"]
    batch = rank(probabilities, ["x.npy", "x.npy"], ("cat", "dog", "emu"), 1)
    assert label_lines(batch) == ["x.npy[0]:", "dog (score = 0.70000)", "x.npy[1]:", "cat (score = 0.50000)"]
    assert json.loads(label_lines(batch, as_json=True)[1])["top_k"] == [{"label": "cat", "class": 0, "score": 0.5}]
    with pytest.raises(InputError, match="--top-k"):
        rank(probabilities, ["a", "b"], ("cat", "dog", "emu"), 0)


def test_label_image_reads_an_exported_version_like_the_model_dir(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    exporter = pytest.importorskip("visionflow.export.exporter")
    from visionflow import cli
    from visionflow.data.catalog import load_dataset
    from visionflow.engine.config import TrainConfig
    from visionflow.engine.training import train

    train(TrainConfig(model="mlp", dataset="digits", steps=30, batch_size=64, device="cpu", log_every=30),
          tmp_path / "mlp", progress_stream=open(tmp_path / "log.txt", "w"))
    version = exporter.export_model(tmp_path / "mlp", tmp_path / "exports").path
    digits = load_dataset("digits").test.images[:3]
    paths = []
    for i, image in enumerate(digits):
        paths.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(image[..., 0]).save(paths[-1])
    assert cli.main(["label-image", "--model-dir", str(tmp_path / "mlp"), "--json", *paths]) == 0
    local = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert cli.main(["label-image", "--export", str(version), "--json", *paths]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [[t["label"] for t in r["top_k"]] for r in exported] == [[t["label"] for t in r["top_k"]] for r in local]
    for a, b in zip(exported, local):
        assert all(abs(x["score"] - y["score"]) < 1e-4 for x, y in zip(a["top_k"], b["top_k"]))
