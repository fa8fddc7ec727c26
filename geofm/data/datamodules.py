"""LightningDataModules for scene classification and pretraining.

Hyperspectral pixel classification sets up its splits and loaders in
:mod:`geofm.tasks.pixel_protocol` (``geofm classify-pixels``).

* :class:`SceneFolderDataModule`: a folder per class (EuroSAT layout), split at random and
  stratified by class into train / val / test.
* :class:`PretrainDataModule`: unlabelled random windows of several sensors for
  masked-autoencoder pretraining, each batch one band set.

Both build their datasets in :meth:`setup` and collate with
:func:`geofm.data.sample.collate_samples`; the scene module chooses validation data never
from the test part.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Subset

from geofm.data.cards import DatasetCard, as_dataset_card, card_statistics
from geofm.data.datasets import SceneFolderDataset, Transform
from geofm.data.readers import RASTER_SUFFIXES
from geofm.data.sample import sample_loader
from geofm.data.splits import stratified_split

PathLike = str | os.PathLike


class SplitDataModule(L.LightningDataModule):
    """Train and val loaders (:func:`~geofm.data.sample.sample_loader`) over ``self.parts``
    (``{"train": ds, "val": ds, ...}``, filled by ``setup``): training batches shuffled by
    torch's global generator, the last partial one dropped where ``drop_last_train``."""

    drop_last_train = False

    def __init__(self, batch_size: int, num_workers: int) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.parts: dict[str, Any] = {}

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        if part not in self.parts:
            raise RuntimeError(f"no {part} data yet: call setup() first")
        return sample_loader(
            self.parts[part],
            self.batch_size,
            shuffle,
            num_workers=self.num_workers,
            drop_last=shuffle and self.drop_last_train,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False)


class SceneFolderDataModule(SplitDataModule):
    """Scene classification from a folder per class, split stratified by class.

    Args:
        root: dataset folder (one sub-folder per class), see :class:`SceneFolderDataset`.
        card: dataset card name or object.
        batch_size: samples per batch.
        val_fraction, test_fraction: fraction of each class for val and test; train gets
            the rest (at least one scene per class).
        seed: seed of the split (the loaders' shuffling follows Lightning's seed).
        num_workers: DataLoader workers.
        train_transforms: applied to training samples (augmentation, normalisation).
        eval_transforms: applied to val and test samples.
        bands: band names to read; default all of the card's.
        classes: subset of the card's classes; default all.
        augment: without ``train_transforms``, flip and rotate training scenes at random
            (the eight symmetries of the square).

    After :meth:`setup`, ``split`` holds the indices into ``targets`` of each part.
    """

    def __init__(
        self,
        root: PathLike,
        card: str | DatasetCard = "eurosat_ms",
        batch_size: int = 32,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        num_workers: int = 0,
        train_transforms: Transform | None = None,
        eval_transforms: Transform | None = None,
        bands: Sequence[str] | None = None,
        classes: Sequence[str] | None = None,
        augment: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if augment and train_transforms is None:
            from geofm.data.transforms import (
                Compose,
                RandomHorizontalFlip,
                RandomRotate90,
                RandomVerticalFlip,
            )

            train_transforms = Compose(
                [RandomHorizontalFlip(), RandomVerticalFlip(), RandomRotate90()]
            )
        for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= f < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {f}")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
            )
        self.save_hyperparameters(ignore=["train_transforms", "eval_transforms", "card"])
        self.root, self.card, self.bands, self.classes = root, card, bands, classes
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.train_transforms, self.eval_transforms = train_transforms, eval_transforms
        self.split = None

    def _dataset(self, transforms: Transform | None) -> SceneFolderDataset:
        return SceneFolderDataset(
            self.root, card=self.card, bands=self.bands, transforms=transforms, classes=self.classes
        )

    def setup(self, stage: str | None = None) -> None:
        if self.parts:
            return
        train_ds = self._dataset(self.train_transforms)
        eval_ds = self._dataset(self.eval_transforms)
        train = 1.0 - self.val_fraction - self.test_fraction
        self.split = stratified_split(
            train_ds.targets, train=train, val=self.val_fraction, seed=self.seed
        )
        self.dataset = eval_ds
        self.parts = {
            "train": Subset(train_ds, self.split.train.tolist()),
            "val": Subset(eval_ds, self.split.val.tolist()),
            "test": Subset(eval_ds, self.split.test.tolist()),
        }

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    @property
    def num_classes(self) -> int:
        self.setup()
        return self.dataset.num_classes


@dataclass
class PretrainSource:
    """One source of unlabelled pretraining windows.

    Args:
        path: a raster file, an ENVI cube (``.hdr``) or a folder searched recursively for
            them. A relative path that does not exist from the working directory is looked
            up in geofm's data folder (``datasets/``, or ``$GEOFM_DATA_DIR``).
        card: dataset card naming the bands and giving the normalisation statistics.
        size: window side in pixels (a multiple of the model's patch size).
        windows: training windows per epoch (default: one per window-sized tile of data).
    """

    path: str
    card: str
    size: int = 64
    windows: int | None = None


