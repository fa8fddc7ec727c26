"""The GFM-Bench protocols: linear probe, kNN, fine-tuning (full or LoRA), UPerNet segmentation.

Protocols of Si et al. (2025), GFM-Bench, with the defaults the paper states where it
states them (fine-tuning: AdamW, weight decay 0.01, warm-up 0.2 of the steps, cosine,
the best validation epoch evaluated on test; linear probing: a frozen encoder, cached
global-CLS features, a linear head, batch 1024, 100 epochs). The learning-rate sweeps of
the paper are available as :data:`PAPER_SWEEPS`; the chosen rate is picked on the
validation split only.

Every protocol takes a :class:`BenchData` (three splits of samples and what the task is)
and an :class:`~gfm_bench.encoders.EncoderAdapter`, and returns a :class:`Outcome`: the
test :class:`~gfm_bench.metrics.Score`, the validation score it was selected by, and the
settings it ran with.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from geofm.data.cards import DatasetCard
from geofm.data.sample import IGNORE_INDEX, collate_samples
from geofm.data.transforms import (
    CenterCrop,
    Compose,
    MAEScaleNormalize,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomVerticalFlip,
    Resize,
)

from .encoders import EncoderAdapter
from .metrics import Score, micro_map, miou_from_confusion, segmentation_confusion, top1

__all__ = ["BenchData", "Outcome", "PROTOCOLS", "PAPER_SWEEPS", "label_fraction_indices",
           "extract_features", "linear_probe", "knn", "finetune", "segmentation",
           "run_protocol", "applicable"]

PAPER_SWEEPS = {
    "linear_probe": (5e-3, 1e-2, 5e-2, 0.1, 0.3),
    "finetune": (3e-5, 1e-4, 3e-4, 1e-3),
    "finetune_lora": (3e-5, 1e-4, 3e-4, 1e-3),
    "upernet_frozen": (3e-5, 1e-4, 3e-4, 1e-3),
    "upernet_finetune": (3e-5, 1e-4, 3e-4, 1e-3),
}
"""Learning rates of the paper's sweeps (fine-tuning 3e-5 to 1e-3, probing 5e-3 to 0.3)."""


@dataclass
class BenchData:
    """Three splits of geofm samples and the task they pose.

    ``task``: ``classification`` (``label`` an int), ``multilabel`` (``label`` a multi-hot
    float vector) or ``segmentation`` (``mask``, 255 = ignore). ``card`` gives the band
    statistics used for normalisation. ``crop``/``upscale``: the paper's input size (crop
    to ``crop`` pixels, then resample by ``upscale``).
    """

    name: str
    task: str
    num_classes: int
    train: Dataset
    val: Dataset
    test: Dataset
    card: DatasetCard | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    bands: Sequence[str] | None = None
    classes: Sequence[str] = ()
    crop: int | None = None
    upscale: float = 1.0
    train_labels: np.ndarray | None = None   # for stratified label fractions (optional)

    def statistics(self, max_samples: int = 256) -> tuple[Sequence[float], Sequence[float],
                                                          Sequence[str]]:
        """Per-band mean, std and band names for normalisation: given, else the card's,
        else computed (with a warning) from up to ``max_samples`` training samples spread
        evenly over the split (NLCD-L, whose GFM-Bench statistics are not known)."""
        if self.mean is not None and self.std is not None:
            return self.mean, self.std, self.bands
        if self.card is not None and self.card.mean is not None and self.card.std is not None:
            return self.card.mean, self.card.std, self.card.band_names
        n = len(self.train)
        picks = np.unique(np.linspace(0, n - 1, min(n, max_samples)).round().astype(int))
        total = total_sq = count = 0
        for i in picks:
            sample = self.train[int(i)]
            image = sample["image"].double().flatten(1)
            total = total + image.sum(1)
            total_sq = total_sq + (image ** 2).sum(1)
            count += image.shape[1]
        mean = total / count
        std = (total_sq / count - mean ** 2).clamp_min(0).sqrt().clamp_min(1e-6)
        self.mean, self.std = mean.tolist(), std.tolist()
        self.bands = tuple(sample["bands"])
        warnings.warn(f"{self.name}: no normalisation statistics known; using those of "
                      f"{len(picks)} training samples", UserWarning, stacklevel=2)
        return self.mean, self.std, self.bands


