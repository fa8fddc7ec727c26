import pytest
import torch

from geofm.data import from_xarray, open_envi, open_raster, read_label_mat, to_xarray


def _assert_same(a, b):
    assert torch.equal(a["image"], b["image"])
    assert torch.equal(a["wavelengths"], b["wavelengths"])
    assert a["bands"] == b["bands"] and a["gsd"] == b["gsd"]
    for key in ("valid", "mask", "label", "center"):
        assert (key in a) == (key in b)
        if key in a:
            assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key]))
            assert torch.as_tensor(a[key]).dtype == torch.as_tensor(b[key]).dtype
    assert a.get("crs") == b.get("crs")
    assert a.get("transform") == b.get("transform")


def test_georeferenced_round_trip_is_lossless(eurosat_dir):
    s = open_raster(eurosat_dir / "River" / "River_2.tif", card="eurosat_ms")
    s["label"] = torch.tensor(8)
    da = to_xarray(s)
    assert da.dims == ("band", "y", "x")
    assert da.rio.crs == s["crs"]
    assert da.coords["wavelength"].values.tolist() == pytest.approx(s["wavelengths"].tolist())
    t = s["transform"]
    assert float(da.x[0]) == pytest.approx(t.c + 0.5 * t.a)
    assert float(da.y[0]) == pytest.approx(t.f + 0.5 * t.e)
    _assert_same(from_xarray(da), s)


def test_window_round_trip_keeps_the_window_transform(s2_tile_dir):
    s = open_raster(s2_tile_dir, bands=["B04", "B03", "B02", "B8A"], window=(512, 256, 64, 48))
    _assert_same(from_xarray(to_xarray(s)), s)


def test_ungeoreferenced_cube_with_labels_round_trips(salinas_a_dir):
    s = open_envi(salinas_a_dir / "SalinasA_corrected.hdr", card="salinas_a")
    s["mask"] = torch.from_numpy(
        read_label_mat(salinas_a_dir / "SalinasA_gt.mat", card="salinas_a")
    )
    da = to_xarray(s)
    assert da.rio.crs is None
    _assert_same(from_xarray(da), s)


def test_rioxarray_opened_file_becomes_a_sample(landsat_tif):
    import rioxarray

    da = rioxarray.open_rasterio(landsat_tif).astype("float32")
    da = da.assign_coords(band=["B3", "B2", "B1"], wavelength=("band", [660.0, 560.0, 485.0]))
    s = from_xarray(da)
    ref = open_raster(landsat_tif, card="landsat_rgb")
    assert torch.equal(s["valid"], ref["valid"])  # from the file's nodata value
    assert torch.equal(s["image"], ref["image"])
    assert s["transform"] == ref["transform"] and s["crs"] == ref["crs"]


def test_dataarray_without_wavelengths_says_how_to_add_them(landsat_tif):
    import rioxarray

    da = rioxarray.open_rasterio(landsat_tif)
    with pytest.raises(ValueError, match="wavelength"):
        from_xarray(da)


def test_pixel_patch_round_trip_keeps_its_centre(salinas_a_dir):
    from geofm.data import PixelPatchDataset, read_scene

    scene = read_scene(
        salinas_a_dir / "SalinasA_corrected.hdr",
        salinas_a_dir / "SalinasA_gt.mat",
        card="salinas_a",
    )
    patch = PixelPatchDataset(scene, [[0, 3]], radius=2)[0]
    _assert_same(from_xarray(to_xarray(patch)), patch)
    assert from_xarray(to_xarray(patch))["center"].tolist() == [0, 3]
