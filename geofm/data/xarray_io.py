"""Samples to and from ``xarray.DataArray``, with coordinates and CRS kept (rioxarray).

``to_xarray(sample)`` gives a DataArray with dims ``(band, y, x)``, coordinates ``band``
(names), ``wavelength`` (nm, along ``band``), ``y`` and ``x`` (pixel-centre map coordinates
when the sample has a ``transform``, pixel indices otherwise), the ``valid`` and ``mask``
layers as 2-D coordinates, the CRS and transform written the rioxarray way, and ``gsd``,
``label`` and ``center`` (of a pixel patch) as attributes. :func:`from_xarray` inverts it;
the round trip is lossless. A DataArray opened by rioxarray with a nodata value (or
``_FillValue``) gets a ``valid`` mask from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch
import xarray as xr

from geofm.data.grid import pixel_centres
from geofm.data.readers import gsd_of, valid_mask
from geofm.data.sample import Sample, check_band_metadata, check_sample, make_sample


def to_xarray(sample: Sample) -> xr.DataArray:
    """A sample as a ``(band, y, x)`` DataArray with band metadata and georeferencing."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    check_sample(sample)
    image = sample["image"].detach().cpu().numpy()
    c, h, w = image.shape
    transform = sample.get("transform")
    if transform is not None and (transform.b != 0 or transform.d != 0):
        raise ValueError(
            f"to_xarray needs a north-up transform (no rotation terms); got {transform!r}"
        )
    if transform is not None:
        ys, xs = pixel_centres(transform, h, w)
    else:
        ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    coords: dict[str, Any] = {
        "band": ("band", list(sample["bands"])),
        "wavelength": (
            "band",
            sample["wavelengths"].detach().cpu().numpy().astype(np.float32),
            {"units": "nm"},
        ),
        "y": ("y", ys),
        "x": ("x", xs),
    }
    for key in ("valid", "mask"):
        if sample.get(key) is not None:
            coords[key] = (("y", "x"), torch.as_tensor(sample[key]).cpu().numpy())
    attrs: dict[str, Any] = {"gsd": float(sample["gsd"]), "gsd_units": "m"}
    for key in ("label", "center"):
        if key in sample:
            value = torch.as_tensor(sample[key]).cpu().numpy()
            attrs[key] = value.tolist()
            attrs[f"{key}_dtype"] = str(value.dtype)
    da = xr.DataArray(image, dims=("band", "y", "x"), coords=coords, attrs=attrs, name="image")
    if transform is not None:
        da = da.rio.write_transform(transform)
    if sample.get("crs") is not None:
        da = da.rio.write_crs(sample["crs"])
    return da


def from_xarray(da: xr.DataArray, *, gsd: float | None = None) -> Sample:
    """A ``(band, y, x)`` DataArray (from :func:`to_xarray`, rioxarray or elsewhere) as a sample.

    Needs a ``wavelength`` coordinate along ``band``. The transform is the one written in the
    CRS variable if present, else it is computed from the ``x``/``y`` coordinates when they
    are evenly spaced map coordinates. ``gsd`` defaults to the ``gsd`` attribute, else the
    pixel size of the transform.
    """
    import rioxarray  # noqa: F401

    if set(da.dims) != {"band", "y", "x"}:
        raise ValueError(f"from_xarray needs dims ('band', 'y', 'x'), got {da.dims}")
    da = da.transpose("band", "y", "x")
    if "wavelength" not in da.coords:
        raise ValueError(
            "the DataArray has no 'wavelength' coordinate along 'band'; add one "
            "with da.assign_coords(wavelength=('band', [...]))"
        )
    wavelengths = np.asarray(da.coords["wavelength"].values, dtype=np.float32)
    # (check_band_metadata only takes the length; an array is as good as a sequence)
    check_band_metadata(da.sizes["band"], cast("Sequence[float]", wavelengths))
    bands = tuple(str(b) for b in da.coords["band"].values)
    crs = da.rio.crs
    transform = None
    if "spatial_ref" in da.coords and "GeoTransform" in da.coords["spatial_ref"].attrs:
        transform = da.rio.transform(recalc=False)
    elif crs is not None:
        transform = da.rio.transform(recalc=True)
    if gsd is None:
        gsd = da.attrs.get("gsd")
    if gsd is None and transform is not None:
        gsd = gsd_of(transform)
    if gsd is None:
        raise ValueError(
            "no GSD: the DataArray has no 'gsd' attribute and no transform; pass gsd=..."
        )
    extra: dict[str, Any] = {}
    image = np.asarray(da.values)
    if "valid" in da.coords:
        extra["valid"] = torch.from_numpy(np.asarray(da.coords["valid"].values, dtype=bool))
    elif da.rio.nodata is not None or (
        np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all()
    ):
        valid = valid_mask(image, [da.rio.nodata] * len(image))
        image = np.where(valid[None], image, 0)
        extra["valid"] = torch.from_numpy(valid)
    if "mask" in da.coords:
        extra["mask"] = torch.from_numpy(np.asarray(da.coords["mask"].values, dtype=np.int64))
    for key in ("label", "center"):
        if key in da.attrs:
            extra[key] = torch.as_tensor(
                np.asarray(da.attrs[key], dtype=da.attrs.get(f"{key}_dtype", "int64"))
            )
    if transform is not None:
        extra["transform"] = transform
    if crs is not None:
        extra["crs"] = crs
    return make_sample(image.astype(np.float32), wavelengths, gsd, bands, **extra)
