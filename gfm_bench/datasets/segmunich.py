"""GFM-Bench SegMunich: land-cover segmentation over Munich, Sentinel-2 10 bands, 13 classes,
128 x 128 px.

SegMunich as released with SpectralGPT (Hong et al., "SpectralGPT: Spectral Remote Sensing
Foundation Model", IEEE TPAMI 2024; the TUM_128 tiles); as packaged for GFM-Bench (Si et
al. 2025).

**Layouts.**

* ``final`` (final GFM-Bench packaging, partly confirmed): ``SegMunich.zip`` at the root
  of ``GFM-Bench/SegMunich`` extracts to ``SegMunich/metadata.csv`` with columns
  ``optical_path, label_path, split`` (train / val / test: 3,000 / 403 / 403) and
  ``train/ val/ test/`` folders; paths are relative to the folder holding metadata.csv.
* ``old`` (read from the yuxuanw8-era loading script): ``dataset/metadata.csv`` with columns
  ``id, source`` (source in train / test) and ``{train,test}/{img,label}/<id>.tif``;
  validation is held out of the train rows (``np.random.seed(42)``, 90/10: 2,700 / 300).

**Image**: 10 bands (tifffile reads 128 x 128 x 10; rasterio C x H x W), values as stored.

**Label**: band 1 of the label tif (the script reads it as a PIL palette image, whose
values are the palette indices rasterio reads too), remapped as the script does:
21->1, 22->2, 23->3, 31->4, 32->6, 33->7, 41->8, 13->9, 14->10, with 0, 5, 11, 12 kept (the
card's ``class_values``). That remap leaves the class ids 0-12 unchanged, so labels stored
already remapped (which the final packaging may do; not verified) read the same. Any other
value raises. There is no ignore index: Background (0) is a class.
"""

from __future__ import annotations

import numpy as np

from .base import GFMBenchDataset, label_mask, metadata_rows, read_raster


def segmunich_label_mapping(class_values) -> dict[int, int]:
    """Raw label value -> class id: the card's ``class_values`` (raw values in class order),
    plus the class ids themselves (the script's remap leaves 0-12 unchanged)."""
    mapping = {int(raw): k for k, raw in enumerate(class_values)}
    for k in range(len(class_values)):
        mapping.setdefault(k, k)
    return mapping


class SegMunich(GFMBenchDataset):
    """GFM-Bench SegMunich reader (see the module docs)."""

    name = "segmunich"
    radar_reason = "SegMunich is Sentinel-2 only"

    def _index(self) -> None:
        if self.layout == "final":
            rows = metadata_rows(
                self.base / "metadata.csv", self.split, ["optical_path", "label_path"]
            )
            self.items = [(self.base / image, self.base / label) for image, label in rows]
        else:
            metadata = self.base / "dataset" / "metadata.csv"
            rows = metadata_rows(metadata, self.split, ["id"], by="source", heldout=True)
            folder = self.base / ("test" if self.split == "test" else "train")
            self.items = [
                (folder / "img" / f"{i}.tif", folder / "label" / f"{i}.tif") for (i,) in rows
            ]
        self._mapping = segmunich_label_mapping(self.card.class_values)

    def _read(self, index: int) -> dict[str, np.ndarray]:
        image_path, label_path = self.items[index]
        image = read_raster(image_path, what="SegMunich image", bands=len(self.card.bands))
        raw = read_raster(label_path, what="SegMunich label", bands=1, size=image.shape[1:])
        mask = label_mask(raw[0], self._mapping, label_path)
        return {"optical": image, "mask": mask}
