"""Where the tiles of a sliding-window prediction go, and how their outputs are blended.

Two kinds of model are laid out on a scene:

* a **scene classifier** gives one label per ``tile x tile`` input. Tiles step by
  ``stride`` pixels and the output grid has one *cell* per ``stride x stride`` pixels, so a
  tile covers ``tile / stride`` cells on each axis; where tiles overlap
  (``stride < tile``) a cell takes the weighted mean of the probabilities of every tile
  over it.
* a **pixel classifier** gives a label per pixel. A tile is read with ``margin`` pixels of
  context on each side (a LoLA-SpecViT window radius, a segmenter's receptive field) and
  predicts the ``tile - 2 margin`` pixels of its *core*; cores step by ``core - overlap``.

On each axis the tiles sit on a regular grid from the scene's first pixel. If that grid
does not reach the scene's last pixel, one more tile is placed flush with the scene's end,
so no tile but one on a scene smaller than a tile reaches past the scene. The plan is a
property of the scene's size alone: any order or grouping of the tiles (the blocks of
:mod:`geofm.inference.engine`) sums the same contributions for every output cell.

Blending weights are a tent over each tile's footprint, highest at its centre and never
below ``floor`` of the peak, so that a cell near one tile's edge but another's centre
follows the tile that saw it with the most context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["AxisTile", "TilePlan", "axis_tiles", "plan_tiles"]

FLOOR = 0.25
"""Smallest blending weight, as a share of a tile's peak (at its centre)."""


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis.

    ``start`` is the tile's first input pixel (negative when its context reaches before the
    scene); ``out_start:out_stop`` the output cells it predicts; ``weights`` one blending
    weight per output cell.
    """

    start: int
    out_start: int
    out_stop: int
    weights: np.ndarray


def _tent(centres: np.ndarray, middle: float, half: float) -> np.ndarray:
    w = 1.0 - np.abs(centres - middle) / max(half, 1e-9)
    return np.maximum(w, FLOOR).astype(np.float32)


def _starts(extent: int, size: int, step: int) -> list[int]:
    """Regular starts 0, step, ... of windows of ``size`` inside ``[0, extent)``; one more
    flush with the end when the regular ones stop short (one at 0 if ``size > extent``)."""
    if size >= extent:
        return [0]
    starts = list(range(0, extent - size + 1, step))
    if starts[-1] + size < extent:
        starts.append(extent - size)
    return starts


def axis_tiles(
    extent: int, kind: str, tile: int, stride: int | None = None, margin: int = 0, overlap: int = 0
) -> tuple[list[AxisTile], int]:
    """The tiles along one axis of ``extent`` input pixels and the output length.

    ``kind`` is ``"scene"`` (``stride`` divides ``tile``; output cells of ``stride``
    pixels) or ``"pixel"`` (``margin`` context pixels each side, cores overlapping by
    ``overlap``; output cells are pixels).
    """
    if extent < 1:
        raise ValueError(f"a scene axis needs at least one pixel, got {extent}")
    if kind == "scene":
        stride = tile if stride is None else stride
        if stride < 1 or tile < 1 or tile % stride:
            raise ValueError(
                f"the stride ({stride}) must divide the tile ({tile}): the output "
                "grid has one cell per stride"
            )
        cells = math.ceil(extent / stride)
        lo = np.arange(cells) * stride
        centres: np.ndarray = (lo + np.minimum(lo + stride, extent)) / 2.0  # cell centres, px
        tiles = []
        for start in _starts(extent, tile, stride):
            inside = np.nonzero((centres >= start) & (centres < start + tile))[0]
            a, b = int(inside[0]), int(inside[-1]) + 1
            middle = start + min(tile, extent - start) / 2.0
            tiles.append(AxisTile(start, a, b, _tent(centres[a:b], middle, tile / 2.0)))
        return tiles, cells
    if kind == "pixel":
        core = tile - 2 * margin
        if margin < 0 or core < 1:
            raise ValueError(
                f"a tile of {tile} pixels leaves no core inside a margin of {margin} on each side"
            )
        if not 0 <= overlap < core:
            raise ValueError(
                f"overlap must lie in [0, {core}) (the core of the tile), got {overlap}"
            )
        tiles = []
        for c0 in _starts(extent, core, core - overlap):
            c1 = min(c0 + core, extent)
            centres = np.arange(c0, c1) + 0.5
            tiles.append(AxisTile(c0 - margin, c0, c1, _tent(centres, (c0 + c1) / 2.0, core / 2.0)))
        return tiles, extent
    raise ValueError(f"kind must be 'scene' or 'pixel', got {kind!r}")


@dataclass(frozen=True)
class TilePlan:
    """The tiles of a scene: the product of the row and the column tiles.

    ``factor`` is input pixels per output cell (``stride`` for scene classifiers, 1 for
    pixel classifiers); ``shape`` the output grid (rows, cols).
    """

    kind: str
    tile: int
    rows: tuple[AxisTile, ...]
    cols: tuple[AxisTile, ...]
    shape: tuple[int, int]
    factor: int
    margin: int
    step: int
    """Output cells between regular tiles: 1 for scene tiles (they step by one cell), the
    core minus the overlap for pixel tiles."""

    @property
    def num_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    def touching(self, axis: str, lo: int, hi: int) -> list[int]:
        """Indices of the ``axis`` (``"rows"``/``"cols"``) tiles whose output cells meet
        ``[lo, hi)``."""
        tiles = self.rows if axis == "rows" else self.cols
        return [i for i, t in enumerate(tiles) if t.out_start < hi and t.out_stop > lo]


def plan_tiles(
    height: int,
    width: int,
    kind: str,
    tile: int,
    stride: int | None = None,
    margin: int = 0,
    overlap: int = 0,
) -> TilePlan:
    """Lay tiles over a ``height x width`` scene (see the module docstring)."""
    rows, n_rows = axis_tiles(height, kind, tile, stride, margin, overlap)
    cols, n_cols = axis_tiles(width, kind, tile, stride, margin, overlap)
    factor = (tile if stride is None else stride) if kind == "scene" else 1
    step = 1 if kind == "scene" else tile - 2 * margin - overlap
    return TilePlan(
        kind,
        tile,
        tuple(rows),
        tuple(cols),
        (n_rows, n_cols),
        factor,
        margin if kind == "pixel" else 0,
        step,
    )
