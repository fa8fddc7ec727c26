"""Random windows of large scenes, and batches that never mix band sets.

For pretraining, a scene is a source of windows, not an item: :class:`RandomWindowDataset`
draws ``size x size`` windows from GeoTIFF / JPEG 2000 rasters and ENVI cubes and reads only
that window from disk, so a scene never has to fit in memory. :class:`BandSetBatchSampler`
builds batches whose samples share one band set, which the models require, while several
sensors (say 13-band Sentinel-2 and 204-band AVIRIS) are mixed within one run.
"""

from __future__ import annotations

import bisect
import os
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from rasterio.errors import RasterioError
from torch.utils.data import ConcatDataset, Dataset, Sampler

from geofm.data.cards import DatasetCard, SensorCard, as_card
from geofm.data.hyperspectral import envi_paths, is_envi, open_scene, read_envi_header
from geofm.data.readers import RASTER_SUFFIXES, open_dataset
from geofm.data.sample import Sample

__all__ = ["RandomWindowDataset", "BandSetBatchSampler", "EpochConcatDataset", "scene_header"]

PathLike = str | os.PathLike
Transform = Callable[[Sample], Sample]


def scene_header(path: PathLike) -> tuple[int, int, int]:
    """(bands, height, width) of a raster file or ENVI cube, from its header alone."""
    path = Path(path)
    if is_envi(path):
        header = read_envi_header(path if path.suffix.lower() == ".hdr" else envi_paths(path)[0])
        return int(header["bands"]), int(header["lines"]), int(header["samples"])
    if path.suffix.lower() in RASTER_SUFFIXES:
        with open_dataset(path) as src:
            return src.count, src.height, src.width
    raise ValueError(
        f"{path}: random windows are read from GeoTIFF/JPEG 2000 files or ENVI cubes "
        f"(.hdr); got {path.suffix or 'no suffix'}. Convert .mat cubes with geofm.data.open_mat "
        "and save them as GeoTIFF"
    )


