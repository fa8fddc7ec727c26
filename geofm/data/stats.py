"""Per-band statistics streamed over rasters window by window (``geofm stats``).

Mean and standard deviation are merged exactly across windows in float64 (Chan et al.'s
parallel update of count, mean and sum of squared deviations), so a scene larger than memory
is summarised in one pass. Percentiles are exact for 8- and 16-bit integer data (a full
histogram over the dtype's range); for other dtypes they are estimated from a uniform
reservoir sample of at most ``reservoir`` values per band, and the output says so.
Nodata and NaN pixels are left out of every statistic.

:func:`scene_info` describes a raster, band folder or cube for ``geofm info`` from its
metadata; its one statistic (the share of valid pixels) comes from the file's overviews or
a decimated read of at most :data:`INFO_SAMPLE_VALUES` values, never from every pixel.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from tqdm.auto import tqdm

from geofm.data.band_files import (
    band_name_from_filename,
    band_names_of_files,
    sensor_for_band_files,
    sort_band_files,
)
from geofm.data.cards import DatasetCard, as_card, as_dataset_card, card_scale_and_nodata
from geofm.data.hyperspectral import (
    cube_band_metadata,
    envi_memmap,
    envi_nodata,
    is_envi,
    mat_key,
    mat_variables,
    open_envi,
    read_mat_array,
)
from geofm.data.readers import (
    RASTER_SUFFIXES,
    band_set_grid,
    gsd_of,
    iter_windows,
    open_band_files,
    open_dataset,
    open_raster,
    raster_files,
    read_window,
    reading,
    valid_mask,
)

PathLike = str | os.PathLike
_EXACT_KINDS = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16)}


@dataclass
class BandStatistics:
    """Running per-band statistics; :meth:`update` with ``(C, N)`` valid values at a time."""

    num_bands: int
    reservoir: int = 200_000
    seed: int = 0
    count: np.ndarray = field(init=False)
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)
    minimum: np.ndarray = field(init=False)
    maximum: np.ndarray = field(init=False)
    _hist: np.ndarray | None = field(init=False, default=None)
    _hist_offset: int = field(init=False, default=0)
    _dtype: np.dtype | None = field(init=False, default=None)
    _samples: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        c = self.num_bands
        self.count = np.zeros(c, np.int64)
        self.mean = np.zeros(c, np.float64)
        self.m2 = np.zeros(c, np.float64)
        self.minimum = np.full(c, np.inf)
        self.maximum = np.full(c, -np.inf)
        self._samples = [np.empty(0) for _ in range(c)]
        self._keys = np.empty(0)
        self._rng = np.random.default_rng(self.seed)

    def update(self, values: np.ndarray) -> None:
        """Add ``values`` of shape ``(C, N)`` (valid pixels only)."""
        if values.shape[0] != self.num_bands:
            raise ValueError(f"expected {self.num_bands} bands, got {values.shape[0]}")
        n = values.shape[1]
        if n == 0:
            return
        if self._dtype is None:
            self._dtype = values.dtype
            if values.dtype in _EXACT_KINDS:
                info = np.iinfo(values.dtype)
                self._hist_offset = -int(info.min)
                self._hist = np.zeros((self.num_bands, int(info.max) - int(info.min) + 1), np.int64)
        elif values.dtype != self._dtype:
            raise ValueError(f"inputs mix data types {self._dtype} and {values.dtype}")
        # One band at a time keeps the float64 copies to one band of one window.
        for c in range(self.num_bands):
            v = values[c].astype(np.float64)
            b_mean = v.mean()
            b_m2 = float(np.square(v - b_mean).sum())
            total = self.count[c] + n
            delta = b_mean - self.mean[c]
            self.mean[c] += delta * n / total
            self.m2[c] += b_m2 + delta**2 * self.count[c] * n / total
            self.count[c] = total
            self.minimum[c] = min(self.minimum[c], v.min())
            self.maximum[c] = max(self.maximum[c], v.max())
            if self._hist is not None:
                self._hist[c] += np.bincount(
                    values[c].astype(np.int64) + self._hist_offset, minlength=self._hist.shape[1]
                )
        if self._hist is None:
            self._update_reservoir(values)

    def _update_reservoir(self, values: np.ndarray) -> None:
        # A uniform sample of the stream: every value gets a random key and the values with
        # the `reservoir` smallest keys are kept (the same keys for every band of a pixel).
        keys = self._rng.random(values.shape[1])
        all_keys = np.concatenate([self._keys, keys])
        keep = (
            np.argpartition(all_keys, self.reservoir)[: self.reservoir]
            if all_keys.size > self.reservoir
            else np.arange(all_keys.size)
        )
        self._keys = all_keys[keep]
        for c in range(self.num_bands):
            self._samples[c] = np.concatenate([self._samples[c], values[c].astype(np.float64)])[
                keep
            ]

    @property
    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.m2 / np.maximum(self.count - 1, 1))

    @property
    def percentiles_exact(self) -> bool:
        return self._hist is not None

    def percentiles(self, qs: Sequence[float]) -> np.ndarray:
        """``(len(qs), C)`` percentiles (lower-value interpolation for the exact histogram)."""
        out = np.full((len(qs), self.num_bands), np.nan)
        for c in range(self.num_bands):
            if self.count[c] == 0:
                continue
            if self._hist is not None:
                cdf = np.cumsum(self._hist[c])
                for i, q in enumerate(qs):
                    rank = q / 100.0 * (cdf[-1] - 1)
                    out[i, c] = int(np.searchsorted(cdf, np.floor(rank) + 1)) - self._hist_offset
            else:
                out[:, c] = np.percentile(self._samples[c], qs)
        return out


def _looks_like_band_set(folder: Path) -> bool:
    files = raster_files(folder)
    return bool(files) and all(band_name_from_filename(p) for p in files)


def expand_paths(paths: Iterable[PathLike]) -> list[Path]:
    """Rasters, ENVI headers and band-set folders under ``paths`` (folders are recursed)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"no such file or folder: {p}")
        if p.is_dir():
            if _looks_like_band_set(p):
                out.append(p)
                continue
            found = sorted(
                q for q in p.rglob("*") if q.suffix.lower() in RASTER_SUFFIXES | {".hdr"}
            )
            band_sets = {q.parent for q in found if _looks_like_band_set(q.parent)}
            out.extend(sorted(band_sets))
            out.extend(q for q in found if q.parent not in band_sets)
        else:
            out.append(p)
    if not out:
        raise FileNotFoundError(f"no rasters (.tif, .jp2, ENVI .hdr) under {list(paths)}")
    return out


