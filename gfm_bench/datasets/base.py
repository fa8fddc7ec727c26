"""What every GFM-Bench reader shares: splits, band metadata, crops, raster reads, samples.

A reader is a torch ``Dataset`` of geofm samples (:mod:`geofm.data.sample`): ``image``
float32 ``(C, H, W)`` in the files' values and channel order, ``wavelengths`` (nm) and
``bands`` from the dataset card's *true* band table, ``gsd`` in metres, and ``label``
(int64 scalar; multi-label: float32 multi-hot) or ``mask`` (int64 ``(H, W)``, 255 = ignore).

``modalities`` picks the optical channels, the radar channels, or both (stacked in the
order given); ``compat=True`` labels the channels the way the GFM-Bench loading script
does, where the card records that labelling (``gfmbench_compat_*``), so that published
numbers can be reproduced and the effect of the script's band labelling measured.

Two conventions of the GFM-Bench scripts (Si et al. 2025) are kept exactly:

* **Held-out validation** (:func:`heldout_val_split`): ``np.random.seed(42)``, shuffle
  ``arange(N_train)``, the first ``int(0.9 N)`` are train, the rest val.
* **96-px patching** (:data:`NINE_CROPS`): a 256 x 256 image gives 9 crops at row and
  column offsets {0, 80, 160}, in the order ``itertools.product(rows, cols)``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window
from torch.utils.data import Dataset

from geofm.data.cards import DatasetCard, load_dataset_card, load_sensor
from geofm.data.readers import open_dataset
from geofm.data.sample import IGNORE_INDEX, Sample, apply_label_lookup, make_sample

from .layouts import FoundLayout, check_root, get_spec

PathLike = str | os.PathLike

SPLITS = ("train", "val", "test")
MODALITIES = ("optical", "radar")

VAL_SEED = 42
VAL_FRACTION_TRAIN = 0.9

PATCH = 96
PATCH_STEP = 80  # 96-px crops with a 16-px overlap
FULL_SIZE = 256
NINE_CROPS: tuple[tuple[int, int], ...] = tuple(
    (row, col)
    for row in range(0, FULL_SIZE - PATCH + 1, PATCH_STEP)
    for col in range(0, FULL_SIZE - PATCH + 1, PATCH_STEP)
)
"""``(row_off, col_off)`` of the 9 crops of a 256 x 256 image, in the scripts' order."""


