"""Hyperspectral pixel classification: the LightningModule, the RBF-SVM baseline, prediction.

:class:`PixelClassificationTask` trains any model that maps ``(image, valid)`` windows to
logits (LoLA-SpecViT by default) with label smoothing, AdamW, a warm-up + cosine schedule
and flips/rotations of the windows; :class:`~geofm.tasks.callbacks.BestWeights` selects the
epoch on the validation part. :func:`svm_baseline` is what a user would otherwise pick: an
RBF SVM on standardised spectra, its ``C`` and ``gamma`` chosen by cross-validation on the
training part only. :func:`classify_pixels` classifies chosen pixels of a scene (a map of a
whole scene is :func:`geofm.inference.predict`).

The protocol that ties these to splits, seeds and a results table is
:mod:`geofm.tasks.pixel_protocol`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from geofm.models.lola_specvit import square_symmetry, window_logits
from geofm.tasks.base import BaseTask

__all__ = [
    "PixelClassificationTask",
    "ReducedWindows",
    "drop_context",
    "scale_brightness",
    "augment_windows",
    "classify_pixels",
    "svm_baseline",
]


def drop_context(
    image: torch.Tensor, p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """With probability ``p`` per window, zero every pixel farther than a random radius
    (0 .. r - 1, Chebyshev distance) from the centre, as outside the scene.

    A window classifier trained on a few blocks of a field learns their surroundings;
    hiding random amounts of context teaches it to classify from the centre pixel and
    whatever context there is, which is what it meets at field edges and in other parts
    of the scene. The zeros are what the reduction gives pixels without data.
    """
    B, _, P, _ = image.shape
    r = P // 2
    if p <= 0 or r == 0:
        return image
    hit = torch.rand(B, generator=generator) < p
    keep = torch.randint(0, r, (B,), generator=generator)
    keep = torch.where(hit, keep, torch.full_like(keep, r))
    offsets = (torch.arange(P) - r).abs()
    dist = torch.maximum(offsets[:, None], offsets[None, :])  # (P, P)
    inside = dist[None] <= keep[:, None, None]  # (B, P, P)
    return image * inside[:, None].to(device=image.device, dtype=image.dtype)


def scale_brightness(
    scores: torch.Tensor,
    offset: torch.Tensor,
    spread: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Multiply each window's raw spectra by a random factor in ``[1 - spread, 1 + spread]``
    (illumination, slope, moisture), computed on PCA scores.

    PCA is affine: a raw spectrum ``a x`` scores ``a s + (a - 1) c`` with ``c = mean V / sd``
    (``offset``), the score of the zero spectrum's negative. Pixels without data (all scores
    zero) stay zero.
    """
    if spread <= 0:
        return scores
    B = scores.shape[0]
    a = 1.0 + (torch.rand(B, generator=generator) * 2 - 1) * spread
    a = a.to(device=scores.device, dtype=scores.dtype)[:, None, None, None]
    present = (scores != 0).any(dim=1, keepdim=True).to(scores.dtype)
    offset = offset.to(device=scores.device, dtype=scores.dtype)
    return (a * scores + (a - 1) * offset[None, :, None, None]) * present


