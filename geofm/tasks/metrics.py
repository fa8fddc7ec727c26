"""Classification metrics from the confusion matrix: OA, AA, Cohen's kappa, per-class accuracy.

The usual hyperspectral-classification report: overall accuracy (share of correct test
pixels), average accuracy (mean of the per-class recalls, over classes present in the
reference), Cohen's kappa (agreement beyond chance, Cohen 1960) and the confusion matrix
(rows: reference class, columns: predicted class).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "ClassificationMetrics",
    "classification_metrics",
    "confusion_matrix",
    "confusion_metrics",
]


def _labels(x, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts: row = reference class, column = predicted class."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"{t.size} reference labels but {p.size} predictions")
    for name, arr in (("y_true", t), ("y_pred", p)):
        bad = arr[(arr < 0) | (arr >= num_classes)]
        if bad.size:
            raise ValueError(
                f"{name} holds class ids {sorted(set(bad.tolist()))[:5]} outside "
                f"0..{num_classes - 1}"
            )
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


@dataclass(frozen=True)
class ClassificationMetrics:
    """OA, AA and kappa in [0, 1]; ``per_class`` recall (NaN for classes absent from the
    reference); ``confusion`` ``(K, K)`` counts."""

    oa: float
    aa: float
    kappa: float
    per_class: np.ndarray
    confusion: np.ndarray

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    def as_dict(self, class_names=None) -> dict[str, float]:
        names = class_names or [str(k) for k in range(len(self.per_class))]
        out = {"oa": self.oa, "aa": self.aa, "kappa": self.kappa}
        out.update({f"acc_{n}": float(v) for n, v in zip(names, self.per_class, strict=True)})
        return out


def classification_metrics(y_true, y_pred, num_classes: int) -> ClassificationMetrics:
    """OA, AA, kappa, per-class accuracy and the confusion matrix of predictions."""
    return confusion_metrics(confusion_matrix(y_true, y_pred, num_classes))


def confusion_metrics(cm: np.ndarray) -> ClassificationMetrics:
    """The metrics of a ``(K, K)`` confusion matrix (rows the reference, columns the
    prediction)."""
    cm = np.asarray(cm, dtype=np.int64)
    n = cm.sum()
    if n == 0:
        raise ValueError("no predictions to score")
    support = cm.sum(1)
    correct = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, correct / support, np.nan)
    oa = correct.sum() / n
    expected = (support.astype(np.float64) * cm.sum(0)).sum() / float(n) ** 2
    kappa = 1.0 if expected == 1.0 else (oa - expected) / (1.0 - expected)
    return ClassificationMetrics(
        float(oa), float(np.nanmean(per_class)), float(kappa), per_class.astype(np.float64), cm
    )
