"""Read GeoTIFF, JPEG 2000 and multi-resolution band sets into geofm samples (rasterio).

:func:`open_raster` returns a sample (see :mod:`geofm.data.sample`) with its band metadata,
``crs``, ``transform`` and a ``valid`` mask (False where a pixel is nodata or NaN in any
band; those pixels are filled with 0 in ``image``). Windowed reads let a scene larger than
memory be processed in pieces (:func:`iter_windows`).

Band names and wavelengths come from a card (:mod:`geofm.data.cards`); for a set of
single-band files (a Sentinel-2 ``IMG_DATA`` folder) the band names are taken from the
file names (``..._B04.jp2``) and every band is resampled onto one grid.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geofm.data.cards import Band, DatasetCard, SensorCard, UnknownBandError, resolve_card
from geofm.data.sample import Sample, check_band_metadata, make_sample

PathLike = str | os.PathLike
WindowLike = Window | tuple[int, int, int, int]
"""A window as ``rasterio.windows.Window`` or ``(col_off, row_off, width, height)``."""

_BAND_IN_NAME = re.compile(r"_(B\d{1,2}A?)(?:_\d+m)?$", re.IGNORECASE)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"raster file not found: {path}")
    if not path.is_file():
        raise FileNotFoundError(f"not a file: {path}")


def _open(path: Path) -> rasterio.DatasetReader:
    _check_readable(path)
    try:
        return rasterio.open(path)
    except RasterioIOError as err:
        raise OSError(f"cannot read {path} as a raster: {err}") from None


def as_window(window: WindowLike | None) -> Window | None:
    if window is None or isinstance(window, Window):
        return window
    if len(window) != 4:
        raise ValueError(f"a window is (col_off, row_off, width, height), got {window!r}")
    return Window(*window)


def _checked_window(window: Window, width: int, height: int, what: str) -> Window:
    window = Window(*(int(round(v)) for v in window.flatten()))
    if window.width <= 0 or window.height <= 0:
        raise ValueError(f"window {window} has no pixels")
    if (window.col_off >= width or window.row_off >= height
            or window.col_off + window.width <= 0 or window.row_off + window.height <= 0):
        raise ValueError(
            f"window (col_off={window.col_off}, row_off={window.row_off}, width={window.width}, "
            f"height={window.height}) lies outside {what}, which is {width} x {height} "
            "pixels (width x height)"
        )
    return window


def band_name_from_filename(path: PathLike) -> str | None:
    """``T33UUU_20170216T102101_B8A.jp2`` -> ``"B8A"``; ``B4`` is normalised to ``B04``."""
    m = _BAND_IN_NAME.search(Path(path).stem)
    if not m:
        return None
    name = m.group(1).upper()
    if name[1:].isdigit() and len(name) == 2:
        name = f"B0{name[1]}"
    return name


def _bands_from_card(card: DatasetCard | SensorCard, count: int,
                     names: Sequence[str] | None) -> list[Band]:
    if names is not None:
        return card.select(names)
    if isinstance(card, DatasetCard):
        bands = list(card.bands)
    else:
        bands = list(card.bands)
    if len(bands) != count:
        raise ValueError(
            f"card {card.name!r} lists {len(bands)} bands but the file has {count}; "
            "pass bands=[...] to say which bands the file holds"
        )
    return bands


def _resolve_bands(
    count: int,
    card: str | DatasetCard | SensorCard | None,
    bands: Sequence[str] | Sequence[int] | None,
    wavelengths: Sequence[float] | None,
    file_names: Sequence[str | None],
) -> tuple[list[str], list[float], list[int]]:
    """Decide names, wavelengths and 1-based file band indexes for a read."""
    if isinstance(card, str):
        card = resolve_card(card)
    indexes = list(range(1, count + 1))
    if bands is not None and len(bands) and all(isinstance(b, int | np.integer) for b in bands):
        bad = [b for b in bands if not 1 <= b <= count]
        if bad:
            raise ValueError(f"band indexes {bad} are out of range: the file has bands 1..{count}")
        indexes = [int(b) for b in bands]
        bands = None
    if wavelengths is not None:
        check_band_metadata(len(indexes), wavelengths,
                            None if bands is None else list(bands))
        names = list(bands) if bands is not None else [
            file_names[i - 1] or f"band_{i}" for i in indexes]
        return names, [float(w) for w in wavelengths], indexes
    if card is None:
        raise ValueError(
            "no wavelengths for this raster: pass card='<dataset or sensor card>' "
            "(see geofm.data.list_dataset_cards()) or wavelengths=[...]"
        )
    if bands is not None:
        # Band names select channels: file order comes from a dataset card, or from the
        # file's own band descriptions.
        file_order = (list(card.band_names) if isinstance(card, DatasetCard)
                      and len(card.bands) == count else list(file_names))
        if len(file_order) == count and all(file_order):
            missing = [b for b in bands if b not in file_order]
            if missing:
                card.select(missing)  # raises UnknownBandError listing valid names
                raise UnknownBandError(
                    f"bands {missing} are not in this file; it holds {', '.join(file_order)}")
            indexes = [file_order.index(b) + 1 for b in bands]
            selected = card.select(bands)
        else:
            selected = card.select(bands)
            if len(selected) != len(indexes):
                raise ValueError(
                    f"{len(selected)} band names for a file with {count} bands and no band "
                    "descriptions; pass integer band indexes with wavelengths=[...]")
    else:
        full = _bands_from_card(card, count, None)
        selected = [full[i - 1] for i in indexes]
    return [b.name for b in selected], [b.wavelength_nm for b in selected], indexes


def _valid_mask(data: np.ndarray, nodata: Sequence[float | None]) -> np.ndarray:
    valid = np.ones(data.shape[1:], dtype=bool)
    for band, nd in zip(data, nodata, strict=True):
        if np.issubdtype(band.dtype, np.floating):
            valid &= np.isfinite(band)
        if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
            valid &= band != nd
    return valid


def _finish(data: np.ndarray, valid: np.ndarray, names: list[str], wls: list[float],
            gsd: float, scale: float, **extra: Any) -> Sample:
    image = data.astype(np.float32, copy=False)
    if scale != 1.0:
        image = image * np.float32(scale)
    if not valid.all():
        image = np.where(valid[None], image, np.float32(0.0))
    return make_sample(np.ascontiguousarray(image), wls, gsd, names,
                       valid=torch.from_numpy(valid), **extra)


def _gsd_of(transform: Affine) -> float:
    return float(math.sqrt(abs(transform.a * transform.e - transform.b * transform.d)))


def open_raster(
    path_or_paths: PathLike | Sequence[PathLike],
    bands: Sequence[str] | Sequence[int] | None = None,
    window: WindowLike | None = None,
    gsd: float | None = None,
    *,
    card: str | DatasetCard | SensorCard | None = None,
    wavelengths: Sequence[float] | None = None,
    resampling: Resampling | str = Resampling.bilinear,
) -> Sample:
    """Read a raster (or a set of single-band rasters) into a sample.

    Args:
        path_or_paths: a GeoTIFF / JPEG 2000 file, or several single-band files (for example
            Sentinel-2 bands at 10, 20 and 60 m) that are stacked onto one grid, or a folder
            holding such files.
        bands: band names to read, in the order wanted (names from ``card``), or 1-based band
            indexes of a single file. Default: all bands.
        window: ``(col_off, row_off, width, height)`` in pixels of the output grid. A window
            partly outside the raster is filled with 0 and marked invalid; one wholly outside
            raises ``ValueError``.
        gsd: resample to this ground sampling distance (metres). Default: the native GSD
            (for several files, the finest one).
        card: a dataset or sensor card name (``"eurosat_ms"``, ``"sentinel2"``) or object
            giving the band names and wavelengths. Dataset cards also bring ``scale``.
        wavelengths: explicit centre wavelengths (nm), one per band read.
        resampling: how bands at other resolutions are resampled.

    Returns:
        a sample with ``image`` (C, H, W) float32, ``wavelengths``, ``gsd``, ``bands``,
        ``valid`` (H, W), ``crs`` and ``transform`` (of the window read).
    """
    resampling = Resampling[resampling] if isinstance(resampling, str) else resampling
    win = as_window(window)
    if isinstance(path_or_paths, str | os.PathLike):
        path = Path(path_or_paths)
        if path.is_dir():
            files = sorted(p for p in path.iterdir()
                           if p.suffix.lower() in {".jp2", ".tif", ".tiff"})
            if not files:
                raise FileNotFoundError(f"no .tif or .jp2 files in folder {path}")
            files = _sort_by_card(files, card)
            return _open_band_files(files, bands, win, gsd, card, wavelengths, resampling)
        return _open_single(path, bands, win, gsd, card, wavelengths, resampling)
    paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ValueError("open_raster got an empty list of paths")
    if len(paths) == 1:
        return _open_single(paths[0], bands, win, gsd, card, wavelengths, resampling)
    return _open_band_files(paths, bands, win, gsd, card, wavelengths, resampling)


def _sort_by_card(files: list[Path], card: str | DatasetCard | SensorCard | None) -> list[Path]:
    """Order a folder's band files as the card lists the bands (B08, B8A, B09 for S2)."""
    card_obj = resolve_card(card or "sentinel2") if not isinstance(card, DatasetCard | SensorCard) \
        else card
    order = {name: i for i, name in enumerate(card_obj.band_names)}
    names = [band_name_from_filename(f) for f in files]
    if not all(n in order for n in names):
        return files
    return [f for _, f in sorted(zip(names, files, strict=True), key=lambda t: order[t[0]])]