@dataclass
class Outcome:
    """What a protocol run measured."""

    test: Score
    val: Score | None
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class _Mapped(Dataset):
    def __init__(self, base: Dataset, fn: Callable):
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        return self.fn(self.base[i])


def input_transform(data: BenchData, adapter: EncoderAdapter, train: bool):
    """Normalisation of the adapter's kind with the dataset's statistics, the paper's crop
    and scale, and (training) random flips and crops."""
    mean, std, bands = data.statistics()
    norm_cls = MAEScaleNormalize if adapter.normalisation == "mae" else Normalize
    steps: list = [norm_cls(mean, std, bands=bands)]
    if data.crop is not None:
        steps.append(RandomCrop(data.crop) if train else CenterCrop(data.crop))
    if data.upscale != 1.0:
        steps.append(Resize(scale=data.upscale))
    if train:
        steps += [RandomHorizontalFlip(), RandomVerticalFlip()]
    return Compose(steps)


def label_fraction_indices(data: BenchData, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the training samples a label fraction keeps.

    Classification: stratified (every class keeps ``ceil(fraction * n_k)`` members, at
    least one). Otherwise a uniform random subset of ``ceil(fraction * n)`` samples.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    n = len(data.train)
    if fraction == 1.0:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if data.task == "classification":
        labels = data.train_labels
        if labels is None:
            labels = np.array([int(data.train[i]["label"]) for i in range(n)])
        keep = []
        for k in np.unique(labels):
            members = np.flatnonzero(labels == k)
            take = max(1, math.ceil(fraction * members.size))
            keep.append(rng.choice(members, size=take, replace=False))
        return np.sort(np.concatenate(keep))
    return np.sort(rng.choice(n, size=max(1, math.ceil(fraction * n)), replace=False))


def _loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """Training loaders (``shuffle``) drop a last partial batch when there is more than
    one batch: a batch of one sample breaks batch normalisation (UPerNet's heads)."""
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_samples,
                      generator=gen, num_workers=0,
                      drop_last=shuffle and len(ds) > batch_size)


