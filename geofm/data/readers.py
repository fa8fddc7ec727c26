"""Read GeoTIFF, JPEG 2000 and multi-resolution band sets into geofm samples (rasterio).

:func:`open_raster` returns a sample (see :mod:`geofm.data.sample`) with its band metadata,
``crs``, ``transform`` and a ``valid`` mask (False where a pixel is nodata or NaN in any
band; those pixels are filled with 0 in ``image``). Windowed reads let a scene larger than
memory be processed in pieces (:func:`iter_windows`).

Nothing is read silently wrong: in a set of band files a pixel is valid only where every
band has data (inside that band file's footprint and not nodata), a band file that does not
overlap the grid at all, or two files holding the same band, are errors naming the files,
and every error of the raster library (a truncated or damaged file) is raised as an
``OSError`` naming the file.

Band names and wavelengths come from a card (:mod:`geofm.data.cards`). A *dataset* card
gives the order in which its files store the bands; a *sensor* card does not, so with one
the bands must be named (``bands=[...]`` in file order) or described in the file. For a set
of single-band files (a Sentinel-2 ``IMG_DATA`` folder, Landsat ``*_B4.TIF`` files) the band
of each file is read from its name and matched to the card (:mod:`geofm.data.band_files`),
and every band is resampled onto one grid (:func:`open_band_files`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias, cast

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geofm.data.band_files import (
    CardLike,
    band_name_from_filename,
    band_names_of_files,
    refuse_duplicate_bands,
    sensor_for_band_files,
    sort_band_files,
)
from geofm.data.cards import (
    DatasetCard,
    SensorCard,
    as_card,
    band_positions,
    card_scale_and_nodata,
)
from geofm.data.sample import Sample, check_band_metadata, make_sample

PathLike = str | os.PathLike
# explicit: rasterio has no annotations, so mypy cannot infer this alias from `Window`
WindowLike: TypeAlias = Window | tuple[int, int, int, int]
"""A window as ``rasterio.windows.Window`` or ``(col_off, row_off, width, height)``."""

RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jp2"})
"""File endings read by :func:`open_raster` (GeoTIFF and JPEG 2000)."""

# --------------------------------------------------------------------------------------------
# Files and windows


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"raster file not found: {path}")
    if not path.is_file():
        raise FileNotFoundError(f"not a file: {path}")


def _gdal_detail(err: BaseException) -> str:
    """The useful part of a raster library error: GDAL's own message when rasterio only says
    "Read failed. See previous exception for details."."""
    cause = err.__cause__ or err.__context__
    if cause is not None and "previous exception" in str(err):
        return str(cause)
    return str(err)


@contextlib.contextmanager
def reading(path: PathLike) -> Iterator[None]:
    """Raise any error of the raster library inside the block as one ``OSError`` naming
    ``path`` (the original error is kept as its cause)."""
    try:
        yield
    except (RasterioError, CPLE_BaseError) as err:
        raise OSError(
            f"cannot read the pixels of {path} (the file may be truncated or "
            f"damaged): {_gdal_detail(err)}"
        ) from err


def open_dataset(path: PathLike) -> rasterio.DatasetReader:
    """``rasterio.open`` with errors that name the file."""
    path = Path(path)
    _check_readable(path)
    try:
        return rasterio.open(path)
    except (RasterioIOError, CPLE_BaseError) as err:
        raise OSError(f"cannot read {path} as a raster: {_gdal_detail(err)}") from err


def raster_files(folder: Path) -> list[Path]:
    """The GeoTIFF and JPEG 2000 files directly in ``folder``, sorted by name."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES
    )


def as_window(window: WindowLike | None) -> Window | None:
    if window is None or isinstance(window, Window):
        return window
    if len(window) != 4:
        raise ValueError(f"a window is (col_off, row_off, width, height), got {window!r}")
    return Window(*window)


def checked_window(window: WindowLike | None, width: int, height: int, what: str) -> Window:
    """The window as whole pixels (default: the whole grid); an error if it misses the grid."""
    win = as_window(window) or Window(0, 0, width, height)
    win = Window(*(int(round(v)) for v in win.flatten()))
    if win.width <= 0 or win.height <= 0:
        raise ValueError(f"window {win} has no pixels")
    if (
        win.col_off >= width
        or win.row_off >= height
        or win.col_off + win.width <= 0
        or win.row_off + win.height <= 0
    ):
        raise ValueError(
            f"window (col_off={win.col_off}, row_off={win.row_off}, width={win.width}, "
            f"height={win.height}) lies outside {what}, which is {width} x {height} "
            "pixels (width x height)"
        )
    return win


