"""The GFM-Bench datasets: a registry, one reader per dataset, and the loader of the protocols.

GFM-Bench (Si et al., "Towards Scalable Foundation Model for Multi-modal and Hyperspectral
Geospatial Data", 2025) evaluates on seven datasets, each hosted as the Hugging Face dataset
``GFM-Bench/<Name>``. Each reader reads the extracted files directly (no loading script,
no ``datasets<4``) and yields geofm samples (:mod:`geofm.data.sample`).

=============== ================ ===================================== ===========================
name            task             reader                                layouts read
=============== ================ ===================================== ===========================
``eurosat``     classification   :class:`~.eurosat.EuroSAT`            old (script-verified)
``bigearthnet`` multilabel       :class:`~.bigearthnet.BigEarthNet`    old (script-verified)
``so2sat``      classification   :class:`~.so2sat.So2Sat`              old (script-verified)
``segmunich``   segmentation     :class:`~.segmunich.SegMunich`        final (partly), old
``dfc2020``     segmentation     :class:`~.dfc2020.DFC2020`            final (partly), old
``marida``      segmentation     :class:`~.marida.MARIDA`              old (script-verified)
``nlcd_l``      segmentation     :class:`~.nlcd_l.NLCDL`               torchgeo (PROBABLE)
=============== ================ ===================================== ===========================

* :data:`DATASETS`: name -> :class:`~.layouts.DatasetSpec` (card, task, Hub repository,
  archive names, layouts with their required files, reader).
* :func:`check_root`: which layout a folder holds, or a :class:`DatasetNotFoundError`
  naming what is missing and how to download it.
* :func:`open_split`: one split as a torch ``Dataset``.
* :func:`load_bench_data`: the three splits as a :class:`gfm_bench.protocols.BenchData`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from geofm.data.cards import load_dataset_card

from .base import NINE_CROPS, SPLITS, GFMBenchDataset, heldout_val_split
from .layouts import (
    SPECS,
    DatasetNotFoundError,
    DatasetSpec,
    FoundLayout,
    Layout,
    UnverifiedLayoutWarning,
    check_root,
    get_spec,
)

if TYPE_CHECKING:
    from gfm_bench.protocols import BenchData

PathLike = str | os.PathLike

DATASETS: dict[str, DatasetSpec] = SPECS
"""The registry: dataset name -> :class:`DatasetSpec`."""

__all__ = [
    "DATASETS",
    "SPLITS",
    "NINE_CROPS",
    "DatasetNotFoundError",
    "DatasetSpec",
    "FoundLayout",
    "GFMBenchDataset",
    "Layout",
    "UnverifiedLayoutWarning",
    "check_root",
    "get_spec",
    "heldout_val_split",
    "list_datasets",
    "load_bench_data",
    "open_split",
]


def list_datasets() -> list[str]:
    """Names of the GFM-Bench datasets, sorted."""
    return sorted(DATASETS)


def open_split(name: str, root: PathLike, split: str, **kwargs) -> GFMBenchDataset:
    """One split of a dataset: ``reader(root, split, **kwargs)`` (``modalities``, ``compat``).

    Raises:
        KeyError: an unknown dataset name (the message lists the known ones).
        DatasetNotFoundError: ``root`` does not hold the dataset.
        ValueError: an unknown split, modality, or a ``compat`` the dataset has not.
    """
    return get_spec(name).reader_class()(root, split, **kwargs)


def load_bench_data(
    name: str, root: PathLike, modalities: Sequence[str] = ("optical",), compat: bool = False
) -> BenchData:
    """Train, val and test splits of a dataset as :class:`gfm_bench.protocols.BenchData`.

    ``mean``/``std``/``bands`` describe the channels the samples carry (optical and radar
    statistics from the card, in channel order; with ``compat`` the script's labels), so
    normalisation matches whatever ``modalities``/``compat`` chose. ``crop``/``upscale``
    come from the card's ``protocol``; ``train_labels`` (classification) from the reader's
    ``labels``, read without opening an image.
    """
    from gfm_bench.protocols import BenchData

    spec = get_spec(name)
    card = load_dataset_card(spec.card)
    splits = {s: open_split(name, root, s, modalities=modalities, compat=compat) for s in SPLITS}
    train = splits["train"]
    protocol = card.extra.get("protocol") or {}
    return BenchData(
        name=name,
        task=card.task,
        num_classes=card.num_classes,
        train=train,
        val=splits["val"],
        test=splits["test"],
        card=card,
        mean=train.mean,
        std=train.std,
        bands=train.bands,
        classes=card.classes,
        crop=None if protocol.get("crop") is None else int(protocol["crop"]),
        upscale=float(protocol.get("upscale", 1.0)),
        train_labels=getattr(train, "labels", None) if card.task == "classification" else None,
    )
