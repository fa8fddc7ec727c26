"""Sliding-window prediction over a scene of any size, in bounded memory.

:func:`predict` lays tiles over the scene (:mod:`geofm.inference.tiling`), then walks the
output grid in square *blocks*. For each block it reads, by window, only the input that
the tiles over the block need, runs those tiles through the predictor in batches, blends
their probabilities into the block and hands the finished block to a sink (numpy arrays,
or Cloud-Optimised GeoTIFFs written block by block). Memory therefore depends on the
block, the tile and the batch, never on the scene: ``memory_mb`` picks the block.

Tiles over two blocks are run for each (a few per cent more work for no memory), and each
output cell sums its tiles in the plan's order whatever the blocks are, so a prediction
in many blocks equals the one in a single block up to floating-point rounding of the
model itself.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
import torch
import xarray as xr
from affine import Affine
from rasterio.windows import Window

from geofm.data.outputs import check_outputs
from geofm.data.readers import iter_windows
from geofm.inference.predictors import Predictor
from geofm.inference.sources import SceneSource, open_source
from geofm.inference.tiling import TilePlan, plan_tiles
from geofm.inference.writers import GeoTIFFSink, MemorySink, label_dtype, probabilities_path

__all__ = ["Prediction", "NotGeoreferencedWarning", "choose_block", "predict"]

PathLike = str | os.PathLike


class NotGeoreferencedWarning(UserWarning):
    """The scene has no CRS: the output is on its pixel grid."""


@dataclass
class Prediction:
    """The result of :func:`predict`.

    ``labels`` is a ``(y, x)`` DataArray of class ids (``nodata`` where nothing was
    predicted) with the output grid's coordinates, and its CRS through ``rioxarray``;
    ``probabilities`` a ``(class, y, x)`` float32 DataArray or ``None``. When written to
    files, both are opened lazily from the COGs at ``paths``.
    """

    labels: xr.DataArray
    probabilities: xr.DataArray | None
    classes: list[str]
    transform: Affine | None
    crs: Any
    paths: list[Path] = field(default_factory=list)
    tiles_run: int = 0
    blocks: int = 0
    block: int = 0
    #: output cells per class, then those without a prediction (counted block by block)
    counts: np.ndarray | None = None

    @property
    def georeferenced(self) -> bool:
        return self.crs is not None


def _estimate_mb(
    block: int, plan: TilePlan, bands: int, classes: int, batch_size: int = 1
) -> float:
    """Memory held for one block, in MiB: the input window read (float32, plus the
    reader's uint16 and scaling copies: counted as three float32 copies), the
    accumulators (float32 sums, weights and probabilities, the int64 argmax) and one
    batch of tiles in and of probabilities out, each counted twice (stacked, then handed
    to the model; computed, then copied off it)."""
    f, T = plan.factor, plan.tile
    if plan.kind == "scene":
        # tiles over the block's first and last cells reach T - f pixels beyond it
        side_in = block * f + 2 * (T - f)
    else:
        # the tiles' cores over the block, with their margins: a block of whole steps of
        # the tile grid reaches at most one core further (the tile flush with the scene's
        # end); any other block a core over each edge
        core = T - 2 * plan.margin
        side_in = block + 2 * plan.margin + core * (1 if block % plan.step == 0 else 2)
    inputs = 3 * 4 * bands * side_in**2
    accum = (4 * (classes + 1) + 4 * classes + 8) * block**2
    core = plan.tile - 2 * plan.margin if plan.kind == "pixel" else 1
    batch = 2 * 4 * batch_size * (bands * plan.tile**2 + classes * core**2)
    return (inputs + accum + batch) / 2**20


BLOCK_SIDES = (1, 2, 4, 8, *range(16, 4097, 16))
"""Block sides tried by :func:`choose_block` (output cells)."""


def gdal_cache_mb(memory_mb: float) -> int:
    """GDAL's block cache during a prediction (MiB): an eighth of ``memory_mb``, at
    least 16 (GDAL reads whole 512-px blocks of tiled GeoTIFFs)."""
    return max(16, int(memory_mb // 8))


def block_budget_mb(memory_mb: float) -> float:
    """What one block's buffers may take (MiB): half of ``memory_mb``, less what GDAL's
    cache takes beyond its eighth when :func:`gdal_cache_mb`'s floor applies; the rest
    is margin for the allocator and the COG conversion."""
    return memory_mb / 2 - max(0.0, gdal_cache_mb(memory_mb) - memory_mb / 8)


def choose_block(
    plan: TilePlan, bands: int, classes: int, memory_mb: float, batch_size: int = 1
) -> int:
    """The largest block side (output cells, from :data:`BLOCK_SIDES`) whose buffers fit
    :func:`block_budget_mb`. No larger than the output grid needs, and rounded down to
    whole steps of the tile grid when it spans one."""
    if memory_mb <= 0:
        raise ValueError(f"memory_mb must be positive, got {memory_mb}")
    budget = block_budget_mb(memory_mb)
    need = _estimate_mb(1, plan, bands, classes, batch_size)
    if need > budget:
        raise ValueError(
            f"memory_mb={memory_mb:g} is too small for {bands}-band tiles of {plan.tile} px "
            f"in batches of {batch_size}: one tile's block needs {need:.0f} MiB of the "
            f"{max(budget, 0):.0f} MiB left once GDAL's cache ({gdal_cache_mb(memory_mb)} "
            "MiB) and the allocator's margin are kept"
        )
    best = 1
    steps = range(plan.step, 4097, plan.step) if plan.step > 1 else ()
    for side in sorted({*BLOCK_SIDES, *steps}):
        if _estimate_mb(side, plan, bands, classes, batch_size) > budget:
            if side % plan.step == 0 or plan.step == 1:
                break
            continue  # a whole number of steps may still fit
        best = side
        if side >= max(plan.shape):
            break
    if best >= plan.step:
        # whole steps of the tile grid: a tile's cells then fall in as few blocks as can be
        best = best // plan.step * plan.step
    return best


def predict(
    predictor: Predictor,
    scene: PathLike | dict[str, Any] | SceneSource,
    out: PathLike | None = None,
    *,
    stride: int | None = None,
    overlap: int = 0,
    probabilities: bool = False,
    memory_mb: float = 512,
    block: int | None = None,
    batch_size: int | None = None,
    min_valid: float = 0.5,
    card: str | None = None,
    gsd: float | None = None,
    cube_key: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Prediction:
    """Classify a scene tile by tile.

    Args:
        predictor: what runs on the tiles (:mod:`geofm.inference.predictors`).
        scene: a raster, band folder, ENVI or ``.mat`` cube path, a sample dict, or a
            :class:`~geofm.inference.sources.SceneSource`.
        out: write the class map to this Cloud-Optimised GeoTIFF (and, with
            ``probabilities``, ``<stem>.probabilities.tif`` beside it); default: keep the
            result in memory.
        stride: scene classifiers: pixels between tiles and the side of an output cell
            (must divide the tile; default the tile: one label per tile, no overlap).
        overlap: pixel classifiers: pixels by which tile cores overlap and are blended.
        probabilities: also return (and write) the blended class probabilities.
        memory_mb: bound on what the prediction holds besides the model's own forward
            pass (which ``batch_size`` sets): the input and output of a block, one batch of
            tiles, GDAL's block cache. Picks ``block``.
        block: output cells per block side, instead of ``memory_mb``.
        batch_size: tiles per model call (default 32 for scene tiles, 1 for pixel tiles).
        min_valid: scene classifiers: least share of valid pixels for a tile to be used.
        card: dataset or sensor card naming the scene's bands (files without names);
            default the predictor's (a pixel classifier's training scene card).
        gsd: resample a georeferenced raster to this ground sampling distance (metres) as
            it is read; for a scene without map coordinates, declare its GSD (default: the
            card's).
        cube_key: the array of a ``.mat`` cube.
        overwrite: replace existing output files (refused otherwise, before any work; an
            output that is the scene or the predictor's checkpoint is always refused).
        progress: show a progress bar of tiles.

    A scene without a CRS is predicted on its pixel grid, with a
    :class:`NotGeoreferencedWarning` saying so. A scene lacking bands the predictor needs
    raises :class:`~geofm.inference.sources.BandMatchError` naming them.
    """
    from tqdm.auto import tqdm

    paths: list[Path] = []
    if out is not None:
        out = Path(out)
        paths = [out] + ([probabilities_path(out)] if probabilities else [])
        # an earlier run's probabilities beside the map would no longer describe it; no
        # output may be the scene or the checkpoint (refused even with overwrite)
        scene_path = scene if isinstance(scene, str | os.PathLike) else None
        check_outputs([out, probabilities_path(out)], [scene_path, predictor.checkpoint], overwrite)
        if not out.parent.is_dir():
            raise FileNotFoundError(f"output folder {out.parent} does not exist")
    if not 0.0 <= min_valid <= 1.0:
        raise ValueError(f"min_valid must lie in [0, 1], got {min_valid}")
    card = card if card is not None else predictor.card
    source = open_source(
        scene, card=card, gsd=gsd, cube_key=cube_key, wavelengths=predictor.wavelengths
    )
    source.select(predictor.bands, by_count=predictor.cardless)
    if stride is not None and predictor.kind != "scene":
        raise ValueError("stride is for scene classifiers; pixel classifiers take overlap")
    if overlap and predictor.kind != "pixel":
        raise ValueError("overlap is for pixel classifiers; scene classifiers take stride")
    plan = plan_tiles(
        source.height,
        source.width,
        predictor.kind,
        predictor.tile,
        stride=stride,
        margin=predictor.margin,
        overlap=overlap,
    )
    classes = predictor.classes
    batch_size = batch_size or (32 if plan.kind == "scene" else 1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive number of tiles, got {batch_size}")
    if block is None:
        block = choose_block(plan, len(source.bands), len(classes), memory_mb, batch_size)
    elif block < 1:
        raise ValueError(f"block must be a positive number of cells, got {block}")
    footprint = max(t.out_stop - t.out_start for t in (*plan.rows, *plan.cols))
    if block < footprint and block < max(plan.shape):
        warnings.warn(
            f"blocks of {block} cells are smaller than a tile's {footprint}: each "
            f"tile is run for up to {-(-footprint // block) + 1}^2 blocks; give "
            "more memory_mb or a smaller batch_size",
            stacklevel=2,
        )
    crs = source.crs
    # without a transform: in units of the scene's pixels, in memory and in the file alike
    transform = source.transform if source.transform is not None else Affine.identity()
    if plan.factor != 1:
        transform = transform @ Affine.scale(plan.factor)
    if source.crs is None:
        where = str(out) if out is not None else "the result"
        unit = "pixels" if source.transform is None else "own (unnamed) map units"
        units = (
            f"coordinates in the scene's {unit}"
            if plan.factor == 1
            else f"in the scene's {unit}, cells of {plan.factor} x {plan.factor} pixels"
        )
        warnings.warn(
            f"{source.name} has no CRS: {where} is on the scene's own grid (no CRS; {units})",
            NotGeoreferencedWarning,
            stacklevel=2,
        )
    blocks = [
        (w.row_off, w.row_off + w.height, w.col_off, w.col_off + w.width)
        for w in iter_windows(plan.shape[1], plan.shape[0], block)
    ]
    total = sum(
        len(plan.touching("rows", r0, r1)) * len(plan.touching("cols", c0, c1))
        for r0, r1, c0, c1 in blocks
    )
    run = 0
    counts = np.zeros(len(classes) + 1, dtype=np.int64)
    gdal_cache = gdal_cache_mb(memory_mb) * 2**20
    sink: GeoTIFFSink | MemorySink | None = None
    try:
        device = predictor.device
        wavelengths = torch.tensor(source.wavelengths, dtype=torch.float32, device=device)
        if out is not None:
            tags = {
                "model": predictor.name,
                "kind": plan.kind,
                "cell_pixels": str(plan.factor),
                "source": source.name,
            }
            sink = GeoTIFFSink(
                out,
                plan.shape,
                classes,
                crs=crs,
                transform=transform,
                probabilities=probabilities,
                tags=tags,
            )
        else:
            sink = MemorySink(plan.shape, classes, probabilities)
        with (
            rasterio.Env(GDAL_CACHEMAX=gdal_cache),
            tqdm(total=total, disable=not progress, desc="predicting", unit="tile") as bar,
        ):
            for r0, r1, c0, c1 in blocks:
                labels, probs, ran = _predict_block(
                    predictor,
                    source,
                    plan,
                    (r0, r1, c0, c1),
                    wavelengths,
                    batch_size,
                    min_valid,
                    probabilities,
                    bar,
                )
                run += ran
                ids = labels.ravel().astype(np.int64)
                counts += np.bincount(np.minimum(ids, len(classes)), minlength=len(classes) + 1)
                sink.write(r0, c0, labels, probs)
            written = sink.finish()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    if out is not None and not probabilities and overwrite:
        # an earlier run's probabilities would no longer match the map beside them
        probabilities_path(out).unlink(missing_ok=True)
    if run == 0:
        warnings.warn(
            f"no tile of {source.name} was classified: every tile has less than "
            f"min_valid={min_valid:g} of valid pixels; the map is all nodata",
            stacklevel=2,
        )
    if isinstance(sink, GeoTIFFSink):
        label_da, prob_da = _open_written(written, classes)
    else:
        label_da = _dataarray(sink.labels, crs, transform, classes, sink.nodata)
        prob_da = None
        if sink.probs is not None:
            prob_da = xr.DataArray(
                sink.probs,
                dims=("class", "y", "x"),
                coords={"class": classes, "y": label_da.y, "x": label_da.x},
                name="probability",
            )
            if crs is not None:
                prob_da = prob_da.rio.write_crs(crs)
    label_da.attrs.update(model=predictor.name, kind=plan.kind, cell_pixels=plan.factor)
    return Prediction(
        label_da, prob_da, list(classes), transform, crs, paths, run, len(blocks), block, counts
    )


def _predict_block(
    predictor: Predictor,
    source: SceneSource,
    plan: TilePlan,
    bounds: tuple[int, int, int, int],
    wavelengths: torch.Tensor,
    batch_size: int,
    min_valid: float,
    probabilities: bool,
    bar,
) -> tuple[np.ndarray, np.ndarray | None, int]:
    r0, r1, c0, c1 = bounds
    rows = plan.touching("rows", r0, r1)
    cols = plan.touching("cols", c0, c1)
    T = plan.tile
    f = plan.factor
    # the tiles' inputs and the block's own pixels (for which cells hold data)
    in_r0 = min(plan.rows[rows[0]].start, r0 * f)
    in_c0 = min(plan.cols[cols[0]].start, c0 * f)
    in_r1 = max(plan.rows[rows[-1]].start + T, min(r1 * f, source.height))
    in_c1 = max(plan.cols[cols[-1]].start + T, min(c1 * f, source.width))
    image, valid = source.read(Window(in_c0, in_r0, in_c1 - in_c0, in_r1 - in_r0))
    K = len(predictor.classes)
    acc = np.zeros((K, r1 - r0, c1 - c0), dtype=np.float32)
    weight = np.zeros((r1 - r0, c1 - c0), dtype=np.float32)
    device = predictor.device
    todo = []
    for ri in rows:
        for ci in cols:
            rt, ct = plan.rows[ri], plan.cols[ci]
            tv = valid[
                rt.start - in_r0 : rt.start - in_r0 + T, ct.start - in_c0 : ct.start - in_c0 + T
            ]
            if plan.kind == "scene":
                # the share of valid pixels among those of the tile inside the scene (a
                # scene smaller than a tile is all a tile can see of it)
                inside = (min(rt.start + T, source.height) - max(rt.start, 0)) * (
                    min(ct.start + T, source.width) - max(ct.start, 0)
                )
                usable = tv.any() and tv.sum() >= min_valid * inside
            else:
                m = plan.margin
                usable = tv[m : T - m, m : T - m].any()
            if usable:
                todo.append((ri, ci))
            else:
                bar.update(1)
    ran = 0
    for i in range(0, len(todo), batch_size):
        batch = todo[i : i + batch_size]
        crops = [(plan.rows[ri].start - in_r0, plan.cols[ci].start - in_c0) for ri, ci in batch]
        x = torch.from_numpy(np.stack([image[:, a : a + T, b : b + T] for a, b in crops]))
        v = torch.from_numpy(np.stack([valid[a : a + T, b : b + T] for a, b in crops]))
        scores = predictor(x.to(device), v.to(device), wavelengths, source.gsd)
        out = scores.detach().float().cpu().numpy()
        for (ri, ci), p in zip(batch, out, strict=True):
            if not np.isfinite(p).all():
                continue  # the model gave no answer for this tile
            rt, ct = plan.rows[ri], plan.cols[ci]
            # the tile's cells inside this block, in tile and in block coordinates
            ya, yb = max(rt.out_start, r0), min(rt.out_stop, r1)
            xa, xb = max(ct.out_start, c0), min(ct.out_stop, c1)
            ty = slice(ya - rt.out_start, yb - rt.out_start)
            tx = slice(xa - ct.out_start, xb - ct.out_start)
            by, bx = slice(ya - r0, yb - r0), slice(xa - c0, xb - c0)
            w = np.outer(rt.weights[ty], ct.weights[tx])
            acc[:, by, bx] += p[:, None, None] * w if plan.kind == "scene" else p[:, ty, tx] * w
            weight[by, bx] += w
        ran += len(batch)
        bar.update(len(batch))
    cell_valid = _cell_validity(valid, plan, bounds, (in_r0, in_c0), source)
    # in place: the block's largest arrays are not copied again
    np.divide(acc, weight, out=acc, where=weight > 0)
    done = (weight > 0) & cell_valid
    dtype, nodata = label_dtype(K)
    labels = acc.argmax(0).astype(dtype)
    labels[~done] = nodata
    prob = None
    if probabilities:
        prob = acc
        prob[:, ~done] = np.nan
    return labels, prob, ran


def _cell_validity(
    valid: np.ndarray,
    plan: TilePlan,
    bounds: tuple[int, int, int, int],
    origin: tuple[int, int],
    source: SceneSource,
) -> np.ndarray:
    """Which output cells of the block hold at least one valid scene pixel."""
    r0, r1, c0, c1 = bounds
    f = plan.factor
    y0, x0 = r0 * f - origin[0], c0 * f - origin[1]
    y1 = min(r1 * f, source.height) - origin[0]
    x1 = min(c1 * f, source.width) - origin[1]
    part = valid[y0:y1, x0:x1]
    if f == 1:
        return part
    h, w = r1 - r0, c1 - c0
    padded = np.zeros((h * f, w * f), dtype=bool)
    padded[: part.shape[0], : part.shape[1]] = part
    return cast(np.ndarray, padded.reshape(h, f, w, f).any(axis=(1, 3)))


def _dataarray(
    labels: np.ndarray, crs: Any, transform: Affine | None, classes: list[str], nodata: int
) -> xr.DataArray:
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    h, w = labels.shape
    if transform is not None:
        from geofm.data.grid import pixel_centres

        ys, xs = pixel_centres(transform, h, w)
    else:
        ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    da = xr.DataArray(labels, dims=("y", "x"), coords={"y": ys, "x": xs}, name="class_id")
    da.attrs.update(
        classes="\n".join(classes),
        nodata=nodata,
        flag_values=np.arange(len(classes)),
        flag_meanings=" ".join(c.replace(" ", "_") for c in classes),
    )
    if transform is not None:
        da = da.rio.write_transform(transform)
    if crs is not None:
        da = da.rio.write_crs(crs)
    return da


def _open_written(
    paths: list[Path], classes: list[str]
) -> tuple[xr.DataArray, xr.DataArray | None]:
    """The written COGs as lazily loaded DataArrays (rioxarray)."""
    import rioxarray

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        # one GeoTIFF each: open_rasterio returns a DataArray (not a Dataset or a list)
        labels = cast(
            xr.DataArray, rioxarray.open_rasterio(paths[0], mask_and_scale=False)
        ).squeeze("band", drop=True)
        labels.name = "class_id"
        labels.attrs["classes"] = "\n".join(classes)
        probs = None
        if len(paths) > 1:
            probs = cast(xr.DataArray, rioxarray.open_rasterio(paths[1])).rename(band="class")
            probs = probs.assign_coords({"class": classes})
            probs.name = "probability"
    return labels, probs
