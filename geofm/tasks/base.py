"""The one training stack every geofm task shares: optimiser, schedule and metrics.

:class:`BaseTask` is a ``LightningModule`` that owns

* **the optimiser**: AdamW (or SGD with momentum, the linear-probe convention) over timm's
  parameter groups
  (:func:`timm.optim.param_groups_weight_decay`): no weight decay for 1-D parameters
  (biases, norm scales) or for the parameters a submodule names in its
  ``no_weight_decay()`` (class tokens, mask tokens, position-bias tables); every other
  weight decays. This is the MAE convention (He et al., "Masked Autoencoders Are Scalable
  Vision Learners", CVPR 2022) that timm's ViTs follow;
* **the schedule**: a linear warm-up then a cosine decay (:func:`warmup_cosine`), stepped
  once per optimiser step, over :meth:`BaseTask.schedule_steps` (the fit's
  ``trainer.estimated_stepping_batches``, unless a task spans a longer schedule);
* **classification metrics**: a confusion matrix per evaluation stage, accumulated by
  torchmetrics (so under DDP it sums every rank's samples before anything is computed),
  from which :func:`geofm.tasks.metrics.confusion_metrics` gives the overall accuracy, the
  average (per-class) accuracy and Cohen's kappa, logged as ``<stage>/oa``, ``<stage>/aa``
  and ``<stage>/kappa``. Class ids equal to ``ignore_index`` (unlabelled pixels of a
  segmentation mask) are left out.

Tasks are thin subclasses: :class:`~geofm.tasks.mae.MAEPretrainTask`,
:class:`~geofm.tasks.scene.SceneClassificationTask`,
:class:`~geofm.tasks.pixel.PixelClassificationTask` and the task every GFM-Bench protocol
that trains uses (``gfm_bench.training.BenchTask``). Model selection on validation
(:class:`~geofm.tasks.callbacks.BestWeights`, or Lightning's ``ModelCheckpoint``) is a
trainer callback, not code here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import lightning.pytorch as pl
import torch
import torch.nn as nn
from timm.optim import param_groups_weight_decay
from torchmetrics.classification import MulticlassConfusionMatrix

from geofm.tasks.metrics import confusion_metrics

__all__ = ["BaseTask", "Optimisation", "warmup_cosine", "quiet_lightning", "OPTIMIZERS", "STAGES"]

#: the evaluation stages a task keeps metrics for
STAGES = ("val", "test")
OPTIMIZERS = ("adamw", "sgd")


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """Learning-rate factor: linear from ``1 / warmup_steps`` to 1 over ``warmup_steps``,
    then cosine to ``min_factor`` at ``total_steps`` (and ``min_factor`` after it)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


#: Lightning advice that is noise when a program trains many small models in a row
BENIGN_LIGHTNING_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)",
    r".*does not have many workers.*",
    r".*Consider setting `persistent_workers.*",
    r".*is smaller than the logging interval.*",
)


@contextlib.contextmanager
def quiet_lightning(*messages: str) -> Iterator[None]:
    """Silence Lightning's start-up lines (accelerators, tips, the stepping-batches
    estimate) and its benign advice, plus warnings matching the regular expressions
    ``messages``, for programs that train one model per seed or per run; other warnings and
    errors still show."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in (*BENIGN_LIGHTNING_WARNINGS, *messages):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@dataclass(frozen=True)
class Optimisation:
    """The optimiser and its schedule.

    ``optimizer``: ``"adamw"`` (with ``betas``) or ``"sgd"`` (with ``momentum``);
    ``warmup_fraction``: share of all optimiser steps spent warming up; ``min_lr_factor``:
    where the cosine ends, as a fraction of ``lr``.
    """

    lr: float
    weight_decay: float
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_fraction: float = 0.0
    min_lr_factor: float = 0.0
    optimizer: str = "adamw"
    momentum: float = 0.9

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0.0 <= self.warmup_fraction <= 1.0:
            raise ValueError(f"warmup_fraction must lie in [0, 1], got {self.warmup_fraction}")
        if not 0.0 <= self.min_lr_factor <= 1.0:
            raise ValueError(f"min_lr_factor must lie in [0, 1], got {self.min_lr_factor}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")

    def build(self, groups: list[dict]) -> torch.optim.Optimizer:
        """The optimiser over parameter groups (each may set its own ``weight_decay``)."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum)
        return torch.optim.AdamW(groups, lr=self.lr, betas=self.betas)


