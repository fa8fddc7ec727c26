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
from torch.utils.data import Dataset, Subset

from geofm.data.cards import DatasetCard
from geofm.data.sample import collate_samples, sample_loader
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
from geofm.tasks.probe import batch_to, knn_scores
from geofm.tasks.probe import extract_features as extract

from .encoders import EncoderAdapter
from .metrics import Score, micro_map, top1
from .training import (
    AdapterWithHead,
    BenchTask,
    LinearOnFeatures,
    MapCache,
    evaluate,
    feature_loader,
    fit,
    targets,
)

__all__ = [
    "BenchData",
    "Outcome",
    "PROTOCOLS",
    "PAPER_SWEEPS",
    "label_fraction_indices",
    "extract_features",
    "linear_probe",
    "knn",
    "finetune",
    "segmentation",
    "run_protocol",
    "applicable",
]

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
    train_labels: np.ndarray | None = None  # for stratified label fractions (optional)

    def statistics(
        self, max_samples: int = 256
    ) -> tuple[Sequence[float], Sequence[float], Sequence[str]]:
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
            total_sq = total_sq + (image**2).sum(1)
            count += image.shape[1]
        mean = total / count
        std = (total_sq / count - mean**2).clamp_min(0).sqrt().clamp_min(1e-6)
        self.mean, self.std = mean.tolist(), std.tolist()
        self.bands = tuple(sample["bands"])
        warnings.warn(
            f"{self.name}: no normalisation statistics known; using those of "
            f"{len(picks)} training samples",
            UserWarning,
            stacklevel=2,
        )
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