@dataclass
class _Input:
    """One input of a statistics pass: its bands and windows, read lazily by :meth:`blocks`
    so that only one file is open at a time however many inputs there are."""

    path: Path
    num_bands: int
    band_names: tuple[str, ...] | None
    windows: list
    blocks: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]]


def _names_from_card(card: str | None, count: int, path: Path) -> tuple[str, ...] | None:
    if card is None:
        return None
    card_obj = as_card(card)
    if not isinstance(card_obj, DatasetCard):
        raise ValueError(
            f"{card!r} is a sensor card, which does not say in which order "
            f"{path.name} stores its bands; pass a dataset card"
        )
    if len(card_obj.bands) != count:
        raise ValueError(f"card {card!r} has {len(card_obj.bands)} bands, {path} has {count}")
    return card_obj.band_names


def _band_set_input(folder: Path, tile: int, card: str | None) -> _Input:
    files = sort_band_files(raster_files(folder), card)
    names = band_names_of_files(
        files, sensor_for_band_files([band_name_from_filename(f) for f in files], card, files)
    )
    finest, _, width, height = band_set_grid(files)
    with open_dataset(files[finest]) as src:
        dtype = src.dtypes[0]
    windows = list(iter_windows(width, height, tile))

    def blocks():
        for win in windows:
            s = open_band_files(files, window=win, card=card, resampling=Resampling.nearest)
            # Nearest resampling keeps the integer values: give them their dtype back.
            yield s["image"].numpy().astype(dtype), s["valid"].numpy()

    return _Input(folder, len(files), tuple(names), windows, blocks)


