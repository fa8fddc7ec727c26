"""GFM-Bench NLCD-L (``GFM-Bench/SSL4EO-L-Benchmark``, config ``etm_oli_toa_nlcd``): land-cover
segmentation, Landsat 7 ETM+ TOA 9 bands + Landsat 8/9 OLI/TIRS TOA 11 bands at 30 m,
21 NLCD classes.

Stewart et al., "SSL4EO-L: Datasets and Foundation Models for Landsat Imagery", NeurIPS 2023
Datasets and Benchmarks; as used by GFM-Bench (Si et al. 2025). Labels: the 2019 National
Land Cover Database (MRLC).

**PROBABLE LAYOUT, UNVERIFIED.** The GFM-Bench loading script and the tree of its
``SSL4EOLBenchmark.zip`` were not seen. This reader follows the probable source, the
torchgeo SSL4EO-L benchmark (``torchgeo.datasets.SSL4EOLBenchmark``)::

    ssl4eo_l_etm_toa_benchmark/**/all_bands.tif         9 bands, 264 x 264, uint8
    ssl4eo_l_oli_tirs_toa_benchmark/**/all_bands.tif    11 bands, 264 x 264, uint8
    ssl4eo_l_oli_nlcd/**/nlcd_2019.tif                  (else ssl4eo_l_etm_nlcd/**)

The ETM+ and OLI/TIRS images are paired by their sample folder relative to the image root
and stacked ETM+ first (20 channels, in the order of the channel names ``B1E ... B8E,
B1O ... B11O`` that the LESS ViT authors give this dataset: ``docs/design_notes.md``); the
mask sits at the same relative folder. Splits as torchgeo: sort the paths, ``np.random.seed(0)``,
shuffle, 70 / 15 / 15 (17,500 / 3,750 / 3,750 of 25,000). Mask values are mapped to the
ordinal class ids of the card's ``class_values`` (NLCD codes 0, 11, 12, ..., 95); any other
code becomes class 0, as torchgeo maps unlisted codes to background. Opening this reader
emits an :class:`~gfm_bench.datasets.layouts.UnverifiedLayoutWarning`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .base import GFMBenchDataset, label_mask, read_raster
from .layouts import UnverifiedLayoutWarning

ETM_DIR = "ssl4eo_l_etm_toa_benchmark"
OLI_DIR = "ssl4eo_l_oli_tirs_toa_benchmark"
MASK_DIRS = ("ssl4eo_l_oli_nlcd", "ssl4eo_l_etm_nlcd")
IMAGE_NAME = "all_bands.tif"
MASK_NAME = "nlcd_2019.tif"
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
SPLIT_SEED = 0
ETM_BANDS, OLI_BANDS = 9, 11


def torchgeo_split(n: int, split: str) -> np.ndarray:
    """Indices of ``split`` among ``n`` sorted samples, as torchgeo's SSL4EOLBenchmark cuts them
    (``np.random.seed(0)``, shuffle ``arange(n)``, 70 / 15 / 15 by ``int`` sizes)."""
    sizes = (np.array(SPLIT_FRACTIONS) * n).astype(int)
    indices = np.arange(n)
    np.random.RandomState(SPLIT_SEED).shuffle(indices)
    groups = np.split(indices, np.cumsum(sizes)[:-1])
    return groups[("train", "val", "test").index(split)]


def sample_folders(image_root: Path) -> dict[str, Path]:
    """``{relative sample folder (posix): all_bands.tif path}`` under an image root."""
    return {p.parent.relative_to(image_root).as_posix(): p for p in image_root.rglob(IMAGE_NAME)}


class NLCDL(GFMBenchDataset):
    """GFM-Bench NLCD-L reader, probable layout, unverified (see the module docs)."""

    name = "nlcd_l"
    radar_reason = "NLCD-L is Landsat optical and thermal only"
    compat_reason = (
        "the GFM-Bench script of this dataset was not seen, so how it labels the "
        "channels is unknown"
    )

    def _index(self) -> None:
        warnings.warn(
            f"nlcd_l: reading {self.base} with the PROBABLE, UNVERIFIED layout of the torchgeo "
            "SSL4EO-L benchmark; the GFM-Bench SSL4EOLBenchmark.zip tree, channel wavelengths "
            "and statistics are unknown",
            UnverifiedLayoutWarning,
            stacklevel=3,
        )
        etm = sample_folders(self.base / ETM_DIR)
        oli = sample_folders(self.base / OLI_DIR)
        if set(etm) != set(oli):
            only_etm, only_oli = sorted(set(etm) - set(oli)), sorted(set(oli) - set(etm))
            raise ValueError(
                f"nlcd_l: the ETM+ and OLI/TIRS sample folders under {self.base} do not pair up: "
                f"{len(only_etm)} only in {ETM_DIR} (e.g. {only_etm[:3]}), {len(only_oli)} only "
                f"in {OLI_DIR} (e.g. {only_oli[:3]})"
            )
        if not etm:
            raise ValueError(f"nlcd_l: no {IMAGE_NAME} under {self.base / ETM_DIR}")
        mask_dir = next(d for d in MASK_DIRS if (self.base / d).is_dir())
        # torchgeo sorts the full image paths; the common prefix leaves "<rel>/all_bands.tif".
        keys = sorted(etm, key=lambda rel: f"{rel}/{IMAGE_NAME}")
        chosen = [keys[i] for i in torchgeo_split(len(keys), self.split)]
        self.items = [(etm[k], oli[k], self.base / mask_dir / k / MASK_NAME) for k in chosen]
        self._mapping = {int(v): k for k, v in enumerate(self.card.class_values)}

    def _read(self, index: int) -> dict[str, np.ndarray]:
        etm_path, oli_path, mask_path = self.items[index]
        etm = read_raster(etm_path, what="ETM+ TOA image", bands=ETM_BANDS)
        oli = read_raster(oli_path, what="OLI/TIRS TOA image", bands=OLI_BANDS, size=etm.shape[1:])
        raw = read_raster(mask_path, what="NLCD mask", bands=1, size=etm.shape[1:])[0]
        mask = label_mask(raw, self._mapping, mask_path, unknown=0)
        return {"optical": np.concatenate([etm, oli]), "mask": mask}