def heldout_val_split(n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and val parts of ``n_train`` training rows, as GFM-Bench cuts them.

    Same permutation as ``np.random.seed(42); np.random.shuffle(np.arange(n))`` (a legacy
    ``RandomState`` seeded alike gives the same stream) without touching numpy's global state.
    """
    indices = np.arange(n_train)
    np.random.RandomState(VAL_SEED).shuffle(indices)
    cut = int(VAL_FRACTION_TRAIN * n_train)
    return indices[:cut], indices[cut:]


def metadata_rows(
    path: Path, split: str, columns: Sequence[str], by: str = "split", heldout: bool = False
) -> list[tuple[str, ...]]:
    """The ``columns`` (stripped) of the rows of the ``metadata.csv`` at ``path`` whose column
    ``by`` is ``split``, in file order. ``heldout``: the file has train and test rows only;
    val is held out of the train rows (:func:`heldout_val_split`), train is the rest."""
    source = ("test" if split == "test" else "train") if heldout else split
    with open(path, newline="", encoding="utf-8") as f:
        rows = [
            tuple(row[c].strip() for c in columns)
            for row in csv.DictReader(f)
            if row[by].strip() == source
        ]
    if not heldout or split == "test":
        return rows
    train, val = heldout_val_split(len(rows))
    return [rows[i] for i in (train if split == "train" else val)]


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split


def read_raster(
    path: Path,
    *,
    what: str,
    bands: int | None = None,
    size: tuple[int, int] | None = None,
    window: Window | None = None,
    out_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Read every band of a GeoTIFF as float32 ``(C, H, W)`` (rasterio gives C x H x W
    whatever the interleave; tifffile, which the scripts use, gives H x W x C).

    ``bands``/``size`` are checked against the file (``size`` is ``(H, W)``);
    ``out_shape`` resamples bilinearly; ``window`` reads a part.
    """
    try:
        src = open_dataset(path)
    except OSError as err:  # FileNotFoundError included: the file and why, from geofm
        raise type(err)(f"{what}: {err}") from None
    with src:
        if bands is not None and src.count != bands:
            raise ValueError(f"{what} file {path} has {src.count} bands, expected {bands}")
        if size is not None and (src.height, src.width) != tuple(size):
            raise ValueError(
                f"{what} file {path} is {src.height} x {src.width} pixels, "
                f"expected {size[0]} x {size[1]}"
            )
        shape = None if out_shape is None else (src.count, *out_shape)
        # resampled only to another shape: a window of labels stays nearest-neighbour
        how = Resampling.nearest if shape is None else Resampling.bilinear
        return src.read(out_dtype="float32", window=window, out_shape=shape, resampling=how)


def label_mask(
    values: np.ndarray, mapping: Mapping[Any, Any], path: PathLike, unknown: int | None = None
) -> np.ndarray:
    """Class ids (int64) of a label raster band (float files included) through ``mapping``;
    a value it lacks becomes ``unknown`` or, when that is None, raises naming the file."""
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        raise ValueError(f"label file {path} holds NaN or infinite values")
    return apply_label_lookup(values.astype(np.int64), mapping, unknown, f"label file {path}")


class GFMBenchDataset(Dataset):
    """Base class of the GFM-Bench readers.

    Subclasses set :attr:`name` (registry name) and implement :meth:`_index` (build the list
    of items for ``self.split`` under ``self.base`` for ``self.layout``: ``self.items``, whose
    length times :attr:`crops_per_image` is the default ``__len__``) and :meth:`_read` (one
    item as arrays; :meth:`_item` finds an index's item and crop). :attr:`radar_reason` says
    why a dataset without radar channels has none; :attr:`compat_reason` why it has no
    compatibility labelling.

    Args:
        root: the dataset folder (see :func:`gfm_bench.datasets.check_root`).
        split: ``train``, ``val`` or ``test``.
        modalities: ``("optical",)`` (default), ``("radar",)`` or both; channels are stacked
            in the order given. Asking for radar of an optical-only dataset raises
            ``ValueError``.
        compat: label the channels as the GFM-Bench script does (see the module docs).

    Attributes: ``card``, ``layout`` (layout name), ``base`` (folder holding it), ``bands``,
    ``wavelengths`` (nm, float32 tensor), ``mean``/``std`` (per channel, for normalisation;
    None where the card has no statistics, as for NLCD-L).
    """

    name: ClassVar[str] = ""
    has_radar: ClassVar[bool] = False
    radar_reason: ClassVar[str] = "it has no radar channels"
    compat_reason: ClassVar[str] = (
        "its card records no gfmbench_compat_* band labelling: the "
        "script's band names and wavelengths equal the true ones"
    )
    crops_per_image: int = 1  # 9 where each 256 x 256 image is cut into NINE_CROPS
    items: list[Any]

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        modalities: Sequence[str] = ("optical",),
        compat: bool = False,
    ) -> None:
        self.spec = get_spec(self.name)
        self.card: DatasetCard = load_dataset_card(self.spec.card)
        self.split = check_split(split)
        self.modalities = self._check_modalities(modalities)
        self.compat = bool(compat)
        if self.compat and self.compat_reason:
            raise ValueError(f"{self.name}: compat=True is not available: {self.compat_reason}")
        names, wavelengths, mean, std = self._channels()
        self.bands: tuple[str, ...] = tuple(names)
        self.wavelengths = torch.tensor(wavelengths, dtype=torch.float32)
        self.mean: tuple[float, ...] | None = None if mean is None else tuple(mean)
        self.std: tuple[float, ...] | None = None if std is None else tuple(std)
        self.gsd = float(self.card.gsd_m)  # metres per pixel, as the files deliver it
        self.root = Path(root)
        found: FoundLayout = check_root(self.name, self.root)
        self.layout: str = found.layout.name
        self.base: Path = found.base
        self._index()

    # -- modalities and band metadata ----------------------------------------------------------

    def _check_modalities(self, modalities: Sequence[str]) -> tuple[str, ...]:
        if isinstance(modalities, str):
            raise TypeError(
                f"modalities must be a sequence such as ('optical',), got the string {modalities!r}"
            )
        mods = tuple(modalities)
        unknown = [m for m in mods if m not in MODALITIES]
        if not mods or unknown or len(set(mods)) != len(mods):
            raise ValueError(f"modalities must be distinct names from {MODALITIES}, got {mods}")
        if "radar" in mods and not self.has_radar:
            raise ValueError(
                f"{self.name} has no radar modality: {self.radar_reason}; use "
                "modalities=('optical',)"
            )
        return mods

    def optical_channels(self) -> tuple[list[str], list[float], list | None, list | None]:
        """Names, wavelengths (nm), mean and std of the optical channels, in file order
        (mean and std None where the card has no statistics)."""
        card = self.card
        return (
            list(card.band_names),
            list(card.wavelengths_nm),
            None if card.mean is None else list(card.mean),
            None if card.std is None else list(card.std),
        )

    def radar_channels(self) -> tuple[list[str], list[float], list[float], list[float]]:
        """Names, pseudo-wavelengths, mean and std of the radar channels, in file order."""
        names = list(self.card["radar_bands"]["bands"])
        sensor = load_sensor(self.card["radar_bands"]["sensor"])
        stats = self.card["radar_statistics"]
        order = [list(stats["bands"]).index(n) for n in names]
        return (
            names,
            sensor.wavelengths(names),
            [stats["mean"][i] for i in order],
            [stats["std"][i] for i in order],
        )

    def _channels(self) -> tuple[list[str], list[float], list | None, list | None]:
        parts = {"optical": self.optical_channels, "radar": self.radar_channels}
        names, wavelengths, means, stds = zip(*(parts[m]() for m in self.modalities), strict=True)

        def joined(values: tuple) -> list | None:  # None where a modality has no statistics
            return None if any(v is None for v in values) else [float(x) for v in values for x in v]

        return [n for part in names for n in part], joined(wavelengths), joined(means), joined(stds)

    # -- items ------------------------------------------------------------------------------

    def _index(self) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.items) * self.crops_per_image

    def _item(self, index: int) -> tuple[Any, dict[str, Any]]:
        """The item holding ``index`` and the :func:`read_raster` arguments of its crop (none
        where images are read whole)."""
        image, k = divmod(index, self.crops_per_image)
        if self.crops_per_image == 1:
            return self.items[image], {}
        row, col = NINE_CROPS[k]
        window = Window(col_off=col, row_off=row, width=PATCH, height=PATCH)
        return self.items[image], {"size": (FULL_SIZE, FULL_SIZE), "window": window}

    def _read(self, index: int) -> dict[str, np.ndarray]:
        """Arrays of one item: ``optical`` and/or ``radar`` ``(C, H, W)`` (those asked for),
        and ``label`` or ``mask``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} {self.split} ({n} items)")
        index = index % n
        arrays = self._read(index)
        image = np.concatenate([arrays[m] for m in self.modalities], axis=0)
        extra: dict[str, Any] = {}
        if "mask" in arrays:
            extra["mask"] = torch.as_tensor(arrays["mask"], dtype=torch.int64)
        else:
            label = arrays["label"]
            dtype = torch.float32 if np.ndim(label) else torch.int64
            extra["label"] = torch.as_tensor(label, dtype=dtype)
        return make_sample(
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            self.wavelengths,
            self.gsd,
            self.bands,
            **extra,
        )

    # -- conveniences ---------------------------------------------------------------------

    @property
    def classes(self) -> tuple[str, ...]:
        return self.card.classes

    @property
    def num_classes(self) -> int:
        return self.card.num_classes

    @property
    def ignore_index(self) -> int:
        return IGNORE_INDEX

    def plot(self, sample: Sample, title: str | None = None):
        """RGB composite (bands nearest 640/550/470 nm), with the class map or class name."""
        from geofm.data.plot import plot_sample

        return plot_sample(sample, classes=self.classes, title=title)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"layout={self.layout!r}, modalities={self.modalities}, compat={self.compat}, "
            f"{len(self)} items, {len(self.bands)} channels)"
        )