def _progress(iterable, desc: str, enabled: bool, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


def _targets(batch: dict, task: str) -> torch.Tensor:
    if task == "segmentation":
        return torch.as_tensor(batch["mask"]).long()
    label = torch.as_tensor(batch["label"])
    return label.float() if task == "multilabel" else label.long()


@torch.no_grad()
def extract_features(adapter: EncoderAdapter, ds: Dataset, task: str, batch_size: int = 64,
                     device: str = "cpu", progress: bool = False, desc: str = "features"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Global features ``(n, D)`` (float32, CPU) and targets of every sample of ``ds``.

    The adapter runs in eval mode on ``device`` (moved there, as ``Module.to`` does); its
    training mode is restored afterwards.
    """
    was_training = adapter.training
    adapter = adapter.to(device).eval()
    feats, targets = [], []
    loader = _loader(ds, batch_size, shuffle=False)
    try:
        for batch in _progress(loader, desc, progress, total=len(loader)):
            batch = _to(batch, device)
            feats.append(adapter.features(batch).float().cpu())
            targets.append(_targets(batch, task).cpu())
    finally:
        adapter.train(was_training)
    return torch.cat(feats), torch.cat(targets)


def _score(task: str, targets: torch.Tensor, outputs: torch.Tensor, num_classes: int) -> Score:
    if task == "classification":
        return top1(targets, outputs, num_classes)
    if task == "multilabel":
        return micro_map(targets, outputs)
    raise ValueError(f"no global score for task {task!r}")


# ---------------------------------------------------------------------------- linear probe


def _train_linear(x: torch.Tensor, y: torch.Tensor, task: str, num_classes: int, lr: float,
                  epochs: int, batch_size: int, seed: int, weight_decay: float,
                  min_steps: int) -> tuple[nn.Linear, int]:
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(x.shape[1], num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nn.init.trunc_normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    epochs = max(epochs, math.ceil(min_steps / steps_per_epoch))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    loss_fn = nn.BCEWithLogitsLoss() if task == "multilabel" else nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for s in range(steps_per_epoch):
            idx = order[s * batch_size:(s + 1) * batch_size]
            loss = loss_fn(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return head, epochs


def linear_probe(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor], task: str, num_classes: int,
                 lrs: Sequence[float] = (0.1,), epochs: int = 100, batch_size: int = 1024,
                 weight_decay: float = 0.0, min_steps: int = 1000, seed: int = 0) -> Outcome:
    """A linear head on cached features, one per learning rate; the best on val is tested.

    Features are standardised with the training part's mean and standard deviation (a
    BatchNorm without affine terms, as in MAE's linear probe); SGD with momentum 0.9 and a
    cosine schedule, for ``epochs`` or at least ``min_steps`` steps, whichever is more (a
    training set smaller than one batch would otherwise get one step per epoch).
    """
    if task not in ("classification", "multilabel"):
        raise ValueError(f"the linear probe scores global labels; {task!r} is not one")
    start = time.perf_counter()
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
    mu, sd = xtr.mean(0), xtr.std(0, unbiased=False).clamp_min(1e-6)
    xtr, xva, xte = (xtr - mu) / sd, (xva - mu) / sd, (xte - mu) / sd
    best = None
    for lr in lrs:
        head, ran = _train_linear(xtr, ytr, task, num_classes, float(lr), epochs,
                                  batch_size, seed, weight_decay, min_steps)
        with torch.no_grad():
            val_score = _score(task, yva, _outputs(head(xva), task), num_classes)
        if best is None or val_score.value > best[0].value:
            best = (val_score, float(lr), head)
    val_score, lr, head = best
    with torch.no_grad():
        test_score = _score(task, yte, _outputs(head(xte), task), num_classes)
    return Outcome(test_score, val_score, {"lr": lr, "lrs": list(map(float, lrs)),
                                           "epochs": epochs, "epochs_run": ran,
                                           "batch_size": batch_size, "min_steps": min_steps},
                   time.perf_counter() - start)


def _outputs(logits: torch.Tensor, task: str) -> torch.Tensor:
    return torch.sigmoid(logits) if task == "multilabel" else logits


# ---------------------------------------------------------------------------- kNN


def knn_scores(bank: torch.Tensor, bank_targets: torch.Tensor, queries: torch.Tensor, k: int,
               task: str, num_classes: int, temperature: float = 0.07) -> torch.Tensor:
    """Class scores ``(m, K)`` of the ``k`` most cosine-similar bank entries, each voting
    with weight ``exp(similarity / temperature)`` (Wu et al. 2018; DINO's kNN). Multi-label:
    the weighted mean of the neighbours' multi-hot vectors."""
    k = min(k, bank.shape[0])
    sim = F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T
    top, idx = sim.topk(k, dim=1)
    weight = (top / temperature).exp()
    if task == "multilabel":
        neigh = bank_targets[idx].float()  # (m, k, K)
        return (weight[..., None] * neigh).sum(1) / weight.sum(1, keepdim=True)
    votes = torch.zeros(queries.shape[0], num_classes)
    votes.scatter_add_(1, bank_targets[idx], weight)
    return votes


def knn(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor], task: str, num_classes: int,
        ks: Sequence[int] = (20,), temperature: float = 0.07) -> Outcome:
    """Weighted cosine kNN on frozen features; with several ``ks`` the best on val is used."""
    if task not in ("classification", "multilabel"):
        raise ValueError(f"kNN scores global labels; {task!r} is not one")
    start = time.perf_counter()
    best = None
    for k in ks:
        s = _score(task, val[1], knn_scores(*train, val[0], k, task, num_classes, temperature),
                   num_classes)
        if best is None or s.value > best[0].value:
            best = (s, int(k))
    val_score, k = best
    test_score = _score(task, test[1], knn_scores(*train, test[0], k, task, num_classes,
                                                  temperature), num_classes)
    return Outcome(test_score, val_score,
                   {"k": min(k, train[0].shape[0]), "ks": list(map(int, ks)),
                    "temperature": temperature}, time.perf_counter() - start)


# ---------------------------------------------------------------------------- training loops


class _Model(nn.Module):
    """Adapter + head: a linear classifier on the global vector, or UPerNet on the maps."""

    def __init__(self, adapter: EncoderAdapter, task: str, num_classes: int,
                 seg_channels: int = 128, sample_batch: dict | None = None):
        super().__init__()
        self.adapter, self.task = adapter, task
        if task == "segmentation":
            from .upernet import UPerNet

            with torch.no_grad():
                maps = adapter.eval().feature_maps(sample_batch)
            self.same_stride = len({tuple(m.shape[-2:]) for m in maps}) == 1
            maps = self._four(maps)
            dims = [m.shape[1] for m in maps]
            self.head = UPerNet(dims, num_classes, same_stride=self.same_stride,
                                channels=seg_channels)
        else:
            self.head = nn.Linear(adapter.embed_dim, num_classes)
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def _four(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Same-stride maps of an encoder shallower than 4 blocks: the last one repeated."""
        if self.same_stride and len(maps) < 4:
            maps = list(maps) + [maps[-1]] * (4 - len(maps))
        if self.same_stride and len(maps) != 4:
            raise ValueError(f"UPerNet on same-stride maps takes 4 of them, got {len(maps)}")
        return maps

    def forward(self, batch: dict) -> torch.Tensor:
        if self.task == "segmentation":
            if "maps" in batch:  # cached by _MapCache
                return self.head(batch["maps"], batch["size"])
            maps = self._four(self.adapter.feature_maps(batch))
            return self.head(maps, tuple(batch["image"].shape[-2:]))
        return self.head(self.adapter.features(batch))


class _MapCache:
    """A frozen encoder's feature maps of a whole split, computed once, served in batches
    (shuffled per epoch when ``shuffle``): training a head then costs the head alone."""

    def __init__(self, model: _Model, ds: Dataset, batch_size: int, device, shuffle: bool,
                 seed: int = 0, progress: bool = False, desc: str = "maps"):
        parts, masks = [], []
        model.adapter.eval()
        loader = _loader(ds, batch_size, False)
        with torch.no_grad():
            for batch in _progress(loader, desc, progress, total=len(loader)):
                batch = _to(batch, device)
                parts.append([m.cpu() for m in model._four(model.adapter.feature_maps(batch))])
                masks.append(batch["mask"].cpu())
                self.size = tuple(batch["image"].shape[-2:])
        self.maps = [torch.cat([p[i] for p in parts]) for i in range(len(parts[0]))]
        self.masks = torch.cat(masks)
        self.batch_size, self.device, self.shuffle = batch_size, device, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def _stops(self) -> range:
        n = len(self.masks)
        if self.shuffle and n > self.batch_size:  # drop a last partial batch, as _loader
            return range(0, n - self.batch_size + 1, self.batch_size)
        return range(0, n, self.batch_size)

    def __len__(self) -> int:
        return len(self._stops())

    def __iter__(self):
        n = len(self.masks)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for s in self._stops():
            idx = order[s:s + self.batch_size]
            yield {"maps": [m[idx].to(self.device) for m in self.maps],
                   "mask": self.masks[idx].to(self.device), "size": self.size}


def _to(batch: dict, device) -> dict:
    out = dict(batch)
    for key in ("image", "gsd", "label", "mask"):
        if key in out:
            out[key] = torch.as_tensor(out[key]).to(device)
    return out


@torch.no_grad()
def _evaluate(model: _Model, loader: DataLoader, task: str, num_classes: int, device,
              progress: bool = False, desc: str = "eval") -> Score:
    model.eval()
    if task == "segmentation":
        cm = np.zeros((num_classes, num_classes), dtype=np.int64)
        for batch in _progress(loader, desc, progress, total=len(loader)):
            batch = _to(batch, device)
            pred = model(batch).argmax(1)
            cm += segmentation_confusion(batch["mask"], pred, num_classes, IGNORE_INDEX)
        return miou_from_confusion(cm)
    outs, ys = [], []
    for batch in _progress(loader, desc, progress, total=len(loader)):
        batch = _to(batch, device)
        outs.append(_outputs(model(batch), task).float().cpu())
        ys.append(_targets(batch, task).cpu())
    return _score(task, torch.cat(ys), torch.cat(outs), num_classes)


def _fit(data: BenchData, adapter: EncoderAdapter, train_idx: np.ndarray, *, mode: str,
         lr: float, epochs: int, batch_size: int, weight_decay: float, warmup: float,
         seed: int, device, progress: bool, seg_channels: int = 128, lora_rank: int = 8,
         cache_features: bool = False) -> tuple[Score, Score, dict]:
    """Train head (+ encoder as ``mode`` says) and return (val, test, info) of the best
    validation epoch. ``cache_features`` (frozen segmentation only): compute the encoder's
    maps once, without training augmentation, and train the head on them."""
    task = data.task
    if task == "segmentation" and len(train_idx) < 2:
        raise ValueError(f"{data.name}: UPerNet needs at least 2 training samples (batch "
                         f"normalisation), the label fraction leaves {len(train_idx)}")
    cached = cache_features and mode == "frozen" and task == "segmentation"
    train_ds = Subset(_Mapped(data.train, input_transform(data, adapter, train=not cached)),
                      train_idx.tolist())
    val_ds = _Mapped(data.val, input_transform(data, adapter, train=False))
    test_ds = _Mapped(data.test, input_transform(data, adapter, train=False))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapter = copy.deepcopy(adapter)
        info: dict[str, Any] = {}
        if mode == "lora":
            from geofm.models.lora import freeze_except_lora, inject_lora, parameter_counts

            adapted = inject_lora(adapter.model, rank=lora_rank, skip_narrow=True)
            freeze_except_lora(adapter.model)
            counts = parameter_counts(adapter.model)
            info["encoder_trainable"] = counts.trainable
            info["lora_layers"] = len(adapted)
        elif mode == "frozen":
            for p in adapter.parameters():
                p.requires_grad_(False)
            info["encoder_trainable"] = 0
        else:
            info["encoder_trainable"] = sum(p.numel() for p in adapter.parameters())
        adapter = adapter.to(device)
        sample_batch = (_to(collate_samples([val_ds[0]]), device) if task == "segmentation"
                        else None)
        model = _Model(adapter, task, data.num_classes, seg_channels, sample_batch).to(device)
    info["head_params"] = sum(p.numel() for p in model.head.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if cached:
        loader = _MapCache(model, train_ds, batch_size, device, True, seed, progress, "train maps")
        val_loader = _MapCache(model, val_ds, batch_size, device, False)
        test_loader = _MapCache(model, test_ds, batch_size, device, False)
    else:
        loader = _loader(train_ds, batch_size, shuffle=True, seed=seed)
        val_loader, test_loader = (_loader(val_ds, batch_size, False),
                                   _loader(test_ds, batch_size, False))
    info["cached_features"] = cached
    total = max(1, epochs * len(loader))
    warm = int(warmup * total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    if task == "segmentation":
        loss_fn: nn.Module = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    elif task == "multilabel":
        loss_fn = nn.BCEWithLogitsLoss()
    else:
        loss_fn = nn.CrossEntropyLoss()
    best: tuple[float, int, dict] | None = None
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # flips and crops of the training transform
    try:
        for epoch in _progress(range(epochs), "epochs", progress, total=epochs):
            model.train()
            if mode == "frozen":
                model.adapter.eval()
            for batch in loader:
                batch = _to(batch, device)
                loss = loss_fn(model(batch), _targets(batch, task))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            val_score = _evaluate(model, val_loader, task, data.num_classes, device)
            if best is None or val_score.value > best[0]:
                best = (val_score.value, epoch,
                        {k: v.detach().clone() for k, v in model.state_dict().items()})
    finally:
        torch.random.set_rng_state(gen_state)
    model.load_state_dict(best[2])
    val_score = _evaluate(model, val_loader, task, data.num_classes, device)
    test_score = _evaluate(model, test_loader, task, data.num_classes, device, progress, "test")
    info["best_epoch"] = best[1]
    return val_score, test_score, info


def finetune(data: BenchData, adapter: EncoderAdapter, train_idx: np.ndarray, *,
             lora: bool = False, lrs: Sequence[float] = (1e-4,), epochs: int = 10,
             batch_size: int = 32, weight_decay: float = 0.01, warmup: float = 0.2,
             lora_rank: int = 8, seed: int = 0, device="cpu", progress: bool = False) -> Outcome:
    """Fine-tune encoder and a linear head (all weights, or LoRA adapters plus the head)."""
    if data.task not in ("classification", "multilabel"):
        raise ValueError(f"fine-tuning with a linear head scores global labels, not {data.task}")
    return _sweep(data, adapter, train_idx, "lora" if lora else "full", lrs, epochs=epochs,
                  batch_size=batch_size, weight_decay=weight_decay, warmup=warmup,
                  lora_rank=lora_rank, seed=seed, device=device, progress=progress)


def segmentation(data: BenchData, adapter: EncoderAdapter, train_idx: np.ndarray, *,
                 frozen: bool = True, lrs: Sequence[float] = (1e-4,), epochs: int = 10,
                 batch_size: int = 16, weight_decay: float = 0.01, warmup: float = 0.2,
                 channels: int = 128, cache_features: bool = False, seed: int = 0,
                 device="cpu", progress: bool = False) -> Outcome:
    """UPerNet on the encoder's feature maps, the encoder frozen or fine-tuned; mIoU.

    ``cache_features`` (frozen only) computes the maps of every split once and trains the
    head on them, without flips or random crops: far faster, and the memory of all maps.
    """
    if data.task != "segmentation":
        raise ValueError(f"UPerNet segments masks; {data.name} is a {data.task} dataset")
    if cache_features and not frozen:
        raise ValueError("cache_features needs a frozen encoder (fine-tuning changes the maps)")
    return _sweep(data, adapter, train_idx, "frozen" if frozen else "full", lrs, epochs=epochs,
                  batch_size=batch_size, weight_decay=weight_decay, warmup=warmup,
                  seg_channels=channels, cache_features=cache_features, seed=seed,
                  device=device, progress=progress)


def _sweep(data, adapter, train_idx, mode, lrs, **kwargs) -> Outcome:
    start = time.perf_counter()
    best = None
    for lr in lrs:
        val_score, test_score, info = _fit(data, adapter, train_idx, mode=mode, lr=float(lr),
                                           **kwargs)
        if best is None or val_score.value > best[0].value:
            best = (val_score, test_score, {**info, "lr": float(lr)})
    val_score, test_score, info = best
    settings = {**info, "lrs": list(map(float, lrs)), "mode": mode,
                **{k: kwargs[k] for k in ("epochs", "batch_size", "weight_decay", "warmup")}}
    return Outcome(test_score, val_score, settings, time.perf_counter() - start)


# ---------------------------------------------------------------------------- dispatch

PROTOCOLS = ("linear_probe", "knn", "finetune", "finetune_lora", "upernet_frozen",
             "upernet_finetune")


def applicable(protocol: str, task: str) -> bool:
    """Whether a protocol scores a task (global protocols: labels; UPerNet: masks)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return (task == "segmentation") == protocol.startswith("upernet")


def run_protocol(protocol: str, data: BenchData, adapter: EncoderAdapter, *,
                 label_fraction: float = 1.0, seed: int = 0, settings: dict | None = None,
                 device="cpu", progress: bool = False,
                 feature_cache: dict | None = None) -> Outcome:
    """Run one protocol on one dataset with one encoder, label fraction and seed.

    ``settings`` override the protocol's keyword defaults (``lrs``, ``epochs``, ``k`` ...).
    ``feature_cache`` (a dict) keeps extracted features between the linear probe and kNN of
    the same encoder and dataset.
    """
    settings = dict(settings or {})
    if not applicable(protocol, data.task):
        raise ValueError(f"protocol {protocol} does not apply to {data.task} ({data.name})")
    first = data.test[0]
    adapter.check_bands(first["bands"], torch.as_tensor(first["wavelengths"]).tolist())
    train_idx = label_fraction_indices(data, label_fraction, seed)
    if protocol in ("linear_probe", "knn"):
        batch_size = int(settings.pop("feature_batch_size", 64))
        cache = feature_cache if feature_cache is not None else {}
        key = (id(adapter), id(data))
        entry = cache.get(key)
        # ids are reused after garbage collection: the entry keeps both objects and must
        # hold these very ones (a rebuilt adapter or a reloaded dataset is extracted anew)
        if entry is None or entry[0] is not adapter or entry[1] is not data:
            tf = input_transform(data, adapter, train=False)
            entry = (adapter, data,
                     {part: extract_features(adapter, _Mapped(getattr(data, part), tf),
                                             data.task, batch_size, device, progress,
                                             f"{data.name} {part} features")
                      for part in ("train", "val", "test")})
            cache[key] = entry
        feats = entry[2]
        x, y = feats["train"]
        idx = torch.as_tensor(train_idx)
        train = (x[idx], y[idx])
        if protocol == "linear_probe":
            return linear_probe(train, feats["val"], feats["test"], data.task, data.num_classes,
                                seed=seed, **settings)
        return knn(train, feats["val"], feats["test"], data.task, data.num_classes, **settings)
    if protocol in ("finetune", "finetune_lora"):
        return finetune(data, adapter, train_idx, lora=protocol == "finetune_lora", seed=seed,
                        device=device, progress=progress, **settings)
    return segmentation(data, adapter, train_idx, frozen=protocol == "upernet_frozen", seed=seed,
                        device=device, progress=progress, **settings)
