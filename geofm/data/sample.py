"""The sample contract shared by every geofm reader, dataset, transform and model input.

A sample is a plain ``dict``:

=============== ============================================ ====================================
key             type                                         meaning
=============== ============================================ ====================================
``image``       float32 tensor ``(C, H, W)``                 reflectance or DN after card scaling
``wavelengths`` float32 tensor ``(C,)``, nm                  centre wavelength of each band
``gsd``         float, metres per pixel                      ground sampling distance of ``image``
``bands``       tuple of str, length ``C``                   band names in channel order
``label``       int64 scalar or float multi-hot (optional)   scene label
``mask``        int64 ``(H, W)``, 255 = ignore (optional)    per-pixel labels
``valid``       bool ``(H, W)`` (optional)                   False where any band is nodata/NaN
``crs``         ``rasterio.crs.CRS`` (optional)              coordinate reference system
``transform``   ``affine.Affine`` (optional)                 pixel-to-CRS transform of ``image``
=============== ============================================ ====================================

``len(wavelengths) == len(bands) == C`` is checked at every boundary: a mismatch raises
:class:`BandMismatchError` naming both numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

IGNORE_INDEX = 255
"""Value of ``mask`` pixels that carry no label."""

Sample = dict[str, Any]


class BandMismatchError(ValueError):
    """Band metadata and image channels disagree."""


def _as_float_tensor(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if not torch.is_floating_point(t) and t.dtype not in (
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
    ):
        raise TypeError(f"{name} must be numeric, got dtype {t.dtype}")
    return t.to(torch.float32)


def check_band_metadata(
    num_channels: int,
    wavelengths: Sequence[float] | torch.Tensor,
    bands: Sequence[str] | None = None,
) -> None:
    """Raise :class:`BandMismatchError` unless wavelengths (and bands) match the channels."""
    n_wl = len(wavelengths)
    if n_wl != num_channels:
        raise BandMismatchError(
            f"{n_wl} wavelengths given for an image with {num_channels} channels"
        )
    if bands is not None and len(bands) != num_channels:
        raise BandMismatchError(
            f"{len(bands)} band names given for an image with {num_channels} channels"
        )


def make_sample(
    image: Any,
    wavelengths: Sequence[float] | torch.Tensor | np.ndarray,
    gsd: float,
    bands: Sequence[str] | None = None,
    **extra: Any,
) -> Sample:
    """Build a validated sample from an image ``(C, H, W)`` and its band metadata.

    ``bands`` defaults to ``("band_1", ...)``. Extra keys (``label``, ``mask``, ``valid``,
    ``crs``, ``transform``, ...) are passed through and checked by :func:`check_sample`.
    """
    img = _as_float_tensor(image, "image")
    if img.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W), got {tuple(img.shape)}")
    wl = _as_float_tensor(wavelengths, "wavelengths").reshape(-1)
    if bands is None:
        bands = tuple(f"band_{i + 1}" for i in range(img.shape[0]))
    sample: Sample = {
        "image": img,
        "wavelengths": wl,
        "gsd": float(gsd),
        "bands": tuple(str(b) for b in bands),
        **extra,
    }
    check_sample(sample)
    return sample


def check_sample(sample: Mapping[str, Any]) -> None:
    """Check a sample against the contract; raise a ``ValueError`` that says what is wrong."""
    for key in ("image", "wavelengths", "gsd", "bands"):
        if key not in sample:
            raise KeyError(f"sample has no {key!r} (keys: {sorted(sample)})")
    image = sample["image"]
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        raise ValueError(
            f"sample['image'] must be a (C, H, W) tensor, got {type(image).__name__}"
            f" with shape {tuple(getattr(image, 'shape', ()))}"
        )
    c, h, w = image.shape
    check_band_metadata(c, sample["wavelengths"], sample["bands"])
    gsd = sample["gsd"]
    if not np.isfinite(gsd) or gsd <= 0:
        raise ValueError(f"gsd must be a positive number of metres, got {gsd}")
    for key in ("mask", "valid"):
        if key in sample and sample[key] is not None:
            shape = tuple(sample[key].shape)
            if shape != (h, w):
                raise ValueError(
                    f"sample[{key!r}] has shape {shape} but the image grid is {(h, w)}"
                )


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate samples that share one band set into a batch.

    ``image`` -> ``(B, C, H, W)``; ``wavelengths`` -> ``(C,)`` (one band set per batch);
    ``gsd`` -> ``(B,)``; ``label``/``mask``/``valid``/``center`` (a pixel patch's centre)
    stacked; ``crs``/``transform`` lists; ``skipped`` (unreadable files a dataset passed
    over) concatenated.
    Two band sets in one batch raise a ``BandMismatchError`` that names both.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    first = samples[0]
    for i, s in enumerate(samples[1:], start=1):
        if tuple(s["bands"]) != tuple(first["bands"]) or not torch.equal(
            torch.as_tensor(s["wavelengths"]), torch.as_tensor(first["wavelengths"])
        ):
            raise BandMismatchError(
                f"a batch must share one band set: sample 0 has bands {tuple(first['bands'])}, "
                f"sample {i} has {tuple(s['bands'])}"
            )
    batch: dict[str, Any] = {
        "image": torch.stack([s["image"] for s in samples]),
        "wavelengths": torch.as_tensor(first["wavelengths"], dtype=torch.float32),
        "gsd": torch.tensor([float(s["gsd"]) for s in samples], dtype=torch.float32),
        "bands": tuple(first["bands"]),
    }
    for key in ("label", "mask", "valid", "center"):
        if key in first:
            batch[key] = torch.stack([torch.as_tensor(s[key]) for s in samples])
    for key in ("crs", "transform"):
        if key in first:
            batch[key] = [s.get(key) for s in samples]
    if any("skipped" in s for s in samples):  # files a dataset could not read, in order
        batch["skipped"] = [path for s in samples for path in s.get("skipped", ())]
    return batch


def sample_loader(
    dataset: Dataset,
    batch_size: int = 1,
    shuffle: bool = False,
    *,
    num_workers: int = 0,
    seed: int | None = None,
    drop_last: bool = False,
    batch_sampler: Sampler | None = None,
    collate_fn: Callable | None = collate_samples,
    persistent_workers: bool = True,
) -> DataLoader:
    """geofm's one DataLoader: ``batch_size`` samples a batch (or the batches of
    ``batch_sampler``), collated by ``collate_fn`` (None: torch's default).

    With ``seed`` the loader draws its order and worker seeds from its own
    ``torch.Generator().manual_seed(seed)``; without one, from torch's global generator (a
    draw every pass, shuffled or not). Workers, if any, live across epochs unless
    ``persistent_workers`` is False.
    """
    batching: dict[str, Any] = (
        {"batch_sampler": batch_sampler}
        if batch_sampler is not None
        else {"batch_size": batch_size, "shuffle": shuffle, "drop_last": drop_last}
    )
    return DataLoader(
        dataset,
        **batching,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=None if seed is None else torch.Generator().manual_seed(seed),
        persistent_workers=persistent_workers and num_workers > 0,
    )


def apply_label_lookup(
    raw: np.ndarray,
    lookup: Mapping[Any, Any],
    unknown: int | None = IGNORE_INDEX,
    source: object = "the labels",
    known_by: str = "the label mapping",
) -> np.ndarray:
    """Raw label values -> int64 class ids through ``lookup`` (int-like keys and values, as
    YAML gives them). A value ``lookup`` lacks becomes ``unknown`` (default 255, ignore) or,
    when ``unknown`` is None, raises ``ValueError`` naming the values, ``source`` (the file)
    and ``known_by`` (the card or mapping)."""
    raw = np.asarray(raw)
    lookup = {int(k): int(v) for k, v in lookup.items()}
    values, inverse = np.unique(raw, return_inverse=True)
    lacking = [int(v) for v in values if int(v) not in lookup]
    if lacking and unknown is None:
        raise ValueError(
            f"{source} holds label values {lacking} that {known_by} does not know "
            f"(it maps {sorted(lookup)})"
        )
    lut = np.array([lookup.get(int(v), unknown) for v in values], dtype=np.int64)
    return lut[inverse.reshape(raw.shape)]
