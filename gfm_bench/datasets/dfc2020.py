"""GFM-Bench DFC2020: land-cover segmentation, Sentinel-2 L1C 13 bands + Sentinel-1 VV/VH,
8 classes, 96 x 96 px.

The IEEE GRSS Data Fusion Contest 2020 scenes (Robinson et al., "Global Land-Cover Mapping
With Weak Supervision", IEEE JSTARS 2021) from SEN12MS (Schmitt et al., ISPRS Annals 2019);
as packaged for GFM-Bench (Si et al. 2025). The label is channel 0 of the SEN12MS ``lc``
file: **MODIS IGBP** at 500 m, not the 10 m DFC labels.

**Layouts.**

* ``final`` (final GFM-Bench packaging, partly confirmed): the split zip
  ``data/DFC2020.z01 ...`` + ``data/DFC2020.zip`` of ``GFM-Bench/DFC2020`` extracts to
  ``DFC2020/metadata.csv`` with columns ``optical_path, radar_path, label_path, split``
  (train / val / test: 41,537 / 4,615 / 8,874 pre-cut 96-px tiles); paths are relative to
  the folder holding metadata.csv.
* ``old`` (read from the yuxuanw8-era loading script): ``metadata.csv`` with columns
  ``lc_path, s1_path, s2_path, split`` (split in train / test), paths relative to ``train/``
  or ``test/``; 256 x 256 images, each cut into 9 crops of 96 px at offsets {0, 80, 160}^2
  (so a split has 9 items per image); validation is held out of the train *images*
  (``np.random.seed(42)``, 90/10) before cutting.

**Channels**: S2 B01 ... B08, B8A, B09, B10, B11, B12 (L1C DN), then, with
``modalities=("optical", "radar")``, S1 VV, VH in dB (the file order really is VV, VH here).

**Labels**: the card's ``label_mapping`` (IGBP 1-5 Forest, 6-7 Shrubland, 10 Grassland,
11 Wetland, 12 and 14 Cropland, 13 Urban, 16 Barren, 17 Water; savanna 8-9, snow/ice 15
and 0 -> 255, ignored). Any other value raises.
"""

from __future__ import annotations

import numpy as np

from .base import NINE_CROPS, GFMBenchDataset, label_mask, metadata_rows, read_raster


class DFC2020(GFMBenchDataset):
    """GFM-Bench DFC2020 reader (see the module docs)."""

    name = "dfc2020"
    has_radar = True

    def _index(self) -> None:
        final = self.layout == "final"  # else "old": 9 crops per image, val held out of train
        self.crops_per_image = 1 if final else len(NINE_CROPS)
        columns = (
            ("optical_path", "radar_path", "label_path")
            if final
            else ("s2_path", "s1_path", "lc_path")
        )
        folder = self.base if final else self.base / ("test" if self.split == "test" else "train")
        rows = metadata_rows(self.base / "metadata.csv", self.split, columns, heldout=not final)
        self.items = [tuple(folder / p for p in row) for row in rows]  # (optical, radar, label)

    def _read(self, index: int) -> dict[str, np.ndarray]:
        (optical_path, radar_path, label_path), kwargs = self._item(index)
        out = {}
        if "optical" in self.modalities:
            out["optical"] = read_raster(
                optical_path, what="DFC2020 S2", **kwargs, bands=len(self.card.bands)
            )
        if "radar" in self.modalities:
            out["radar"] = read_raster(radar_path, what="DFC2020 S1", bands=2, **kwargs)
        raw = read_raster(label_path, what="DFC2020 label", **kwargs)[0]
        mask = label_mask(raw, self.card["label_mapping"], label_path)
        for name, array in out.items():
            if array.shape[1:] != mask.shape:
                raise ValueError(
                    f"DFC2020 item {index}: the {name} image is "
                    f"{array.shape[1]} x {array.shape[2]} but the label "
                    f"{mask.shape[0]} x {mask.shape[1]} ({label_path})"
                )
        out["mask"] = mask
        return out
