"""Safe by default for rasters and cubes (issue 16, sections 4 and 5).

No silently wrong pixels: a band set's pixels are valid only where every band has data, a
band file off the grid or a band held twice is refused naming the files, an ENVI binary of
another size than its header describes or with a byte order that is neither 0 nor 1 is
refused, ``.mat`` arrays of the wrong number of dimensions are refused, and a truncated
GeoTIFF's error names it. Small inputs do not exhaust memory: of a ``.mat`` file only the
array asked for is read, and ``geofm info`` reads a bounded sample, not every pixel.

Every input is written by the test. Memory is measured with ``tracemalloc`` (which counts
numpy's buffers): a deterministic count of the bytes allocated, never a time.
"""

from __future__ import annotations

import re
import tracemalloc

import h5py
import numpy as np
import pytest
import rasterio
import scipy.io
from rasterio.transform import from_origin
from rasterio.windows import Window

from geofm.cli import main
from geofm.data.hyperspectral import envi_memmap, open_envi, open_mat, read_label_mat
from geofm.data.readers import open_raster
from geofm.inference.sources import open_source

MB = 1024 * 1024
CRS = "EPSG:32633"


def _write_band(path, data, left=300000.0, top=5000640.0, res=10.0, description=None):
    """A single-band GeoTIFF of ``data`` (rows, cols) with its top-left corner at
    (``left``, ``top``)."""
    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype.name,
        crs=CRS,
        transform=from_origin(left, top, res, res),
    )
    with rasterio.open(path, "w", **profile) as dst:
        if description:  # before the pixels, so that the header stays at the start
            dst.set_band_description(1, description)
        dst.write(data, 1)
    return path


def _ones(rows, cols, value=100):
    return np.full((rows, cols), value, dtype=np.uint16)


# --------------------------------------------------------------------------------------------
# 4. No silently wrong pixels


def test_pixels_outside_a_band_files_footprint_are_not_valid(tmp_path):
    folder = tmp_path / "IMG_DATA"
    folder.mkdir()
    _write_band(folder / "T_B02.tif", _ones(64, 64))
    _write_band(folder / "T_B03.tif", _ones(64, 32))  # covers the left half only
    s = open_raster(folder)
    valid = s["valid"].numpy()
    assert valid[:, :32].all(), "pixels with data from every band are valid"
    assert not valid[:, 32:].any(), "pixels that B03 does not cover are not valid"
    assert (s["image"][:, :, 32:] == 0).all()
    # the tiled inference reads band folders through the same reader
    _, valid = open_source(folder).read(Window(0, 0, 64, 64))
    assert valid[:, :32].all() and not valid[:, 32:].any()


def test_a_band_file_that_misses_the_grid_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "IMG_DATA"
    folder.mkdir()
    _write_band(folder / "T_B02.tif", _ones(64, 64))
    _write_band(folder / "T_B03.tif", _ones(64, 64), left=900000.0)  # another tile
    with pytest.raises(ValueError, match="T_B03.tif does not overlap") as info:
        open_raster(folder)
    message = str(info.value)
    assert "900000.0" in message and "300000.0" in message, "both bounds are named"


def test_two_files_holding_one_band_are_refused_naming_both(tmp_path):
    folder = tmp_path / "IMG_DATA"
    folder.mkdir()
    _write_band(folder / "T_B02.tif", _ones(16, 16))
    _write_band(folder / "T_B2.tif", _ones(16, 16))
    _write_band(folder / "T_B03.tif", _ones(16, 16))
    with pytest.raises(ValueError, match=r"band B02: .*T_B02\.tif and .*T_B2\.tif"):
        open_raster(folder, card="sentinel2")
    with pytest.raises(ValueError, match=r"T_B02\.tif and .*T_B2\.tif"):
        open_source(folder, card="sentinel2")


def _write_envi(path, cube_bhw, *, interleave="bip", header_bands=None, byte_order=0):
    axes = {"bsq": (0, 1, 2), "bil": (1, 0, 2), "bip": (1, 2, 0)}[interleave]
    np.ascontiguousarray(cube_bhw.transpose(axes)).astype("<i2").tofile(path.with_suffix(".img"))
    b, h, w = cube_bhw.shape
    path.with_suffix(".hdr").write_text(
        f"ENVI\nsamples = {w}\nlines = {h}\nbands = {header_bands or b}\n"
        f"header offset = 0\ndata type = 2\ninterleave = {interleave}\n"
        f"byte order = {byte_order}\n"
    )
    return path.with_suffix(".hdr")


def test_an_envi_binary_larger_than_its_header_describes_is_refused(tmp_path):
    cube = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    # a BIP file of 4 bands under a header that says 3: read, it would come out scrambled
    hdr = _write_envi(tmp_path / "cube", cube, header_bands=3)
    size, expected = 4 * 5 * 6 * 2, 3 * 5 * 6 * 2
    with pytest.raises(
        ValueError,
        match=rf"cube\.img has {size} bytes but its header "
        rf"describes {expected}",
    ):
        open_envi(hdr, wavelengths=[500.0, 600.0, 700.0], gsd=1.0)
    with pytest.raises(ValueError, match=str(expected)):
        envi_memmap(hdr)


