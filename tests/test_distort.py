"""The input pipeline's distortions against TensorFlow's formulas, worked out by hand on tiny tensors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from visionflow.data.augment import Augment
from visionflow.data.base import Split
from visionflow.data.batches import TensorBatches
from visionflow.data.distort import Draws, adjust_brightness, adjust_contrast, cutout, draw_epoch, spatial
from visionflow.engine.config import RunConfig, TrainConfig
from visionflow.errors import InputError
from visionflow.models import ModelSpec
from visionflow.preprocessing import center_crop, per_image_standardization, tta_logits
from visionflow.preprocessing import Preprocessing


def _images(n: int = 4, h: int = 6, w: int = 6, c: int = 3) -> torch.Tensor:
    return torch.arange(n * h * w * c, dtype=torch.int64).remainder(251).to(torch.uint8).view(n, h, w, c)


def test_per_image_standardization_matches_tensorflows_documented_example():
    # tf.image.per_image_standardization(np.arange(1, 13).reshape(2, 2, 3)) as printed in TF's docs
    image = torch.arange(1, 13, dtype=torch.float32).view(1, 2, 2, 3).permute(0, 3, 1, 2)
    want = [[[-1.593255, -1.3035723, -1.0138896], [-0.7242068, -0.4345241, -0.14484136]],
            [[0.14484136, 0.4345241, 0.7242068], [1.0138896, 1.3035723, 1.593255]]]
    got = per_image_standardization(image).permute(0, 2, 3, 1)[0]
    assert torch.allclose(got, torch.tensor(want), atol=1e-6)


def test_per_image_standardization_floors_the_deviation_at_one_over_sqrt_n():
    flat = torch.full((1, 3, 2, 2), 7.0)  # std 0 → divide by max(0, 1/sqrt(12)): all zeros, not NaN
    assert torch.equal(per_image_standardization(flat), torch.zeros_like(flat))
    tiny = torch.tensor([0.0, 0.1] * 6).view(1, 3, 2, 2)  # std 0.05 < 1/sqrt(12) = 0.2887
    assert torch.allclose(per_image_standardization(tiny), (tiny - 0.05) * 12**0.5)


def test_brightness_adds_delta_and_contrast_scales_about_each_channels_mean():
    x = torch.tensor([0.0, 10.0, 20.0, 30.0, 1.0, 1.0, 1.0, 5.0]).view(1, 2, 2, 2)
    assert torch.equal(adjust_brightness(x, torch.tensor([2.5])), x + 2.5)
    # channel 0: mean 15 → (x - 15)·2 + 15; channel 1: mean 2 → (x - 2)·2 + 2
    want = torch.tensor([-15.0, 5.0, 25.0, 45.0, 0.0, 0.0, 0.0, 8.0]).view(1, 2, 2, 2)
    assert torch.equal(adjust_contrast(x, torch.tensor([2.0])), want)


def test_draws_lie_in_tensorflows_ranges():
    aug = Augment(crop=24, flip="random", brightness=63 / 255, contrast=(0.2, 1.8), cutout=8)
    d = draw_epoch(aug, 20000, 32, 32, seed=3, epoch=5)
    for corner in (d.top, d.left):  # random_crop: offsets uniform in 0..32-24
        assert corner.min() == 0 and corner.max() == 8
    assert d.brightness.abs().max() <= 63 and d.brightness.min() < -62 and d.brightness.max() > 62
    assert d.contrast.min() >= 0.2 and d.contrast.max() < 1.8
    assert 0.47 < d.flip.float().mean() < 0.53
    assert d.cut_top.max() == 24 - 8 and d.cut_left.min() == 0
    padded = draw_epoch(Augment(pad=4), 20000, 32, 32, seed=3, epoch=5)
    assert padded.top.min() == 0 and padded.top.max() == 8  # 40x40 padded image, 32x32 window


def test_crop_translate_and_flip_are_exact_windows_of_the_padded_image():
    images = _images()
    top, left = torch.tensor([0, 2, 1, 2]), torch.tensor([2, 0, 1, 1])  # corners of 4x4 windows in 6x6
    flip = torch.tensor([False, True, False, True])
    crops = spatial(images, Augment(crop=4, flip="random"), Draws(top=top, left=left, flip=flip))
    for i in range(4):
        want = images[i, top[i]:top[i] + 4, left[i]:left[i] + 4]
        assert torch.equal(crops[i], want.flip(1) if flip[i] else want)
    for mode in ("zeros", "reflect"):
        aug = Augment(pad=2, pad_mode=mode)
        top, left = torch.tensor([0, 4, 1, 3]), torch.tensor([4, 0, 3, 2])  # corners in the 10x10 padded image
        moved = spatial(images, aug, Draws(top=top, left=left))
        nchw = images.permute(0, 3, 1, 2).float()
        padded = F.pad(nchw, (2, 2, 2, 2), mode="constant" if mode == "zeros" else "reflect")
        for i in range(4):
            want = padded[i, :, top[i]:top[i] + 6, left[i]:left[i] + 6].permute(1, 2, 0)
            assert torch.equal(moved[i].float(), want), (mode, i)
        # the same gather on an NCHW float batch
        same = spatial(nchw, aug, Draws(top=top, left=left), channels_last=False)
        assert torch.equal(same, moved.permute(0, 3, 1, 2).float())


def test_alternating_flip_inverts_every_epoch_and_depends_on_the_seed():
    aug = Augment(flip="alternating")
    flips = [draw_epoch(aug, 1000, 8, 8, seed=1, epoch=e).flip for e in range(4)]
    assert torch.equal(flips[0], ~flips[1]) and torch.equal(flips[0], flips[2]) and torch.equal(flips[1], flips[3])
    assert 0.4 < flips[0].float().mean() < 0.6  # a random half starts mirrored
    assert not torch.equal(flips[0], draw_epoch(aug, 1000, 8, 8, seed=2, epoch=0).flip)


def test_cutout_zeroes_one_square_inside_the_image():
    x = torch.ones(3, 2, 8, 8)
    out = cutout(x, torch.tensor([0, 5, 2]), torch.tensor([5, 0, 2]), 3)
    assert ((out == 0).sum(dim=(1, 2, 3)) == 2 * 9).all()
    assert (out[1, :, 5:8, 0:3] == 0).all() and (out[1, :, :5] == 1).all()


def test_center_crop_takes_the_tutorials_offsets():
    images = _images(2, 32, 32, 3)
    assert torch.equal(center_crop(images, 24, 24), images[:, 4:28, 4:28])
    assert torch.equal(center_crop(images, 31, 30), images[:, 0:31, 1:31])


def test_tta_levels_average_the_views_as_airbench():
    weights = torch.randn(3 * 5 * 5, 4)

    def model(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ weights

    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(tta_logits(model, x, 0), model(x))
    mirror = lambda v: 0.5 * model(v) + 0.5 * model(v.flip(-1))  # noqa: E731
    assert torch.allclose(tta_logits(model, x, 1), mirror(x))
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    want = 0.5 * mirror(x) + 0.25 * mirror(padded[:, :, :5, :5]) + 0.25 * mirror(padded[:, :, 2:, 2:])
    assert torch.allclose(tta_logits(model, x, 2), want, atol=1e-5)


def _batches(aug: Augment, seed: int = 0) -> TensorBatches:
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    pre = Preprocessing(3, 8, 8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), center_crop=(6, 6))
    return TensorBatches(Split(images, np.arange(40) % 10), pre, 8, shuffle=True, seed=seed, augment=aug,
                         drop_last=True)


def test_distorted_batches_are_a_pure_function_of_seed_and_epoch_and_resume_mid_epoch():
    aug = Augment(crop=6, pad=1, flip="alternating", brightness=0.2, contrast=(0.5, 1.5), cutout=2)
    a = [x for x, _ in _batches(aug).epoch(3)]
    b = [x for x, _ in _batches(aug).epoch(3)]
    tail = [x for x, _ in _batches(aug).epoch(3, start=2)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert all(torch.equal(p, q) for p, q in zip(a[2:], tail)) and len(tail) == len(a) - 2
    assert a[0].shape == (8, 3, 6, 6) and a[0].is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(a[0], next(iter(_batches(aug).epoch(4)))[0])
    assert not torch.equal(a[0], next(iter(_batches(aug, seed=1).epoch(3)))[0])


def test_training_path_equals_the_formulas_composed_by_hand():
    aug = Augment(crop=6, flip="random", brightness=0.1, contrast=(0.5, 1.5), standardize="per_image")
    batches = _batches(aug)
    batches.preprocessing = dataclasses.replace(batches.preprocessing, standardize="per_image")
    images = batches.images[:8]
    draws = draw_epoch(aug, 8, 8, 8, seed=0, epoch=0)
    got = batches.distort(images, draws)
    want = []
    for i in range(8):
        crop = images[i, draws.top[i]:draws.top[i] + 6, draws.left[i]:draws.left[i] + 6]
        x = (crop.flip(1) if draws.flip[i] else crop).permute(2, 0, 1).float()[None]
        x = x + draws.brightness[i]
        mean = x.mean(dim=(2, 3), keepdim=True)
        x = (x - mean) * draws.contrast[i] + mean
        want.append(per_image_standardization(x))
    assert torch.allclose(got, torch.cat(want), atol=1e-5)


def test_evaluation_view_is_the_center_crop_standardized():
    pre = Preprocessing(3, 8, 8, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), center_crop=(6, 6), standardize="per_image")
    images = _images(2, 8, 8, 3)
    want = per_image_standardization(images[:, 1:7, 1:7].permute(0, 3, 1, 2).float())
    assert torch.allclose(pre.normalize(images), want) and pre.input_shape == (3, 6, 6)
    channel = dataclasses.replace(pre, standardize="channel")
    x = images[:, 1:7, 1:7].permute(0, 3, 1, 2).float() / 255
    want = (x - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    assert torch.allclose(channel.normalize(images), want, atol=1e-5)


def test_settings_are_checked_and_saved_in_config_json():
    with pytest.raises(InputError, match="--flip must be one of"):
        TrainConfig(augment=Augment(flip="sideways")).validate()
    with pytest.raises(InputError, match="--contrast needs"):
        TrainConfig(augment=Augment(contrast=(1.5, 0.5))).validate()
    assert Augment(crop=40).problems(32, 32) == ["--crop 40 is larger than the 32x32 images"]
    run = RunConfig(TrainConfig(model="cifar-cnn", augment=Augment(crop=24, contrast=(0.2, 1.8), tta=2)),
                    ModelSpec("cifar-cnn", 10, (3, 24, 24)),
                    Preprocessing(3, 32, 32, (0.5,) * 3, (0.25,) * 3, center_crop=(24, 24), standardize="per_image"),
                    tuple("abcdefghij"))
    again = RunConfig.from_json(run.to_json())
    assert again == run and isinstance(again.train.augment.contrast, tuple)
    # a config.json written before these settings existed still loads, with everything off
    raw = json.loads(run.to_json())
    del raw["train"]["augment"], raw["train"]["ema_decay"]
    for key in ("center_crop", "standardize", "tta"):
        del raw["preprocessing"][key]
    old = RunConfig.from_json(json.dumps(raw))
    assert old.train.augment == Augment() and old.preprocessing.center_crop is None and old.train.ema_decay is None