def _source_files(path: str) -> list[Path]:
    from geofm.data.cards import data_dir

    p = Path(path)
    if not p.exists() and not p.is_absolute() and (data_dir() / p).exists():
        p = data_dir() / p
    if not p.exists():
        raise FileNotFoundError(
            f"pretraining source not found: {path} (also looked in {data_dir()})"
        )
    if p.is_file():
        return [p]
    files = sorted(
        f
        for f in p.rglob("*")
        if f.is_file() and (f.suffix.lower() in RASTER_SUFFIXES or f.suffix.lower() == ".hdr")
    )
    if not files:
        raise FileNotFoundError(f"no GeoTIFF, JPEG 2000 or ENVI (.hdr) files under {p}")
    return files


class PretrainDataModule(SplitDataModule):
    """Unlabelled windows from several sources, batched so that a batch holds one band set.

    Args:
        sources: :class:`PretrainSource` entries (one band set each); sensors mix in a run.
        batch_size: windows per batch.
        val_windows: fixed validation windows per source (drawn with another seed).
        flips: random horizontal and vertical flips of training windows.
        num_workers: DataLoader workers.
        seed: seed of the window draws and of the batch order.

    Each epoch draws new windows and a new batch order. For several processes (DDP) run the
    trainer with ``use_distributed_sampler: false``: the batch sampler shards itself.
    Windows are normalised with the card's statistics as in the LESS ViT recipe
    (:class:`~geofm.data.transforms.MAEScaleNormalize`); a card without statistics is
    refused with a message saying how to compute them (``geofm stats``).
    """

    def __init__(
        self,
        sources: Sequence[PretrainSource | dict],
        batch_size: int = 8,
        val_windows: int = 8,
        flips: bool = True,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if not sources:
            raise ValueError("PretrainDataModule needs at least one source")
        self.sources = [
            s if isinstance(s, PretrainSource) else PretrainSource(**s) for s in sources
        ]
        self.val_windows, self.flips, self.seed = val_windows, flips, seed

    def setup(self, stage: str | None = None) -> None:
        from geofm.data.windows import RandomWindowDataset

        if self.parts:  # already set up (geofm pretrain checks the data before fit)
            return

        def windows(files, src: PretrainSource, length, seed: int, flips: bool):
            transforms = mae_transforms([src.card], flips)
            return RandomWindowDataset(files, src.size, length, src.card, seed, transforms)

        train, val = [], []
        for k, src in enumerate(self.sources):
            files, seed = _source_files(src.path), self.seed * 1000 + k
            train.append(windows(files, src, src.windows, seed, self.flips))
            if self.val_windows:
                val.append(windows(files, src, self.val_windows, seed + 500, False))
        self.parts = {"train": train, "val": val}

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        from geofm.data.windows import BandSetBatchSampler, EpochConcatDataset

        if part not in self.parts:
            raise RuntimeError(f"no {part} data yet: call setup() first")
        datasets = self.parts[part]
        sampler = BandSetBatchSampler.for_datasets(
            datasets, batch_size=self.batch_size, shuffle=shuffle, seed=self.seed, with_epoch=True
        )
        return sample_loader(
            EpochConcatDataset(datasets), batch_sampler=sampler, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False) if self.parts.get("val") else []

    def data_config(self) -> list[dict[str, Any]]:
        """Bands, wavelengths, GSD and normalisation of every source (for exported weights)."""
        return pretrain_data_config(self.sources)


def mae_transforms(cards: Sequence[str], flips: bool):
    """The LESS ViT pretraining input transform for samples holding the bands of ``cards``
    in order: each band's ``mean +- 2 std`` scaled to [0, 1] with the cards' statistics,
    then (``flips``) random horizontal and vertical flips."""
    from geofm.data.transforms import (
        Compose,
        MAEScaleNormalize,
        RandomHorizontalFlip,
        RandomVerticalFlip,
    )

    mean, std, bands = [], [], []
    for name in cards:
        card_mean, card_std, card_bands = card_statistics(as_dataset_card(name))
        mean, std, bands = mean + card_mean, std + card_std, bands + card_bands
    steps = [MAEScaleNormalize(mean, std, bands=bands)]
    if flips:
        steps += [RandomHorizontalFlip(), RandomVerticalFlip()]
    return Compose(steps)


def pretrain_data_config(sources: Sequence[PretrainSource]) -> list[dict[str, Any]]:
    """What an encoder pretrained on ``sources`` expects of its input, one entry per source:
    card, band names, wavelengths, GSD and the normalisation, as plain Python values."""
    entries = []
    for src in sources:
        card = as_dataset_card(src.card)
        entries.append(
            {
                "card": card.name,
                "bands": list(card.band_names),
                "wavelengths_nm": [float(w) for w in card.wavelengths_nm],
                "gsd_m": float(card.gsd_m),
                "window_px": int(src.size),
                "normalisation": "(x - (mean - 2 std)) / (4 std), clipped to [0, 1]",
                "mean": [float(v) for v in card.mean] if card.mean else None,
                "std": [float(v) for v in card.std] if card.std else None,
            }
        )
    return entries
