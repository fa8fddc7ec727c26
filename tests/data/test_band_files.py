"""Band files of a band set: band names from file names, the card that names them, the order."""

from pathlib import Path

import pytest

from geofm.data.band_files import (
    band_names_of_files,
    sensor_for_band_files,
    sort_band_files,
)
from geofm.data.cards import UnknownBandError, as_card, card_scale_and_nodata
from geofm.data.readers import open_band_files, raster_files


def test_a_sentinel2_folder_is_sorted_in_card_order(s2_tile_dir):
    files = sort_band_files(raster_files(s2_tile_dir), None)
    names = band_names_of_files(files, as_card("sentinel2"))
    assert names == list(as_card("sentinel2").band_names)
    assert names.index("B8A") == names.index("B08") + 1


def test_names_without_a_known_sensor_ask_for_a_card():
    files = [Path("LC08_B4.TIF"), Path("LC08_B3.TIF")]
    with pytest.raises(ValueError, match=r"\['B4', 'B3'\].*LC08_B4.TIF.*card="):
        sensor_for_band_files(["B4", "B3"], None, files)
    assert sensor_for_band_files(["B4", "B3"], "landsat8_9_oli", files).name == "landsat8_9_oli"


def test_two_files_of_one_band_are_both_named():
    files = [Path("T_B02.tif"), Path("T_B2.tif")]
    with pytest.raises(ValueError, match=r"two files hold band B02: T_B02.tif and T_B2.tif"):
        band_names_of_files(files, as_card("sentinel2"))


def test_a_file_of_no_card_band_lists_the_valid_bands():
    with pytest.raises(UnknownBandError, match=r"scene.tif \(no _B<n> in its name\).*B01, B02"):
        band_names_of_files([Path("scene.tif")], as_card("sentinel2"))


def test_card_scale_and_nodata_come_from_dataset_cards_only():
    card = as_card("eurosat_ms")
    nodata = None if card.nodata is None else float(card.nodata)
    assert card_scale_and_nodata("eurosat_ms") == (card.scale, nodata)
    assert card_scale_and_nodata("sentinel2") == (1.0, None)
    assert card_scale_and_nodata(None) == (1.0, None)


def test_open_band_files_reads_the_files_in_the_order_given(s2_tile_dir):
    files = {f.stem[-3:]: f for f in raster_files(s2_tile_dir)}
    s = open_band_files([files["B04"], files["B02"]], window=(0, 0, 8, 8))
    assert list(s["bands"]) == ["B04", "B02"]
    assert s["image"].shape == (2, 8, 8)
    with pytest.raises(ValueError, match="empty list of paths"):
        open_band_files([])
