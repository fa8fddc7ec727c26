"""A class map's companions on request: a PNG to look at and a NetCDF file for xarray.

:func:`geofm.inference.predict` writes the class map itself as a Cloud-Optimised GeoTIFF.
:func:`write_png` draws it with a legend of the class names, beside a ground truth when one
is given (with the agreement on its labelled pixels); :func:`write_netcdf` saves it with
CF-style ``flag_values`` / ``flag_meanings`` and the scene's coordinates. Both take the
``(y, x)`` DataArray of a :class:`~geofm.inference.engine.Prediction` and its class names.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["companion_paths", "agreement", "write_png", "write_netcdf"]


def companion_paths(out: str | Path, png: bool = False, netcdf: bool = False) -> dict[str, Path]:
    """``OUT.tif`` -> ``{"png": OUT.png, "netcdf": OUT.nc}``, the ones asked for."""
    asked = {"png": (png, ".png"), "netcdf": (netcdf, ".nc")}
    return {key: Path(out).with_suffix(suffix) for key, (on, suffix) in asked.items() if on}


def agreement(labels: np.ndarray, ground_truth: np.ndarray, nodata: int = 255) -> tuple[float, int]:
    """Share of the ground truth's labelled pixels (not ``nodata``) whose class the map
    gives, and how many pixels that is; ``(nan, 0)`` when none is labelled."""
    gt = np.asarray(ground_truth)
    if gt.shape != labels.shape:
        raise ValueError(
            f"the ground truth is {gt.shape[0]} x {gt.shape[1]} pixels, the map "
            f"{labels.shape[0]} x {labels.shape[1]}"
        )
    labelled = gt != nodata
    n = int(labelled.sum())
    return (float((labels[labelled] == gt[labelled]).mean()) if n else float("nan")), n


def write_png(
    labels: xr.DataArray,
    classes: Sequence[str],
    path: str | Path,
    *,
    ground_truth: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """The map with a legend of ``classes``, beside ``ground_truth`` (``(H, W)`` class ids,
    255 unlabelled) when given, titled with the agreement on its labelled pixels."""
    from matplotlib.figure import Figure

    from geofm.data.plot import plot_class_map

    values = np.asarray(labels.values)
    panels = 2 if ground_truth is not None else 1
    fig = Figure(figsize=(6.5 * panels, 5), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    plot_class_map(values, list(classes), ax=axes[0], title="prediction")
    if ground_truth is not None:
        acc, n = agreement(values, ground_truth)
        plot_class_map(np.asarray(ground_truth), list(classes), ax=axes[1], title="ground truth")
        fig.suptitle(
            (title + "\n" if title else "")
            + f"agreement on the {n} labelled pixels: {100 * acc:.2f}%"
            " (training pixels included)",
            fontsize=10,
        )
    elif title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=120)
    return Path(path)


def write_netcdf(labels: xr.DataArray, classes: Sequence[str], path: str | Path) -> Path:
    """The map as NetCDF (scipy engine): ``class_id`` with the scene's coordinates,
    ``flag_values``/``flag_meanings`` (class names, spaces as underscores), ``classes``
    (one per line), ``nodata`` and the CRS as ``crs_wkt`` when it has one. The map is
    loaded into memory (unlike the COG, which is written block by block)."""
    da = labels.load().copy()
    crs = da.rio.crs if hasattr(da, "rio") else None
    da = da.drop_vars([c for c in da.coords if c not in da.dims])  # spatial_ref and band
    da.name = "class_id"
    nodata = labels.attrs.get("_FillValue", labels.attrs.get("nodata", 255))
    da.attrs = {
        "flag_values": np.arange(len(classes), dtype=np.int16),
        "flag_meanings": " ".join(c.replace(" ", "_") for c in classes),
        "classes": "\n".join(classes),
        "nodata": int(nodata),  # cells without a prediction
        **{
            k: v
            for k, v in labels.attrs.items()
            if k in ("model", "kind", "cell_pixels", "checkpoint") and v is not None
        },
    }
    if crs is not None:
        da.attrs["crs_wkt"] = crs.to_wkt()
    da.to_netcdf(path, engine="scipy")
    return Path(path)
