"""Tile layouts: every output cell covered, tiles inside the scene, the cell grid exact."""

from __future__ import annotations

import numpy as np
import pytest

from geofm.inference.engine import _estimate_mb, choose_block, gdal_cache_mb
from geofm.inference.tiling import axis_tiles, plan_tiles


@pytest.mark.parametrize("extent", [1, 31, 32, 63, 64, 65, 100, 128, 1000, 1536])
@pytest.mark.parametrize("tile,stride", [(64, 64), (64, 32), (64, 16), (32, 32)])
def test_scene_tiles_cover_every_cell_from_inside_the_scene(extent, tile, stride):
    tiles, cells = axis_tiles(extent, "scene", tile, stride)
    assert cells == -(-extent // stride)
    covered = np.zeros(cells, dtype=int)
    for t in tiles:
        covered[t.out_start : t.out_stop] += 1
        assert len(t.weights) == t.out_stop - t.out_start and (t.weights > 0).all()
        if extent >= tile:
            assert 0 <= t.start and t.start + tile <= extent  # never reads past the scene
        else:
            assert t.start == 0
        # the cells credited to a tile have their centres inside it
        lo = np.arange(t.out_start, t.out_stop) * stride
        centres = (lo + np.minimum(lo + stride, extent)) / 2
        assert ((centres >= t.start) & (centres < t.start + tile)).all()
    assert (covered >= 1).all()
    starts = [t.start for t in tiles]
    assert starts == sorted(set(starts))
    # regular grid, plus at most one tile flush with the end
    regular = [s for s in starts if s % stride == 0]
    assert len(starts) - len(regular) <= 1


def test_scene_tiles_regular_grid_has_tile_over_stride_cells_each():
    tiles, cells = axis_tiles(256, "scene", 64, 32)
    assert cells == 8 and [t.start for t in tiles] == [0, 32, 64, 96, 128, 160, 192]
    assert all(t.out_stop - t.out_start == 2 for t in tiles)
    # blending: the middle cells of a tile weigh more than its edges unless 2 cells wide
    tiles, _ = axis_tiles(256, "scene", 64, 16)
    w = tiles[1].weights
    assert len(w) == 4 and w[1] > w[0] and w[2] > w[3] and w.min() > 0


@pytest.mark.parametrize("extent", [1, 10, 50, 64, 65, 83, 200])
@pytest.mark.parametrize("tile,margin,overlap", [(64, 7, 0), (64, 7, 10), (20, 2, 3), (9, 4, 0)])
def test_pixel_tiles_cover_every_pixel_with_their_core(extent, tile, margin, overlap):
    tiles, n = axis_tiles(extent, "pixel", tile, margin=margin, overlap=overlap)
    assert n == extent
    core = tile - 2 * margin
    covered = np.zeros(extent, dtype=int)
    for t in tiles:
        assert t.start == t.out_start - margin  # context before the core
        assert t.out_stop - t.out_start <= core
        assert t.out_stop <= extent
        covered[t.out_start : t.out_stop] += 1
    assert (covered >= 1).all()


def test_bad_layouts_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="stride .* must divide the tile"):
        axis_tiles(100, "scene", 64, 24)
    with pytest.raises(ValueError, match="no core"):
        axis_tiles(100, "pixel", 14, margin=7)
    with pytest.raises(ValueError, match="overlap must lie"):
        axis_tiles(100, "pixel", 64, margin=7, overlap=50)
    with pytest.raises(ValueError, match="kind must be"):
        axis_tiles(100, "dense", 64)
    with pytest.raises(ValueError, match="at least one pixel"):
        axis_tiles(0, "scene", 64)


def test_plan_touching_and_block_choice():
    plan = plan_tiles(768, 1536, "scene", 64, stride=32)
    assert plan.shape == (24, 48) and plan.factor == 32 and plan.num_tiles == 23 * 47
    rows = plan.touching("rows", 0, 4)
    assert rows == [0, 1, 2, 3]  # tiles over cells 0..3 (each tile covers 2 cells)
    small = choose_block(plan, bands=13, classes=10, memory_mb=64)
    large = choose_block(plan, bands=13, classes=10, memory_mb=2048)
    assert 1 <= small < large and large == 48  # no more than the grid needs
    big = plan_tiles(20_000, 20_000, "scene", 64)
    assert choose_block(big, bands=13, classes=10, memory_mb=64) == 4  # 256-px windows
    assert choose_block(big, bands=13, classes=10, memory_mb=512) == 16
    with pytest.raises(ValueError, match="too small"):
        choose_block(plan_tiles(10_000, 10_000, "scene", 512), bands=200, classes=10, memory_mb=8)
    # pixel tiles: blocks are whole steps of the core grid, so few tiles straddle two
    pixel = plan_tiles(4608, 6144, "pixel", 256, margin=2)
    assert pixel.step == 252
    side = choose_block(pixel, bands=13, classes=10, memory_mb=512, batch_size=4)
    assert side % 252 == 0


@pytest.mark.parametrize("memory_mb", [32, 48, 64, 128, 512])
def test_block_and_gdal_cache_together_keep_three_eighths_of_memory_for_the_allocator(memory_mb):
    # GDAL's cache has a 16 MiB floor; below 128 MiB it takes more than its eighth, and
    # the block gives that up (a quick benchmark at 48 MiB ran 1 MiB over when it did not)
    plan = plan_tiles(1536, 3072, "pixel", 64, margin=2)
    side = choose_block(plan, bands=13, classes=10, memory_mb=memory_mb, batch_size=2)
    held = _estimate_mb(side, plan, 13, 10, 2) + gdal_cache_mb(memory_mb)
    assert held <= memory_mb * 5 / 8, (side, held)
    assert gdal_cache_mb(memory_mb) == max(16, memory_mb // 8)