def read_window(
    read: Callable[[Window], np.ndarray], win: Window, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``win`` of a ``width x height`` grid through ``read`` (which only ever gets a
    window inside the grid and returns ``(C, h, w)``); the part of ``win`` outside the grid
    is 0 in the data and False in the returned ``inside`` mask ``(H, W)``."""
    r0, c0 = max(win.row_off, 0), max(win.col_off, 0)
    r1, c1 = min(win.row_off + win.height, height), min(win.col_off + win.width, width)
    inner = Window(c0, r0, c1 - c0, r1 - r0)
    part = read(inner)
    if (inner.width, inner.height) == (win.width, win.height):
        return part, np.ones((win.height, win.width), dtype=bool)
    data = np.zeros((part.shape[0], win.height, win.width), dtype=part.dtype)
    inside = np.zeros((win.height, win.width), dtype=bool)
    rs, cs = r0 - win.row_off, c0 - win.col_off
    data[:, rs : rs + inner.height, cs : cs + inner.width] = part
    inside[rs : rs + inner.height, cs : cs + inner.width] = True
    return data, inside


def iter_windows(width: int, height: int, tile: int | tuple[int, int] = 512) -> Iterator[Window]:
    """Tile a ``width x height`` grid into windows of at most ``tile`` pixels (row-major)."""
    tw, th = (tile, tile) if isinstance(tile, int) else tile
    if tw <= 0 or th <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    for row in range(0, height, th):
        for col in range(0, width, tw):
            yield Window(col, row, min(tw, width - col), min(th, height - row))


def gsd_of(transform: Affine) -> float:
    """Ground sampling distance of a pixel-to-CRS affine: the side of a square pixel of the
    same area (map units, metres for projected CRSs)."""
    return float(math.sqrt(abs(transform.a * transform.e - transform.b * transform.d)))


def valid_mask(data: np.ndarray, nodata: Sequence[float | None]) -> np.ndarray:
    """``(H, W)`` True where no band of ``data`` ``(C, H, W)`` is NaN or its nodata value."""
    valid = np.ones(data.shape[1:], dtype=bool)
    for band, nd in zip(data, nodata, strict=True):
        if np.issubdtype(band.dtype, np.floating):
            valid &= np.isfinite(band)
        if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
            valid &= band != nd
    return valid


def finish_sample(
    data: np.ndarray,
    valid: np.ndarray,
    names: Sequence[str],
    wavelengths: Sequence[float],
    gsd: float,
    scale: float,
    **extra: Any,
) -> Sample:
    """A sample from raw ``(C, H, W)`` data: scaled to float32, invalid pixels set to 0."""
    image = data.astype(np.float32, copy=False)
    if scale != 1.0:
        image = image * np.float32(scale)
    if not valid.all():
        image = np.where(valid[None], image, np.float32(0.0))
    return make_sample(
        np.ascontiguousarray(image), wavelengths, gsd, names, valid=torch.from_numpy(valid), **extra
    )


# --------------------------------------------------------------------------------------------
# Band order of one file


def _file_order(
    card: SensorCard | DatasetCard, count: int, descriptions: Sequence[str | None]
) -> list[str] | None:
    """Band names in file order: a dataset card's list, else the file's descriptions."""
    if isinstance(card, DatasetCard) and len(card.bands) == count:
        return list(card.band_names)
    if len(descriptions) == count and all(descriptions):
        return [str(d) for d in descriptions]
    return None


def _resolve_bands(
    count: int,
    card: CardLike | None,
    bands: Sequence[str] | Sequence[int] | None,
    wavelengths: Sequence[float] | None,
    descriptions: Sequence[str | None],
) -> tuple[list[str], list[float], list[int]]:
    """Names, wavelengths and 1-based file band indexes for a read of one file."""
    indexes = list(range(1, count + 1))
    if bands is not None and len(bands) and all(isinstance(b, int | np.integer) for b in bands):
        numbers = cast("Sequence[int]", bands)
        bad = [b for b in numbers if not 1 <= b <= count]
        if bad:
            raise ValueError(f"band indexes {bad} are out of range: the file has bands 1..{count}")
        indexes = [int(b) for b in numbers]
        bands = None
    # band names from here on (integers were taken as indexes above)
    names_wanted = cast("Sequence[str] | None", bands)
    if wavelengths is not None:
        check_band_metadata(
            len(indexes), wavelengths, None if names_wanted is None else list(names_wanted)
        )
        names = (
            list(names_wanted)
            if names_wanted is not None
            else [descriptions[i - 1] or f"band_{i}" for i in indexes]
        )
        return names, [float(w) for w in wavelengths], indexes
    if card is None:
        raise ValueError(
            "no wavelengths for this raster: pass card='<dataset or sensor card>' "
            "(see geofm.data.list_dataset_cards()) or wavelengths=[...]"
        )
    card = as_card(card)
    order = _file_order(card, count, descriptions)
    if names_wanted is None:
        if order is None:
            why = (
                "it is a sensor card"
                if isinstance(card, SensorCard)
                else f"it lists {len(card.bands)} bands"
            )
            raise ValueError(
                f"card {card.name!r} does not say in which order this file stores its {count} "
                f"bands ({why}); pass bands=[...] naming them in file order, or a dataset card"
            )
        selected = card.select([order[i - 1] for i in indexes])
    elif order is not None:
        # a name neither in the file nor on the card: the error lists the card's names
        card.select([b for b in names_wanted if b not in order])
        positions = band_positions(names_wanted, order, "this file holds", "not in this file:")
        indexes = [i + 1 for i in positions]
        selected = card.select(names_wanted)
    else:
        selected = card.select(names_wanted)
        if len(selected) != count:
            raise ValueError(
                f"{len(selected)} band names for a file with {count} bands and no band order "
                "known from a dataset card; name all bands in file order, or pass integer "
                "band indexes with wavelengths=[...]"
            )
    return [b.name for b in selected], [b.wavelength_nm for b in selected], indexes


# --------------------------------------------------------------------------------------------
# open_raster


def open_raster(
    path_or_paths: PathLike | Sequence[PathLike],
    bands: Sequence[str] | Sequence[int] | None = None,
    window: WindowLike | None = None,
    gsd: float | None = None,
    *,
    card: CardLike | None = None,
    wavelengths: Sequence[float] | None = None,
    resampling: Resampling | str = Resampling.bilinear,
) -> Sample:
    """Read a raster (or a set of single-band rasters) into a sample.

    Args:
        path_or_paths: a GeoTIFF / JPEG 2000 file, or several single-band files (for example
            Sentinel-2 bands at 10, 20 and 60 m) that are stacked onto one grid, or a folder
            holding such files.
        bands: band names to read, in the order wanted, or 1-based band indexes of a single
            file. Default: all bands.
        window: ``(col_off, row_off, width, height)`` in pixels of the output grid. A window
            partly outside the raster is filled with 0 and marked invalid; one wholly outside
            raises ``ValueError``.
        gsd: resample to this ground sampling distance (metres). Default: the native GSD
            (for several files, the finest one).
        card: a dataset or sensor card name (``"eurosat_ms"``, ``"sentinel2"``) or object
            giving the band names and wavelengths. Dataset cards also bring ``scale`` and a
            ``nodata`` value for files that do not declare one. Band files default to
            ``"sentinel2"`` when their names are Sentinel-2 bands.
        wavelengths: explicit centre wavelengths (nm), one per band read.
        resampling: how bands at other resolutions are resampled (a ``Resampling`` or its
            name).

    Returns:
        a sample with ``image`` (C, H, W) float32, ``wavelengths``, ``gsd``, ``bands``,
        ``valid`` (H, W), ``crs`` and ``transform`` (of the window read).
    """
    if isinstance(bands, str):
        raise TypeError(
            f"bands must be a sequence of band names, got the string {bands!r}; "
            f"write bands=[{bands!r}]"
        )
    resampling = _resampling(resampling)
    _check_gsd(gsd)
    # for band files: open_band_files refuses band indexes itself, with a message
    band_names = cast("Sequence[str] | None", bands)
    if isinstance(path_or_paths, str | os.PathLike):
        path = Path(path_or_paths)
        if path.is_dir():
            files = raster_files(path)
            if not files:
                raise FileNotFoundError(f"no .tif or .jp2 files in folder {path}")
            return open_band_files(
                sort_band_files(files, card),
                band_names,
                window,
                gsd,
                card=card,
                wavelengths=wavelengths,
                resampling=resampling,
            )
        return _open_single(path, bands, window, gsd, card, wavelengths, resampling)
    paths = [Path(p) for p in path_or_paths]
    if not paths:
        raise ValueError("open_raster got an empty list of paths")
    if len(paths) == 1 and band_name_from_filename(paths[0]) is None:
        return _open_single(paths[0], bands, window, gsd, card, wavelengths, resampling)
    return open_band_files(
        paths, band_names, window, gsd, card=card, wavelengths=wavelengths, resampling=resampling
    )


def _check_gsd(gsd: float | None) -> None:
    if gsd is not None and not (math.isfinite(gsd) and gsd > 0):
        raise ValueError(f"gsd must be a positive number of metres, got {gsd}")


def _resampling(resampling: Resampling | str) -> Resampling:
    if isinstance(resampling, Resampling):
        return resampling
    try:
        return Resampling[resampling]
    except KeyError:
        raise ValueError(
            f"unknown resampling {resampling!r}; choose from "
            f"{', '.join(r.name for r in Resampling)}"
        ) from None


def _target_grid(
    src_transform: Affine, width: int, height: int, gsd: float | None
) -> tuple[Affine, int, int]:
    if gsd is None:
        return src_transform, width, height
    factor = gsd_of(src_transform) / gsd
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    return src_transform @ Affine.scale(width / new_w, height / new_h), new_w, new_h


def band_set_grid(
    files: Sequence[PathLike | rasterio.DatasetReader], gsd: float | None = None
) -> tuple[int, Affine, int, int]:
    """``(index of the finest file, transform, width, height)`` of the grid that
    :func:`open_band_files` stacks ``files`` (paths or open datasets) onto: the finest file's
    by :func:`gsd_of` (the first of equally fine ones), resampled to ``gsd`` if given."""
    with contextlib.ExitStack() as stack:
        srcs = [
            f if isinstance(f, rasterio.DatasetReader) else stack.enter_context(open_dataset(f))
            for f in files
        ]
        i = min(range(len(srcs)), key=lambda k: gsd_of(srcs[k].transform))
        return (i, *_target_grid(srcs[i].transform, srcs[i].width, srcs[i].height, gsd))


def _open_single(path: Path, bands, window, gsd, card, wavelengths, resampling) -> Sample:
    scale, card_nodata = card_scale_and_nodata(card)
    with open_dataset(path) as src:
        descriptions = [d if d else None for d in src.descriptions]
        names, wls, indexes = _resolve_bands(src.count, card, bands, wavelengths, descriptions)
        nodata = [
            card_nodata if src.nodatavals[i - 1] is None else src.nodatavals[i - 1] for i in indexes
        ]
        transform, width, height = _target_grid(src.transform, src.width, src.height, gsd)
        win = checked_window(window, width, height, str(path))
        with reading(path):
            if gsd is None:
                data, inside = read_window(
                    lambda w: src.read(indexes, window=w), win, width, height
                )
            else:
                data, inside = _read_resampled(
                    src, indexes, transform, width, height, win, resampling
                )
        out_transform = rasterio.windows.transform(win, transform)
        valid = valid_mask(data, nodata) & inside
        return finish_sample(
            data,
            valid,
            names,
            wls,
            gsd_of(out_transform),
            scale,
            crs=src.crs,
            transform=out_transform,
        )


def _read_resampled(
    src,
    indexes: list[int],
    transform: Affine,
    width: int,
    height: int,
    win: Window,
    resampling: Resampling,
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``indexes`` of ``src`` warped onto the grid (transform, width, height)."""
    with WarpedVRT(
        src,
        crs=src.crs,
        transform=transform,
        width=width,
        height=height,
        resampling=resampling,
        src_nodata=src.nodata,
        nodata=src.nodata,
    ) as vrt:
        return read_window(lambda w: vrt.read(indexes, window=w), win, width, height)


def open_band_files(
    paths: Sequence[PathLike],
    bands: Sequence[str] | None = None,
    window: WindowLike | None = None,
    gsd: float | None = None,
    *,
    card: CardLike | None = None,
    wavelengths: Sequence[float] | None = None,
    resampling: Resampling | str = Resampling.bilinear,
) -> Sample:
    """Read single-band files, in the order given, stacked onto one grid into a sample.

    The grid is that of the finest file (or ``gsd``); every other file is resampled onto it
    with ``resampling``. A pixel is valid only where every file has data there (inside its
    footprint and not nodata). Band names come from the file names matched to ``card``
    (:mod:`geofm.data.band_files`), or are the names as written when ``wavelengths`` are
    given. ``bands`` picks files by band name, in the order wanted. The other arguments are
    those of :func:`open_raster`, which calls this for a folder or list of band files
    (:func:`geofm.data.band_files.sort_band_files` puts a folder's files in card order).

    Returns:
        a sample with ``image`` (C, H, W) float32 (C = number of files read), ``wavelengths``,
        ``gsd``, ``bands``, ``valid`` (H, W), ``crs`` and ``transform`` (of the window read).
    """
    files = [Path(p) for p in paths]
    if not files:
        raise ValueError("open_band_files got an empty list of paths")
    resampling = _resampling(resampling)
    _check_gsd(gsd)
    for p in files:
        _check_readable(p)
    if bands is not None and not all(isinstance(b, str) for b in bands):
        raise ValueError(
            "band indexes select channels of one file; for a set of band files "
            "pass band names (bands=['B04', ...]) or a list of the files wanted"
        )
    if wavelengths is not None:
        check_band_metadata(len(files), wavelengths)
        if bands is not None:
            raise ValueError("pass either bands=[...] or wavelengths=[...] for band files")
        names = [band_name_from_filename(p) or p.stem for p in files]
        refuse_duplicate_bands(names, files)
        wls = [float(w) for w in wavelengths]
    else:
        card_obj = sensor_for_band_files([band_name_from_filename(p) for p in files], card, files)
        names = band_names_of_files(files, card_obj)
        if bands is not None:
            card_obj.select(bands)  # unknown names list the card's valid bands
            files = [
                files[i]
                for i in band_positions(bands, names, "the band files hold", "no file for bands")
            ]
            names = list(bands)
        wls = [b.wavelength_nm for b in card_obj.select(names)]
    scale, card_nodata = card_scale_and_nodata(card)
    sources = [open_dataset(p) for p in files]
    try:
        ref_index, transform, width, height = band_set_grid(sources, gsd)
        ref, ref_path = sources[ref_index], files[ref_index]
        for s, p in zip(sources, files, strict=True):
            if s.count != 1:
                raise ValueError(f"{p} has {s.count} bands; a band set needs single-band files")
            if s.crs != ref.crs:
                raise ValueError(f"{p} is in {s.crs}, the other bands in {ref.crs}")
            _check_overlap(s, p, ref, ref_path)
        win = checked_window(window, width, height, f"the grid of {files[0].parent}")
        data = np.empty((len(files), win.height, win.width), dtype=ref.dtypes[0])
        valid = np.ones((win.height, win.width), dtype=bool)
        for i, (s, p) in enumerate(zip(sources, files, strict=True)):
            with reading(p):
                band, inside = _read_resampled(s, [1], transform, width, height, win, resampling)
            data[i] = band[0]
            nodata = card_nodata if s.nodata is None else s.nodata
            valid &= valid_mask(band, [nodata]) & inside
            valid &= footprint_mask(
                s.transform,
                s.width,
                s.height,
                rasterio.windows.transform(win, transform),
                win.width,
                win.height,
            )
        out_transform = rasterio.windows.transform(win, transform)
        return finish_sample(
            data,
            valid,
            names,
            wls,
            gsd_of(out_transform),
            scale,
            crs=ref.crs,
            transform=out_transform,
        )
    finally:
        for s in sources:
            s.close()


def _check_overlap(src, path: Path, ref, ref_path: Path) -> None:
    """Refuse a band file that shares no area with the grid (that of ``ref``)."""
    a, b = src.bounds, ref.bounds
    (al, ar), (ab, at) = sorted((a.left, a.right)), sorted((a.bottom, a.top))
    (bl, br), (bb, bt) = sorted((b.left, b.right)), sorted((b.bottom, b.top))
    if min(ar, br) <= max(al, bl) or min(at, bt) <= max(ab, bb):
        raise ValueError(
            f"{path} does not overlap the grid of the band set: it covers (left, bottom, "
            f"right, top) = {tuple(a)}, the grid (of {ref_path.name}) covers {tuple(b)} "
            f"in {ref.crs}; it belongs to another scene or tile: remove it from the set"
        )


def footprint_mask(
    src_transform: Affine,
    src_width: int,
    src_height: int,
    transform: Affine,
    width: int,
    height: int,
) -> np.ndarray:
    """``(height, width)`` True where the centre of a pixel of the grid (``transform``)
    falls inside a file of ``src_width x src_height`` pixels on ``src_transform``."""
    to_src = ~src_transform @ transform
    cols, rows = np.arange(width) + 0.5, np.arange(height) + 0.5
    if to_src.b == 0 and to_src.d == 0:  # no rotation: a product of two axes
        x = to_src.a * cols + to_src.c
        y = to_src.e * rows + to_src.f
        return ((y >= 0) & (y < src_height))[:, None] & ((x >= 0) & (x < src_width))[None, :]
    cc, rr = np.meshgrid(cols, rows)
    x = to_src.a * cc + to_src.b * rr + to_src.c
    y = to_src.d * cc + to_src.e * rr + to_src.f
    return (x >= 0) & (x < src_width) & (y >= 0) & (y < src_height)