class BaseTask(pl.LightningModule):
    """A LightningModule with geofm's optimiser, schedule and classification metrics.

    Args:
        lr, weight_decay, betas, optimizer, momentum: the optimiser (see
            :class:`Optimisation`).
        warmup_fraction, min_lr_factor: the schedule; a subclass may count its warm-up
            otherwise by overriding :meth:`warmup_steps`.
        num_classes: with a class count, the task keeps a confusion matrix per evaluation
            stage (:meth:`update_confusion`), logs its OA, AA and kappa at the end of each
            validation and test epoch and keeps it in :attr:`confusions`.
        ignore_index: a reference class id the matrices leave out (unlabelled pixels).
    """

    def __init__(
        self,
        *,
        lr: float,
        weight_decay: float,
        betas: Sequence[float] = (0.9, 0.999),
        warmup_fraction: float = 0.0,
        min_lr_factor: float = 0.0,
        optimizer: str = "adamw",
        momentum: float = 0.9,
        num_classes: int | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        # (Optimisation checks that there are two betas)
        self.optimisation = Optimisation(
            float(lr),
            float(weight_decay),
            cast("tuple[float, float]", tuple(float(b) for b in betas)),
            float(warmup_fraction),
            float(min_lr_factor),
            optimizer,
            float(momentum),
        )
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        # torchmetrics states are not saved in checkpoints: old ones load unchanged
        self.confusion = (
            None
            if num_classes is None
            else nn.ModuleDict(
                {
                    stage: MulticlassConfusionMatrix(num_classes, ignore_index=ignore_index)
                    for stage in STAGES
                }
            )
        )
        #: the last confusion matrix of each stage, ``(K, K)`` int64 on the CPU, rows the
        #: reference class, columns the prediction, summed over all processes
        self.confusions: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ optimiser
    def no_weight_decay(self) -> set[str]:
        """Names (in this task) of parameters its submodules exclude from weight decay."""
        names: set[str] = set()
        for prefix, module in self.named_modules():
            listed = getattr(module, "no_weight_decay", None)
            if module is self or not callable(listed):
                continue
            names.update(f"{prefix}.{name}" for name in listed())
        return names

    def warmup_steps(self, total_steps: int) -> int:
        """Optimiser steps of the linear warm-up, out of ``total_steps``."""
        return int(round(self.optimisation.warmup_fraction * total_steps))

    def schedule_steps(self) -> int:
        """Optimiser steps the warm-up and cosine span: the fit's. A task that stops early
        in a longer schedule spans that one instead."""
        return max(int(self.trainer.estimated_stepping_batches), 1)

    def configure_optimizers(self):
        o = self.optimisation
        groups = param_groups_weight_decay(
            self, o.weight_decay, no_weight_decay_list=self.no_weight_decay()
        )
        # decayed group first, as geofm's optimisers have always been built: a checkpoint
        # saved before the base task existed resumes with its groups in the same order
        groups = sorted((g for g in groups if g["params"]), key=lambda g: g["weight_decay"] == 0)
        if not groups:
            raise ValueError(f"{type(self).__name__} has no trainable parameters")
        optimizer = o.build(groups)
        total = self.schedule_steps()
        warmup = self.warmup_steps(total)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, total, warmup, o.min_lr_factor)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------------ metrics
    def update_confusion(self, stage: str, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch's predicted and reference class ids (``(B,)``, or ``(B, H, W)`` for
        masks) to ``stage``'s matrix."""
        if self.confusion is None:
            raise ValueError(
                f"{type(self).__name__} was built without num_classes: it keeps no confusion matrix"
            )
        metric = cast(MulticlassConfusionMatrix, self.confusion[stage])
        metric.update(preds.detach(), target.detach())

    def log_epoch_metrics(self, stage: str) -> None:
        """At the end of ``stage``'s epoch: log the OA, AA and kappa of its confusion matrix
        (kept in ``confusions``); subclasses log more."""
        if self.confusion is None:
            return
        metric = cast(MulticlassConfusionMatrix, self.confusion[stage])
        # computed on every process even if it saw no batch: compute() is collective under
        # DDP (a process skipping it would leave the others waiting)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*compute.*before.*update.*")
            cm = metric.compute().detach().cpu().long()  # every process's samples
        metric.reset()
        if int(cm.sum()) == 0:  # no sample on any process: nothing to report
            return
        self.confusions[stage] = cm
        m = confusion_metrics(cm.numpy())
        # the same value on every process (its mean over them is itself)
        self.log_dict(
            {f"{stage}/oa": m.oa, f"{stage}/aa": m.aa, f"{stage}/kappa": m.kappa},
            prog_bar=stage == "val",
            sync_dist=True,
        )

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_metrics("test")
