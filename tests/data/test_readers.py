"""open_raster on the bundled real rasters, checked against rasterio read directly."""

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from geofm.data import load_dataset_card, load_sensor
from geofm.data.band_files import band_name_from_filename, match_band_name
from geofm.data.cards import UnknownBandError
from geofm.data.readers import iter_windows, open_raster
from geofm.data.sample import BandMismatchError, check_sample


@pytest.fixture(scope="module")
def forest_tif(eurosat_dir):
    return eurosat_dir / "Forest" / "Forest_1.tif"


def test_eurosat_geotiff_matches_rasterio_and_card(forest_tif):
    s = open_raster(forest_tif, card="eurosat_ms")
    check_sample(s)
    with rasterio.open(forest_tif) as src:
        raw = src.read()
        assert s["crs"] == src.crs
        assert s["transform"] == src.transform
    assert s["image"].dtype == torch.float32
    assert s["image"].shape == (13, 64, 64)
    np.testing.assert_array_equal(s["image"].numpy(), raw.astype(np.float32))
    card = load_dataset_card("eurosat_ms")
    assert s["bands"] == card.band_names
    assert s["bands"][-1] == "B8A" and s["bands"][9] == "B10"
    assert s["wavelengths"].tolist() == pytest.approx(card.wavelengths_nm)
    assert s["gsd"] == pytest.approx(10.0, abs=0.01)
    assert bool(s["valid"].all())


def test_band_names_select_channels_in_the_order_asked(forest_tif):
    s = open_raster(forest_tif, card="eurosat_ms", bands=["B8A", "B04", "B10"])
    with rasterio.open(forest_tif) as src:
        raw = src.read([13, 4, 10])
    np.testing.assert_array_equal(s["image"].numpy(), raw)
    assert s["wavelengths"].tolist() == pytest.approx([864.7, 664.6, 1373.5])


def test_unknown_band_name_lists_the_valid_ones(forest_tif):
    with pytest.raises(UnknownBandError, match=r"'B13'.*B01, B02.*B8A"):
        open_raster(forest_tif, card="eurosat_ms", bands=["B04", "B13"])


def test_wavelength_count_mismatch_names_both_counts(forest_tif):
    with pytest.raises(BandMismatchError, match="12 wavelengths given for an image with 13"):
        open_raster(forest_tif, wavelengths=[500.0] * 12)


def test_raster_without_band_metadata_says_how_to_give_it(forest_tif):
    with pytest.raises(ValueError, match="card="):
        open_raster(forest_tif)


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.tif"
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        open_raster(missing, card="eurosat_ms")


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_text("not a raster")
    with pytest.raises(OSError, match="broken.tif"):
        open_raster(bad, card="eurosat_ms")


def test_window_read_matches_rasterio_and_moves_the_transform(landsat_tif):
    win = Window(300, 200, 128, 96)
    s = open_raster(landsat_tif, card="landsat_rgb", window=(300, 200, 128, 96))
    with rasterio.open(landsat_tif) as src:
        raw = src.read(window=win)
        expected_transform = window_transform(win, src.transform)
    np.testing.assert_array_equal(s["image"].numpy(), np.where(raw.all(0), raw, 0))
    assert s["transform"] == expected_transform
    assert s["image"].shape == (3, 96, 128)


def test_nodata_pixels_are_masked_and_zeroed(landsat_tif):
    s = open_raster(landsat_tif, card="landsat_rgb")
    with rasterio.open(landsat_tif) as src:
        raw = src.read()
        assert src.nodata == 0
    expected_valid = (raw != 0).all(axis=0)
    np.testing.assert_array_equal(s["valid"].numpy(), expected_valid)
    assert 0.5 < expected_valid.mean() < 0.9  # the real scene has wide nodata borders
    assert float(s["image"][:, ~s["valid"]].abs().sum()) == 0.0


def test_nan_pixels_are_masked(tmp_path, landsat_tif):
    with rasterio.open(landsat_tif) as src:
        data = src.read(window=Window(300, 300, 64, 64)).astype(np.float32)
        profile = src.profile | {"dtype": "float32", "nodata": None, "width": 64, "height": 64}
    data[1, 10, 20] = np.nan
    path = tmp_path / "with_nan.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    s = open_raster(path, card="landsat_rgb")
    assert not bool(s["valid"][10, 20])
    assert float(s["image"][:, 10, 20].abs().sum()) == 0.0
    assert torch.isfinite(s["image"]).all()