def _envi_input(path: Path, tile: int, card: str | None) -> _Input:
    cube, header = envi_memmap(path)
    c, height, width = cube.shape
    windows = list(iter_windows(width, height, tile))
    names = _names_from_card(card, c, path) or (
        tuple(header["band names"]) if len(header.get("band names", ())) == c else None
    )
    nodata = [envi_nodata(header)] * c

    def blocks():
        cube, _ = envi_memmap(path)
        native = cube.dtype.newbyteorder("=")
        for win in windows:
            data = np.asarray(
                cube[
                    :, win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width
                ],
                dtype=native,
            )
            yield data, valid_mask(data, nodata)

    return _Input(path, c, names, windows, blocks)


def _raster_input(path: Path, tile: int, card: str | None) -> _Input:
    with open_dataset(path) as src:
        count, width, height = src.count, src.width, src.height
        descriptions = tuple(d or "" for d in src.descriptions)
    names = _names_from_card(card, count, path) or (descriptions if all(descriptions) else None)
    windows = list(iter_windows(width, height, tile))

    def blocks():
        with open_dataset(path) as src:
            indexes = list(range(1, src.count + 1))
            for win in windows:
                with reading(path):
                    data, _ = read_window(lambda w: src.read(indexes, window=w), win, width, height)
                yield data, valid_mask(data, list(src.nodatavals))

    return _Input(path, count, names, windows, blocks)


def _plan(path: Path, tile: int, card: str | None) -> _Input:
    if path.is_dir():
        return _band_set_input(path, tile, card)
    if is_envi(path):
        return _envi_input(path, tile, card)
    return _raster_input(path, tile, card)


def compute_statistics(
    paths: Iterable[PathLike],
    tile: int = 512,
    percentiles: Sequence[float] = (1, 2, 50, 98, 99),
    progress: bool = True,
    card: str | None = None,
) -> dict:
    """Stream over ``paths`` by windows and return statistics in the dataset-card format.

    Every input must have the same number of bands. Returns a dict with ``mean``, ``std``,
    ``min``, ``max``, ``count`` (valid pixels per band), ``percentiles`` (``p<q>`` -> list),
    ``percentiles_exact`` and ``source``, and ``bands`` where the band names are known: from
    ``card`` (a dataset card, whose order is the files' order), from the file names of a
    band-set folder, or from the files' own band descriptions.
    """
    bad = [q for q in percentiles if not 0 <= q <= 100]
    if bad:
        raise ValueError(f"percentiles must lie in [0, 100], got {bad}")
    files = expand_paths(paths)
    inputs = [_plan(f, tile, card) for f in files]
    counts = {i.num_bands for i in inputs}
    if len(counts) != 1:
        detail = ", ".join(f"{i.path.name}: {i.num_bands}" for i in inputs[:10])
        raise ValueError(
            f"the inputs have different band counts ({detail}); "
            "compute statistics for one band set at a time"
        )
    name_sets = {i.band_names for i in inputs if i.band_names is not None}
    if len(name_sets) > 1:
        raise ValueError(f"the inputs hold different bands: {sorted(name_sets)}")
    stats = BandStatistics(counts.pop())
    total = sum(len(i.windows) for i in inputs)
    with tqdm(total=total, desc="statistics", unit="window", disable=not progress) as bar:
        for item in inputs:
            for data, valid in item.blocks():
                # Boolean indexing copies the window; skip it when every pixel is valid.
                values = data.reshape(len(data), -1) if valid.all() else data[:, valid]
                try:
                    stats.update(values)
                except ValueError as err:
                    raise ValueError(f"{item.path}: {err}") from None
                bar.update(1)
    if not stats.count.any():
        raise ValueError("every pixel of the inputs is nodata or NaN: no statistics")
    pct = stats.percentiles(percentiles)
    names = next(iter(name_sets), None)
    out = {} if names is None else {"bands": list(names)}
    return out | {
        "source": (
            f"geofm stats over {len(files)} input(s), {int(stats.count.max())} valid "
            f"pixels, {_dt.date.today().isoformat()}"
        ),
        "count": stats.count.tolist(),
        "mean": [round(float(v), 6) for v in stats.mean],
        "std": [round(float(v), 6) for v in stats.std],
        "min": [float(v) for v in stats.minimum],
        "max": [float(v) for v in stats.maximum],
        "percentiles": {
            f"p{q:g}": [float(v) for v in row] for q, row in zip(percentiles, pct, strict=True)
        },
        "percentiles_exact": stats.percentiles_exact,
    }


