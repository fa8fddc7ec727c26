"""gfm_bench.metrics against scikit-learn on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, jaccard_score, recall_score

from gfm_bench.metrics import average_precision, micro_map, miou, segmentation_confusion, top1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, 500)
    scores = rng.normal(size=(500, 7))
    scores[np.arange(500), y] += rng.normal(1.0, 1.0, 500)  # better than chance
    pred = scores.argmax(1)
    s = top1(y, scores, 7)
    assert s.value == pytest.approx(100 * accuracy_score(y, pred))
    assert s.value == top1(y, pred, 7).value
    np.testing.assert_allclose(s.per_class, 100 * recall_score(y, pred, average=None))
    assert s.count == 500


def test_top1_per_class_nan_for_absent_class_and_errors():
    s = top1([0, 0, 1], [0, 1, 1], 3)
    assert np.isnan(s.per_class[2]) and s.per_class[0] == 50.0
    with pytest.raises(ValueError, match="outside 0..2"):
        top1([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="2 reference labels but 3"):
        top1([0, 1], [0, 1, 1], 3)
    with pytest.raises(TypeError, match="integer"):
        top1([0.5, 1.0], [0, 1], 3)


@pytest.mark.parametrize("seed", [0, 1])
def test_micro_map_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((300, 19)) < 0.15).astype(np.float32)
    y[:, 4] = 0  # a class without positives: its AP is undefined
    scores = rng.random((300, 19)) + 0.5 * y
    scores[:50, 2] = 0.25  # ties in the ranking
    s = micro_map(y, scores)
    assert s.value == pytest.approx(100 * average_precision_score(y, scores, average="micro"))
    for k in (0, 2, 7):
        assert s.per_class[k] == pytest.approx(100 * average_precision_score(y[:, k], scores[:, k]))
    assert np.isnan(s.per_class[4])


def test_average_precision_ties_and_edge_cases():
    # one threshold admits both tied items at once: precision 1/2 at recall 1
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert average_precision([1, 0, 1], [0.9, 0.8, 0.1]) == pytest.approx(
        average_precision_score([1, 0, 1], [0.9, 0.8, 0.1])
    )
    assert np.isnan(average_precision([0, 0], [0.2, 0.1]))
    with pytest.raises(ValueError, match="0/1"):
        micro_map(np.full((2, 3), 2), np.zeros((2, 3)))


@pytest.mark.parametrize("seed", [0, 1])
def test_miou_matches_sklearn_with_ignore_index(seed):
    rng = np.random.default_rng(seed)
    k = 6
    y = rng.integers(0, k, (4, 32, 32))
    pred = np.where(rng.random(y.shape) < 0.6, y, rng.integers(0, k, y.shape))
    y[:, :5] = 255  # ignored pixels: any prediction there must not count
    pred[:, :5] = 0
    y[y == 3] = 1  # class 3 absent from the reference ...
    pred[pred == 3] = 2  # ... and from the prediction: no IoU for it
    s = miou(y, pred, k)
    keep = y != 255
    present = np.union1d(np.unique(y[keep]), np.unique(pred[keep]))
    ref = jaccard_score(y[keep], pred[keep], labels=present, average=None)
    assert s.value == pytest.approx(100 * ref.mean())
    np.testing.assert_allclose(s.per_class[present], 100 * ref)
    assert np.isnan(s.per_class[3])
    assert s.count == int(keep.sum())


def test_miou_counts_a_class_predicted_but_absent_from_reference():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 2, 1, 1])  # class 2 only predicted: IoU 0, and it counts
    s = miou(y, pred, 3)
    assert s.per_class[2] == 0.0
    assert s.value == pytest.approx(100 * jaccard_score(y, pred, average="macro"))


def test_segmentation_errors():
    with pytest.raises(ValueError, match="outside 0..2"):
        segmentation_confusion([0, 7], [0, 1], 3)
    with pytest.raises(ValueError, match="all reference pixels are ignored"):
        miou([255, 255], [0, 1], 3)
    with pytest.raises(ValueError, match="y_pred holds class ids"):
        miou([0, 1], [0, 5], 3)


def test_average_precision_ranks_infinite_scores_and_puts_nan_last():
    # a diverged model's logits: the ranking still counts (scikit-learn refuses them)
    assert average_precision([0, 1, 1], [0.1, np.inf, -np.inf]) == pytest.approx(5 / 6)
    assert average_precision([1, 0, 1], [np.nan, 2.0, 1.0]) == pytest.approx(
        average_precision_score([1, 0, 1], [-1.0, 2.0, 1.0])
    )
