"""Map-style datasets that yield geofm samples (see :mod:`geofm.data.sample`).

* :class:`SceneFolderDataset`: scene classification from a folder per class of GeoTIFFs,
  the EuroSAT layout (``<root>/<Class>/<Class>_<n>.tif``); one labelled sample per file.
* :class:`PixelPatchDataset`: pixel classification on a hyperspectral scene; item ``i`` is
  the ``(2 * radius + 1)`` square window centred on the ``i``-th pixel of a list, labelled
  with that pixel's class, as patch classifiers such as LoLA-SpecViT (Zidi et al.,
  "LoLA-SpecViT: Local Attention SwiGLU Vision Transformer with LoRA for Hyperspectral
  Imaging", 2025) consume it. Which pixels go to training and which to testing is decided
  by :mod:`geofm.data.splits`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine
from torch.utils.data import Dataset

from geofm.data.cards import DatasetCard, as_dataset_card
from geofm.data.hyperspectral import open_cube, read_label_mat
from geofm.data.readers import RASTER_SUFFIXES, open_raster, raster_files
from geofm.data.sample import IGNORE_INDEX, Sample, make_sample

PathLike = str | os.PathLike
Transform = Callable[[Sample], Sample]


# --------------------------------------------------------------------------------------------
# Scene classification: one folder per class


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


class SceneFolderDataset(Dataset):
    """Scene classification from one folder of GeoTIFFs per class (EuroSAT layout).

    Args:
        root: folder holding one sub-folder per class, named as in the card's class list; a
            relative path missing from the working directory is looked up in the data
            folder (``samples/eurosat_ms`` is the bundled EuroSAT-MS sample).
        card: dataset card (name or object) giving bands, wavelengths, scale and classes.
        bands: band names to read, in the order wanted; default all bands of the card.
        transforms: a callable applied to each sample.
        classes: the classes to use, a subset of the card's, in the order that gives their
            ids; default all the card's classes.

    Each item is a sample with ``image`` ``(C, H, W)`` float32, ``wavelengths`` ``(C,)``,
    ``gsd``, ``bands``, ``valid`` ``(H, W)``, ``crs``, ``transform`` and ``label`` (int64
    scalar, the index of the class in :attr:`classes`).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: a folder under ``root`` is not a class of the card, a requested class
            is not in the card, or no raster files are found.
    """

    def __init__(
        self,
        root: PathLike,
        card: str | DatasetCard = "eurosat_ms",
        bands: Sequence[str] | None = None,
        transforms: Transform | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.exists() and not self.root.is_absolute():
            from geofm.data.cards import data_dir

            if (data_dir() / self.root).is_dir():  # "samples/eurosat_ms" in configs
                self.root = data_dir() / self.root
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"dataset root not found: {self.root} (expected one folder per class)"
            )
        self.card = as_dataset_card(card)
        if bands is not None:
            self.card.select(bands)  # an unknown name raises with the valid names
        self.bands = None if bands is None else tuple(bands)
        self.transforms = transforms
        self.classes = self._resolve_classes(classes)
        self.files, self.targets = self._scan()

    def _resolve_classes(self, classes: Sequence[str] | None) -> tuple[str, ...]:
        known = self.card.classes
        if not known:
            raise ValueError(f"card {self.card.name!r} lists no classes")
        if classes is None:
            return tuple(known)
        unknown = [c for c in classes if c not in known]
        if unknown:
            raise ValueError(
                f"classes {unknown} are not in card {self.card.name!r}; "
                f"its classes: {', '.join(known)}"
            )
        return tuple(classes)

    def _scan(self) -> tuple[list[Path], list[int]]:
        folders = _class_folders(self.root)
        strangers = [f.name for f in folders if f.name not in self.card.classes]
        if strangers:
            raise ValueError(
                f"folders {strangers} in {self.root} are not classes of card "
                f"{self.card.name!r}; its classes: {', '.join(self.card.classes)}"
            )
        files: list[Path] = []
        targets: list[int] = []
        for folder in folders:
            if folder.name not in self.classes:
                continue
            found = raster_files(folder)
            files += found
            targets += [self.classes.index(folder.name)] * len(found)
        if not files:
            raise ValueError(
                f"no {'/'.join(sorted(RASTER_SUFFIXES))} files in the class folders of {self.root} "
                f"(looked for classes {', '.join(self.classes)})"
            )
        return files, targets

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Sample:
        sample = open_raster(self.files[index], bands=self.bands, card=self.card)
        sample["label"] = torch.tensor(self.targets[index], dtype=torch.int64)
        return self.transforms(sample) if self.transforms is not None else sample

    def plot(self, sample: Sample, title: str | None = None):
        """RGB composite of ``sample`` (bands nearest 640/550/470 nm), titled with its class."""
        from geofm.data.plot import plot_sample

        return plot_sample(sample, classes=self.classes, title=title)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, card={self.card.name!r}, "
            f"{len(self)} scenes, {self.num_classes} classes)"
        )


# --------------------------------------------------------------------------------------------
# Pixel classification: windows around labelled pixels of one scene


def _tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _check_grids(image: torch.Tensor, mask: torch.Tensor) -> None:
    if image.ndim != 3:
        raise ValueError(f"scene image must be (C, H, W), got shape {tuple(image.shape)}")
    if mask.ndim != 2:
        raise ValueError(f"label map must be (H, W), got shape {tuple(mask.shape)}")
    if tuple(mask.shape) != tuple(image.shape[1:]):
        raise ValueError(
            f"label map is {mask.shape[0]} x {mask.shape[1]} (H x W) but the image grid is "
            f"{image.shape[1]} x {image.shape[2]} (image shape {tuple(image.shape)})"
        )


def _check_coords(coords: np.ndarray, mask: torch.Tensor) -> None:
    h, w = mask.shape
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must be (N, 2) (row, col) pairs, got shape {coords.shape}")
    outside = (coords[:, 0] < 0) | (coords[:, 0] >= h) | (coords[:, 1] < 0) | (coords[:, 1] >= w)
    if outside.any():
        r, c = coords[np.argmax(outside)]
        raise ValueError(
            f"{int(outside.sum())} coords lie outside the {h} x {w} scene, e.g. ({r}, {c})"
        )
    labels = mask.numpy()[coords[:, 0], coords[:, 1]] if coords.size else np.zeros(0)
    unlabelled = labels == IGNORE_INDEX
    if unlabelled.any():
        r, c = coords[np.argmax(unlabelled)]
        raise ValueError(
            f"{int(unlabelled.sum())} coords are unlabelled pixels "
            f"({IGNORE_INDEX} in the label map), e.g. ({r}, {c})"
        )


def crop_window(
    array: torch.Tensor, row: int, col: int, radius: int, fill: float | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(2r+1) x (2r+1)`` window of ``array`` (``(..., H, W)``) centred on (row, col).

    Returns ``(window (..., w, w), inside (w, w) bool)``; the part of the window outside the
    array holds ``fill`` and is False in ``inside``.
    """
    h, w = array.shape[-2:]
    size = 2 * radius + 1
    r0, c0 = row - radius, col - radius
    out = torch.full((*array.shape[:-2], size, size), fill, dtype=array.dtype)
    inside = torch.zeros((size, size), dtype=torch.bool)
    rs, re_ = max(r0, 0), min(r0 + size, h)
    cs, ce = max(c0, 0), min(c0 + size, w)
    if rs < re_ and cs < ce:
        out[..., rs - r0 : re_ - r0, cs - c0 : ce - c0] = array[..., rs:re_, cs:ce]
        inside[rs - r0 : re_ - r0, cs - c0 : ce - c0] = True
    return out, inside


