"""Streaming metrics of the Keras face (`visionflow.keras.metrics`) against references computed on
the whole data at once by an independent route (sklearn or numpy).

Data arrive in uneven batches (7, 64, 1, the rest), so a metric that averaged per batch, kept only
the last batch or ignored sample weights gives a different number; `_check_discriminates` proves
that for each case's data before the metric is compared.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from visionflow.errors import InputError
from visionflow.keras import metrics

N = 300
BATCH_EDGES = (0, 7, 71, 72, N)  # batch sizes 7, 64, 1, 228
BATCHES = [slice(a, b) for a, b in zip(BATCH_EDGES, BATCH_EDGES[1:])]
EXACT = dict(rtol=1e-5, atol=1e-6)


# ---- data: (y_true, y_pred); y_true None means Mean's `update_state(values, sample_weight)` ----

def _labels(rng, classes, shape=(N,)):
    return rng.integers(0, classes, shape)


def _ties(rng, shape):
    """Scores in [0, 1] on a 0.1 grid: argmax ties, and scores exactly at the 0.5 threshold."""
    return np.round(rng.random(shape), 1).astype(np.float32)


def _sparse_scores(rng, col=False):
    y = _labels(rng, 5)
    return (y[:, None] if col else y), _ties(rng, (N, 5))


def _onehot_scores(rng, classes=5, ties=True):
    y = np.eye(classes, dtype=np.float32)[_labels(rng, classes)]
    return y, (_ties(rng, (N, classes)) if ties else rng.random((N, classes)).astype(np.float32))


def _separation(shape):
    """How far apart positives' scores sit: high for the first examples, low for the last, so
    the first batches and the last one score differently from the whole."""
    return np.linspace(0.6, 0.1, N).reshape((N,) + (1,) * (len(shape) - 1))


def _binary(rng, shape=(N,)):
    y = _labels(rng, 2, shape).astype(np.float32)
    # informative but noisy, with scores exactly 0.5 (predicted negative: Keras uses y_pred > 0.5)
    s = _separation(shape)
    return y, np.clip(np.round(s * y + (1 - s) * rng.random(shape), 1), 0, 1).astype(np.float32)


def _auc_scores(rng, logits=False):
    y = _labels(rng, 2).astype(np.float32)
    s = _separation((N,))
    p = np.clip(np.round(s * y + (1 - s) * rng.random(N), 2), 0, 1)  # many tied scores, 0 and 1 included
    p[:3], p[3:6] = 0.0, 1.0
    return y, (np.log(p + 1e-3) - np.log(1 - p + 1e-3) if logits else p).astype(np.float32)


def _regression(rng):
    y = rng.normal(size=(N, 4)).astype(np.float32)
    return y, (y + rng.normal(scale=np.linspace(0.2, 2.0, N)[:, None], size=(N, 4))).astype(np.float32)


def _segmentation(rng):
    """5 classes; class 4 is neither a target nor ever predicted, so it must not enter the mean IoU."""
    y = _labels(rng, 4)
    scores = _ties(rng, (N, 5))
    scores[:, 4] = -1.0
    scores[np.arange(N), y] += 0.4 * (rng.random(N) < 0.6)
    return y, scores


# ---- references on the whole data ----

def _present_mean_iou(y, p):
    pred = p.argmax(-1)
    iou = skm.jaccard_score(y, pred, labels=np.arange(5), average=None, zero_division=0)
    return iou[np.isin(np.arange(5), np.union1d(y, pred))].mean()


def _per_example_avg(y, p, w, fn):
    return np.average(fn(y, p).reshape(len(p), -1).mean(1), weights=w)


class Case(NamedTuple):
    make: Callable[[Any], tuple]
    data: Callable[[np.random.Generator], tuple]
    ref: Callable[[Any, Any, Any], Any]
    weighted: bool
    tol: dict = EXACT


CASES = {
    "sparse_categorical_accuracy": Case(
        metrics.SparseCategoricalAccuracy, _sparse_scores,
        lambda y, p, w: skm.accuracy_score(y, p.argmax(-1), sample_weight=w), True),
    "sparse_categorical_accuracy_col": Case(
        metrics.SparseCategoricalAccuracy, lambda r: _sparse_scores(r, col=True),
        lambda y, p, w: skm.accuracy_score(y[:, 0], p.argmax(-1), sample_weight=w), True),
    "categorical_accuracy": Case(
        metrics.CategoricalAccuracy, _onehot_scores,
        lambda y, p, w: skm.accuracy_score(y.argmax(-1), p.argmax(-1), sample_weight=w), True),
    "binary_accuracy": Case(
        metrics.BinaryAccuracy, _binary, lambda y, p, w: skm.accuracy_score(y, p > 0.5, sample_weight=w), True),
    "binary_accuracy_multilabel": Case(
        metrics.BinaryAccuracy, lambda r: _binary(r, (N, 3)),
        lambda y, p, w: _per_example_avg(y, p, w, lambda y, p: (p > 0.5) == (y > 0.5)), True),
    "sparse_top_3": Case(
        lambda: metrics.SparseTopKCategoricalAccuracy(k=3),
        lambda r: (_labels(r, 10), r.random((N, 10)).astype(np.float32)),
        lambda y, p, w: skm.top_k_accuracy_score(y, p, k=3, labels=np.arange(10), sample_weight=w), True),
    "top_k_default_5": Case(
        metrics.TopKCategoricalAccuracy, lambda r: _onehot_scores(r, 10, ties=False),
        lambda y, p, w: skm.top_k_accuracy_score(y.argmax(-1), p, k=5, labels=np.arange(10), sample_weight=w),
        True),
    "precision": Case(
        metrics.Precision, _binary, lambda y, p, w: skm.precision_score(y, p > 0.5, sample_weight=w), True),
    "recall": Case(metrics.Recall, _binary, lambda y, p, w: skm.recall_score(y, p > 0.5, sample_weight=w), True),
    "precision_multilabel": Case(
        metrics.Precision, lambda r: _binary(r, (N, 3)),
        lambda y, p, w: skm.precision_score(y, p > 0.5, average="micro", sample_weight=w), True),
    "recall_multilabel": Case(
        metrics.Recall, lambda r: _binary(r, (N, 3)),
        lambda y, p, w: skm.recall_score(y, p > 0.5, average="micro", sample_weight=w), True),
    "auc_200_thresholds": Case(
        metrics.AUC, _auc_scores, lambda y, p, w: skm.roc_auc_score(y, p), False, dict(rtol=0, atol=1e-2)),
    "auc_exact": Case(
        lambda: metrics.AUC(num_thresholds=None), _auc_scores, lambda y, p, w: skm.roc_auc_score(y, p), False),
    # torch's CPU sigmoid can differ by 1 ulp between equal logits (vector body vs tail), which
    # splits a few ties: hence 1e-4, still far from the AUC of logits clamped to [0, 1]
    "auc_exact_from_logits": Case(
        lambda: metrics.AUC(num_thresholds=None, from_logits=True), lambda r: _auc_scores(r, logits=True),
        lambda y, p, w: skm.roc_auc_score(y, p), False, dict(rtol=0, atol=1e-4)),
    "mean_squared_error": Case(
        metrics.MeanSquaredError, _regression, lambda y, p, w: skm.mean_squared_error(y, p, sample_weight=w), True),
    "root_mean_squared_error": Case(
        metrics.RootMeanSquaredError, _regression,
        lambda y, p, w: np.sqrt(skm.mean_squared_error(y, p, sample_weight=w)), True),
    "mean_absolute_error": Case(
        metrics.MeanAbsoluteError, _regression, lambda y, p, w: skm.mean_absolute_error(y, p, sample_weight=w), True),
    "mean_iou": Case(lambda: metrics.MeanIoU(num_classes=5), _segmentation, lambda y, p, w: _present_mean_iou(y, p),
                     False),
    "confusion_matrix_scores": Case(
        lambda: metrics.ConfusionMatrix(num_classes=5), _segmentation,
        lambda y, p, w: skm.confusion_matrix(y, p.argmax(-1), labels=np.arange(5)), False),
    "confusion_matrix_indices": Case(
        lambda: metrics.ConfusionMatrix(num_classes=5), lambda r: (_labels(r, 5), _labels(r, 5)),
        lambda y, p, w: skm.confusion_matrix(y, p, labels=np.arange(5)), False),
    "mean": Case(metrics.Mean, lambda r: (None, r.normal(loc=np.linspace(-1, 3, N)).astype(np.float32)),
                 lambda y, v, w: np.average(v, weights=w), True),
    "mean_2d_values": Case(metrics.Mean, lambda r: (None, r.normal(loc=np.linspace(-1, 3, N)[:, None], size=(N, 3))
                                                    .astype(np.float32)),
                           lambda y, v, w: np.average(v.mean(1), weights=w), True),
}

PARAMS = [pytest.param(name, weighted, id=f"{name}-{'weighted' if weighted else 'unweighted'}")
          for name, case in CASES.items() for weighted in ((False, True) if case.weighted else (False,))]


def _weights(rng):
    w = (2 * rng.random(N)).astype(np.float32)
    w[rng.random(N) < 0.15] = 0.0
    return w


def _stream(metric, y, p, w=None):
    for s in BATCHES:
        if not len(p[s]):
            continue
        ws = None if w is None else w[s]
        metric.update_state(p[s], ws) if y is None else metric.update_state(y[s], p[s], ws)
    result = metric.result()
    assert isinstance(result, torch.Tensor)
    return result.cpu().numpy()


def _close(a, b, tol):
    return np.allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), **tol)


def _check_discriminates(case, y, p, w, expected):
    """The data can tell the right answer from per-batch averaging, last-batch-only and (when
    weighted) ignored weights — so the comparison below can fail."""
    part = (lambda a, s: None if a is None else a[s])
    last = case.ref(part(y, BATCHES[-1]), p[BATCHES[-1]], part(w, BATCHES[-1]))
    assert not _close(last, expected, case.tol)
    try:
        per_batch = np.mean([case.ref(part(y, s), p[s], part(w, s)) for s in BATCHES], axis=0)
    except ValueError:  # e.g. ROC AUC of a one-example batch is undefined
        per_batch = None
    assert per_batch is None or not _close(per_batch, expected, case.tol)
    if w is not None:
        assert not _close(case.ref(y, p, None), expected, case.tol)


@pytest.mark.parametrize("name, weighted", PARAMS)
def test_streaming_matches_whole_data_reference(name, weighted):
    case = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    y, p = case.data(rng)
    w = _weights(rng) if weighted else None
    expected = case.ref(y, p, w)
    _check_discriminates(case, y, p, w, expected)
    got = _stream(case.make(), y, p, w)
    assert np.shape(got) == np.shape(expected)
    assert _close(got, expected, case.tol), f"{name}: streamed {got}, whole-data reference {expected}"


@pytest.mark.parametrize("name", CASES)
def test_empty_result_and_reset_state(name):
    case = CASES[name]
    metric = case.make()
    rng = np.random.default_rng(100)
    zero = np.zeros_like(np.asarray(case.ref(*case.data(rng), None), dtype=np.float64))
    assert _close(metric.result().cpu().numpy(), zero, EXACT)  # nothing seen yet: 0

    y, p = case.data(rng)
    _stream(metric, y, p)
    metric.reset_state()
    assert _close(metric.result().cpu().numpy(), zero, EXACT)
    head = slice(0, BATCH_EDGES[3])  # start over on the first 72 examples only
    y2, p2 = (None if y is None else y[head]), p[head]
    expected = case.ref(y2, p2, None)
    kept = case.ref(None if y is None else np.concatenate([y, y2]), np.concatenate([p, p2]), None)
    assert not _close(kept, expected, case.tol)  # a reset that kept the old state would show
    assert _close(_stream(metric, y2, p2), expected, case.tol)


@pytest.mark.parametrize("loss, shape, cls", [
    ("sparse_categorical_crossentropy", (None, 10), metrics.SparseCategoricalAccuracy),
    ("binary_crossentropy", (None, 1), metrics.BinaryAccuracy),
    ("binary_crossentropy", (None, 3), metrics.BinaryAccuracy),
    ("categorical_crossentropy", (None, 10), metrics.CategoricalAccuracy),
])
def test_get_accuracy_follows_the_loss(loss, shape, cls):
    for name in ("accuracy", "acc"):
        metric = metrics.get(name, loss, shape)
        assert type(metric) is cls and metric.name == name


def test_get_names_instances_and_errors():
    assert type(metrics.get("mse")) is metrics.MeanSquaredError
    assert type(metrics.get("auc")) is metrics.AUC
    instance = metrics.Recall()
    assert metrics.get(instance) is instance
    for bad in ("no_such_metric", "Accuracy ", 3):
        with pytest.raises(InputError):
            metrics.get(bad)


def test_auc_weights_select_examples_or_are_refused():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y, p = rng.integers(0, 2, 300), rng.random(300)
    keep = rng.integers(0, 2, 300)
    auc = metrics.AUC(num_thresholds=None)
    auc.update_state(y[:100], p[:100], sample_weight=keep[:100])
    auc.update_state(y[100:], p[100:], sample_weight=keep[100:])
    chosen = keep == 1
    assert float(auc.result()) == pytest.approx(roc_auc_score(y[chosen], p[chosen]), abs=1e-6)
    assert float(auc.result()) != pytest.approx(roc_auc_score(y, p), abs=1e-6)
    with pytest.raises(InputError, match="0 or 1"):
        metrics.AUC().update_state(y, p, sample_weight=np.full(300, 0.5))


@pytest.mark.parametrize("make", [lambda: metrics.ConfusionMatrix(3), lambda: metrics.MeanIoU(3)])
def test_unweighted_metrics_refuse_sample_weights(make):
    with pytest.raises(InputError):
        make().update_state(np.array([0, 1, 1]), np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]]),
                            sample_weight=np.ones(3))


def test_auc_rejects_unknown_curve():
    with pytest.raises(InputError):
        metrics.AUC(curve="XY")
