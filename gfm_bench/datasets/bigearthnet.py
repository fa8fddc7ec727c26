"""GFM-Bench BigEarthNet v1: multi-label scene classification, Sentinel-2 L2A 12 bands +
Sentinel-1 2 bands, 19 classes, 120 x 120 px.

Sumbul et al., "BigEarthNet: A Large-Scale Benchmark Archive for Remote Sensing Image
Understanding", IGARSS 2019, and "BigEarthNet-MM", IEEE GRSM 2021 (the S1 patches and the
19-class nomenclature); as packaged for GFM-Bench (Si et al. 2025).

**Layout** (``old``: the BigEarthNet.zip read by the yuxuanw8-era loading script; the final
GFM-Bench repackaging, ``data/bigearthnet_part_*``, is not verified and not read)::

    bigearthnet-{train,val,test}.csv        (or -350k.csv) lines "S2name,S1name", no header
    BigEarthNet-v1.0/<S2>/<S2>_B01.tif ... _B12.tif, _B8A.tif, <S2>_labels_metadata.json
    BigEarthNet-S1-v1.0/<S1>/<S1>_VH.tif, <S1>_VV.tif

**Reading.** Every band is resampled bilinearly to 120 x 120 and read as float32 (the
script's ``out_dtype='int32'`` truncated the float dB values of S1; not inherited). S2
channels are in band order B01 ... B08, B8A, B09, B11, B12. The S1 files sort as ``_VH`` <
``_VV``, so the radar data are **VH, VV**; they are named so here (the script calls them
VV, VH: ``compat=True`` reproduces that labelling, with the statistics the script applies).

**Labels.** The 43 CORINE names of the S2 ``*_labels_metadata.json`` ``labels`` list,
mapped to the 19 classes with the card's ``label_mapping_43_to_19`` (unmapped ones
dropped), as a float32 multi-hot vector of length 19.

**Rows without S1** (``S1name`` is ``nan``): the radar channels of such a row are filled
with zeros, as one version of the script does (the other stops at such a row); this keeps
published numbers comparable. Their positions in the split are ``rows_without_radar``. Zero dB is a
real backscatter level, so train on radar only after checking that this list is empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import GFMBenchDataset, read_raster

SIZE = (120, 120)


def band_suffix(path: Path) -> str:
    """``.../S2A_..._B8A.tif`` -> ``B8A``."""
    return path.stem.rsplit("_", 1)[-1]


class BigEarthNet(GFMBenchDataset):
    """GFM-Bench BigEarthNet reader (see the module docs)."""

    name = "bigearthnet"
    has_radar = True
    compat_reason = ""

    def radar_channels(self):
        names, wavelengths, mean, std = super().radar_channels()
        if self.compat:
            stats = self.card["radar_statistics"]
            names = list(self.card["gfmbench_compat_radar_bands"])
            wavelengths = list(self.card["gfmbench_compat_radar_wavelengths_nm"])
            mean, std = list(stats["gfmbench_compat_mean"]), list(stats["gfmbench_compat_std"])
        return names, wavelengths, mean, std

    def _split_file(self) -> Path:
        for name in (f"bigearthnet-{self.split}.csv", f"bigearthnet-{self.split}-350k.csv"):
            if (self.base / name).is_file():
                return self.base / name
        raise FileNotFoundError(f"no bigearthnet-{self.split}.csv (or -350k.csv) in {self.base}")

    def _index(self) -> None:
        split_file = self._split_file()
        self.s2_folders: list[Path] = []
        self.s1_folders: list[Path | None] = []
        with open(split_file, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                line = line.strip()
                if not line:
                    continue
                parts = [p.strip() for p in line.split(",")]
                if len(parts) != 2:
                    raise ValueError(
                        f"{split_file}, line {number}: expected 'S2name,S1name', got {line!r}"
                    )
                s2, s1 = parts
                self.s2_folders.append(self.base / "BigEarthNet-v1.0" / s2)
                self.s1_folders.append(
                    None if s1.lower() == "nan" else self.base / "BigEarthNet-S1-v1.0" / s1
                )
        self.rows_without_radar = np.array(
            [i for i, s1 in enumerate(self.s1_folders) if s1 is None], dtype=np.int64
        )
        self._class43 = {name: i for i, name in enumerate(self.card["classes_43"])}
        self._to19 = {int(k): int(v) for k, v in self.card["label_mapping_43_to_19"].items()}

    def __len__(self) -> int:
        return len(self.s2_folders)

    def _band_files(self, folder: Path, expected: list[str], what: str) -> list[Path]:
        if not folder.is_dir():
            raise FileNotFoundError(f"BigEarthNet {what} folder not found: {folder}")
        by_band = {band_suffix(p): p for p in folder.glob("*.tif")}
        missing = [b for b in expected if b not in by_band]
        extra = sorted(set(by_band) - set(expected))
        if missing or extra:
            raise ValueError(
                f"BigEarthNet {what} folder {folder}: expected bands "
                f"{', '.join(expected)}; missing {missing or 'none'}, "
                f"unexpected {extra or 'none'}"
            )
        return [by_band[b] for b in expected]

    def _read_optical(self, index: int) -> np.ndarray:
        files = self._band_files(self.s2_folders[index], list(self.card.band_names), "S2")
        return np.concatenate(
            [read_raster(p, what="BigEarthNet S2 band", bands=1, out_shape=SIZE) for p in files]
        )

    def _read_radar(self, index: int) -> np.ndarray:
        folder = self.s1_folders[index]
        if folder is None:  # 'nan' in the split file: zero-filled (module docs)
            return np.zeros((2, *SIZE), dtype=np.float32)
        # The files sorted by name give VH, VV: the order the script stacks them in.
        files = sorted(self._band_files(folder, ["VH", "VV"], "S1"), key=lambda p: p.name)
        if [band_suffix(p) for p in files] != list(self.card["radar_bands"]["bands"]):
            raise ValueError(
                f"BigEarthNet S1 folder {folder}: files sort as "
                f"{[p.name for p in files]}, not in the card's radar order"
            )
        return np.concatenate(
            [read_raster(p, what="BigEarthNet S1 band", bands=1, out_shape=SIZE) for p in files]
        )

    def _read_label(self, index: int) -> np.ndarray:
        folder = self.s2_folders[index]
        found = sorted(folder.glob("*_labels_metadata.json")) or sorted(folder.glob("*.json"))
        if not found:
            raise FileNotFoundError(
                f"no *_labels_metadata.json in the BigEarthNet S2 folder {folder}"
            )
        with open(found[0], encoding="utf-8") as f:
            names = json.load(f)["labels"]
        unknown = [n for n in names if n not in self._class43]
        if unknown:
            raise ValueError(f"{found[0]}: labels {unknown} are not BigEarthNet's 43 classes")
        target = np.zeros(self.num_classes, dtype=np.float32)
        for name in names:
            k = self._to19.get(self._class43[name])
            if k is not None:
                target[k] = 1.0
        return target

    def _read(self, index: int) -> dict[str, np.ndarray]:
        out = {"label": self._read_label(index)}
        if "optical" in self.modalities:
            out["optical"] = self._read_optical(index)
        if "radar" in self.modalities:
            out["radar"] = self._read_radar(index)
        return out
