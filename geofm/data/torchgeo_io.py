"""torchgeo datasets as geofm pretraining data: their samples in geofm's sample contract.

torchgeo's non-geo datasets return ``{"image": (k*C, H, W), ...}`` without band names, and
multi-season datasets stack ``k`` seasons along the channels. :class:`TorchGeoSamples`
takes one season at random (the LESS ViT recipe on SSL4EO-S12: "one random season"), names
the bands, wavelengths and GSD from a geofm dataset card and crops; the data module builds
the torchgeo dataset from its dotted class path, so a config can name any of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from geofm.data.cards import as_dataset_card
from geofm.data.sample import Sample, collate_samples, make_sample

__all__ = ["TorchGeoSamples", "TorchGeoPretrainDataModule", "import_class"]


def import_class(path: str) -> type:
    """``"torchgeo.datasets.SSL4EOS12"`` -> the class."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"cannot import {path!r}; give a dotted path such as "
                         "'torchgeo.datasets.SSL4EOS12'") from None


class TorchGeoSamples(Dataset):
    """A torchgeo dataset's samples as geofm samples.

    Args:
        dataset: the torchgeo dataset (``sample["image"]``: (k * C, H, W)).
        card: geofm dataset card of its bands, in the dataset's channel order.
        crop: random crop side in pixels (None: whole images).
        transforms: applied after the crop (normalisation, flips).
    """

    def __init__(self, dataset: Dataset, card: str, crop: int | None = None,
                 transforms: Callable[[Sample], Sample] | None = None) -> None:
        from geofm.data.transforms import RandomCrop

        self.dataset, self.card = dataset, as_dataset_card(card)
        self.crop = RandomCrop(crop) if crop else None
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        image = torch.as_tensor(self.dataset[index]["image"]).float()
        bands = len(self.card.bands)
        if image.ndim != 3 or image.shape[0] % bands:
            raise ValueError(f"{type(self.dataset).__name__}[{index}] has an image of shape "
                             f"{tuple(image.shape)}, not a whole number of {self.card.name}'s "
                             f"{bands} bands")
        seasons = image.shape[0] // bands
        k = int(torch.randint(seasons, ())) if seasons > 1 else 0
        sample = make_sample(image[k * bands:(k + 1) * bands], self.card.wavelengths_nm,
                             self.card.gsd_m, self.card.band_names)
        if self.crop is not None:
            sample = self.crop(sample)
        return self.transforms(sample) if self.transforms else sample


class TorchGeoPretrainDataModule(L.LightningDataModule):
    """Pretraining batches from a torchgeo dataset, normalised with the card's statistics.

    Args:
        dataset_class: dotted path of the torchgeo dataset class.
        dataset_kwargs: its keyword arguments (``root``, ``split``, ``download`` ...).
        card: geofm dataset card of its bands (for SSL4EO-S12 L1C: ``ssl4eo_s12_l1c``).
        crop: random crop side (the paper: 128).
        num_samples: use the first ``num_samples`` items (default: all).
        val_samples: items kept apart at the end for validation.
        batch_size, num_workers, flips, seed: as usual.
    """

    def __init__(self, dataset_class: str, dataset_kwargs: dict[str, Any] | None = None,
                 card: str = "ssl4eo_s12_l1c", crop: int | None = 128,
                 num_samples: int | None = None, val_samples: int = 0, batch_size: int = 8,
                 num_workers: int = 0, flips: bool = True, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset_class, self.dataset_kwargs = dataset_class, dict(dataset_kwargs or {})
        self.card, self.crop = card, crop
        self.num_samples, self.val_samples = num_samples, val_samples
        self.batch_size, self.num_workers = batch_size, num_workers
        self.flips, self.seed = flips, seed
        self.parts: dict[str, Dataset] = {}

    def _transforms(self, train: bool):
        from geofm.data.transforms import (
            Compose,
            MAEScaleNormalize,
            RandomHorizontalFlip,
            RandomVerticalFlip,
        )

        steps = [MAEScaleNormalize.from_card(self.card)]
        if train and self.flips:
            steps += [RandomHorizontalFlip(), RandomVerticalFlip()]
        return Compose(steps)

    def setup(self, stage: str | None = None) -> None:
        cls = import_class(self.dataset_class)
        try:
            dataset = cls(**self.dataset_kwargs)
        except Exception as err:  # torchgeo's DatasetNotFoundError says what to do
            if type(err).__name__ == "DatasetNotFoundError":
                raise FileNotFoundError(str(err)) from None
            raise
        total = len(dataset) if self.num_samples is None else min(self.num_samples,
                                                                   len(dataset))
        if self.val_samples >= total:
            raise ValueError(f"val_samples={self.val_samples} leaves nothing of {total} to "
                             "train on")
        train_idx = range(total - self.val_samples)
        val_idx = range(total - self.val_samples, total)
        self.parts = {
            "train": TorchGeoSamples(Subset(dataset, train_idx), self.card, self.crop,
                                     self._transforms(True)),
            "val": TorchGeoSamples(Subset(dataset, val_idx), self.card, self.crop,
                                   self._transforms(False)),
        }

    def _loader(self, part: str, shuffle: bool) -> DataLoader:
        if part not in self.parts:
            raise RuntimeError(f"no {part} data yet: call setup() first")
        return DataLoader(self.parts[part], batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=collate_samples,
                          persistent_workers=self.num_workers > 0, drop_last=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False) if self.val_samples else []

    def data_config(self) -> list[dict[str, Any]]:
        from geofm.data.datamodules import PretrainSource, pretrain_data_config

        return pretrain_data_config([PretrainSource(path=str(self.dataset_kwargs.get("root")),
                                                    card=self.card, size=self.crop or 0)])
