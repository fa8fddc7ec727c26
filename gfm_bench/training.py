"""Training for the GFM-Bench protocols: one Lightning task on geofm's base task.

Fine-tuning (all weights or LoRA), UPerNet (frozen or fine-tuned encoder) and the linear
probe all train a :class:`BenchTask` with a Lightning ``Trainer``: the optimiser, parameter
groups and warm-up + cosine schedule of :class:`geofm.tasks.base.BaseTask`, and the best
validation epoch kept by :class:`geofm.tasks.callbacks.BestWeights`. A part's
:class:`~gfm_bench.metrics.Score` comes from what the task accumulated over the whole part:
top-1 and mIoU from its confusion matrix, micro mAP from its sigmoid scores.

The models trained are an encoder adapter with a head (:class:`AdapterWithHead`) or a
linear head on cached features (:class:`LinearOnFeatures`); :class:`MapCache` and
:func:`feature_loader` serve precomputed maps and features in the batches the protocols
ask for.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning.pytorch as pl
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torchmetrics import CatMetric

from geofm.data.sample import IGNORE_INDEX, sample_loader
from geofm.tasks.base import STAGES, BaseTask, quiet_lightning
from geofm.tasks.callbacks import BestWeights

from .encoders import EncoderAdapter
from .metrics import Score, micro_map, miou_from_confusion, top1_from_confusion

__all__ = [
    "TASKS",
    "BenchTask",
    "AdapterWithHead",
    "LinearOnFeatures",
    "MapCache",
    "EpochBatches",
    "feature_loader",
    "targets",
    "fit",
    "evaluate",
]

TASKS = ("classification", "multilabel", "segmentation")


def targets(batch: dict, task: str) -> torch.Tensor:
    """What a batch is scored against: masks (segmentation, int64), multi-hot vectors
    (multi-label, float) or class ids (int64)."""
    if task == "segmentation":
        return torch.as_tensor(batch["mask"]).long()
    label = torch.as_tensor(batch["label"])
    return label.float() if task == "multilabel" else label.long()


class BenchTask(BaseTask):
    """A model trained and scored as a GFM-Bench protocol asks.

    Args:
        model: maps a batch (a dict) to logits: ``(B, K)``, or ``(B, K, H, W)`` for
            segmentation.
        task: ``classification`` (cross-entropy, top-1), ``multilabel`` (binary
            cross-entropy, micro mAP) or ``segmentation`` (cross-entropy ignoring
            :data:`~geofm.data.sample.IGNORE_INDEX`, mIoU).
        num_classes: ``K``.
        lr, weight_decay, warmup_fraction, optimizer: see
            :class:`~geofm.tasks.base.BaseTask`.
        frozen: the name of a submodule of ``model`` kept in eval mode while training (a
            frozen encoder's norms and dropout behave as at inference).

    Logs ``train/loss`` and ``<stage>/score``; :attr:`scores` holds the last
    :class:`~gfm_bench.metrics.Score` of each stage.
    """

    def __init__(
        self,
        model: nn.Module,
        task: str,
        num_classes: int,
        *,
        lr: float,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.0,
        optimizer: str = "adamw",
        frozen: str | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        super().__init__(
            lr=lr,
            weight_decay=weight_decay,
            warmup_fraction=warmup_fraction,
            optimizer=optimizer,
            num_classes=None if task == "multilabel" else num_classes,
            ignore_index=IGNORE_INDEX if task == "segmentation" else None,
        )
        self.model, self.task, self.num_classes = model, task, num_classes
        if frozen is not None and not isinstance(getattr(model, frozen, None), nn.Module):
            raise ValueError(f"the model has no submodule {frozen!r} to keep frozen")
        self.frozen = frozen
        if task == "multilabel":  # every score of a part, gathered from all processes
            # NaN scores kept, not dropped (dropping one would shift every later score)
            self.outputs = nn.ModuleDict({s: CatMetric(nan_strategy="disable") for s in STAGES})
            self.references = nn.ModuleDict({s: CatMetric(nan_strategy="disable") for s in STAGES})
            self.loss_fn: nn.Module = nn.BCEWithLogitsLoss()
        elif task == "segmentation":
            self.loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
        else:
            self.loss_fn = nn.CrossEntropyLoss()
        self.scores: dict[str, Score] = {}

    def forward(self, batch: dict) -> torch.Tensor:
        return self.model(batch)

    def on_fit_start(self) -> None:
        # Lightning trains modules in the mode it finds them: set them as the protocol asks
        self.train()
        self.on_train_epoch_start()

    def on_train_epoch_start(self) -> None:
        if self.frozen is not None:
            getattr(self.model, self.frozen).eval()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        y = targets(batch, self.task)
        loss = self.loss_fn(self(batch), y)
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, batch_size=y.shape[0], sync_dist=True
        )
        return loss

    def _evaluate(self, batch: dict, stage: str) -> None:
        logits, y = self(batch), targets(batch, self.task)
        if self.task == "multilabel":
            self.outputs[stage].update(torch.sigmoid(logits).float())
            self.references[stage].update(y)
        else:
            self.update_confusion(stage, logits.argmax(1), y)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _score(self, stage: str) -> None:
        if self.task == "multilabel":
            if not self.outputs[stage].update_called:
                return
            scores, refs = self.outputs[stage].compute(), self.references[stage].compute()
            self.outputs[stage].reset()
            self.references[stage].reset()
            score = micro_map(
                refs.reshape(-1, self.num_classes).cpu(), scores.reshape(-1, self.num_classes).cpu()
            )
        elif stage in self.confusions:
            metric = miou_from_confusion if self.task == "segmentation" else top1_from_confusion
            score = metric(self.confusions.pop(stage).numpy())
        else:
            return
        self.scores[stage] = score
        self.log(f"{stage}/score", score.value, prog_bar=stage == "val", sync_dist=True)

    def log_epoch_metrics(self, stage: str) -> None:
        super().log_epoch_metrics(stage)
        self._score(stage)


# ---------------------------------------------------------------------------------- models


class AdapterWithHead(nn.Module):
    """An encoder adapter and a head: a linear classifier on the global vector, or UPerNet
    on the feature maps (segmentation). A batch holding ``maps`` (from :class:`MapCache`)
    goes to the head directly."""

    def __init__(
        self,
        adapter: EncoderAdapter,
        task: str,
        num_classes: int,
        seg_channels: int = 128,
        sample_batch: dict | None = None,
    ):
        super().__init__()
        self.adapter, self.task = adapter, task
        if task == "segmentation":
            from .upernet import UPerNet

            if sample_batch is None:
                raise ValueError("a segmentation head is sized from a sample batch")
            with torch.no_grad():
                maps = adapter.eval().feature_maps(sample_batch)
            self.same_stride = len({tuple(m.shape[-2:]) for m in maps}) == 1
            dims = [m.shape[1] for m in self.four_maps(maps)]
            self.head: nn.Module = UPerNet(
                dims, num_classes, same_stride=self.same_stride, channels=seg_channels
            )
        else:
            self.head = nn.Linear(adapter.embed_dim, num_classes)
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def four_maps(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Same-stride maps of an encoder shallower than 4 blocks: the last one repeated."""
        if self.same_stride and len(maps) < 4:
            maps = list(maps) + [maps[-1]] * (4 - len(maps))
        if self.same_stride and len(maps) != 4:
            raise ValueError(f"UPerNet on same-stride maps takes 4 of them, got {len(maps)}")
        return maps

    def forward(self, batch: dict) -> torch.Tensor:
        if self.task == "segmentation":
            if "maps" in batch:
                return self.head(batch["maps"], batch["size"])
            maps = self.four_maps(self.adapter.feature_maps(batch))
            return self.head(maps, tuple(batch["image"].shape[-2:]))
        return self.head(self.adapter.features(batch))


class LinearOnFeatures(nn.Module):
    """A linear head on cached features: ``batch["features"]`` ``(B, D)`` -> ``(B, K)``,
    its weights drawn from a truncated normal (std 0.01) seeded by ``seed``, its bias 0."""

    def __init__(self, dim: int, num_classes: int, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            self.head = nn.Linear(dim, num_classes)
            torch.manual_seed(seed)
            nn.init.trunc_normal_(self.head.weight, std=0.01)
            nn.init.zeros_(self.head.bias)

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(batch["features"])


# ---------------------------------------------------------------------------------- data


class EpochBatches(Sampler):
    """Index batches of ``epochs`` passes over ``n`` items, each pass in a new random order
    drawn from ``generator`` (the last batch of a pass may be smaller). One loader pass is
    then the whole training run: cheap when an epoch is a single small step."""

    def __init__(self, n: int, batch_size: int, epochs: int, generator: torch.Generator):
        if n < 1 or batch_size < 1 or epochs < 1:
            raise ValueError(f"need n, batch_size and epochs >= 1, got {n}, {batch_size}, {epochs}")
        self.n, self.batch_size, self.epochs, self.generator = n, batch_size, epochs, generator

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n // self.batch_size)

    def __len__(self) -> int:
        return self.epochs * self.steps_per_epoch

    def __iter__(self) -> Iterator[torch.Tensor]:
        for _ in range(self.epochs):
            order = torch.randperm(self.n, generator=self.generator)
            for s in range(self.steps_per_epoch):
                yield order[s * self.batch_size : (s + 1) * self.batch_size]


class _Rows(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx: torch.Tensor) -> dict:
        return {"features": self.x[idx], "label": self.y[idx]}


def feature_loader(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int | None = None,
    epochs: int = 1,
    seed: int = 0,
) -> DataLoader:
    """Batches ``{"features", "label"}`` of cached features: with ``batch_size``,
    ``epochs`` shuffled passes (:class:`EpochBatches`); without, all rows in one batch."""
    if batch_size is None:
        sampler: Sampler | list = [torch.arange(len(x))]
    else:
        sampler = EpochBatches(len(x), batch_size, epochs, torch.Generator().manual_seed(seed))
    return DataLoader(_Rows(x, y), sampler=sampler, batch_size=None)


class MapCache:
    """A frozen encoder's feature maps of a whole split, computed once, served in batches
    (shuffled per epoch when ``shuffle``, the last partial batch then dropped as by the
    protocols' training loaders): training a head then costs the head alone."""

    def __init__(
        self,
        model: AdapterWithHead,
        ds: Dataset,
        batch_size: int,
        device,
        shuffle: bool,
        seed: int = 0,
        progress: bool = False,
        desc: str = "maps",
    ):
        from geofm.tasks.probe import batch_to

        parts, masks = [], []
        model.adapter.eval()
        loader = sample_loader(ds, batch_size, seed=0)
        if progress:
            from tqdm.auto import tqdm

            loader = tqdm(loader, desc=desc, total=len(loader), leave=False)
        with torch.no_grad():
            for batch in loader:
                batch = batch_to(batch, device)
                parts.append([m.cpu() for m in model.four_maps(model.adapter.feature_maps(batch))])
                masks.append(batch["mask"].cpu())
                self.size = tuple(batch["image"].shape[-2:])
        self.maps = [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))]
        self.masks = torch.cat(masks)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def _stops(self) -> range:
        n = len(self.masks)
        if self.shuffle and n > self.batch_size:
            return range(0, n - self.batch_size + 1, self.batch_size)
        return range(0, n, self.batch_size)

    def __len__(self) -> int:
        return len(self._stops())

    def __iter__(self):
        n = len(self.masks)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for s in self._stops():
            idx = order[s : s + self.batch_size]
            yield {"maps": [m[idx] for m in self.maps], "mask": self.masks[idx], "size": self.size}