def augment_windows(
    image: torch.Tensor, valid: torch.Tensor | None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each window gets one of the 8 symmetries of the square (rotations by 90 degrees, with
    or without a flip); the centre pixel, whose class is the label, stays the centre."""
    choice = torch.randint(0, 8, (image.shape[0],), generator=generator)
    image, valid = image.clone(), None if valid is None else valid.clone()
    for k in range(1, 8):
        idx = (choice == k).nonzero().flatten()
        for x in (image, valid):
            if x is not None and idx.numel():
                x[idx] = square_symmetry(x[idx], k)
    return image, valid


def class_weights(
    labels: np.ndarray | torch.Tensor, num_classes: int, power: float
) -> torch.Tensor:
    """Loss weight of each class from the training labels: ``n_c ** -power``, ``n_c`` the
    class's training pixels, scaled so that the mean weight over those pixels is 1.

    ``power`` 0 weighs every pixel alike, 1 every class alike (inverse frequency), 0.5 in
    between (square root): re-weighting by inverse frequency or its square root is common
    practice for long-tailed classes (Cui et al., "Class-Balanced Loss Based on Effective
    Number of Samples", CVPR 2019, whose effective-number weights tend to inverse frequency
    as their beta tends to 1). ``labels``: ``(N,)`` class indices in
    ``0..num_classes-1``; a class without training pixels gets weight 0 (no pixel carries it).
    Returns ``(num_classes,)`` float32.
    """
    if not 0.0 <= power <= 1.0:
        raise ValueError(
            f"power must lie in [0, 1] (0: no weighting, 1: inverse frequency), got {power}"
        )
    y = torch.as_tensor(labels).long().flatten()
    if y.numel() == 0:
        raise ValueError("class weights need at least one training label")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}, got {int(y.min())}..{int(y.max())}"
        )
    counts = torch.bincount(y, minlength=num_classes).double()
    weights = torch.where(counts > 0, counts.clamp(min=1) ** -power, torch.zeros_like(counts))
    weights = weights * y.numel() / (weights * counts).sum()
    return weights.float()


class PixelClassificationTask(BaseTask):
    """Train a window classifier on centre-pixel labels.

    Args:
        model: maps ``(image (B, C, w, w), valid (B, w, w))`` to logits ``(B, K)``.
        num_classes: ``K``.
        lr, weight_decay: AdamW over the trainable parameters (no decay for norms, biases
            and position-bias tables: :class:`~geofm.tasks.base.BaseTask`).
        warmup_epochs: linear warm-up (at most half of the run), then cosine decay to
            ``min_lr_factor * lr`` at the last step (1: a constant rate after the warm-up).
        label_smoothing: of the cross-entropy (training only).
        class_weights: ``(K,)`` weight of each class's pixels in the training loss
            (:func:`class_weights`): the loss is the weighted mean of the pixels'
            cross-entropies (label smoothing included, spread evenly as without weights);
            ``None`` weighs every pixel alike. The validation loss is never weighted.
        augment: random flips and 90-degree rotations of the training windows.
        context_dropout: probability of hiding the outer part of a training window
            (:func:`drop_context`); 0 turns it off.
        brightness: spread of a random factor on each training window's spectra
            (:func:`scale_brightness`, reduced inputs only); 0 turns it off.
        reduced_inputs: the batches hold windows of a scene already passed through the
            model's spectral reduction (``model.forward_reduced`` + ``model.head`` are used);
            otherwise raw windows go through ``model(image, valid)``.
        schedule_epochs: the epochs the warm-up and cosine decay span (``None``: the fit's
            ``max_epochs``). A fit of fewer epochs stops early in that schedule, with the
            weights a longer fit has at the same epoch (``train.stop_epoch``).

    Logs ``train/loss``, ``val/loss`` and ``val/oa``, ``val/aa``, ``val/kappa`` (of the whole
    validation part); :class:`~geofm.tasks.callbacks.BestWeights` monitors ``val/oa``.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_epochs: float = 5.0,
        label_smoothing: float = 0.1,
        augment: bool = True,
        reduced_inputs: bool = False,
        context_dropout: float = 0.0,
        brightness: float = 0.0,
        min_lr_factor: float = 0.0,
        schedule_epochs: int | None = None,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__(
            lr=lr, weight_decay=weight_decay, min_lr_factor=min_lr_factor, num_classes=num_classes
        )
        if schedule_epochs is not None and schedule_epochs < 1:
            raise ValueError(f"schedule_epochs must be at least 1, got {schedule_epochs}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {label_smoothing}")
        if not 0.0 <= context_dropout <= 1.0:
            raise ValueError(f"context_dropout must lie in [0, 1], got {context_dropout}")
        if not 0.0 <= brightness < 1.0:
            raise ValueError(f"brightness must lie in [0, 1), got {brightness}")
        if brightness > 0 and not reduced_inputs:
            raise ValueError("brightness works on reduced windows; set reduced_inputs=True")
        self.model, self.num_classes, self.augment = model, num_classes, augment
        self.warmup_epochs, self.label_smoothing = warmup_epochs, label_smoothing
        self.reduced_inputs, self.context_dropout = reduced_inputs, context_dropout
        self.brightness, self.schedule_epochs = brightness, schedule_epochs
        if class_weights is not None and tuple(class_weights.shape) != (num_classes,):
            raise ValueError(
                f"class_weights must hold one weight per class, shape ({num_classes},); "
                f"got {tuple(class_weights.shape)}"
            )
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, image: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        # one view of each window: training, and the per-epoch validation that chooses the
        # epoch (a model's tta counts where the protocol scores and maps are drawn)
        if self.reduced_inputs:
            return self.model.head(self.model.forward_reduced(image))
        if hasattr(self.model, "forward_features") and hasattr(self.model, "head"):
            return self.model.head(self.model.forward_features(image, valid))
        return self.model(image, valid)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        image, valid = batch["image"], batch.get("valid")
        if self.augment:
            image, valid = augment_windows(image, valid)
        if self.context_dropout > 0:
            if not self.reduced_inputs:
                raise ValueError(
                    "context_dropout works on reduced windows (zeros there mean "
                    "'no data'); set reduced_inputs=True"
                )
            image = drop_context(image, self.context_dropout)
        if self.brightness > 0:
            image = scale_brightness(image, self.model.reduction.offset(), self.brightness)
        logits = self(image, valid)
        label = batch["label"]
        if self.class_weights is None:
            loss = F.cross_entropy(logits, label, label_smoothing=self.label_smoothing)
        else:
            # whole pixels weighted, their smoothing included (torch's weight= would also
            # weight the smoothing's share of each class, moving it towards rare classes)
            each = F.cross_entropy(
                logits, label, label_smoothing=self.label_smoothing, reduction="none"
            )
            w = self.class_weights[label]
            loss = (w * each).sum() / w.sum()
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=image.shape[0],
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Log the loss and the confusion; the logits are returned for callbacks
        (:class:`~geofm.tasks.callbacks.ValidationRecord`)."""
        logits = self(batch["image"], batch.get("valid"))
        loss = F.cross_entropy(logits, batch["label"])
        self.log(
            "val/loss",
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=logits.shape[0],
            sync_dist=True,
        )
        self.update_confusion("val", logits.argmax(1), batch["label"])
        return logits.detach()

    def _epochs(self) -> tuple[int, int]:
        """(epochs of the fit, epochs of the schedule)."""
        fit = max(self.trainer.max_epochs or 1, 1)
        schedule = self.schedule_epochs or fit
        if schedule < fit:
            raise ValueError(
                f"schedule_epochs ({schedule}) is shorter than the fit ({fit} epochs): the "
                "rate would stay at its floor after it; give at least the fit's epochs"
            )
        return fit, schedule

    def schedule_steps(self) -> int:
        """The fit's steps per epoch times the schedule's epochs."""
        fit, schedule = self._epochs()
        return max(round(super().schedule_steps() * schedule / fit), 1)

    def warmup_steps(self, total_steps: int) -> int:
        """``warmup_epochs`` of steps; a short schedule (fewer epochs than twice the
        warm-up) warms up over half of it."""
        epochs = self._epochs()[1]
        per_epoch = total_steps / epochs
        return int(math.ceil(min(self.warmup_epochs, epochs / 2) * per_epoch))


# --------------------------------------------------------------------------------------------
# Windows of a reduced scene


class ReducedWindows(torch.utils.data.Dataset):
    """Windows of a scene already reduced to a few channels (for example by the PCA of
    LoLA-SpecViT), around chosen pixels.

    Reducing the scene once and slicing windows of the scores is much cheaper than cropping
    windows of every band and reducing each: 15 channels instead of 204 per window.

    Args:
        scores: ``(K, H, W)`` reduced scene; pixels without data should hold 0.
        coords: ``(N, 2)`` (row, col) of the window centres.
        labels: ``(N,)`` class ids, or ``None`` (items then carry label -1).
        patch: odd window width; windows reaching past the scene are zero padded.

    Items are dicts with ``image`` ``(K, patch, patch)`` and ``label`` (int64 scalar).
    """

    def __init__(
        self, scores: torch.Tensor, coords: np.ndarray, labels: np.ndarray | None, patch: int
    ) -> None:
        if patch < 1 or patch % 2 == 0:
            raise ValueError(f"patch must be odd, got {patch}")
        r = patch // 2
        self.padded = F.pad(torch.as_tensor(scores).float(), (r, r, r, r))
        self.coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
        self.labels = (
            np.full(len(self.coords), -1, dtype=np.int64)
            if labels is None
            else np.asarray(labels, dtype=np.int64)
        )
        if len(self.labels) != len(self.coords):
            raise ValueError(f"{len(self.coords)} coords but {len(self.labels)} labels")
        self.patch = patch

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        r, c = self.coords[index]
        window = self.padded[:, r : r + self.patch, c : c + self.patch]
        return {"image": window, "label": torch.tensor(self.labels[index])}


# --------------------------------------------------------------------------------------------
# Prediction


@torch.no_grad()
def classify_pixels(
    model: nn.Module,
    image: torch.Tensor,
    coords: np.ndarray,
    valid: torch.Tensor | None = None,
    *,
    batch_size: int = 512,
    probabilities: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Classify chosen pixels of a scene with a LoLA-SpecViT (or any model with
    ``reduction``, ``forward_reduced``, ``head`` and ``patch``): what the pixel protocol
    scores. A map of a whole scene, of any size, is :func:`geofm.inference.predict`.

    The scene is reduced once, windows of the reduced scores are cropped around each pixel
    (zero outside the scene, as in training), and batches are classified.

    Args:
        image: ``(C, H, W)`` the raw scene.
        coords: ``(N, 2)`` (row, col) of the pixels to classify.
        valid: ``(H, W)`` bool, False where the scene has no data (reduced to zeros).
        probabilities: also return the ``(N, K)`` softmax probabilities.

    Returns:
        ``(labels, probs)``: ``(N,)`` int64 class ids; ``probs`` or ``None``.
    """
    from tqdm.auto import tqdm

    model.eval()
    C, H, W = image.shape
    device = next(model.parameters()).device
    valid_t = torch.ones(H, W, dtype=torch.bool) if valid is None else torch.as_tensor(valid)
    scores = model.reduction(image[None].float().to(device), valid_t[None].to(device))[0]
    r = model.patch // 2
    padded = F.pad(scores, (r, r, r, r))  # zeros outside the scene
    coords_t = torch.as_tensor(np.asarray(coords, dtype=np.int64).reshape(-1, 2), device=device)
    offsets = torch.arange(model.patch, device=device)
    preds, probs = [], []
    for start in tqdm(
        range(0, len(coords_t), batch_size),
        disable=not progress,
        desc="classifying pixels",
        unit="batch",
    ):
        chunk = coords_t[start : start + batch_size]
        rows = (chunk[:, 0, None] + offsets)[:, :, None]  # (n, p, 1)
        cols = (chunk[:, 1, None] + offsets)[:, None, :]  # (n, 1, p)
        windows = padded[:, rows, cols].permute(1, 0, 2, 3)  # (n, K, p, p)
        logits = window_logits(model, windows)
        preds.append(logits.argmax(1).cpu())
        if probabilities:
            probs.append(logits.softmax(1).cpu())
    labels = torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
    prob = torch.cat(probs).numpy() if probabilities and probs else None
    return labels.astype(np.int64), prob


# --------------------------------------------------------------------------------------------
# Baseline


def svm_baseline(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    seed: int = 0,
    C_grid: Sequence[float] = (1.0, 10.0, 100.0, 1000.0, 10000.0),
    gamma_grid: Sequence[float | str] = ("scale", 1e-3, 1e-2, 1e-1),
    folds: int = 3,
) -> tuple[np.ndarray, dict[str, Any]]:
    """RBF SVM on standardised spectra; ``C`` and ``gamma`` by stratified cross-validation
    on the training part only.

    Returns the test predictions and ``{"C", "gamma", "cv_accuracy", "folds"}``. With fewer
    than 2 training pixels in some class, cross-validation is impossible: the defaults
    ``C=100, gamma="scale"`` are used and ``folds`` is 0.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    train_y = np.asarray(train_y)
    pipe = make_pipeline(StandardScaler(), SVC(kernel="rbf"))
    smallest = int(np.bincount(train_y)[np.unique(train_y)].min()) if train_y.size else 0
    k = min(folds, int(smallest))
    if k >= 2:
        search = GridSearchCV(
            pipe,
            {"svc__C": list(C_grid), "svc__gamma": list(gamma_grid)},
            cv=StratifiedKFold(k, shuffle=True, random_state=seed),
            n_jobs=1,
        )
        search.fit(train_x, train_y)
        best = search.best_estimator_
        info = {
            "C": search.best_params_["svc__C"],
            "gamma": search.best_params_["svc__gamma"],
            "cv_accuracy": float(search.best_score_),
            "folds": k,
        }
    else:
        pipe.set_params(svc__C=100.0, svc__gamma="scale")
        best = pipe.fit(train_x, train_y)
        info = {"C": 100.0, "gamma": "scale", "cv_accuracy": float("nan"), "folds": 0}
    return best.predict(test_x).astype(np.int64), info
