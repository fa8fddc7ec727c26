#!/usr/bin/env python3
"""Write a tiny SSL4EO-S12 tree (Sentinel-2 L1C and Sentinel-1) with torchgeo's layout.

SSL4EO-S12 is 1.5 TB and cannot ship; this writes ``<root>/s2c/<7-digit location>/
<acquisition>/B1.tif ... B12.tif`` (13 single-band uint16 GeoTIFFs of 264 x 264 px at 10 m,
values drawn around the dataset's band means) and ``<root>/s1/<location>/<acquisition>/
VV.tif, VH.tif`` (float32 backscatter in dB), so that ``torchgeo.datasets.SSL4EOS12`` and
geofm's pretraining config read it exactly as they would read the real data.

Usage: python datasets/scripts/make_ssl4eo_fixture.py ROOT [--locations 4] [--seasons 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
MEANS = [1606, 1391, 1315, 1364, 1549, 2092, 2372, 2300, 2560, 830, 22, 2177, 1524]
SIZE = 264
S1_BANDS = {"VV": (-12.5, 5.3), "VH": (-20.2, 5.9)}  # dB, mean and spread


def write_fixture(root: Path, locations: int = 4, seasons: int = 1, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for loc in range(locations):
        for s in range(seasons):
            folder = (
                root
                / "s2c"
                / f"{loc:07d}"
                / f"2021{3 * s + 1:02d}15T101031_2021{3 * s + 1:02d}15T101025_T32UPU"
            )
            folder.mkdir(parents=True, exist_ok=True)
            transform = from_origin(600000 + 3000 * loc, 5300000, 10, 10)
            for band, mean in zip(BANDS, MEANS, strict=True):
                data = rng.normal(mean, 0.3 * mean + 5, (SIZE, SIZE)).clip(0, 65535)
                _write(folder / f"{band}.tif", data.astype(np.uint16), transform)
            s1 = (
                root
                / "s1"
                / f"{loc:07d}"
                / (
                    f"S1A_IW_GRDH_1SDV_2021{3 * s + 1:02d}15T053129_2021{3 * s + 1:02d}15T053154_"
                    "036998_045A8B_1F3C"
                )
            )
            s1.mkdir(parents=True, exist_ok=True)
            for band, (mean, spread) in S1_BANDS.items():
                data = rng.normal(mean, spread, (SIZE, SIZE)).astype(np.float32)
                _write(s1 / f"{band}.tif", data, transform)
    return root


def _write(path: Path, data: np.ndarray, transform) -> None:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=SIZE,
        height=SIZE,
        count=1,
        dtype=data.dtype.name,
        crs="EPSG:32632",
        transform=transform,
    ) as dst:
        dst.write(data, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--locations", type=int, default=4)
    parser.add_argument("--seasons", type=int, default=1)
    args = parser.parse_args()
    write_fixture(args.root, args.locations, args.seasons)
    print(f"wrote {args.locations} locations x {args.seasons} season(s) under {args.root}")


if __name__ == "__main__":
    main()