def _target_grid(src_transform: Affine, width: int, height: int,
                 gsd: float | None) -> tuple[Affine, int, int]:
    if gsd is None:
        return src_transform, width, height
    if gsd <= 0:
        raise ValueError(f"gsd must be positive, got {gsd}")
    native = _gsd_of(src_transform)
    factor = native / gsd
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    return (src_transform @ Affine.scale(width / new_w, height / new_h)), new_w, new_h


def _scale_of(card: str | DatasetCard | SensorCard | None) -> float:
    if isinstance(card, str):
        card = resolve_card(card)
    return card.scale if isinstance(card, DatasetCard) else 1.0


def _open_single(path: Path, bands, win, gsd, card, wavelengths, resampling) -> Sample:
    with _open(path) as src:
        descriptions = [d if d else None for d in src.descriptions]
        names, wls, indexes = _resolve_bands(src.count, card, bands, wavelengths, descriptions)
        nodata = [src.nodatavals[i - 1] for i in indexes]
        transform, width, height = _target_grid(src.transform, src.width, src.height, gsd)
        if win is None:
            win = Window(0, 0, width, height)
        win = _checked_window(win, width, height, str(path))
        if gsd is None:
            data, inside = _read_clipped(src, indexes, win, width, height)
            out_transform = rasterio.windows.transform(win, src.transform)
        else:
            data, inside, out_transform = _read_resampled(src, indexes, transform, width, height,
                                                          win, resampling)
        valid = _valid_mask(data, nodata) & inside
        return _finish(data, valid, names, wls, _gsd_of(out_transform), _scale_of(card),
                       crs=src.crs, transform=out_transform)