class RandomWindowDataset(Dataset):
    """``length`` random windows of ``size`` x ``size`` pixels from one or more scenes.

    Args:
        paths: raster files (GeoTIFF, JPEG 2000) or ENVI cubes of one band set.
        size: window side in pixels.
        length: windows per epoch (default: one per window-sized tile of the scenes).
        card: dataset or sensor card naming the bands (as for :func:`open_raster`).
        seed: windows are drawn from ``(seed, epoch, index)``, so an epoch is reproducible
            and :meth:`set_epoch` gives the next one new windows.
        transforms: applied to each sample.

    Scenes are chosen in proportion to how many windows they hold. Windows lie wholly inside
    their scene; pixels the scene marks as nodata come back False in ``valid``.

    A file that fails to read (corrupt, truncated, gone) is skipped with a warning naming it
    and left out of later draws; another window is drawn in its place and the sample lists
    the skipped files under ``"skipped"`` (the pretraining task counts them in its log).
    After ``max_failures`` failures in a row the read raises, naming the files.
    """

    def __init__(
        self,
        paths: Sequence[PathLike],
        size: int,
        length: int | None = None,
        card: str | DatasetCard | SensorCard | None = None,
        seed: int = 0,
        transforms: Transform | None = None,
        max_failures: int = 10,
    ) -> None:
        if not paths:
            raise ValueError("RandomWindowDataset needs at least one scene")
        if size < 1 or (length is not None and length < 1):
            raise ValueError(f"size and length must be positive, got {size} and {length}")
        self.paths = [Path(p) for p in paths]
        for p in self.paths:
            if not p.exists():
                raise FileNotFoundError(f"scene not found: {p}")
        headers = [scene_header(p) for p in self.paths]
        self.shapes = [(h, w) for _, h, w in headers]
        if card is not None:
            expected = len(as_card(card).bands)
            for p, (count, _, _) in zip(self.paths, headers, strict=True):
                if count != expected:
                    raise ValueError(
                        f"{p} has {count} band(s) but card {as_card(card).name!r} has "
                        f"{expected}; random windows are read from files holding every band "
                        "(stack single-band files first)"
                    )
        small = [
            (p, s)
            for p, s in zip(self.paths, self.shapes, strict=True)
            if s[0] < size or s[1] < size
        ]
        if small:
            p, (h, w) = small[0]
            raise ValueError(f"{p} is {h} x {w} pixels, smaller than the {size} x {size} window")
        if length is None:
            length = sum((h // size) * (w // size) for h, w in self.shapes)
        self.size, self.length, self.card = size, length, card
        self.seed, self.epoch = seed, 0
        self.transforms = transforms
        self.max_failures = max_failures
        self._counts = np.array([(h - size + 1) * (w - size + 1) for h, w in self.shapes], float)
        self._weights = self._counts / self._counts.sum()
        self.unreadable: set[Path] = set()
        # one read now, so that a configuration error (a card that does not fit, no
        # wavelengths) fails here rather than being taken for unreadable files mid-run
        failed = []
        for path in self.paths:
            try:
                open_scene(path, window=(0, 0, size, size), card=card)
                break
            except (RasterioError, OSError, ValueError) as err:
                failed.append((path, err))
        else:
            raise failed[0][1]
        for path, err in failed:
            self._mark_unreadable(path, err)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def window(
        self, index: int, attempt: int = 0, epoch: int | None = None
    ) -> tuple[Path, tuple[int, int, int, int]]:
        """The scene and ``(col_off, row_off, width, height)`` of window ``index`` in
        ``epoch`` (default: :attr:`epoch`); ``attempt`` > 0: the replacement drawn after
        that many failed reads."""
        if not 0 <= index < self.length:
            raise IndexError(f"window {index} of {self.length}")
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch, index, attempt])
        k = int(rng.choice(len(self.paths), p=self._weights))
        h, w = self.shapes[k]
        row = int(rng.integers(0, h - self.size + 1))
        col = int(rng.integers(0, w - self.size + 1))
        return self.paths[k], (col, row, self.size, self.size)

    def __getitem__(self, item: int | tuple[int, int]) -> Sample:
        """``item``: an index (this dataset's epoch) or ``(epoch, index)``, which is how
        :class:`BandSetBatchSampler` addresses it, so that DataLoader workers, each with its
        own copy of the dataset, still draw the epoch's windows."""
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        skipped: list[str] = []
        for attempt in range(self.max_failures):
            path, window = self.window(index, attempt, epoch)
            if path in self.unreadable:
                continue
            try:
                sample = open_scene(path, window=window, card=self.card)
            except (RasterioError, OSError, ValueError) as err:
                self._mark_unreadable(path, err)
                skipped.append(str(path))
                continue
            if skipped:
                sample["skipped"] = tuple(skipped)
            return self.transforms(sample) if self.transforms else sample
        raise RuntimeError(
            f"{self.max_failures} reads in a row failed for window {index}; "
            f"unreadable files: {sorted(map(str, self.unreadable))[:5]}"
        )

    def _mark_unreadable(self, path: Path, err: Exception) -> None:
        self.unreadable.add(path)
        k = self.paths.index(path)
        self._counts[k] = 0.0
        if self._counts.sum() > 0:
            self._weights = self._counts / self._counts.sum()
        warnings.warn(f"skipping unreadable file {path}: {type(err).__name__}: {err}", stacklevel=3)

    def __repr__(self) -> str:
        return (
            f"RandomWindowDataset({len(self.paths)} scene(s), {self.length} windows of "
            f"{self.size} px)"
        )


class EpochConcatDataset(ConcatDataset):
    """A :class:`~torch.utils.data.ConcatDataset` addressed by ``(epoch, index)`` as well as
    by index; datasets that draw per epoch (:class:`RandomWindowDataset`) get the epoch."""

    def __getitem__(self, item):
        epoch, index = item if isinstance(item, tuple) else (None, item)
        if index < 0:
            index += len(self)
        k = bisect.bisect_right(self.cumulative_sizes, index)
        local = index - (self.cumulative_sizes[k - 1] if k else 0)
        dataset = self.datasets[k]
        if epoch is not None and isinstance(dataset, RandomWindowDataset):
            return dataset[(epoch, local)]
        return dataset[local]


