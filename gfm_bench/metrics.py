"""GFM-Bench metrics: top-1 accuracy, micro mAP for multi-label, mIoU with an ignore index.

Each function returns a :class:`Score`: the headline value (in percent, as the GFM-Bench
tables print it) and the per-class values behind it. The definitions are the standard ones,
written against numpy so that the tests can compare them with scikit-learn's:

* **top-1**: share of samples whose arg-max class is the reference class; per class, the
  recall of that class.
* **micro mAP** (BigEarthNet): average precision of all (sample, class) scores pooled into
  one ranking, the step-wise area under the precision-recall curve that scikit-learn's
  ``average_precision_score(average="micro")`` computes; per class, that class's AP.
* **mIoU** (segmentation): from the confusion matrix of all valid pixels (reference not the
  ignore index), IoU_k = TP / (TP + FP + FN), averaged over the classes that occur in the
  reference or the prediction (a class absent from both has no IoU, not 0 or 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from geofm.tasks.metrics import confusion_matrix, confusion_metrics

__all__ = [
    "Score",
    "top1",
    "top1_from_confusion",
    "micro_map",
    "average_precision",
    "segmentation_confusion",
    "miou_from_confusion",
    "miou",
    "METRICS",
]


@dataclass(frozen=True)
class Score:
    """A headline metric in percent and its per-class values (percent; NaN: undefined)."""

    name: str
    value: float
    per_class: np.ndarray = field(default_factory=lambda: np.zeros(0))
    count: int = 0

    def per_class_dict(self, class_names=None) -> dict[str, float]:
        names = class_names or [str(k) for k in range(len(self.per_class))]
        if len(names) != len(self.per_class):
            raise ValueError(f"{len(names)} class names for {len(self.per_class)} classes")
        return {str(n): float(v) for n, v in zip(names, self.per_class, strict=True)}


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def top1(y_true, y_pred, num_classes: int) -> Score:
    """Top-1 accuracy in percent; ``y_pred`` holds class ids or ``(n, K)`` scores."""
    pred = _numpy(y_pred)
    if pred.ndim == 2:
        if pred.shape[1] != num_classes:
            raise ValueError(f"scores have {pred.shape[1]} columns for {num_classes} classes")
        pred = pred.argmax(axis=1)
    return top1_from_confusion(
        confusion_matrix(_numpy(y_true).reshape(-1), np.asarray(pred).reshape(-1), num_classes)
    )


def top1_from_confusion(confusion: np.ndarray) -> Score:
    """Top-1 accuracy in percent, and per class the recall, of a ``(K, K)`` confusion
    matrix (rows the reference)."""
    m = confusion_metrics(confusion)
    return Score("top1", 100.0 * m.oa, 100.0 * m.per_class, m.count)


def average_precision(y_true, scores) -> float:
    """Average precision of one ranking (scikit-learn's ``average_precision_score``: ties
    form one step), NaN when there is no positive."""
    t, s = _numpy(y_true).reshape(-1).astype(bool), _numpy(scores).reshape(-1)
    if t.shape != s.shape:
        raise ValueError(f"{t.size} targets but {s.size} scores")
    # AP depends on the order of the scores only: rank them, so that infinite scores (a
    # diverged model) rank first or last, and NaN last, rather than failing scikit-learn
    ranks = np.unique(np.where(np.isnan(s), -np.inf, s), return_inverse=True)[1]
    return float(average_precision_score(t, ranks.reshape(-1))) if t.any() else float("nan")


def micro_map(y_true, scores) -> Score:
    """Micro-averaged AP in percent of multi-hot targets ``(n, K)`` and scores ``(n, K)``."""
    t, s = _numpy(y_true), _numpy(scores)
    if t.ndim != 2 or t.shape != s.shape:
        raise ValueError(
            f"multi-label targets and scores must both be (n, K); got {t.shape} and {s.shape}"
        )
    if not np.isin(t, (0, 1)).all():
        raise ValueError("multi-label targets must be 0/1")
    if t.shape[0] == 0:
        raise ValueError("no predictions to score")
    per_class = np.array([100.0 * average_precision(t[:, k], s[:, k]) for k in range(t.shape[1])])
    value = 100.0 * average_precision(t.reshape(-1), s.reshape(-1))
    return Score("micro_map", value, per_class, int(t.shape[0]))


def segmentation_confusion(y_true, y_pred, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """``(K, K)`` pixel counts (row = reference, column = prediction) over valid pixels."""
    t, p = _numpy(y_true).reshape(-1), _numpy(y_pred).reshape(-1).astype(np.int64, copy=False)
    if t.shape != p.shape:
        raise ValueError(f"{t.size} reference pixels but {p.size} predicted pixels")
    keep = t != ignore_index  # confusion_matrix checks the ids of the pixels kept
    return confusion_matrix(t[keep], p[keep], num_classes)


def miou_from_confusion(confusion: np.ndarray) -> Score:
    """Mean IoU in percent over classes present in the reference or the prediction."""
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {cm.shape}")
    if cm.sum() == 0:
        raise ValueError("no valid pixels to score (all reference pixels are ignored)")
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, 100.0 * tp / union, np.nan)
    return Score("miou", float(np.nanmean(iou)), iou, int(cm.sum()))


def miou(y_true, y_pred, num_classes: int, ignore_index: int = 255) -> Score:
    """mIoU in percent of predicted masks against reference masks (any equal shapes)."""
    return miou_from_confusion(segmentation_confusion(y_true, y_pred, num_classes, ignore_index))


METRICS = {"top1_accuracy": "top1", "micro_map": "micro_map", "miou": "miou"}
"""The metric name in a dataset card -> the name of the score in the results file."""
