"""Class maps of whole scenes from a trained pixel classifier: xarray, PNG, GeoTIFF.

:func:`predict_map` classifies every pixel of a scene with a checkpoint written by
``geofm classify-pixels`` and returns an ``xarray.DataArray`` ``(y, x)`` of class ids with
CF-style ``flag_values``/``flag_meanings``, the scene's coordinates and, when it has them,
its CRS and transform. :func:`write_map` saves it as PNG (legend from the class names,
beside the ground truth when given), as NetCDF, and as a GeoTIFF when the scene has a CRS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from geofm.data.outputs import check_outputs
from geofm.data.sample import IGNORE_INDEX

__all__ = ["predict_map", "read_scene_for", "write_map"]

PathLike = str | Path


def read_scene_for(ckpt: dict[str, Any], cube: PathLike, cube_key: str | None = None
                   ) -> dict[str, Any]:
    """Read a scene for a checkpoint: ENVI or ``.mat`` cubes (band metadata from the
    checkpoint's card when the file has none) or any raster rasterio reads (GeoTIFF ...).

    The band count must be the checkpoint's; otherwise ``ValueError`` naming both.
    """
    from geofm.data.hyperspectral import open_cube
    from geofm.data.readers import open_raster

    path = Path(cube)
    if not path.exists():
        raise FileNotFoundError(f"scene not found: {path}")
    suffix = path.suffix.lower()
    wavelengths = ckpt.get("wavelengths")
    card = ckpt.get("card")
    envi = suffix == ".hdr" or (suffix in (".img", ".dat", ".raw", ".bin")
                                and path.with_suffix(".hdr").is_file())
    if suffix == ".mat" or envi:
        kwargs: dict[str, Any] = {"card": card} if card else {"wavelengths": wavelengths,
                                                              "gsd": 1.0}
        if suffix == ".mat":
            kwargs["key"] = cube_key
        scene = open_cube(path, **kwargs)
    else:
        scene = open_raster(path, card=card) if card else open_raster(path,
                                                                      wavelengths=wavelengths)
    bands = scene["image"].shape[0]
    want = len(ckpt["bands"])
    if bands != want:
        raise ValueError(f"{path} has {bands} bands but the classifier was trained on {want} "
                         f"({ckpt['bands'][0]} ... {ckpt['bands'][-1]})")
    return scene


def map_cube(checkpoint: PathLike, ckpt: dict[str, Any], cube: PathLike | None = None,
             cube_key: str | None = None) -> tuple[PathLike, str | None]:
    """The cube to map and its array key: ``cube``, or the scene the checkpoint (read as
    ``ckpt``) was trained on."""
    if cube is not None:
        return cube, cube_key
    source = ckpt.get("source_files") or {}
    if "cube" not in source:
        raise ValueError(f"{checkpoint} does not record its scene; pass the cube to map")
    return source["cube"], cube_key or ckpt.get("recipe", {}).get("scene", {}).get("cube_key")


def predict_map(checkpoint: PathLike, cube: PathLike | None = None, *,
                cube_key: str | None = None, batch_size: int = 512,
                probabilities: bool = False, progress: bool = True,
                ckpt: dict[str, Any] | None = None
                ) -> xr.DataArray | tuple[xr.DataArray, xr.DataArray]:
    """Classify every pixel of ``cube`` (default: the scene the checkpoint was trained on).

    Returns a ``uint8`` DataArray ``(y, x)`` of class ids, 255 where the scene has no data,
    with attributes ``flag_values``, ``flag_meanings`` (class names, spaces as underscores),
    ``classes`` and ``checkpoint``; with ``probabilities`` also a ``(class, y, x)`` float32
    DataArray of softmax probabilities. ``ckpt``: the checkpoint's contents when already
    read.
    """
    from geofm.tasks.pixel import predict_scene
    from geofm.tasks.pixel_protocol import load_classifier

    model, ckpt = load_classifier(checkpoint, ckpt=ckpt)
    cube, cube_key = map_cube(checkpoint, ckpt, cube, cube_key)
    scene = read_scene_for(ckpt, cube, cube_key)
    from geofm.tasks.pixel_protocol import check_window_fits

    check_window_fits(scene, model.patch)
    labels, probs = predict_scene(model, torch.as_tensor(scene["image"]), scene.get("valid"),
                                  batch_size=batch_size, probabilities=probabilities,
                                  progress=progress)
    da = _as_dataarray(labels, scene, ckpt["classes"], str(checkpoint))
    if not probabilities:
        return da
    prob = xr.DataArray(probs, dims=("class", "y", "x"),
                        coords={"class": list(ckpt["classes"]), "y": da.y, "x": da.x},
                        name="probability")
    return da, prob


def _as_dataarray(labels: np.ndarray, scene: dict[str, Any], classes: Sequence[str],
                  checkpoint: str) -> xr.DataArray:
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    from geofm.data.grid import pixel_centres

    h, w = labels.shape
    transform = scene.get("transform")
    if transform is not None:
        ys, xs = pixel_centres(transform, h, w)
    else:
        ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    da = xr.DataArray(labels.astype(np.uint8), dims=("y", "x"), coords={"y": ys, "x": xs},
                      name="class_id")
    da.attrs.update({
        "flag_values": np.arange(len(classes), dtype=np.uint8),
        "flag_meanings": " ".join(c.replace(" ", "_") for c in classes),
        "classes": "\n".join(classes),
        "nodata": IGNORE_INDEX,
        "checkpoint": checkpoint,
        "georeferenced": int(transform is not None and scene.get("crs") is not None),
    })
    if transform is not None:
        da = da.rio.write_transform(transform)
    if scene.get("crs") is not None:
        da = da.rio.write_crs(scene["crs"])
    return da


def _classes_of(da: xr.DataArray) -> list[str]:
    return str(da.attrs["classes"]).split("\n")


def map_paths(out_dir: PathLike, name: str, georeferenced: bool = True) -> dict[str, Path]:
    """The files :func:`write_map` writes: PNG, NetCDF and (georeferenced) GeoTIFF."""
    out = Path(out_dir)
    paths = {"png": out / f"{name}.png", "netcdf": out / f"{name}.nc"}
    if georeferenced:
        paths["geotiff"] = out / f"{name}.tif"
    return paths


def write_map(da: xr.DataArray, out_dir: PathLike, name: str = "class_map", *,
              ground_truth: np.ndarray | None = None, overwrite: bool = False,
              title: str | None = None, inputs: Sequence[PathLike | None] = ()
              ) -> dict[str, Path]:
    """Write ``<name>.png`` and ``<name>.nc``, and ``<name>.tif`` when ``da`` has a CRS.

    The PNG shows the map with a legend of the class names, beside ``ground_truth``
    (``(H, W)`` class ids, 255 unlabelled) when given, with the accuracy on the labelled
    pixels. Existing files are refused unless ``overwrite``, and a path that is one of
    ``inputs`` always (:func:`geofm.data.outputs.check_outputs`). Returns the paths written.
    """
    from matplotlib.figure import Figure

    from geofm.data.plot import plot_class_map

    paths = map_paths(out_dir, name, bool(da.attrs.get("georeferenced")))
    check_outputs(paths.values(), [da.attrs.get("checkpoint"), *inputs], overwrite)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    classes = _classes_of(da)
    labels = da.values
    panels = 2 if ground_truth is not None else 1
    fig = Figure(figsize=(6.5 * panels, 5), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    plot_class_map(labels, classes, ax=axes[0], title="prediction")
    if ground_truth is not None:
        gt = np.asarray(ground_truth)
        if gt.shape != labels.shape:
            raise ValueError(f"ground truth is {gt.shape}, the map {labels.shape}")
        plot_class_map(gt, classes, ax=axes[1], title="ground truth")
        labelled = gt != IGNORE_INDEX
        acc = float((labels[labelled] == gt[labelled]).mean()) if labelled.any() else float("nan")
        fig.suptitle((title + "\n" if title else "")
                     + f"agreement on the {int(labelled.sum())} labelled pixels: {100 * acc:.2f}%"
                     " (training pixels included)", fontsize=10)
    elif title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(paths["png"], dpi=120)
    encoded = da.copy()
    encoded.attrs = {k: v for k, v in da.attrs.items() if k != "flag_values"}
    encoded.attrs["flag_values"] = da.attrs["flag_values"].astype(np.int16)
    encoded.to_netcdf(paths["netcdf"], engine="scipy")
    if "geotiff" in paths:
        _write_geotiff(da, paths["geotiff"], classes)
    return paths


def _write_geotiff(da: xr.DataArray, path: Path, classes: Sequence[str]) -> None:
    import rasterio

    from geofm.data.plot import class_colour_table

    transform, crs = da.rio.transform(), da.rio.crs
    h, w = da.shape
    profile = {"driver": "GTiff", "height": h, "width": w, "count": 1, "dtype": "uint8",
               "crs": crs, "transform": transform, "nodata": IGNORE_INDEX,
               "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256}
    if h < 256 or w < 256:
        profile.update(tiled=False)
        profile.pop("blockxsize"), profile.pop("blockysize")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(da.values.astype(np.uint8), 1)
        dst.write_colormap(1, class_colour_table(len(classes)))
        dst.update_tags(1, **{f"class_{i}": name for i, name in enumerate(classes)})
        dst.set_band_description(1, "class id")
