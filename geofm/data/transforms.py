"""Sample transforms that keep band and georeferencing metadata true.

Every transform takes a sample (see :mod:`geofm.data.sample`) and returns a new sample
dict. Geometric transforms apply one operation to ``image`` ``(C, H, W)``, ``mask``
``(H, W)`` and ``valid`` ``(H, W)`` alike and rewrite what the operation changes:

* ``transform`` (the pixel-to-CRS affine) so that every output pixel still maps to the
  world location of the input pixel it came from: crops shift the origin, flips and
  quarter turns reflect or rotate the pixel axes, resizes scale the pixel size;
* ``gsd`` when the pixel size changes (:class:`Resize`);
* ``wavelengths`` and ``bands`` when channels are selected, reordered or dropped
  (:class:`SelectBands`, :class:`RandomBandSubset`).

Random transforms draw from a ``torch.Generator`` when one is given (reproducible runs),
else from torch's global generator, which ``DataLoader`` seeds differently in each worker.
A generator given here is copied into every worker, so the workers then repeat one
another's draws; pass ``None`` when loading with several workers.

Transforms never write into a tensor of their input. Tensors an operation leaves
unchanged (``label``, or everything when a random flip does not fire) are shared between
input and output.

The classes follow the torchvision-v2 / torchgeo pattern: small callables, composed with
:class:`Compose`. Each has a functional counterpart (:func:`crop`, :func:`hflip`,
:func:`vflip`, :func:`rot90`, :func:`resize`, :func:`select_bands`) for deterministic use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from affine import Affine

from geofm.data.cards import DatasetCard, band_positions, card_statistics
from geofm.data.sample import BandMismatchError, Sample, check_sample

__all__ = [
    "CenterCrop",
    "Compose",
    "MAEScaleNormalize",
    "Normalize",
    "RandomBandSubset",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomRotate90",
    "RandomVerticalFlip",
    "Resize",
    "SampleTransform",
    "SelectBands",
    "crop",
    "hflip",
    "resize",
    "rot90",
    "scale_bands",
    "select_bands",
    "vflip",
]

PER_PIXEL_KEYS = ("mask", "valid")
"""Keys holding an ``(H, W)`` grid that moves with ``image``."""

# --------------------------------------------------------------------------------------------
# Base class and composition


class SampleTransform:
    """A callable ``sample -> new sample``; input and output are checked against the contract.

    Subclasses implement :meth:`apply`.
    """

    def __call__(self, sample: Mapping[str, Any]) -> Sample:
        check_sample(sample)
        out = self.apply(sample)
        check_sample(out)
        return out

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v!r}"
            for k, v in vars(self).items()
            if not k.startswith("_") and k != "generator"
        )
        return f"{type(self).__name__}({args})"


class Compose(SampleTransform):
    """Apply transforms one after another."""

    def __init__(self, transforms: Iterable[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose takes callables, got {t!r}")

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        out = dict(sample)
        for t in self.transforms:
            out = t(out)
        return out

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


# --------------------------------------------------------------------------------------------
# Geometry: one operation on image, mask and valid, and the affine that follows it


def _grid_size(sample: Mapping[str, Any]) -> tuple[int, int]:
    _, h, w = sample["image"].shape
    return int(h), int(w)


def _apply_to_grids(
    sample: Mapping[str, Any], op: Callable[[torch.Tensor], torch.Tensor], pixel_map: Affine
) -> Sample:
    """Run ``op`` (acting on the last two axes) on image, mask and valid.

    ``pixel_map`` maps output pixel coordinates ``(col, row)`` to input pixel coordinates;
    the new pixel-to-CRS transform is ``transform @ pixel_map``.
    """
    out = dict(sample)
    out["image"] = op(sample["image"])
    for key in PER_PIXEL_KEYS:
        if sample.get(key) is not None:
            out[key] = op(torch.as_tensor(sample[key]))
    if sample.get("transform") is not None:
        out["transform"] = sample["transform"] @ pixel_map
    return out


def _pair(size: int | Sequence[int], what: str) -> tuple[int, int]:
    """``size`` as ``(height, width)``; an int means a square."""
    if isinstance(size, int):
        pair = (size, size)
    else:
        pair = tuple(int(s) for s in size)
        if len(pair) != 2:
            raise ValueError(f"{what} is an int or (height, width), got {size!r}")
    if min(pair) <= 0:
        raise ValueError(f"{what} must be positive, got {size!r}")
    return pair  # type: ignore[return-value]


def _check_crop_fits(height: int, width: int, h: int, w: int) -> None:
    if height > h or width > w:
        raise ValueError(
            f"a crop of {height} x {width} pixels (height x width) is larger than "
            f"the image, which is {h} x {w}"
        )


def crop(sample: Mapping[str, Any], top: int, left: int, height: int, width: int) -> Sample:
    """Cut rows ``top:top+height`` and columns ``left:left+width`` out of the sample.

    ``image`` ``(C, H, W)`` -> ``(C, height, width)``; ``mask``/``valid`` likewise. The
    affine's origin moves to the crop's upper-left corner. The window must lie inside the
    image.
    """
    h, w = _grid_size(sample)
    _check_crop_fits(height, width, h, w)
    if height <= 0 or width <= 0:
        raise ValueError(f"a crop needs a positive size, got {height} x {width} (height x width)")
    if not (0 <= top <= h - height and 0 <= left <= w - width):
        raise ValueError(
            f"a {height} x {width} crop at row {top}, column {left} does not fit "
            f"inside the {h} x {w} image"
        )

    def op(x: torch.Tensor) -> torch.Tensor:
        # A copy, so that a small crop does not keep a whole scene's storage alive.
        return x[..., top : top + height, left : left + width].clone()

    return _apply_to_grids(sample, op, Affine.translation(left, top))


def hflip(sample: Mapping[str, Any]) -> Sample:
    """Mirror left-right (reverse the columns); the affine's column axis is reflected."""
    _, w = _grid_size(sample)
    # Output column x came from input column w - x (pixel corner coordinates).
    return _apply_to_grids(
        sample, lambda x: torch.flip(x, dims=(-1,)), Affine(-1.0, 0.0, w, 0.0, 1.0, 0.0)
    )