def _read_clipped(reader, indexes: list[int], win: Window, width: int,
                  height: int) -> tuple[np.ndarray, np.ndarray]:
    """Read ``win`` from ``reader``; the part outside the grid is 0 and False in the mask."""
    r0, c0 = max(win.row_off, 0), max(win.col_off, 0)
    r1, c1 = min(win.row_off + win.height, height), min(win.col_off + win.width, width)
    inner = Window(c0, r0, c1 - c0, r1 - r0)
    part = reader.read(indexes, window=inner)
    if (inner.width, inner.height) == (win.width, win.height):
        return part, np.ones((win.height, win.width), dtype=bool)
    data = np.zeros((len(indexes), win.height, win.width), dtype=part.dtype)
    inside = np.zeros((win.height, win.width), dtype=bool)
    rs, cs = r0 - win.row_off, c0 - win.col_off
    data[:, rs:rs + inner.height, cs:cs + inner.width] = part
    inside[rs:rs + inner.height, cs:cs + inner.width] = True
    return data, inside


def _read_resampled(src, indexes: list[int], transform: Affine, width: int, height: int,
                    win: Window, resampling: Resampling):
    """Read ``indexes`` of ``src`` warped onto the grid (transform, width, height)."""
    with WarpedVRT(src, crs=src.crs, transform=transform, width=width, height=height,
                   resampling=resampling, src_nodata=src.nodata, nodata=src.nodata) as vrt:
        data, inside = _read_clipped(vrt, indexes, win, width, height)
    return data, inside, rasterio.windows.transform(win, transform)


