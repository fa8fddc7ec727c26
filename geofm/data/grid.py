"""Coordinates of the pixels of a georeferenced grid.

A grid is ``height x width`` pixels placed on the map by a pixel-to-CRS affine
``transform`` (rasterio's convention: ``x = c + col * a + row * b``,
``y = f + col * d + row * e``, with ``(col, row)`` the pixel's upper-left corner).
"""

from __future__ import annotations

import numpy as np
from affine import Affine


def pixel_centres(transform: Affine, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of the pixel centres of a north-up grid, one per row and column.

    Returns:
        ``(ys, xs)``: ``ys`` ``(height,)`` and ``xs`` ``(width,)`` float64, the centre of row
        ``i`` at ``y = f + (i + 0.5) * e`` and of column ``j`` at ``x = c + (j + 0.5) * a``.
        The rotation terms ``b`` and ``d`` of ``transform`` are not used: the result is exact
        only for a north-up grid (``b == d == 0``).
    """
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    xs = transform.c + cols * transform.a
    ys = transform.f + rows * transform.e
    return ys, xs