def vflip(sample: Mapping[str, Any]) -> Sample:
    """Mirror top-bottom (reverse the rows); the affine's row axis is reflected."""
    h, _ = _grid_size(sample)
    return _apply_to_grids(
        sample, lambda x: torch.flip(x, dims=(-2,)), Affine(1.0, 0.0, 0.0, 0.0, -1.0, h)
    )


def rot90(sample: Mapping[str, Any], k: int) -> Sample:
    """Rotate by ``k`` quarter turns, as ``torch.rot90(x, k, dims=(-2, -1))``.

    ``image`` ``(C, H, W)`` -> ``(C, W, H)`` for odd ``k``. The affine gains the matching
    rotation, so each pixel keeps its world coordinates (a north-up raster is no longer
    north-up).
    """
    k = int(k) % 4
    h, w = _grid_size(sample)
    pixel_map = Affine.identity()
    for _ in range(k):
        # One quarter turn: output (col x, row y) came from input (col w - y, row x).
        pixel_map = pixel_map @ Affine(0.0, -1.0, w, 1.0, 0.0, 0.0)
        h, w = w, h
    return _apply_to_grids(sample, lambda x: torch.rot90(x, k, dims=(-2, -1)), pixel_map)


def _nearest_indices(n_in: int, n_out: int) -> torch.Tensor:
    """Source index of each output pixel whose centre falls in it (half-pixel convention)."""
    centres = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out)
    return centres.floor().long().clamp_(0, n_in - 1)