class PixelPatchDataset(Dataset):
    """Windows centred on chosen pixels of one scene, labelled with the centre's class.

    Args:
        scene: a sample of the whole scene: ``image`` ``(C, H, W)``, ``wavelengths``,
            ``gsd``, ``bands``; optionally ``valid`` ``(H, W)``, ``transform`` and ``mask``.
        coords: ``(N, 2)`` int (row, col) of the pixels to serve; default every labelled
            pixel, row-major. Every pixel must be inside the scene and labelled.
        radius: window radius r; windows are ``w = 2r + 1`` pixels wide.
        mask: ``(H, W)`` class ids, 255 = unlabelled; default ``scene["mask"]``.
        transforms: a callable applied to each sample.

    Item ``i`` is a sample with ``image`` ``(C, w, w)``, ``mask`` ``(w, w)`` int64 (the label
    map under the window), ``valid`` ``(w, w)`` bool, ``label`` int64 scalar (the class of
    the centre pixel), ``center`` int64 ``(2,)`` (row, col), ``wavelengths``, ``gsd``,
    ``bands`` and, when the scene has one, the window's ``transform`` and ``crs``.

    Edges: a window that reaches past the scene is **zero padded**: ``image`` is 0,
    ``mask`` is 255 and ``valid`` is False there (reflection would invent spectra that
    a model cannot tell from real ones).

    The scene is kept as given, not copied: datasets for train, val and test built on one
    scene share its memory.
    """

    def __init__(
        self,
        scene: Sample,
        coords: np.ndarray | Sequence[Sequence[int]] | None = None,
        radius: int = 4,
        mask: np.ndarray | torch.Tensor | None = None,
        transforms: Transform | None = None,
    ) -> None:
        if radius < 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        labels = mask if mask is not None else scene.get("mask")
        if labels is None:
            raise ValueError("no label map: pass mask=... or a scene with a 'mask' entry")
        self.image = _tensor(scene["image"]).to(torch.float32)
        self.mask = _tensor(labels).to(torch.int64)
        _check_grids(self.image, self.mask)
        valid = scene.get("valid")
        self.valid = None if valid is None else _tensor(valid).to(torch.bool)
        self.wavelengths = _tensor(scene["wavelengths"]).to(torch.float32)
        self.gsd = float(scene["gsd"])
        self.bands = tuple(scene["bands"])
        self.crs = scene.get("crs")
        self.scene_transform: Affine | None = scene.get("transform")
        self.radius = int(radius)
        self.transforms = transforms
        if coords is None:
            coords = np.argwhere(self.mask.numpy() != IGNORE_INDEX)
        coords = np.asarray(coords, dtype=np.int64)
        self.coords = coords if coords.size else np.zeros((0, 2), dtype=np.int64)
        _check_coords(self.coords, self.mask)

    @classmethod
    def from_files(
        cls,
        cube_path: PathLike,
        gt_path: PathLike,
        card: str | DatasetCard | None = None,
        radius: int = 4,
        coords: np.ndarray | None = None,
        *,
        cube_key: str | None = None,
        gt_key: str | None = None,
        wavelengths: Sequence[float] | None = None,
        gsd: float | None = None,
        transforms: Transform | None = None,
    ) -> PixelPatchDataset:
        """Read a cube (ENVI or ``.mat``) and its ``.mat`` ground truth; see :func:`read_scene`."""
        scene = read_scene(
            cube_path,
            gt_path,
            card,
            cube_key=cube_key,
            gt_key=gt_key,
            wavelengths=wavelengths,
            gsd=gsd,
        )
        return cls(scene, coords, radius=radius, transforms=transforms)

    @property
    def window_size(self) -> int:
        return 2 * self.radius + 1

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int64 class of each centre pixel, for stratified splits."""
        return self.mask.numpy()[self.coords[:, 0], self.coords[:, 1]]

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, index: int) -> Sample:
        row, col = (int(v) for v in self.coords[index])
        r = self.radius
        image, inside = crop_window(self.image, row, col, r, 0.0)
        mask, _ = crop_window(self.mask, row, col, r, IGNORE_INDEX)
        valid = inside if self.valid is None else crop_window(self.valid, row, col, r, False)[0]
        extra: dict[str, Any] = {}
        if self.scene_transform is not None:
            extra["transform"] = self.scene_transform @ Affine.translation(col - r, row - r)
            extra["crs"] = self.crs
        sample = make_sample(
            image,
            self.wavelengths,
            self.gsd,
            self.bands,
            mask=mask,
            valid=valid,
            label=self.mask[row, col].clone(),
            center=torch.tensor([row, col], dtype=torch.int64),
            **extra,
        )
        return self.transforms(sample) if self.transforms is not None else sample

    def plot(self, sample: Sample, classes: Sequence[str] | None = None, title: str | None = None):
        """RGB composite of a window and, given ``classes``, the label map under it."""
        from geofm.data.plot import plot_sample

        return plot_sample(sample, classes=classes, title=title)

    def __repr__(self) -> str:
        c, h, w = self.image.shape
        return (
            f"{type(self).__name__}({len(self)} pixels of a {c} x {h} x {w} scene, "
            f"window {self.window_size} x {self.window_size})"
        )


def read_scene(
    cube_path: PathLike,
    gt_path: PathLike,
    card: str | DatasetCard | None = None,
    *,
    cube_key: str | None = None,
    gt_key: str | None = None,
    wavelengths: Sequence[float] | None = None,
    gsd: float | None = None,
) -> Sample:
    """A whole labelled scene: the cube as a sample plus ``mask`` ``(H, W)``.

    The cube is ENVI (``.hdr`` or its binary) or MATLAB ``.mat`` (array ``cube_key``); the
    ground truth a ``.mat`` file (array ``gt_key``), mapped through the card's class values
    so that unlabelled pixels are 255. Band metadata: ``wavelengths``/``gsd`` if given,
    else from the file or the card.
    """
    cube_path, gt_path = Path(cube_path), Path(gt_path)
    if gt_path.suffix.lower() != ".mat":
        raise ValueError(f"ground truth must be a .mat file, got {gt_path}")
    card_obj = as_dataset_card(card)
    kwargs: dict[str, Any] = {"card": card_obj, "wavelengths": wavelengths, "gsd": gsd}
    if cube_path.suffix.lower() == ".mat":
        kwargs["key"] = cube_key
    scene = open_cube(cube_path, **kwargs)
    mask = torch.from_numpy(read_label_mat(gt_path, gt_key, card_obj))
    _check_grids(scene["image"], mask)
    scene["mask"] = mask
    return scene
