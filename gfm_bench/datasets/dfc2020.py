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

import csv
from pathlib import Path

import numpy as np

from .base import (
    FULL_SIZE,
    NINE_CROPS,
    GFMBenchDataset,
    as_label_values,
    card_mapping,
    crop_window,
    heldout_val_split,
    read_raster,
    remap_labels,
)


class DFC2020(GFMBenchDataset):
    """GFM-Bench DFC2020 reader (see the module docs)."""

    name = "dfc2020"
    has_radar = True

    def _index(self) -> None:
        with open(self.base / "metadata.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self.items: list[tuple[Path, Path, Path]] = []  # (optical, radar, label)
        if self.layout == "final":
            self.crops_per_image = 1
            for row in rows:
                if row["split"].strip() == self.split:
                    self.items.append(
                        tuple(
                            self.base / row[k].strip()
                            for k in ("optical_path", "radar_path", "label_path")
                        )
                    )
        else:
            self.crops_per_image = len(NINE_CROPS)
            source = "test" if self.split == "test" else "train"
            chosen = [row for row in rows if row["split"].strip() == source]
            if self.split != "test":
                train, val = heldout_val_split(len(chosen))
                chosen = [chosen[i] for i in (train if self.split == "train" else val)]
            folder = self.base / source
            self.items = [
                tuple(folder / row[k].strip() for k in ("s2_path", "s1_path", "lc_path"))
                for row in chosen
            ]
        self._mapping = card_mapping(self.card["label_mapping"])

    def __len__(self) -> int:
        return len(self.items) * self.crops_per_image

    def _read(self, index: int) -> dict[str, np.ndarray]:
        image, crop = divmod(index, self.crops_per_image)
        optical_path, radar_path, label_path = self.items[image]
        if self.layout == "final":
            kwargs = {}
        else:
            kwargs = {"size": (FULL_SIZE, FULL_SIZE), "window": crop_window(crop)}
        out = {}
        if "optical" in self.modalities:
            out["optical"] = read_raster(
                optical_path, what="DFC2020 S2", **kwargs, bands=len(self.card.bands)
            )
        if "radar" in self.modalities:
            out["radar"] = read_raster(radar_path, what="DFC2020 S1", bands=2, **kwargs)
        raw = read_raster(label_path, what="DFC2020 label", **kwargs)[0]
        mask = remap_labels(as_label_values(raw, label_path), self._mapping, label_path)
        for name, array in out.items():
            if array.shape[1:] != mask.shape:
                raise ValueError(
                    f"DFC2020 item {index}: the {name} image is "
                    f"{array.shape[1]} x {array.shape[2]} but the label "
                    f"{mask.shape[0]} x {mask.shape[1]} ({label_path})"
                )
        out["mask"] = mask
        return out