def resize(sample: Mapping[str, Any], size: int | Sequence[int], antialias: bool = True) -> Sample:
    """Resample the sample onto a ``size`` = ``(height, width)`` grid over the same extent.

    ``image`` is resampled bilinearly (with antialiasing when shrinking, if ``antialias``);
    ``mask`` and ``valid`` take the nearest input pixel, so labels stay labels. An output
    pixel whose bilinear footprint touches an invalid input pixel (filled with 0 by the
    readers) is marked invalid too, since its value blends in fill.

    The affine's pixel size is scaled by ``W / width`` and ``H / height``, so the bounds
    of the image do not move. ``gsd`` becomes ``gsd * sqrt((H / height) * (W / width))``:
    with non-square scaling the pixel is no longer square and the single GSD number is
    the geometric mean of the two axes (the side of a square pixel of the same area).
    """
    new_h, new_w = _pair(size, "resize size")
    h, w = _grid_size(sample)
    out = dict(sample)
    image = sample["image"]
    out["image"] = F.interpolate(
        image[None], size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=antialias
    )[0].to(image.dtype)
    rows, cols = _nearest_indices(h, new_h), _nearest_indices(w, new_w)
    if sample.get("mask") is not None:
        out["mask"] = torch.as_tensor(sample["mask"])[rows[:, None], cols[None, :]]
    if sample.get("valid") is not None:
        valid = torch.as_tensor(sample["valid"]).bool()
        # Interpolating the invalid indicator gives exactly 0 where no invalid pixel has
        # weight (the weights are non-negative), unlike testing the valid weight against 1,
        # which float32 rounding of the weights blurs.
        weight_on_invalid = F.interpolate(
            (~valid)[None, None].float(),
            size=(new_h, new_w),
            mode="bilinear",
            align_corners=False,
            antialias=antialias,
        )[0, 0]
        out["valid"] = valid[rows[:, None], cols[None, :]] & (weight_on_invalid == 0)
    x_scale, y_scale = w / new_w, h / new_h
    out["gsd"] = float(sample["gsd"]) * math.sqrt(x_scale * y_scale)
    if sample.get("transform") is not None:
        out["transform"] = sample["transform"] @ Affine.scale(x_scale, y_scale)
    return out


class RandomCrop(SampleTransform):
    """Crop a random ``size`` window (int or ``(height, width)``) out of the sample."""

    def __init__(self, size: int | Sequence[int], generator: torch.Generator | None = None):
        self.size = _pair(size, "crop size")
        self.generator = generator

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        h, w = _grid_size(sample)
        height, width = self.size
        _check_crop_fits(height, width, h, w)
        top = int(torch.randint(0, h - height + 1, (1,), generator=self.generator))
        left = int(torch.randint(0, w - width + 1, (1,), generator=self.generator))
        return crop(sample, top, left, height, width)


