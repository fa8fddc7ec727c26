"""GFM-Bench EuroSAT: Sentinel-2 L1C scene classification, 13 bands, 10 classes, 64 x 64 px.

Helber et al., "EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and Land
Cover Classification", IEEE JSTARS 2019; as packaged for GFM-Bench (Si et al. 2025).

**Layout** (``old``, read from the yuxuanw8-era loading script; the final GFM-Bench
repackaging is not verified)::

    eurosat-train.txt  eurosat-val.txt  eurosat-test.txt   lines "<Class>_<n>.jpg"
    EuroSAT/<Class>/<Class>_<n>.tif                        64 x 64 x 13 uint16

A split line names a ``.jpg`` (the torchgeo split files); the file read is the ``.tif`` of
the same name, and the class is the text before the first ``_``. Splits: 16,200 / 5,400 /
5,400.

**Bands.** The GeoTIFFs store B01 ... B12 then B8A (phelber/EuroSAT#7). The GFM-Bench script
names them B1 ... B8, B8A, B9 ... B12 and so gives channels 8-12 the wrong wavelengths; this
reader uses the true order from the card, and ``compat=True`` the script's labels
(``gfmbench_compat_bands`` / ``gfmbench_compat_wavelengths_nm``). The statistics are in file
order either way.
"""

from __future__ import annotations

import numpy as np

from .base import GFMBenchDataset, read_raster


class EuroSAT(GFMBenchDataset):
    """GFM-Bench EuroSAT reader (see the module docs). ``labels``: class ids of the split."""

    name = "eurosat"
    compat_reason = ""
    radar_reason = "EuroSAT-MS is Sentinel-2 only"

    def optical_channels(self):
        names, wavelengths, mean, std = super().optical_channels()
        if self.compat:
            names = list(self.card["gfmbench_compat_bands"])
            wavelengths = list(self.card["gfmbench_compat_wavelengths_nm"])
        return names, wavelengths, mean, std

    def _index(self) -> None:
        split_file = self.base / f"eurosat-{self.split}.txt"
        classes = self.card.classes
        self.items = []
        labels = []
        with open(split_file, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                line = line.strip()
                if not line:
                    continue
                name = line.replace(".jpg", ".tif")
                label = name.split("_")[0]
                if label not in classes:
                    raise ValueError(
                        f"{split_file}, line {number}: {line!r} names the class "
                        f"{label!r}, which is not one of {', '.join(classes)}"
                    )
                self.items.append(self.base / "EuroSAT" / label / name)
                labels.append(classes.index(label))
        self.labels = np.asarray(labels, dtype=np.int64)

    def _read(self, index: int) -> dict[str, np.ndarray]:
        image = read_raster(self.items[index], what="EuroSAT image", bands=len(self.card.bands))
        return {"optical": image, "label": self.labels[index]}