def test_window_partly_outside_is_zero_filled_and_marked_invalid(forest_tif):
    s = open_raster(forest_tif, card="eurosat_ms", window=(48, -8, 32, 32))
    with rasterio.open(forest_tif) as src:
        raw = src.read(window=Window(48, 0, 16, 24))
    np.testing.assert_array_equal(s["image"][:, 8:, :16].numpy(), raw)
    valid = s["valid"].numpy()
    assert valid[8:, :16].all()
    assert not valid[:8].any() and not valid[:, 16:].any()
    assert float(s["image"][:, :8].abs().sum()) == 0.0


def test_window_wholly_outside_names_the_raster_size(forest_tif):
    with pytest.raises(ValueError, match=r"outside .*64 x 64"):
        open_raster(forest_tif, card="eurosat_ms", window=(64, 0, 10, 10))


def test_resampling_to_a_coarser_gsd_updates_gsd_and_grid(forest_tif):
    s = open_raster(forest_tif, card="eurosat_ms", gsd=20.0, bands=["B04", "B03", "B02"])
    assert s["image"].shape == (3, 32, 32)
    assert s["gsd"] == pytest.approx(20.0, abs=0.02)
    with rasterio.open(forest_tif) as src:
        assert s["transform"].a == pytest.approx(2 * src.transform.a)
        full = src.read(4).astype(np.float64)
    assert float(s["image"][0].mean()) == pytest.approx(full.mean(), rel=0.01)


def test_band_name_from_file_names_is_matched_to_the_card():
    assert band_name_from_filename("T33UUU_20170216T102101_B8A.jp2") == "B8A"
    assert band_name_from_filename("T33UUU_20170216T102101_B04_10m.jp2") == "B04"
    assert band_name_from_filename("LC08_B4.TIF") == "B4"
    assert band_name_from_filename("scene.tif") is None
    assert match_band_name("B4", load_sensor("sentinel2")) == "B04"
    assert match_band_name("B04", load_sensor("landsat8_9_oli")) == "B4"
    assert match_band_name("B8A", load_sensor("landsat8_9_oli")) is None


@pytest.fixture()
def landsat_band_files(tmp_path, landsat_tif):
    """The real Landsat subset split into single-band files named like USGS deliveries."""
    folder = tmp_path / "LC08_scene"
    folder.mkdir()
    with rasterio.open(landsat_tif) as src:
        profile = src.profile | {"count": 1}
        for index, name in zip((1, 2, 3), ("B4", "B3", "B2"), strict=True):
            with rasterio.open(folder / f"LC08_TEST_{name}.TIF", "w", **profile) as dst:
                dst.write(src.read(index), 1)
    return folder


def test_landsat_band_files_need_a_card_and_get_its_wavelengths(landsat_band_files):
    with pytest.raises(ValueError, match="card='landsat8_9_oli'"):
        open_raster(landsat_band_files)
    s = open_raster(landsat_band_files, card="landsat8_9_oli")
    assert s["bands"] == ("B2", "B3", "B4")  # the card's order
    oli = load_sensor("landsat8_9_oli")
    assert s["wavelengths"].tolist() == pytest.approx(oli.wavelengths(["B2", "B3", "B4"]))


def test_a_single_band_file_in_a_list_is_read_as_that_band(s2_tile_dir):
    s = open_raster([s2_tile_dir / "T33UUU_20170216T102101_B03.jp2"])
    assert s["bands"] == ("B03",) and s["image"].shape == (1, 768, 1536)


def test_sensor_card_without_band_order_is_refused(forest_tif):
    with pytest.raises(ValueError, match="does not say in which order"):
        open_raster(forest_tif, card="sentinel2")


def test_sensor_card_with_bands_in_file_order_is_accepted(landsat_tif):
    s = open_raster(landsat_tif, card="landsat7_etm", bands=["B3", "B2", "B1"])
    assert s["bands"] == ("B3", "B2", "B1")