class CenterCrop(SampleTransform):
    """Crop the central ``size`` window (int or ``(height, width)``) out of the sample."""

    def __init__(self, size: int | Sequence[int]):
        self.size = _pair(size, "crop size")

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        h, w = _grid_size(sample)
        height, width = self.size
        return crop(sample, max(h - height, 0) // 2, max(w - width, 0) // 2, height, width)


def _check_probability(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability lies in [0, 1], got {p}")
    return float(p)


class RandomHorizontalFlip(SampleTransform):
    """Mirror left-right with probability ``p`` (see :func:`hflip`)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p = _check_probability(p)
        self.generator = generator

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        if float(torch.rand((), generator=self.generator)) < self.p:
            return hflip(sample)
        return dict(sample)


class RandomVerticalFlip(SampleTransform):
    """Mirror top-bottom with probability ``p`` (see :func:`vflip`)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p = _check_probability(p)
        self.generator = generator

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        if float(torch.rand((), generator=self.generator)) < self.p:
            return vflip(sample)
        return dict(sample)


class RandomRotate90(SampleTransform):
    """Rotate by ``k`` quarter turns, ``k`` drawn uniformly from 0..3 (see :func:`rot90`)."""

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        k = int(torch.randint(0, 4, (1,), generator=self.generator))
        return rot90(sample, k)


class Resize(SampleTransform):
    """Resample to a fixed ``size`` or by a ``scale`` factor (see :func:`resize`).

    Give exactly one of ``size`` (int for a square, or ``(height, width)``) and ``scale``
    (float, or ``(height factor, width factor)``; the new size is rounded to whole pixels).
    ``gsd`` and ``transform`` follow the change of pixel size.
    """

    def __init__(
        self,
        size: int | Sequence[int] | None = None,
        *,
        scale: float | Sequence[float] | None = None,
        antialias: bool = True,
    ):
        if (size is None) == (scale is None):
            raise ValueError("Resize takes exactly one of size=(height, width) and scale=factor")
        self.size = None if size is None else _pair(size, "resize size")
        if scale is not None:
            pair = (
                (float(scale), float(scale))
                if isinstance(scale, int | float)
                else tuple(float(s) for s in scale)
            )
            if len(pair) != 2 or min(pair) <= 0:
                raise ValueError(
                    f"scale is a positive factor or (height, width) factors, got {scale!r}"
                )
            scale = pair
        self.scale = scale
        self.antialias = antialias

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        if self.size is not None:
            size = self.size
        else:
            h, w = _grid_size(sample)
            size = (max(1, round(h * self.scale[0])), max(1, round(w * self.scale[1])))
        return resize(sample, size, antialias=self.antialias)


# --------------------------------------------------------------------------------------------
# Bands: select channels and keep wavelengths and names with them


def _take_channels(sample: Mapping[str, Any], indices: Sequence[int]) -> Sample:
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    out = dict(sample)
    out["image"] = sample["image"].index_select(0, idx)
    wavelengths = torch.as_tensor(sample["wavelengths"], dtype=torch.float32)
    out["wavelengths"] = wavelengths.index_select(0, idx)
    bands = tuple(sample["bands"])
    out["bands"] = tuple(bands[i] for i in idx.tolist())
    return out


def _band_names_arg(names: Sequence[str], who: str) -> tuple[str, ...]:
    if isinstance(names, str):
        raise TypeError(f"{who} takes a sequence of band names, got the string {names!r}")
    names = tuple(str(n) for n in names)
    if not names:
        raise ValueError(f"{who} needs at least one band name")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{who} got band names more than once: {repeated}")
    return names


def select_bands(sample: Mapping[str, Any], names: Sequence[str]) -> Sample:
    """Keep the named bands, in the order named: ``image`` ``(C, H, W)`` -> ``(len(names), H, W)``.

    ``wavelengths`` and ``bands`` follow the channels. An unknown name raises
    :class:`~geofm.data.cards.UnknownBandError` listing the sample's bands.
    """
    names = _band_names_arg(names, "select_bands")
    return _take_channels(sample, band_positions(names, sample["bands"], "the sample has"))


class SelectBands(SampleTransform):
    """Keep the named bands in the order given (see :func:`select_bands`)."""

    def __init__(self, names: Sequence[str]):
        self.names = _band_names_arg(names, "SelectBands")

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        return select_bands(sample, self.names)


class RandomBandSubset(SampleTransform):
    """Keep a random subset of ``min_bands..max_bands`` channels, in their original order.

    The count is drawn uniformly from ``min_bands`` to ``min(max_bands, C)`` (``max_bands``
    defaults to ``C``), then that many channels uniformly without replacement. A
    wavelength-aware model (LESS ViT) accepts any band set, so this teaches it to.
    ``image`` ``(C, H, W)`` -> ``(n, H, W)``; ``wavelengths`` and ``bands`` follow.
    """

    def __init__(
        self, min_bands: int, max_bands: int | None = None, generator: torch.Generator | None = None
    ):
        if int(min_bands) != min_bands or min_bands < 1:
            raise ValueError(f"min_bands must be a whole number >= 1, got {min_bands}")
        if max_bands is not None and max_bands < min_bands:
            raise ValueError(f"max_bands ({max_bands}) is smaller than min_bands ({min_bands})")
        self.min_bands = int(min_bands)
        self.max_bands = None if max_bands is None else int(max_bands)
        self.generator = generator

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        c = int(sample["image"].shape[0])
        if self.min_bands > c:
            raise BandMismatchError(
                f"RandomBandSubset keeps at least {self.min_bands} bands but "
                f"the image has {c} channels"
            )
        upper = c if self.max_bands is None else min(self.max_bands, c)
        n = int(torch.randint(self.min_bands, upper + 1, (1,), generator=self.generator))
        keep = torch.randperm(c, generator=self.generator)[:n].sort().values
        return _take_channels(sample, keep.tolist())


# --------------------------------------------------------------------------------------------
# Normalisation


def _statistics_arg(values: Sequence[float] | torch.Tensor, what: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in torch.as_tensor(values, dtype=torch.float64).reshape(-1))
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{what} must be finite numbers, got {out}")
    return out


def scale_bands(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, mode: str) -> torch.Tensor:
    """``"standard"``: ``(x - mean) / std``; ``"mae_scale"``: each band's ``mean ± 2 std`` onto
    ``[0, 1]``, clipped (``mean`` and ``std`` broadcast against ``x``)."""
    if mode == "mae_scale":
        return ((x - (mean - 2.0 * std)) / (4.0 * std)).clamp(0.0, 1.0)
    return (x - mean) / std


class Normalize(SampleTransform):
    """Standardise each band: ``(image - mean) / std``.

    ``mean`` and ``std`` have one value per band. Without ``bands`` they apply to the
    channels in order and their length must equal ``C``. With ``bands`` (the names the
    statistics belong to) each channel takes the statistics of its band name, so the
    transform is right after :class:`SelectBands` or :class:`RandomBandSubset` too.

    Pixels outside ``valid`` are normalised like the rest; ``valid`` still marks them.
    """

    mode = "standard"  # of :func:`scale_bands`

    def __init__(
        self,
        mean: Sequence[float] | torch.Tensor,
        std: Sequence[float] | torch.Tensor,
        bands: Sequence[str] | None = None,
    ):
        self.mean = _statistics_arg(mean, "mean")
        self.std = _statistics_arg(std, "std")
        if len(self.mean) != len(self.std):
            raise ValueError(
                f"{len(self.mean)} means and {len(self.std)} standard deviations; "
                "give one of each per band"
            )
        if min(self.std, default=1.0) <= 0:
            raise ValueError(f"standard deviations must be positive, got {self.std}")
        self.bands = None if bands is None else _band_names_arg(bands, type(self).__name__)
        if self.bands is not None and len(self.bands) != len(self.mean):
            raise BandMismatchError(f"{len(self.bands)} band names for {len(self.mean)} means")

    @classmethod
    def from_card(cls, card: str | DatasetCard, bands: Sequence[str] | None = None) -> Normalize:
        """Take the statistics of a dataset card (name or :class:`DatasetCard`).

        ``bands`` picks bands by name (default: all of the card's bands); an unknown name
        raises :class:`~geofm.data.cards.UnknownBandError` listing the card's bands.
        """
        return cls(*card_statistics(card, bands))

    def _statistics_for(self, sample: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        c = int(sample["image"].shape[0])
        if self.bands is None:
            if len(self.mean) != c:
                raise BandMismatchError(
                    f"{type(self).__name__} has statistics for {len(self.mean)}"
                    f" bands but the image has {c} channels"
                )
            indices = list(range(c))
        else:
            has = f"{type(self).__name__} has statistics for"
            indices = band_positions(sample["bands"], self.bands, has, "no statistics for bands")
        dtype = sample["image"].dtype
        mean = torch.tensor([self.mean[i] for i in indices], dtype=dtype)[:, None, None]
        std = torch.tensor([self.std[i] for i in indices], dtype=dtype)[:, None, None]
        return mean, std

    def apply(self, sample: Mapping[str, Any]) -> Sample:
        mean, std = self._statistics_for(sample)
        out = dict(sample)
        out["image"] = scale_bands(sample["image"], mean, std, self.mode)
        return out


class MAEScaleNormalize(Normalize):
    """Map each band's ``mean ± 2 std`` range onto ``[0, 1]`` and clip.

    ``(image - (mean - 2 std)) / (4 std)``, clipped to ``[0, 1]``: the input normalisation
    of LESS ViT masked-autoencoder pretraining (Si et al., "Towards Scalable Foundation
    Model for Multi-modal and Hyperspectral Geospatial Data", 2025). Statistics and band
    matching work as in :class:`Normalize`.
    """

    mode = "mae_scale"
