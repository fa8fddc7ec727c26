"""The mini suite's datasets: real data that ships in ``datasets/samples``.

* ``eurosat_ms_mini``: the 30 bundled EuroSAT-MS GeoTIFFs (3 per class) written into the
  GFM-Bench EuroSAT layout (split files and class folders) and read back by the GFM-Bench
  EuroSAT reader, so the mini suite goes through the same code path as the full dataset.
  One scene per class in each of train, val and test: a test of 10 scenes moves in steps
  of 10 points; the table's intervals say how little such a test resolves.
* ``salinas_a_pixels``: windows of the 204-band Salinas-A cube (AVIRIS, 3.7 m) labelled by
  their centre pixel, split into spatially disjoint blocks with a buffer of the window
  radius (no test window holds a training pixel), a scene-classification task.
* ``salinas_a_tiles``: the same cube cut into 16 x 16 tiles with their label masks, whole
  tiles assigned to train, val and test: a segmentation task for UPerNet.

These are small, so their numbers exercise the harness rather than rank encoders.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from geofm.data.cards import data_dir, load_dataset_card
from geofm.data.datasets import PixelPatchDataset, read_scene
from geofm.data.sample import IGNORE_INDEX, make_sample
from geofm.data.splits import spatially_disjoint_split

from .protocols import BenchData

__all__ = [
    "MINI_DATASETS",
    "load_mini",
    "eurosat_ms_mini",
    "salinas_a_pixels",
    "salinas_a_tiles",
    "SalinasTiles",
]

SALINAS_WINDOW = 16  # pixels: one 16-px patch per band for LESS ViT's default patch size
SALINAS_TILE = 16


def _salinas_scene():
    folder = data_dir() / "samples" / "salinas_a"
    return read_scene(
        folder / "SalinasA_corrected.hdr", folder / "SalinasA_gt.mat", card="salinas_a"
    )


def _salinas_data(name: str, task: str, parts: Mapping[str, Dataset], **extra) -> BenchData:
    card = load_dataset_card("salinas_a")
    return BenchData(
        name=name,
        task=task,
        num_classes=card.num_classes,
        classes=card.classes,
        card=card,
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        **extra,
    )


def eurosat_ms_mini(cache_dir: str | os.PathLike) -> BenchData:
    """The bundled EuroSAT-MS scenes in the GFM-Bench EuroSAT layout under ``cache_dir``."""
    from .datasets import load_bench_data
    from .generate import generate

    root = Path(cache_dir) / "eurosat_ms_mini"
    if not (root / ".complete").exists():
        generate("eurosat", root, n=3)  # all bundled scenes: 1 train, 1 val, 1 test per class
        (root / ".complete").write_text("written by gfm_bench.mini\n")
    data = load_bench_data("eurosat", root)
    data.name = "eurosat_ms_mini"
    return data


def salinas_a_pixels(
    seed: int = 0,
    train: float = 0.4,
    val: float = 0.2,
    block_size: int = 24,
    max_train_per_class: int = 50,
    max_val: int = 300,
) -> BenchData:
    """Salinas-A windows (``SALINAS_WINDOW`` px, label = centre pixel), disjoint split.

    Windows are ``SALINAS_WINDOW + 1`` pixels wide around each labelled pixel and cropped to
    ``SALINAS_WINDOW`` by the protocol (centre crop for evaluation, random for training).
    The split takes whole ``block_size`` blocks per part with a buffer of the window radius
    (:func:`geofm.data.splits.spatially_disjoint_split`); its ``seed`` is fixed per suite,
    so the protocol seeds vary training only. At most ``max_train_per_class`` training
    windows per class and ``max_val`` validation windows are kept (a fixed random draw),
    which bounds the feature extraction of a 204-band encoder on two CPU cores; the test
    part is kept whole.
    """
    scene = _salinas_scene()
    radius = SALINAS_WINDOW // 2
    mask = scene["mask"].numpy()
    split = spatially_disjoint_split(
        mask, radius, train=train, val=val, block_size=block_size, seed=seed
    )
    coords = {p: split.coords(p) for p in ("train", "val", "test")}
    rng = np.random.default_rng(seed)
    labels = mask[coords["train"][:, 0], coords["train"][:, 1]]
    keep = [
        rng.permutation(np.flatnonzero(labels == k))[:max_train_per_class]
        for k in np.unique(labels)
    ]
    coords["train"] = coords["train"][np.sort(np.concatenate(keep))]
    if len(coords["val"]) > max_val:
        coords["val"] = coords["val"][np.sort(rng.permutation(len(coords["val"]))[:max_val])]
    parts = {p: PixelPatchDataset(scene, c, radius=radius) for p, c in coords.items()}
    return _salinas_data(
        "salinas_a_pixels",
        "classification",
        parts,
        crop=SALINAS_WINDOW,
        train_labels=parts["train"].labels,
    )


class SalinasTiles(Dataset):
    """Non-overlapping ``size`` x ``size`` tiles of a scene, each with its label mask."""

    def __init__(self, scene: dict, origins: np.ndarray, size: int):
        self.scene, self.origins, self.size = scene, np.asarray(origins, dtype=np.int64), size

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, i: int) -> dict:
        r, c = (int(v) for v in self.origins[i])
        s = self.size
        return make_sample(
            self.scene["image"][:, r : r + s, c : c + s],
            self.scene["wavelengths"],
            self.scene["gsd"],
            self.scene["bands"],
            mask=self.scene["mask"][r : r + s, c : c + s].clone(),
        )


def salinas_a_tiles(
    seed: int = 0,
    size: int = SALINAS_TILE,
    train: float = 0.6,
    val: float = 0.2,
    upscale: float = 4.0,
) -> BenchData:
    """Salinas-A cut into ``size`` tiles (those with labelled pixels), split by tile at
    random (``seed``). The protocol resamples tiles by ``upscale`` (16 px become 64 px, a
    4 x 4 grid of 16-px patches), as the paper does with So2Sat's 32-px images."""
    scene = _salinas_scene()
    mask = scene["mask"]
    H, W = mask.shape
    origins = [
        (r, c)
        for r in range(0, H - size + 1, size)
        for c in range(0, W - size + 1, size)
        if bool((mask[r : r + size, c : c + size] != IGNORE_INDEX).any())
    ]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(origins))
    n_train = round(train * len(origins))
    n_val = max(1, round(val * len(origins)))
    pick = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    parts = {
        p: SalinasTiles(scene, np.array([origins[i] for i in sorted(idx)]), size)
        for p, idx in pick.items()
    }
    return _salinas_data("salinas_a_tiles", "segmentation", parts, upscale=upscale)


MINI_DATASETS = ("eurosat_ms_mini", "salinas_a_pixels", "salinas_a_tiles")


def load_mini(name: str, cache_dir: str | os.PathLike) -> BenchData:
    """One of :data:`MINI_DATASETS`."""
    if name == "eurosat_ms_mini":
        return eurosat_ms_mini(cache_dir)
    if name == "salinas_a_pixels":
        return salinas_a_pixels()
    if name == "salinas_a_tiles":
        return salinas_a_tiles()
    raise ValueError(f"unknown mini dataset {name!r}; choose from {', '.join(MINI_DATASETS)}")