# ---------------------------------------------------------------------------------- running


def _quiet():
    """Lightning's start-up lines and advice, once per run, are noise in a benchmark
    table."""
    return quiet_lightning(
        r".*validation_step` but have no `val_.*",
        # a frozen encoder is in eval mode on purpose (BenchTask.on_fit_start)
        r".*module\(s\) in eval mode at the start.*",
    )


def _trainer(device, progress: bool, **kwargs) -> pl.Trainer:
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"gfm-bench runs on 'cpu' or 'cuda[:N]', not {str(device)!r}")
    cpu = device.type == "cpu"
    return pl.Trainer(
        accelerator="cpu" if cpu else "gpu",
        devices=1 if cpu else [device.index or 0],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        **kwargs,
    )


def fit(
    task: BenchTask,
    train,
    val=None,
    *,
    epochs: int = 1,
    seed: int = 0,
    device="cpu",
    progress: bool = False,
) -> int | None:
    """Train ``task`` on the ``train`` batches for ``epochs`` passes; with ``val`` batches,
    score it after each epoch and end with the weights of the best (the earliest of equal
    ones), whose epoch is returned. The global random generator (random flips and crops
    of the training transform) is seeded with ``seed`` and restored afterwards."""
    best = BestWeights(monitor="val/score", tie_break=None) if val is not None else None
    with _quiet(), torch.random.fork_rng(devices=[]):
        trainer = _trainer(
            device,
            progress,
            max_epochs=epochs,
            callbacks=[best] if best else [],
            limit_val_batches=None if val is not None else 0,
        )
        torch.manual_seed(seed)
        trainer.fit(task, train_dataloaders=train, val_dataloaders=val)
    return best.best_epoch if best else None


def evaluate(
    task: BenchTask, batches, stage: str = "test", *, device="cpu", progress: bool = False
) -> Score:
    """The :class:`~gfm_bench.metrics.Score` of ``task`` over every batch of a part."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    task.scores.pop(stage, None)
    with _quiet():
        trainer = _trainer(device, progress)
        run = trainer.validate if stage == "val" else trainer.test
        run(task, batches, verbose=False)
    if stage not in task.scores:
        raise ValueError(f"no {stage} batches to score")
    return task.scores[stage]