def _open_band_files(paths: list[Path], bands, win, gsd, card, wavelengths, resampling) -> Sample:
    file_names = [band_name_from_filename(p) for p in paths]
    if bands is not None and all(isinstance(b, str) for b in bands):
        by_name = {n: p for n, p in zip(file_names, paths, strict=True) if n}
        missing = [b for b in bands if b not in by_name]
        if missing:
            raise UnknownBandError(
                f"no file for bands {missing} among {len(paths)} files; the files hold "
                f"{', '.join(n or '?' for n in file_names)}")
        paths = [by_name[b] for b in bands]
        file_names = list(bands)
    for p, n in zip(paths, file_names, strict=True):
        _check_readable(p)
        if n is None and wavelengths is None:
            raise ValueError(f"cannot tell the band of {p} from its name (expected '..._B04.jp2'"
                             "); pass wavelengths=[...] in file order")
    if wavelengths is not None:
        check_band_metadata(len(paths), wavelengths)
        names = [n or p.stem for n, p in zip(file_names, paths, strict=True)]
        wls = [float(w) for w in wavelengths]
    else:
        if card is None:
            card = "sentinel2"
        card_obj = resolve_card(card) if isinstance(card, str) else card
        selected = card_obj.select(file_names)
        names, wls = [b.name for b in selected], [b.wavelength_nm for b in selected]
    sources = [_open(p) for p in paths]
    try:
        ref = min(sources, key=lambda s: _gsd_of(s.transform))
        for s, p in zip(sources, paths, strict=True):
            if s.count != 1:
                raise ValueError(f"{p} has {s.count} bands; a band set needs single-band files")
            if s.crs != ref.crs:
                raise ValueError(f"{p} is in {s.crs}, the other bands in {ref.crs}")
        transform, width, height = _target_grid(ref.transform, ref.width, ref.height, gsd)
        if win is None:
            win = Window(0, 0, width, height)
        win = _checked_window(win, width, height, f"the grid of {paths[0].parent}")
        data = np.empty((len(paths), win.height, win.width), dtype=ref.dtypes[0])
        valid = np.ones((win.height, win.width), dtype=bool)
        for i, s in enumerate(sources):
            band, inside, out_transform = _read_resampled(
                s, [1], transform, width, height, win, resampling)
            data[i] = band[0]
            valid &= _valid_mask(band, [s.nodata]) & inside
        return _finish(data, valid, names, wls, _gsd_of(out_transform), _scale_of(card),
                       crs=ref.crs, transform=out_transform)
    finally:
        for s in sources:
            s.close()


def iter_windows(width: int, height: int, tile: int | tuple[int, int] = 512) -> Iterator[Window]:
    """Tile a ``width x height`` grid into windows of at most ``tile`` pixels (row-major)."""
    tw, th = (tile, tile) if isinstance(tile, int) else tile
    if tw <= 0 or th <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    for row in range(0, height, th):
        for col in range(0, width, tw):
            yield Window(col, row, min(tw, width - col), min(th, height - row))


def raster_shape(path: PathLike) -> tuple[int, int, int]:
    """``(count, height, width)`` of a raster without reading pixels."""
    with _open(Path(path)) as src:
        return src.count, src.height, src.width