class _EpochHook:
    """Lightning calls ``set_epoch`` on ``loader.batch_sampler.sampler``; this forwards it."""

    def __init__(self, owner: BandSetBatchSampler) -> None:
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class BandSetBatchSampler(Sampler[list]):
    """Batches of indices that share one band set.

    Args:
        keys: the band-set key of every index (any hashable, e.g. a tuple of wavelengths or
            the number of the dataset an index came from).
        batch_size: indices per batch.
        shuffle: shuffle within each band set and the order of the batches.
        drop_last: drop each band set's last, incomplete batch.
        seed: the shuffle is drawn from ``(seed, epoch)``; Lightning calls :meth:`set_epoch`
            each epoch (through ``.sampler``).
        num_replicas, rank: for distributed training, each of ``num_replicas`` processes
            takes every ``num_replicas``-th batch of the same shuffled list, all processes the
            same number; by default read from ``torch.distributed`` when it is initialised.
            Run the trainer with ``use_distributed_sampler: false`` so that Lightning leaves
            this sampler in place.
        with_epoch: yield ``(epoch, index)`` pairs instead of indices, for an
            :class:`EpochConcatDataset`, so that every epoch draws new windows even in
            persistent DataLoader workers.

    Each band set is cut into its own batches, then all batches are interleaved, so an epoch
    sees every sensor throughout rather than one after another.
    """

    def __init__(
        self,
        keys: Sequence[Hashable],
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        with_epoch: bool = False,
    ) -> None:
        if isinstance(keys, Sampler) or not isinstance(keys, Sequence):
            raise TypeError(
                "BandSetBatchSampler takes the band-set key of every index, not a sampler; "
                "it shards batches across processes itself, so run the trainer with "
                "use_distributed_sampler=False (trainer.use_distributed_sampler: false)"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        groups: dict[Hashable, list[int]] = {}
        for index, key in enumerate(keys):
            groups.setdefault(key, []).append(index)
        if not groups:
            raise ValueError("BandSetBatchSampler needs at least one index")
        self.groups = list(groups.values())
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.epoch, self.with_epoch = seed, 0, with_epoch
        if num_replicas is None or rank is None:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            num_replicas = torch.distributed.get_world_size() if distributed else 1
            rank = torch.distributed.get_rank() if distributed else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.num_replicas, self.rank = num_replicas, rank
        self.sampler = _EpochHook(self)

    @classmethod
    def for_datasets(
        cls, datasets: ConcatDataset | Sequence[Dataset], **kwargs
    ) -> BandSetBatchSampler:
        """One band set per dataset of a concatenation (each dataset holds one band set)."""
        parts = datasets.datasets if isinstance(datasets, ConcatDataset) else datasets
        keys = [k for k, ds in enumerate(parts) for _ in range(len(ds))]
        return cls(keys, **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        batches = []
        for group in self.groups:
            order = group
            if self.shuffle:
                order = [group[i] for i in torch.randperm(len(group), generator=generator)]
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        if self.num_replicas > 1:  # equal shares; the few left over are dropped this epoch
            share = len(batches) // self.num_replicas
            batches = batches[self.rank :: self.num_replicas][:share]
        return batches

    def __iter__(self) -> Iterator[list]:
        for batch in self._batches():
            yield [(self.epoch, i) for i in batch] if self.with_epoch else batch

    def __len__(self) -> int:
        if self.drop_last:
            total = sum(len(g) // self.batch_size for g in self.groups)
        else:
            total = sum(-(-len(g) // self.batch_size) for g in self.groups)
        return total // self.num_replicas if self.num_replicas > 1 else total
