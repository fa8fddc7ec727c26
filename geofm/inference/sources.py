"""Scenes read by windows: a raster on disk or a sample already in memory.

A source knows its grid (``height``, ``width``, ``crs``, ``transform``, ``gsd``) and its
bands (names and wavelengths), and reads any window of that grid, including windows
reaching past its edges (zeros there, marked invalid), as ``(image, valid)``. Only the
window asked for is read from disk, so a scene larger than memory is never loaded whole.

:func:`open_source` opens GeoTIFF and JPEG 2000 files, folders of single-band files at
several resolutions (a Sentinel-2 ``IMG_DATA`` folder, stacked onto the finest grid) and
ENVI cubes by window; ``.mat`` cubes (which cannot be read in part) are loaded whole.

``gsd`` resamples a georeferenced raster as it is read. A scene without map coordinates
(an ENVI or ``.mat`` cube, a GeoTIFF without a CRS) is not resampled: ``gsd`` declares
its ground sampling distance, which otherwise comes from its card.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from geofm.data.cards import BandMatchError
from geofm.data.hyperspectral import is_envi, open_scene
from geofm.data.readers import read_window

__all__ = ["ArraySource", "BandMatchError", "FileSource", "SceneSource", "open_source"]

PathLike = str | os.PathLike


class SceneSource:
    """Base of scene sources; see the module docstring."""

    height: int
    width: int
    bands: list[str]
    wavelengths: list[float]
    gsd: float
    crs: Any = None
    transform: Affine | None = None
    name: str = "scene"

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None and self.transform is not None

    def select(self, wanted: Sequence[str] | None, by_count: bool = False) -> None:
        """Read only ``wanted`` bands, in that order, from now on.

        Raises :class:`BandMatchError` naming the bands the scene lacks. With ``by_count``
        (a model trained on a scene without band names) the scene's bands are taken in
        their order when their count is the model's.
        """
        if wanted is None:
            return
        wanted = list(wanted)
        have = list(self.bands)
        missing = [b for b in wanted if b not in have]
        if missing and by_count and len(have) == len(wanted):
            return
        if missing:
            raise BandMatchError(
                f"{self.name} lacks bands the model needs: missing {', '.join(missing)} "
                f"(the model takes {len(wanted)} bands: {', '.join(wanted)}; the scene has "
                f"{len(have)}: {', '.join(have)})"
            )
        indices = [have.index(b) for b in wanted]
        self.bands = [have[i] for i in indices]
        self.wavelengths = [self.wavelengths[i] for i in indices]
        self._select(indices)

    def _select(self, indices: list[int]) -> None:  # pragma: no cover - abstract
        """Read only the bands at ``indices`` (:attr:`bands` and :attr:`wavelengths` are
        already theirs)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name}: {len(self.bands)} bands x {self.height} x "
            f"{self.width} px, GSD {self.gsd:g} m, crs {self.crs})"
        )


class ArraySource(SceneSource):
    """A sample in memory (``image`` ``(C, H, W)``, ``wavelengths``, ``gsd``, ``bands`` and,
    when known, ``valid``, ``crs``, ``transform``)."""

    def __init__(self, sample: dict[str, Any], name: str = "scene") -> None:
        tensor = torch.as_tensor(sample["image"])
        if tensor.ndim != 3:
            raise ValueError(f"a scene image is (C, H, W), got shape {tuple(tensor.shape)}")
        image = tensor.float().numpy()
        c, self.height, self.width = image.shape
        valid = sample.get("valid")
        valid = (
            np.ones((self.height, self.width), dtype=bool)
            if valid is None
            else torch.as_tensor(valid).bool().numpy()
        )
        # as the file readers do: NaN or infinite pixels are invalid, invalid pixels are 0
        self.valid = valid & np.isfinite(image).all(0)
        self.image = np.where(self.valid[None], image, np.float32(0.0))
        self.bands = list(sample.get("bands") or [f"band_{i + 1}" for i in range(c)])
        self.wavelengths = [float(w) for w in torch.as_tensor(sample["wavelengths"])]
        self.gsd = float(sample["gsd"])
        self.crs, self.transform = sample.get("crs"), sample.get("transform")
        self.name = name

    def _select(self, indices: list[int]) -> None:
        self.image = self.image[indices]

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        def part(w: Window) -> np.ndarray:
            rows = slice(w.row_off, w.row_off + w.height)
            cols = slice(w.col_off, w.col_off + w.width)
            return np.concatenate([self.image[:, rows, cols], self.valid[None, rows, cols]])

        both, inside = read_window(part, window, self.width, self.height)
        return both[:-1].astype(np.float32, copy=False), both[-1].astype(bool) & inside


