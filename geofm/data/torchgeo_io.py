"""torchgeo datasets as geofm pretraining data: their samples in geofm's sample contract.

torchgeo's non-geo datasets return ``{"image": (k*C, H, W), ...}`` without band names, and
multi-season datasets stack ``k`` seasons along the channels. :class:`TorchGeoSamples`
takes one season at random (the LESS ViT recipe on SSL4EO-S12: "one random season"), names
the bands, wavelengths and GSD from geofm dataset cards, joins index-aligned datasets band
by band (SSL4EO-S12's Sentinel-2 and Sentinel-1 splits) and crops; the data module builds
the torchgeo datasets from their dotted class paths, so a config can name any of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from geofm.data.cards import as_dataset_card
from geofm.data.datamodules import (
    PretrainSource,
    SplitDataModule,
    mae_transforms,
    pretrain_data_config,
)
from geofm.data.sample import Sample, make_sample

__all__ = ["TorchGeoSamples", "TorchGeoPretrainDataModule", "import_class"]


def import_class(path: str) -> type:
    """``"torchgeo.datasets.SSL4EOS12"`` -> the class.

    Only a dataset class is returned (a subclass of ``torch.utils.data.Dataset``): a config
    naming any other callable (``subprocess.run``, say) is refused before it is called.
    """
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(
            f"cannot import {path!r}; give a dotted path such as 'torchgeo.datasets.SSL4EOS12'"
        ) from None
    if not (isinstance(found, type) and issubclass(found, Dataset)):
        raise ValueError(
            f"{path!r} is not a dataset class (a torch.utils.data.Dataset); "
            "give one such as 'torchgeo.datasets.SSL4EOS12'"
        )
    return found


class TorchGeoSamples(Dataset):
    """Samples of one or more index-aligned torchgeo datasets as geofm samples.

    Args:
        parts: ``(dataset, card)`` pairs; item ``i`` of every dataset shows the same place
            (SSL4EO-S12's ``s2c`` and ``s1`` splits do). Their bands are joined in order,
            each named by its card (in the dataset's channel order).
        crop: crop side in pixels, the same window for every band (None: whole).
        random_crop: a random window (training) or the centre one (validation).
        transforms: applied after the crop (normalisation, flips).

    A dataset whose image stacks k seasons (k * C channels) contributes one of them, drawn
    at random, as in the LESS ViT recipe ("one random season").
    """

    def __init__(
        self,
        parts: Sequence[tuple[Dataset, str]],
        crop: int | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
        random_crop: bool = True,
    ) -> None:
        from geofm.data.transforms import CenterCrop, RandomCrop

        if not parts:
            raise ValueError("TorchGeoSamples needs at least one dataset")
        self.parts = [(dataset, as_dataset_card(card)) for dataset, card in parts]
        lengths = {len(dataset) for dataset, _ in self.parts}
        if len(lengths) > 1:
            raise ValueError(f"paired datasets differ in length: {sorted(lengths)}")
        self.crop = (RandomCrop(crop) if random_crop else CenterCrop(crop)) if crop else None
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.parts[0][0])

    def _season(self, dataset: Dataset, card, index: int) -> torch.Tensor:
        image = torch.as_tensor(dataset[index]["image"]).float()
        bands = len(card.bands)
        if image.ndim != 3 or image.shape[0] % bands:
            raise ValueError(
                f"{type(dataset).__name__}[{index}] has an image of shape "
                f"{tuple(image.shape)}, not a whole number of {card.name}'s "
                f"{bands} bands"
            )
        seasons = image.shape[0] // bands
        k = int(torch.randint(seasons, ())) if seasons > 1 else 0
        return image[k * bands : (k + 1) * bands]

    def __getitem__(self, index: int) -> Sample:
        images = [self._season(dataset, card, index) for dataset, card in self.parts]
        shapes = {tuple(im.shape[1:]) for im in images}
        if len(shapes) > 1:
            raise ValueError(f"paired images of item {index} differ in size: {sorted(shapes)}")
        cards = [card for _, card in self.parts]
        sample = make_sample(
            torch.cat(images),
            [w for c in cards for w in c.wavelengths_nm],
            cards[0].gsd_m,
            [b for c in cards for b in c.band_names],
        )
        if self.crop is not None:
            sample = self.crop(sample)
        return self.transforms(sample) if self.transforms else sample


class TorchGeoPretrainDataModule(SplitDataModule):
    """Pretraining batches from a torchgeo dataset, normalised with the card's statistics.

    Args:
        dataset_class: dotted path of the torchgeo dataset class.
        dataset_kwargs: its keyword arguments (``root``, ``split``, ``download`` ...).
        card: geofm dataset card of its bands (for SSL4EO-S12 L1C: ``ssl4eo_s12_l1c``).
        paired: more datasets whose bands join the first's, item by item, each a dict with
            ``dataset_kwargs``, ``card`` and optionally ``dataset_class`` (default: the
            first's); for SSL4EO-S12, the ``s1`` split with card ``ssl4eo_s12_s1``.
        crop: random crop side (the paper: 128).
        num_samples: use the first ``num_samples`` items (default: all).
        val_samples: items kept apart at the end for validation.
        batch_size, num_workers, flips, seed: as usual (training drops a last partial batch).
    """

    drop_last_train = True

    def __init__(
        self,
        dataset_class: str,
        dataset_kwargs: dict[str, Any] | None = None,
        card: str = "ssl4eo_s12_l1c",
        paired: list[dict[str, Any]] | None = None,
        crop: int | None = 128,
        num_samples: int | None = None,
        val_samples: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
        flips: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.dataset_class, self.dataset_kwargs = dataset_class, dict(dataset_kwargs or {})
        self.card, self.crop = card, crop
        self.paired = [dict(p) for p in (paired or [])]
        for p in self.paired:
            if "card" not in p:
                raise ValueError(f"a paired dataset needs a card: {p}")
        self.num_samples, self.val_samples = num_samples, val_samples
        self.flips, self.seed = flips, seed

    def _cards(self) -> list[str]:
        return [self.card] + [p["card"] for p in self.paired]

    @staticmethod
    def _build(dataset_class: str, kwargs: dict[str, Any]) -> Dataset:
        cls = import_class(dataset_class)
        try:
            return cls(**kwargs)
        except Exception as err:  # torchgeo's DatasetNotFoundError says what to do
            if type(err).__name__ == "DatasetNotFoundError":
                raise FileNotFoundError(str(err)) from None
            raise

    def setup(self, stage: str | None = None) -> None:
        if self.parts:  # already set up (geofm pretrain checks the data before fit)
            return
        datasets = [self._build(self.dataset_class, self.dataset_kwargs)]
        datasets += [
            self._build(p.get("dataset_class", self.dataset_class), p.get("dataset_kwargs", {}))
            for p in self.paired
        ]
        total = (
            len(datasets[0])
            if self.num_samples is None
            else min(self.num_samples, len(datasets[0]))
        )
        if self.val_samples >= total:
            raise ValueError(
                f"val_samples={self.val_samples} leaves nothing of {total} to train on"
            )
        cards = self._cards()

        def part(indices, train):
            return TorchGeoSamples(
                [(Subset(d, indices), c) for d, c in zip(datasets, cards, strict=True)],
                self.crop,
                mae_transforms(cards, self.flips and train),
                random_crop=train,
            )

        self.parts = {
            "train": part(range(total - self.val_samples), True),
            "val": part(range(total - self.val_samples, total), False),
        }

    def val_dataloader(self) -> DataLoader | list:
        return super().val_dataloader() if self.val_samples else []

    def data_config(self) -> list[dict[str, Any]]:
        return pretrain_data_config(
            [
                PretrainSource(
                    path=str(self.dataset_kwargs.get("root")), card=card, size=self.crop or 0
                )
                for card in self._cards()
            ]
        )
