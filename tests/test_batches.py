import numpy as np
import torch
from hypothesis import given, settings, strategies as st

from visionflow.data.augment import Augment
from visionflow.data.base import Split
from visionflow.data.batches import TensorBatches
from visionflow.data.distort import draw_epoch
from visionflow.preprocessing import Preprocessing, fit_preprocessing


def _split(n=50):
    rng = np.random.default_rng(0)
    return Split(rng.integers(0, 256, (n, 6, 6, 1), dtype=np.uint8), np.arange(n) % 3)


PRE = Preprocessing(1, 6, 6, (0.5,), (0.25,))


def test_normalize_matches_formula_and_is_channels_last():
    images = torch.from_numpy(_split(4).images)
    x = PRE.normalize(images)
    expected = (images.permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    assert torch.allclose(x, expected, atol=1e-5)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_epochs_cover_every_example_once_and_resume_replays_exactly():
    batches = TensorBatches(_split(), PRE, 8, shuffle=True, seed=3, drop_last=True)
    full = list(batches.epoch(2))
    assert batches.steps_per_epoch == 6 and len(full) == 6
    labels = torch.cat([y for _, y in full])
    assert len(labels) == 48
    resumed = list(TensorBatches(_split(), PRE, 8, shuffle=True, seed=3, drop_last=True).epoch(2, start=4))
    for (xa, ya), (xb, yb) in zip(full[4:], resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other_epoch = torch.cat([y for _, y in batches.epoch(3)])
    assert not torch.equal(labels, other_epoch)


def test_eval_batches_keep_order_and_remainder():
    split = _split(10)
    batches = TensorBatches(split, PRE, 4)
    ys = [y for _, y in batches.epoch()]
    assert [len(y) for y in ys] == [4, 4, 2]
    assert torch.equal(torch.cat(ys), torch.from_numpy(split.labels))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.data())
def test_pad_translates_by_zero_filled_windows_at_the_drawn_corners(pad, data):
    # `--augment-shift N` is `--pad N`: each image moves by up to N pixels, the uncovered edge is 0.
    seed, epoch = data.draw(st.integers(0, 1000)), data.draw(st.integers(0, 5))
    images = np.random.default_rng(seed).integers(1, 256, (3, 5, 7, 2), dtype=np.uint8)
    pre = Preprocessing(2, 5, 7, (0.0, 0.0), (1 / 255, 1 / 255))  # standardizing keeps raw pixel values
    batches = TensorBatches(Split(images, np.zeros(3, np.int64)), pre, 3, seed=seed, augment=Augment(pad=pad))
    (x, _), = batches.epoch(epoch)
    draws = draw_epoch(Augment(pad=pad), 3, 5, 7, seed, epoch)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    for i, (r, c) in enumerate(zip(draws.top.tolist(), draws.left.tolist())):
        np.testing.assert_array_equal(x[i].permute(1, 2, 0).round().numpy(), padded[i, r : r + 5, c : c + 7])


def test_fit_preprocessing_stats():
    images = np.zeros((2, 3, 3, 3), np.uint8)
    images[..., 0] = 255
    pre = fit_preprocessing(images)
    assert pre.input_shape == (3, 3, 3) and pre.mean[0] == 1.0 and pre.mean[1] == 0.0


def test_normalize_still_real_after_being_traced_by_torch_export():
    pre = Preprocessing(1, 4, 4, (0.25,), (0.5,))  # constants unique to this test: a fresh cache entry

    class Normalize(torch.nn.Module):
        def forward(self, x):
            return pre.normalize(x)

    x = torch.randint(0, 256, (2, 4, 4, 1), dtype=torch.uint8)
    exported = torch.export.export(Normalize(), (x,))
    eager = pre.normalize(x)
    assert eager.numpy().shape == (2, 1, 4, 4)  # a fake tensor cached during tracing would fail here
    assert torch.equal(exported.module()(x), eager)


def test_fit_preprocessing_matches_the_float64_statistics() -> None:
    """The histogram form of the per-channel mean/std equals numpy's float64 mean/std."""
    import numpy as np

    from visionflow.preprocessing import fit_preprocessing

    rng = np.random.default_rng(3)
    images = (rng.beta(2, 5, (257, 9, 7, 3)) * 255).astype(np.uint8)
    images[..., 2] = 17  # a constant channel: std floored at 1e-3
    p = fit_preprocessing(images)
    x = images.reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(p.mean, x.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(p.std, np.maximum(x.std(axis=0), 1e-3), atol=1e-6)
    assert (p.channels, p.height, p.width) == (3, 9, 7)