class FileSource(SceneSource):
    """A raster, band-file folder or ENVI cube on disk, read window by window."""

    def __init__(
        self, path: PathLike, *, card: str | None = None, gsd: float | None = None
    ) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.card = card
        self.envi = is_envi(self.path)
        self._bands_arg: list[str] | None = None
        self.target_gsd = None
        head = self._open(Window(0, 0, 1, 1))
        self.crs = head.get("crs")
        # the transform of a window at (0, 0) is the grid's
        self.transform = head.get("transform")
        if self.crs is None and _is_identity(self.transform):
            self.transform = None
        self.georeferenced_grid = not self.envi and self.transform is not None
        self.declared_gsd = gsd
        if gsd is not None and self.georeferenced_grid:
            self.target_gsd = gsd  # resample as each window is read
        self.bands = list(head["bands"])
        self.wavelengths = [float(w) for w in torch.as_tensor(head["wavelengths"])]
        # read again only when it was read on another grid than the one used from now on
        self._grid(head if self.target_gsd is None else None)

    def _grid(self, head: dict[str, Any] | None = None) -> None:
        """Size, transform and GSD of the grid the current bands are read on (a band
        folder's is the finest of the bands read, resampled to ``gsd`` if given);
        ``head``: a window at (0, 0) already read on that grid."""
        if head is None:
            head = self._open(Window(0, 0, 1, 1))
        if self.transform is not None:
            self.transform = head.get("transform")
        self.height, self.width = _envi_size(self.path) if self.envi else self._grid_size()
        if self.georeferenced_grid:
            self.gsd = float(head["gsd"])
        else:
            # a grid with no map units: the GSD is what the caller or the card says
            self.gsd = float(
                self.declared_gsd
                if self.declared_gsd is not None
                else _card_gsd(self.card) or head["gsd"]
            )

    def _open(self, window: Window) -> dict[str, Any]:
        from geofm.data.readers import band_name_from_filename, open_raster

        kwargs: dict[str, Any] = {"window": window, "card": self.card, "gsd": self.target_gsd}
        if self._bands_arg is not None:
            kwargs["bands"] = self._bands_arg
        with warnings.catch_warnings():
            # no georeferencing is reported once, by the caller, not on every window
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            # one band file of a set (..._B02.jp2): its band comes from its name
            if not self.envi and self.path.is_file() and band_name_from_filename(self.path):
                return open_raster([self.path], **kwargs)
            return open_scene(self.path, **kwargs)

    def _grid_size(self) -> tuple[int, int]:
        """Rows and columns of the grid ``open_raster`` reads on (after any resampling)."""
        from geofm.data.readers import band_name_from_filename, band_set_grid, raster_files

        files = raster_files(self.path) if self.path.is_dir() else [self.path]
        if len(files) > 1:
            # the bands read, when the model takes some of a folder's files
            wanted = {b.upper() for b in self.bands}
            chosen = [f for f in files if (band_name_from_filename(f) or "").upper() in wanted]
            files = chosen or files
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            _, _, w, h = band_set_grid(files, self.target_gsd)
        return h, w

    def _select(self, indices: list[int]) -> None:
        self._bands_arg = self.bands
        self._grid()  # a subset of a band folder may sit on a coarser grid

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        sample = self._open(window)
        image, valid = sample["image"].numpy(), sample.get("valid")
        return image, valid.numpy() if valid is not None else np.ones(image.shape[1:], dtype=bool)


def _envi_size(path: Path) -> tuple[int, int]:
    from geofm.data.hyperspectral import envi_memmap

    cube, _ = envi_memmap(path)
    return int(cube.shape[1]), int(cube.shape[2])


def _card_gsd(card: str | None) -> float | None:
    if card is None:
        return None
    from geofm.data.cards import as_card

    value = getattr(as_card(card), "gsd_m", None)
    return float(value) if value else None


def _is_identity(transform: Affine | None) -> bool:
    return transform is None or Affine(*transform[:6]) == Affine.identity()


def open_source(
    scene: PathLike | dict[str, Any] | SceneSource,
    *,
    card: str | None = None,
    gsd: float | None = None,
    cube_key: str | None = None,
    wavelengths: Sequence[float] | None = None,
) -> SceneSource:
    """A :class:`SceneSource` for a path (raster, band folder, ENVI, ``.mat``), a sample
    dict or a source (returned as is)."""
    if isinstance(scene, SceneSource):
        return scene
    if isinstance(scene, dict):
        return ArraySource(scene)
    path = Path(scene)
    if not path.exists():
        raise FileNotFoundError(f"scene not found: {path}")
    if path.suffix.lower() == ".mat":
        from geofm.data.hyperspectral import open_mat

        kwargs: dict[str, Any] = {"key": cube_key}
        if card:
            kwargs["card"] = card
            if gsd is not None:
                kwargs["gsd"] = gsd
        else:
            kwargs.update(wavelengths=wavelengths, gsd=gsd or 1.0)
        return ArraySource(open_mat(path, **kwargs), name=str(path))
    return FileSource(path, card=card, gsd=gsd)
