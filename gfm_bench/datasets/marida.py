"""GFM-Bench MARIDA: marine debris segmentation, Sentinel-2 11 bands, 11 classes, 96 x 96 px.

Kikaki et al., "MARIDA: A benchmark for Marine Debris detection from Sentinel-2 remote
sensing data", PLoS ONE 2022; as packaged for GFM-Bench (Si et al. 2025).

**Layout** (``old``: the MARIDA.zip read by the yuxuanw8-era loading script; the final
GFM-Bench repackaging is not verified)::

    metadata.csv                                    columns filename (e.g. 1-12-19_48MYU_0), split
    patches/S2_<date>_<tile>/S2_<date>_<tile>_<n>.tif       256 x 256 x 11 float reflectance
    patches/S2_<date>_<tile>/S2_<date>_<tile>_<n>_cl.tif    class codes 0-15

Splits come from the ``split`` column (train / val / test). Each 256 x 256 image is cut into
9 crops of 96 px at offsets {0, 80, 160}^2, so a split has 9 items per image.

**Image**: 11 channels B01 ... B08, B8A, B11, B12 (the script's band-name list has only 10
entries and omits B8; its wavelengths, statistics and the files have 11 channels, which the
card's ``bands`` give). NaN pixels are replaced by the band's mean (card statistics), as the
script does.

**Labels**: the card's ``label_mapping``: 1-11 -> 0-10, 12-15 (waves, cloud shadows, wakes,
mixed water) -> Marine Water (6), 0 (unlabelled) -> 255. Any other value raises.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import NINE_CROPS, GFMBenchDataset, label_mask, metadata_rows, read_raster


def marida_paths(patches: Path, filename: str) -> tuple[Path, Path]:
    """Image and label paths of a metadata.csv ``filename`` such as ``1-12-19_48MYU_0``."""
    parts = filename.split("_")
    folder = "_".join(["S2", *parts[:-1]])
    stem = "_".join(["S2", *parts])
    return patches / folder / f"{stem}.tif", patches / folder / f"{stem}_cl.tif"


class MARIDA(GFMBenchDataset):
    """GFM-Bench MARIDA reader (see the module docs)."""

    name = "marida"
    radar_reason = "MARIDA is Sentinel-2 only"
    compat_reason = (
        "the script's band-name list (gfmbench_compat_bands) has 10 names for "
        "the 11 channels (it omits B8), so it cannot label the image; its "
        "wavelengths equal the true ones"
    )
    crops_per_image = len(NINE_CROPS)

    def _index(self) -> None:
        rows = metadata_rows(self.base / "metadata.csv", self.split, ["filename"])
        self.items = [marida_paths(self.base / "patches", n) for (n,) in rows]
        self._fill = np.asarray(self.card.mean, dtype=np.float32)[:, None, None]

    def _read(self, index: int) -> dict[str, np.ndarray]:
        (image_path, label_path), crop = self._item(index)
        image = read_raster(image_path, what="MARIDA image", bands=len(self.card.bands), **crop)
        image = np.where(np.isnan(image), self._fill, image)
        raw = read_raster(label_path, what="MARIDA label", bands=1, **crop)
        mask = label_mask(raw[0], self.card["label_mapping"], label_path)
        return {"optical": image, "mask": mask}
