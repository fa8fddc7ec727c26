"""GFM-Bench So2Sat LCZ42: local climate zone classification, Sentinel-2 10 bands, 17 classes,
32 x 32 px.

Zhu et al., "So2Sat LCZ42: A Benchmark Data Set for the Classification of Global Local
Climate Zones", IEEE GRSM 2020; version 3, ``culture_10`` split, as packaged for GFM-Bench
(Si et al. 2025).

**Layout** (``old``: the So2Sat.zip of the yuxuanw8/EuroSAT repository, read by the
yuxuanw8-era loading script; the final GFM-Bench repackaging, read with tif + csv by its
script, is not verified and not read)::

    culture_10/training.h5    sen1 (N, 32, 32, 8) f8, sen2 (N, 32, 32, 10) f8, label (N, 17)
    culture_10/testing.h5     the same keys

Arrays are H x W x C and are rolled to C x H x W. The label is the argmax of the one-hot
row. Validation is held out of training.h5 (``np.random.seed(42)``, 90/10); test is all of
testing.h5. Values are reflectance (DN / 10,000).

Only the Sentinel-2 channels are read: GFM-Bench's default, and the 8 ``sen1`` channels
carry only dummy labels in the script (``S1_B1`` ... with wavelengths 5200-5900), so they
are not offered as a radar modality.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from .base import GFMBenchDataset, heldout_val_split


class So2Sat(GFMBenchDataset):
    """GFM-Bench So2Sat reader (see the module docs). ``labels``: class ids of the split."""

    name = "so2sat"
    radar_reason = (
        "its 8 sen1 channels have no verified band names or wavelengths (the "
        "script gives them dummy ones), so only the Sentinel-2 channels are read"
    )

    def _index(self) -> None:
        h5_name = "testing.h5" if self.split == "test" else "training.h5"
        self.file = self.base / "culture_10" / h5_name
        with h5py.File(self.file, "r") as f:
            self._check_keys(f)
            onehot = f["label"][()]
        if self.split == "test":
            self.indices = np.arange(onehot.shape[0])
        else:
            train, val = heldout_val_split(onehot.shape[0])
            self.indices = train if self.split == "train" else val
        self.labels = onehot.argmax(axis=1)[self.indices].astype(np.int64)
        self._handle: h5py.File | None = None
        self._pid: int | None = None

    def _check_keys(self, f: h5py.File) -> None:
        missing = [k for k in ("sen2", "label") if k not in f]
        if missing:
            raise ValueError(
                f"So2Sat file {f.filename} lacks the keys {missing} (it has {sorted(f)})"
            )
        n, h, w, c = f["sen2"].shape
        if c != len(self.card.bands) or f["label"].shape != (n, self.num_classes):
            raise ValueError(
                f"So2Sat file {f.filename}: sen2 has shape {f['sen2'].shape} and "
                f"label {f['label'].shape}; expected (N, H, W, "
                f"{len(self.card.bands)}) and (N, {self.num_classes})"
            )

    def _h5(self) -> h5py.File:
        # One handle per process: h5py handles must not cross a DataLoader fork.
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.file, "r")
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, index: int) -> dict[str, np.ndarray]:
        s2 = self._h5()["sen2"][int(self.indices[index])]
        return {"optical": np.moveaxis(s2, -1, 0).astype(np.float32), "label": self.labels[index]}