def test_an_envi_byte_order_that_is_neither_0_nor_1_is_refused(tmp_path):
    hdr = _write_envi(tmp_path / "cube", np.ones((2, 3, 4), dtype=np.int16), byte_order=2)
    with pytest.raises(ValueError, match=r"cube\.hdr: 'byte order = 2'"):
        open_envi(hdr, wavelengths=[500.0, 600.0], gsd=1.0)


@pytest.fixture()
def cube_and_labels_mat(tmp_path):
    path = tmp_path / "scene.mat"
    scipy.io.savemat(
        path, {"cube": np.ones((6, 5, 4), dtype=np.uint16), "gt": np.zeros((6, 5), dtype=np.uint8)}
    )
    return path


def test_read_label_mat_refuses_a_3d_array(cube_and_labels_mat):
    with pytest.raises(
        ValueError,
        match=r"'cube' in .*scene\.mat has 3 dimensions "
        r"\(6 x 5 x 4\), not 2",
    ):
        read_label_mat(cube_and_labels_mat, key="cube")


def test_open_mat_refuses_a_2d_array_with_a_clear_message(cube_and_labels_mat):
    with pytest.raises(
        ValueError,
        match=r"'gt' in .*scene\.mat has 2 dimensions "
        r"\(6 x 5\), not 3",
    ):
        open_mat(cube_and_labels_mat, key="gt", wavelengths=[500.0, 600.0, 700.0, 800.0], gsd=1.0)


def _truncated_tif(path):
    rng = np.random.default_rng(0)
    full = _write_band(
        path.with_name("full.tif"),
        rng.integers(0, 9999, (256, 256), dtype=np.uint16),
        description="B04",
    )
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives, the pixels do not
    full.unlink()
    with rasterio.open(path) as src:
        assert (src.width, src.height) == (256, 256), "the file still opens"
    return path


def test_a_truncated_geotiff_error_names_the_file(tmp_path, capsys):
    bad = _truncated_tif(tmp_path / "T_B04.tif")
    with pytest.raises(OSError, match=re.escape(str(bad))):
        open_raster(bad, wavelengths=[665.0])
    with pytest.raises(OSError, match=re.escape(str(bad))):
        open_raster([bad], wavelengths=[665.0])  # read as a band of a set
    assert main(["info", str(bad), "--card", "sentinel2"]) == 2
    assert str(bad) in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# 5. Small inputs must not exhaust memory


def _peak_bytes(fn):
    """The most bytes Python and numpy held at once during ``fn()``, and its result."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def test_open_mat_reads_only_the_array_asked_for(tmp_path):
    path = tmp_path / "two_arrays.mat"
    with h5py.File(path, "w") as f:
        # v7.3 files store (H, W, C) arrays transposed
        f.create_dataset("small", data=np.ones((6, 5, 4), dtype=np.float32).T)
        # 800 MB described, never written: the file stays a few KB
        f.create_dataset("huge", shape=(200, 1000, 1000), dtype=np.float32, chunks=(1, 100, 100))
    assert path.stat().st_size < 64 * 1024
    peak, s = _peak_bytes(
        lambda: open_mat(path, key="small", gsd=1.0, wavelengths=[500.0, 600.0, 700.0, 800.0])
    )
    assert tuple(s["image"].shape) == (4, 6, 5)
    assert peak < 100 * MB, f"open_mat(key='small') allocated {peak / MB:.0f} MB"


def test_info_on_a_sparse_raster_reads_a_bounded_sample(tmp_path, capsys):
    path = tmp_path / "sparse.tif"
    size = 8192
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="uint8",
        crs=CRS,
        transform=from_origin(300000.0, 5100000.0, 10.0, 10.0),
        nodata=0,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        sparse_ok=True,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.descriptions = ("B04", "B03", "B02")
        dst.write(np.full((3, 256, 256), 7, dtype=np.uint8), window=Window(0, 0, 256, 256))
    assert path.stat().st_size < 64 * 1024, "the file is sparse"
    peak, code = _peak_bytes(lambda: main(["info", str(path), "--card", "sentinel2"]))
    assert code == 0
    assert peak < 100 * MB, f"geofm info allocated {peak / MB:.0f} MB"
    out = capsys.readouterr().out
    assert "3 bands x 8192 x 8192" in out and "estimated from a sample" in out


def test_a_mat_array_larger_than_memory_is_refused_before_reading(tmp_path):
    """Ground truth is read whole: a 1e6 x 1e6 array declared in a few KB is refused from
    its header, and so is an array whose data lives in other files."""
    path = tmp_path / "gt.mat"
    with h5py.File(path, "w") as f:
        f.create_dataset("gt", shape=(1_000_000, 1_000_000), dtype=np.uint8, chunks=(1000, 1000))
        f.create_dataset(
            "elsewhere",
            shape=(4, 4),
            dtype=np.uint8,
            external=[(str(tmp_path / "other.bin"), 0, 16)],
        )
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(
        ValueError,
        match=r"'gt' in .*gt\.mat is 1000000 x 1000000 values "
        r"of 1 bytes: reading",
    ):
        read_label_mat(path, key="gt")
    with pytest.raises(ValueError, match=r"'elsewhere' .* keeps its data in other files"):
        read_label_mat(path, key="elsewhere")