def test_band_indexes_for_band_files_are_refused(s2_tile_dir):
    with pytest.raises(ValueError, match="band names"):
        open_raster(s2_tile_dir, bands=[1, 2])


def test_a_band_name_string_is_refused_with_the_fix(forest_tif):
    with pytest.raises(TypeError, match=r"bands=\['B04'\]"):
        open_raster(forest_tif, card="eurosat_ms", bands="B04")


def test_unknown_resampling_lists_the_choices(s2_tile_dir):
    with pytest.raises(ValueError, match="bilinear"):
        open_raster(s2_tile_dir, resampling="smooth")


@pytest.mark.parametrize("gsd", [float("nan"), -10.0, 0.0])
def test_gsd_that_is_not_a_positive_number_is_refused(forest_tif, gsd):
    with pytest.raises(ValueError, match="positive"):
        open_raster(forest_tif, card="eurosat_ms", gsd=gsd)


def test_card_nodata_applies_to_a_file_without_a_nodata_tag(tmp_path, landsat_tif):
    with rasterio.open(landsat_tif) as src:
        raw = src.read()
        profile = src.profile | {"nodata": None}
    path = tmp_path / "untagged.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(raw)
    s = open_raster(path, card="landsat_rgb")
    np.testing.assert_array_equal(s["valid"].numpy(), (raw != 0).all(axis=0))


def test_sentinel2_band_files_stack_on_the_10m_grid(s2_tile_dir):
    s = open_raster(s2_tile_dir)
    check_sample(s)
    assert s["image"].shape == (13, 768, 1536)
    assert s["bands"] == load_sensor("sentinel2").band_names  # B08, B8A, B09 order
    assert s["wavelengths"].tolist() == pytest.approx(load_sensor("sentinel2").wavelengths())
    assert s["gsd"] == pytest.approx(10.0)
    assert s["crs"].to_epsg() == 32633
    with rasterio.open(s2_tile_dir / "T33UUU_20170216T102101_B04.jp2") as src:
        np.testing.assert_array_equal(s["image"][3].numpy(), src.read(1))
        assert s["transform"] == src.transform


def test_sentinel2_20m_band_is_upsampled_by_nearest_exactly(s2_tile_dir):
    s = open_raster(
        s2_tile_dir, bands=["B11", "B02"], resampling="nearest", window=(0, 0, 256, 128)
    )
    with rasterio.open(s2_tile_dir / "T33UUU_20170216T102101_B11.jp2") as src:
        assert src.res == (20.0, 20.0)
        b11 = src.read(1, window=Window(0, 0, 128, 64))
    np.testing.assert_array_equal(s["image"][0].numpy(), np.kron(b11, np.ones((2, 2))))
    assert s["bands"] == ("B11", "B02")


def test_sentinel2_window_equals_the_same_part_of_the_full_stack(s2_tile_dir):
    full = open_raster(s2_tile_dir, bands=["B01", "B05", "B08"])
    part = open_raster(s2_tile_dir, bands=["B01", "B05", "B08"], window=(600, 300, 200, 100))
    np.testing.assert_allclose(
        part["image"].numpy(), full["image"][:, 300:400, 600:800].numpy(), rtol=0, atol=1.0
    )
    assert part["transform"] == full["transform"] @ full["transform"].translation(600, 300)


def test_sentinel2_stack_at_20m(s2_tile_dir):
    s = open_raster(s2_tile_dir, gsd=20.0, bands=["B02", "B11"])
    assert s["image"].shape == (2, 384, 768)
    with rasterio.open(s2_tile_dir / "T33UUU_20170216T102101_B11.jp2") as src:
        np.testing.assert_array_equal(s["image"][1].numpy(), src.read(1))


def test_missing_band_file_lists_the_bands_present(s2_tile_dir):
    with pytest.raises(UnknownBandError, match=r"B13.*B01"):
        open_raster(sorted(s2_tile_dir.glob("*.jp2")), bands=["B02", "B13"])


def test_iter_windows_cover_the_grid_once():
    seen = np.zeros((70, 130), int)
    for w in iter_windows(130, 70, 32):
        seen[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] += 1
    assert (seen == 1).all()