def extract_features(
    adapter: EncoderAdapter,
    ds: Dataset,
    task: str,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = False,
    desc: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Global features ``(n, D)`` (float32, CPU) and targets of every sample of ``ds``
    (:func:`geofm.tasks.probe.extract_features` with the adapter's ``features``)."""
    return extract(
        adapter,
        sample_loader(ds, batch_size, seed=0),
        device,
        features=lambda model, batch: model.features(batch),
        target=lambda batch: targets(batch, task),
        progress=progress,
        desc=desc,
    )


def _score(task: str, targets: torch.Tensor, outputs: torch.Tensor, num_classes: int) -> Score:
    if task == "classification":
        return top1(targets, outputs, num_classes)
    if task == "multilabel":
        return micro_map(targets, outputs)
    raise ValueError(f"no global score for task {task!r}")


# ---------------------------------------------------------------------------- linear probe


def linear_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    task: str,
    num_classes: int,
    lrs: Sequence[float] = (0.1,),
    epochs: int = 100,
    batch_size: int = 1024,
    weight_decay: float = 0.0,
    min_steps: int = 1000,
    seed: int = 0,
    device="cpu",
) -> Outcome:
    """A linear head on cached features, one per learning rate; the best on val is tested.

    Features are standardised with the training part's mean and standard deviation (a
    BatchNorm without affine terms, as in MAE's linear probe); SGD with momentum 0.9 and a
    cosine schedule (:class:`~gfm_bench.training.BenchTask`), for ``epochs`` or at least
    ``min_steps`` steps, whichever is more (a training set smaller than one batch would
    otherwise get one step per epoch).
    """
    if task not in ("classification", "multilabel"):
        raise ValueError(f"the linear probe scores global labels; {task!r} is not one")
    start = time.perf_counter()
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
    mu, sd = xtr.mean(0), xtr.std(0, unbiased=False).clamp_min(1e-6)
    xtr, xva, xte = (xtr - mu) / sd, (xva - mu) / sd, (xte - mu) / sd
    ran = max(epochs, math.ceil(min_steps / math.ceil(xtr.shape[0] / batch_size)))
    best = None
    for lr in lrs:
        head = LinearOnFeatures(xtr.shape[1], num_classes, seed=seed)
        probe = BenchTask(
            head, task, num_classes, lr=float(lr), weight_decay=weight_decay, optimizer="sgd"
        )
        # every epoch in one loader pass: the run is one Lightning epoch of all the steps
        fit(
            probe,
            feature_loader(xtr, ytr, batch_size=batch_size, epochs=ran, seed=seed),
            seed=seed,
            device=device,
        )
        val_score = evaluate(probe, feature_loader(xva, yva), "val", device=device)
        if best is None or val_score.value > best[0].value:
            best = (val_score, float(lr), probe)
    val_score, lr, probe = best
    test_score = evaluate(probe, feature_loader(xte, yte), "test", device=device)
    return Outcome(
        test_score,
        val_score,
        {
            "lr": lr,
            "lrs": list(map(float, lrs)),
            "epochs": epochs,
            "epochs_run": ran,
            "batch_size": batch_size,
            "min_steps": min_steps,
        },
        time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------- kNN


def knn(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    task: str,
    num_classes: int,
    ks: Sequence[int] = (20,),
    temperature: float = 0.07,
) -> Outcome:
    """Weighted cosine kNN on frozen features (:func:`geofm.tasks.probe.knn_scores`); with
    several ``ks`` the best on val is used."""
    if task not in ("classification", "multilabel"):
        raise ValueError(f"kNN scores global labels; {task!r} is not one")
    start = time.perf_counter()
    multilabel = task == "multilabel"

    def scores(queries: torch.Tensor, k: int) -> torch.Tensor:
        return knn_scores(
            *train, queries, k, num_classes, temperature=temperature, multilabel=multilabel
        )

    # the best on val, the first of equal ones (no ks: None, which fails to unpack)
    val_score, k = max(
        ((_score(task, val[1], scores(val[0], k), num_classes), int(k)) for k in ks),
        key=lambda pair: pair[0].value,
        default=None,
    )
    test_score = _score(task, test[1], scores(test[0], k), num_classes)
    return Outcome(
        test_score,
        val_score,
        {"k": min(k, train[0].shape[0]), "ks": list(map(int, ks)), "temperature": temperature},
        time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------- training loops


def _fit(
    data: BenchData,
    adapter: EncoderAdapter,
    train_idx: np.ndarray,
    *,
    mode: str,
    lr: float,
    epochs: int,
    batch_size: int,
    weight_decay: float,
    warmup: float,
    seed: int,
    device,
    progress: bool,
    seg_channels: int = 128,
    lora_rank: int = 8,
    cache_features: bool = False,
) -> tuple[Score, Score, dict]:
    """Train head (+ encoder as ``mode`` says) and return (val, test, info) of the best
    validation epoch. ``cache_features`` (frozen segmentation only): compute the encoder's
    maps once, without training augmentation, and train the head on them."""
    task = data.task
    if task == "segmentation" and len(train_idx) < 2:
        raise ValueError(
            f"{data.name}: UPerNet needs at least 2 training samples (batch "
            f"normalisation), the label fraction leaves {len(train_idx)}"
        )
    cached = cache_features and mode == "frozen" and task == "segmentation"
    train_ds = Subset(
        _Mapped(data.train, input_transform(data, adapter, train=not cached)), train_idx.tolist()
    )
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
        sample_batch = (
            batch_to(collate_samples([val_ds[0]]), device) if task == "segmentation" else None
        )
        model = AdapterWithHead(adapter, task, data.num_classes, seg_channels, sample_batch).to(
            device
        )
    info["head_params"] = sum(p.numel() for p in model.head.parameters())
    if cached:
        loader = MapCache(model, train_ds, batch_size, device, True, seed, progress, "train maps")
        val_loader = MapCache(model, val_ds, batch_size, device, False)
        test_loader = MapCache(model, test_ds, batch_size, device, False)
    else:
        # a last partial batch is dropped: a batch of one breaks batch norm (UPerNet's heads)
        drop = len(train_ds) > batch_size
        loader = sample_loader(train_ds, batch_size, True, seed=seed, drop_last=drop)
        val_loader = sample_loader(val_ds, batch_size, seed=0)
        test_loader = sample_loader(test_ds, batch_size, seed=0)
    info["cached_features"] = cached
    bench = BenchTask(
        model,
        task,
        data.num_classes,
        lr=lr,
        weight_decay=weight_decay,
        warmup_fraction=warmup,
        frozen="adapter" if mode == "frozen" else None,
    )
    info["best_epoch"] = fit(
        bench, loader, val_loader, epochs=epochs, seed=seed, device=device, progress=progress
    )
    val_score = evaluate(bench, val_loader, "val", device=device)
    test_score = evaluate(bench, test_loader, "test", device=device, progress=progress)
    return val_score, test_score, info


def finetune(
    data: BenchData,
    adapter: EncoderAdapter,
    train_idx: np.ndarray,
    *,
    lora: bool = False,
    lrs: Sequence[float] = (1e-4,),
    epochs: int = 10,
    batch_size: int = 32,
    weight_decay: float = 0.01,
    warmup: float = 0.2,
    lora_rank: int = 8,
    seed: int = 0,
    device="cpu",
    progress: bool = False,
) -> Outcome:
    """Fine-tune encoder and a linear head (all weights, or LoRA adapters plus the head)."""
    if data.task not in ("classification", "multilabel"):
        raise ValueError(f"fine-tuning with a linear head scores global labels, not {data.task}")
    return _sweep(
        data,
        adapter,
        train_idx,
        "lora" if lora else "full",
        lrs,
        epochs=epochs,
        batch_size=batch_size,
        weight_decay=weight_decay,
        warmup=warmup,
        lora_rank=lora_rank,
        seed=seed,
        device=device,
        progress=progress,
    )


def segmentation(
    data: BenchData,
    adapter: EncoderAdapter,
    train_idx: np.ndarray,
    *,
    frozen: bool = True,
    lrs: Sequence[float] = (1e-4,),
    epochs: int = 10,
    batch_size: int = 16,
    weight_decay: float = 0.01,
    warmup: float = 0.2,
    channels: int = 128,
    cache_features: bool = False,
    seed: int = 0,
    device="cpu",
    progress: bool = False,
) -> Outcome:
    """UPerNet on the encoder's feature maps, the encoder frozen or fine-tuned; mIoU.

    ``cache_features`` (frozen only) computes the maps of every split once and trains the
    head on them, without flips or random crops: far faster, and the memory of all maps.
    """
    if data.task != "segmentation":
        raise ValueError(f"UPerNet segments masks; {data.name} is a {data.task} dataset")
    if cache_features and not frozen:
        raise ValueError("cache_features needs a frozen encoder (fine-tuning changes the maps)")
    return _sweep(
        data,
        adapter,
        train_idx,
        "frozen" if frozen else "full",
        lrs,
        epochs=epochs,
        batch_size=batch_size,
        weight_decay=weight_decay,
        warmup=warmup,
        seg_channels=channels,
        cache_features=cache_features,
        seed=seed,
        device=device,
        progress=progress,
    )


def _sweep(data, adapter, train_idx, mode, lrs, **kwargs) -> Outcome:
    start = time.perf_counter()
    fits = (
        (*_fit(data, adapter, train_idx, mode=mode, lr=float(lr), **kwargs), float(lr))
        for lr in lrs
    )
    # the best on val, the first of equal ones (as in knn)
    val_score, test_score, info, lr = max(fits, key=lambda f: f[0].value, default=None)
    info = {**info, "lr": lr}
    settings = {
        **info,
        "lrs": list(map(float, lrs)),
        "mode": mode,
        **{k: kwargs[k] for k in ("epochs", "batch_size", "weight_decay", "warmup")},
    }
    return Outcome(test_score, val_score, settings, time.perf_counter() - start)


# ---------------------------------------------------------------------------- dispatch

PROTOCOLS = (
    "linear_probe",
    "knn",
    "finetune",
    "finetune_lora",
    "upernet_frozen",
    "upernet_finetune",
)


def applicable(protocol: str, task: str) -> bool:
    """Whether a protocol scores a task (global protocols: labels; UPerNet: masks)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    return (task == "segmentation") == protocol.startswith("upernet")


def run_protocol(
    protocol: str,
    data: BenchData,
    adapter: EncoderAdapter,
    *,
    label_fraction: float = 1.0,
    seed: int = 0,
    settings: dict | None = None,
    device="cpu",
    progress: bool = False,
    feature_cache: dict | None = None,
) -> Outcome:
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
            entry = (
                adapter,
                data,
                {
                    part: extract_features(
                        adapter,
                        _Mapped(getattr(data, part), tf),
                        data.task,
                        batch_size,
                        device,
                        progress,
                        f"{data.name} {part} features",
                    )
                    for part in ("train", "val", "test")
                },
            )
            cache[key] = entry
        feats = entry[2]
        x, y = feats["train"]
        idx = torch.as_tensor(train_idx)
        train = (x[idx], y[idx])
        if protocol == "linear_probe":
            return linear_probe(
                train,
                feats["val"],
                feats["test"],
                data.task,
                data.num_classes,
                seed=seed,
                device=device,
                **settings,
            )
        return knn(train, feats["val"], feats["test"], data.task, data.num_classes, **settings)
    if protocol in ("finetune", "finetune_lora"):
        return finetune(
            data,
            adapter,
            train_idx,
            lora=protocol == "finetune_lora",
            seed=seed,
            device=device,
            progress=progress,
            **settings,
        )
    return segmentation(
        data,
        adapter,
        train_idx,
        frozen=protocol == "upernet_frozen",
        seed=seed,
        device=device,
        progress=progress,
        **settings,
    )