# --------------------------------------------------------------------------------------------
# geofm info

INFO_SAMPLE_VALUES = 2**22
"""Most values (pixels x bands) :func:`scene_info` reads for its statistics."""

_MIN_SAMPLE_PIXELS = 64 * 64


@dataclass(frozen=True)
class SceneInfo:
    """What a raster, band folder or cube holds, from its metadata, and the share of its
    pixels that are valid, from ``sample_shape`` pixels (the whole grid, or every
    ``step``-th row and column of it, or the file's overviews)."""

    path: Path
    bands: tuple[str, ...]
    wavelengths: tuple[float, ...]
    height: int
    width: int
    gsd: float
    crs: Any
    transform: Affine | None
    valid_fraction: float
    sample_shape: tuple[int, int]
    step: int
    overviews: bool = False

    @property
    def sampled(self) -> bool:
        return self.sample_shape != (self.height, self.width)

    def describe(self) -> str:
        """The text ``geofm info`` prints."""
        lines = [
            f"image      {len(self.bands)} bands x {self.height} x {self.width} px, "
            f"GSD {self.gsd:.2f} m"
        ]
        shown = list(zip(self.bands, self.wavelengths, strict=True))
        if len(shown) > 16:
            shown = shown[:8] + [("...", float("nan"))] + shown[-4:]
        lines.append(
            "bands      " + ", ".join(n if n == "..." else f"{n} ({w:.1f} nm)" for n, w in shown)
        )
        if self.crs is not None and self.transform is not None:
            t = self.transform
            lines.append(f"crs        {self.crs}")
            lines.append(f"origin     x={t.c:.2f}, y={t.f:.2f}; pixel {t.a:.3f} x {t.e:.3f}")
        valid = f"valid      {self.valid_fraction * 100:.1f}% of pixels"
        if self.sampled:
            h, w = self.sample_shape
            how = (
                "the file's overviews"
                if self.overviews
                else f"every {_ordinal(self.step)} row and column"
            )
            valid += f" (estimated from a sample of {h} x {w} px: {how})"
        lines.append(valid)
        return "\n".join(lines)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _sample_step(height: int, width: int, bands: int, max_values: int) -> int:
    """The decimation that keeps ``bands`` x the sampled pixels within ``max_values``."""
    pixels = max(max_values // max(bands, 1), _MIN_SAMPLE_PIXELS)
    return max(1, math.ceil(math.sqrt(height * width / pixels)))


def _sampled(n: int, step: int) -> int:
    return -(-n // step)


def scene_info(
    path: PathLike, card: str | None = None, max_values: int = INFO_SAMPLE_VALUES
) -> SceneInfo:
    """Describe a raster file, band folder, ENVI cube or ``.mat`` cube without reading every
    pixel: metadata from headers, the valid share from at most ``max_values`` values
    (overviews where a raster has them, else every n-th row and column)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_dir():
        return _band_set_info(path, card, max_values)
    if path.suffix.lower() == ".mat":
        return _mat_info(path, card, max_values)
    if is_envi(path):
        return _envi_info(path, card, max_values)
    return _raster_info(path, card, max_values)


def _head_info(
    path: Path,
    head: dict[str, Any],
    height: int,
    width: int,
    valid: np.ndarray,
    step: int,
    overviews: bool = False,
    gsd: float | None = None,
) -> SceneInfo:
    """A :class:`SceneInfo` from the sample of the first pixel and the grid's size."""
    return SceneInfo(
        path,
        tuple(head["bands"]),
        tuple(float(w) for w in head["wavelengths"]),
        height,
        width,
        float(head["gsd"] if gsd is None else gsd),
        head.get("crs"),
        head.get("transform"),
        float(valid.mean()),
        (int(valid.shape[0]), int(valid.shape[1])),
        step,
        overviews,
    )


def _raster_info(path: Path, card: str | None, max_values: int) -> SceneInfo:
    head = open_raster(path, card=card, window=(0, 0, 1, 1))
    _, card_nodata = card_scale_and_nodata(card)
    with open_dataset(path) as src, reading(path):
        h, w = src.height, src.width
        step = _sample_step(h, w, src.count, max_values)
        shape = (_sampled(h, step), _sampled(w, step))
        valid = np.ones(shape, dtype=bool)
        for i in range(1, src.count + 1):
            # a read smaller than the grid comes from the overviews when the file has them
            band = src.read(i, out_shape=shape, resampling=Resampling.nearest)
            nodata = src.nodatavals[i - 1]
            valid &= valid_mask(band[None], [card_nodata if nodata is None else nodata])
        overviews = step > 1 and any(f <= step for f in src.overviews(1))
    return _head_info(path, head, h, w, valid, step, overviews)


def _band_set_info(folder: Path, card: str | None, max_values: int) -> SceneInfo:
    head = open_raster(folder, card=card, window=(0, 0, 1, 1))
    files = sort_band_files(raster_files(folder), card)
    _, grid, w, h = band_set_grid(files)
    fine = gsd_of(grid)
    step = _sample_step(h, w, len(files), max_values)
    if step == 1:
        sample = open_band_files(files, card=card, resampling=Resampling.bilinear)
    else:
        sample = open_band_files(files, gsd=fine * step, card=card, resampling=Resampling.nearest)
    return _head_info(folder, head, h, w, sample["valid"].numpy(), step)


def _envi_info(path: Path, card: str | None, max_values: int) -> SceneInfo:
    head = open_envi(path, card=card, window=(0, 0, 1, 1))
    cube, header = envi_memmap(path)
    c, h, w = cube.shape
    step = _sample_step(h, w, c, max_values)
    nodata = envi_nodata(header)
    native = cube.dtype.newbyteorder("=")
    valid = np.ones((_sampled(h, step), _sampled(w, step)), dtype=bool)
    for b in range(c):  # one band at a time: the memory of one sampled band
        band = np.asarray(cube[b, ::step, ::step], dtype=native)
        valid &= valid_mask(band[None], [nodata])
    return _head_info(path, head, h, w, valid, step)


def _mat_info(path: Path, card: str | None, max_values: int) -> SceneInfo:
    variables = mat_variables(path)
    key = mat_key(variables, None, 3, path)
    h, w, c = variables[key]
    card_obj = as_dataset_card(card)
    names, wls = cube_band_metadata(c, card_obj, None, None, None, str(path))
    if card_obj is None or card_obj.gsd_m is None:
        raise ValueError(f"{path} carries no pixel size; pass card=... (geofm info --card)")
    step = _sample_step(h, w, c, max_values)
    # only the sampled rows and columns of a v7.3 (HDF5) file are read; a v5 file's array
    # is read whole (that format cannot be read in part) and then sampled
    cube = read_mat_array(path, key, (slice(None, None, step), slice(None, None, step)))
    valid = valid_mask(np.moveaxis(cube, -1, 0), [None] * c)
    head = {"bands": names, "wavelengths": wls, "gsd": card_obj.gsd_m}
    return _head_info(path, head, h, w, valid, step)
