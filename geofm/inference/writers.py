"""Where a prediction goes, block by block: arrays in memory, or Cloud-Optimised GeoTIFFs.

:class:`GeoTIFFSink` writes each finished block into a tiled GeoTIFF beside the output,
then converts it to a Cloud-Optimised GeoTIFF (GDAL's COG driver: internal tiles,
overviews of the class map, DEFLATE) and moves it onto the output path only once every
file is ready, so
an interrupted run leaves any earlier file at that path as it was. The class map is one
``uint8`` band (``uint16`` beyond 255 classes) with nodata 255 (65535), a colour table and
the class names as tags; probabilities go to a second COG, one ``float32`` band per class
(NaN where nothing was predicted), each band described by its class name.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

__all__ = ["GeoTIFFSink", "MemorySink", "label_dtype", "probabilities_path"]


def label_dtype(num_classes: int) -> tuple[np.dtype, int]:
    """The class-map dtype and its nodata value."""
    if num_classes <= 255:
        return np.dtype(np.uint8), 255
    return np.dtype(np.uint16), 65535


def probabilities_path(out: Path) -> Path:
    """``OUT.tif`` -> ``OUT.probabilities.tif``."""
    return out.with_name(f"{out.stem}.probabilities{out.suffix or '.tif'}")


class MemorySink:
    """Collect the whole prediction in numpy arrays (for scenes that fit in memory)."""

    def __init__(self, shape: tuple[int, int], classes: Sequence[str], probabilities: bool) -> None:
        dtype, self.nodata = label_dtype(len(classes))
        self.labels = np.full(shape, self.nodata, dtype=dtype)
        self.probs = (
            np.full((len(classes), *shape), np.nan, dtype=np.float32) if probabilities else None
        )

    def write(self, row: int, col: int, labels: np.ndarray, probs: np.ndarray | None) -> None:
        h, w = labels.shape
        self.labels[row : row + h, col : col + w] = labels
        if self.probs is not None and probs is not None:
            self.probs[:, row : row + h, col : col + w] = probs

    def finish(self) -> list[Path]:
        return []

    def abort(self) -> None:
        pass


class GeoTIFFSink:
    """Write the class map (and probabilities) to Cloud-Optimised GeoTIFFs.

    ``crs`` and ``transform`` may be ``None`` (a scene without georeferencing): the files
    then carry the pixel grid only.
    """

    def __init__(
        self,
        out: Path,
        shape: tuple[int, int],
        classes: Sequence[str],
        *,
        crs: Any,
        transform: Affine | None,
        probabilities: bool,
        tags: dict[str, str] | None = None,
    ) -> None:
        self.out = Path(out)
        self.dtype, self.nodata = label_dtype(len(classes))
        h, w = shape
        base: dict[str, Any] = {
            "driver": "GTiff",
            "height": h,
            "width": w,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
            "BIGTIFF": "IF_SAFER",
        }
        if crs is not None:
            base["crs"] = crs
        if transform is not None:
            base["transform"] = transform
        self.finals = [self.out]
        if probabilities:
            self.finals.append(probabilities_path(self.out))
        self.partial = [p.with_name(f".{p.name}.partial.tif") for p in self.finals]
        self.staged = [p.with_name(f".{p.name}.cog.tif") for p in self.finals]
        self.probs = None
        self.labels = self._create(
            self.partial[0], count=1, dtype=self.dtype, nodata=self.nodata, **base
        )
        try:
            if self.dtype == np.uint8:
                from geofm.data.plot import class_colour_table

                self.labels.write_colormap(1, class_colour_table(len(classes)))
            self.labels.update_tags(1, **{f"class_{i}": c for i, c in enumerate(classes)})
            self.labels.update_tags(classes="\n".join(classes), **(tags or {}))
            self.labels.set_band_description(1, "class id")
            if probabilities:
                self.probs = self._create(
                    self.partial[1],
                    count=len(classes),
                    dtype="float32",
                    nodata=float("nan"),
                    predictor=3,
                    **base,
                )
                for i, c in enumerate(classes):
                    self.probs.set_band_description(i + 1, c)
                self.probs.update_tags(classes="\n".join(classes), **(tags or {}))
        except BaseException:
            self.abort()
            raise

    @staticmethod
    def _create(path: Path, **profile: Any):
        with warnings.catch_warnings():
            # a scene without georeferencing: the caller says so once, in its own words
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path, "w", **profile)

    def write(self, row: int, col: int, labels: np.ndarray, probs: np.ndarray | None) -> None:
        h, w = labels.shape
        window = Window(col, row, w, h)
        self.labels.write(labels.astype(self.dtype, copy=False), 1, window=window)
        if self.probs is not None and probs is not None:
            self.probs.write(probs.astype(np.float32, copy=False), window=window)

    def _close(self) -> None:
        for ds in (self.labels, self.probs):
            if ds is not None and not ds.closed:
                ds.close()

    def finish(self) -> list[Path]:
        """Convert the partial files to COGs at their final paths; returns those paths."""
        self._close()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._convert()
            # every file is staged: only now is anything at the final paths replaced
            for staged, final in zip(self.staged, self.finals, strict=True):
                os.replace(staged, final)
        finally:
            self.abort()
        return list(self.finals)

    def _convert(self) -> None:
        # the class map gets overviews (nearest class: cheap, and what a GIS shows zoomed
        # out); the probabilities none: averaging K float bands at every level costs more
        # memory and time than the map itself, and is rarely looked at zoomed out
        for partial, staged, overviews in zip(
            self.partial, self.staged, ("AUTO", "NONE"), strict=False
        ):
            rasterio.shutil.copy(
                partial,
                staged,
                driver="COG",
                COMPRESS="DEFLATE",
                BLOCKSIZE=256,
                OVERVIEWS=overviews,
                OVERVIEW_RESAMPLING="NEAREST",
                BIGTIFF="IF_SAFER",
            )

    def abort(self) -> None:
        """Close and remove whatever is left of the partial and staged files."""
        self._close()
        for leftover in [*self.partial, *self.staged]:
            leftover.unlink(missing_ok=True)
