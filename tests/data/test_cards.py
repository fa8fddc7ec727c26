"""The band and dataset cards under ``datasets/``: they load, and they say what is true.

These tests read only the repository's ``datasets/`` folder (cards, scripts and the bundled
samples), never anything outside it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
from pathlib import Path

import pytest

from geofm.data.cards import (
    CardNotFoundError,
    UnknownBandError,
    data_dir,
    list_dataset_cards,
    list_sensors,
    load_dataset_card,
    load_sensor,
)

DATASETS = Path(__file__).resolve().parents[2] / "datasets"
SCRIPTS = DATASETS / "scripts"
SPC = DATASETS / "samples" / "aviris" / "92AV3C.spc"

# shared/DESIGN.md, "The sample contract".
S2_CENTRES_NM = {
    "B01": 442.7,
    "B02": 492.4,
    "B03": 559.8,
    "B04": 664.6,
    "B05": 704.1,
    "B06": 740.5,
    "B07": 782.8,
    "B08": 832.8,
    "B8A": 864.7,
    "B09": 945.1,
    "B10": 1373.5,
    "B11": 1613.7,
    "B12": 2202.4,
}
EUROSAT_FILE_ORDER = [
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B09",
    "B10",
    "B11",
    "B12",
    "B8A",
]
EXPECTED_SENSORS = {"sentinel2", "sentinel1", "landsat8_9_oli", "landsat7_etm", "aviris"}
EXPECTED_CARDS = {
    "eurosat_ms",
    "salinas_a",
    "salinas",
    "indian_pines",
    "pavia_university",
    "whu_hi_longkou",
    "whu_hi_honghu",
    "gfmbench_eurosat",
    "gfmbench_bigearthnet",
    "gfmbench_so2sat",
    "gfmbench_segmunich",
    "gfmbench_dfc2020",
    "gfmbench_marida",
    "gfmbench_nlcd_l",
    "landsat_rgb",
    "s2_l1c_t33uuu",
}
TASKS = {"classification", "multilabel", "segmentation", "pixel_classification"}


def _load_script(name: str):
    """Import ``datasets/scripts/<name>.py`` (a script folder, not a package)."""
    module_name = f"_geofm_datasets_scripts_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- loading


def test_loader_reads_this_repositorys_datasets_folder():
    assert data_dir().resolve() == DATASETS.resolve()


def test_every_expected_card_exists():
    assert EXPECTED_SENSORS <= set(list_sensors())
    assert EXPECTED_CARDS <= set(list_dataset_cards())


@pytest.mark.parametrize("name", sorted(EXPECTED_SENSORS))
def test_sensor_card_loads_with_positive_wavelengths_and_gsd(name):
    card = load_sensor(name)
    assert card.bands, name
    for band in card.bands:
        assert band.wavelength_nm > 0, band
        assert band.gsd_m is not None and band.gsd_m > 0, band
        assert band.fwhm_nm is None or band.fwhm_nm > 0, band


@pytest.mark.parametrize("name", sorted(EXPECTED_CARDS))
def test_dataset_card_loads_consistently(name):
    card = load_dataset_card(name)
    assert card.name == name
    assert card.gsd_m > 0
    assert len(card.wavelengths_nm) == len(card.bands) > 0
    assert all(w > 0 for w in card.wavelengths_nm)
    assert all(b.fwhm_nm is None or b.fwhm_nm > 0 for b in card.bands), "FWHM must be > 0"
    assert len(set(card.band_names)) == len(card.band_names), "a band is listed twice"
    if name != "landsat_rgb":  # the only unlabelled sample
        assert card.task in TASKS
        assert card.num_classes > 0
    if card.mean is not None:
        assert len(card.mean) == len(card.std) == len(card.bands)
        assert all(s > 0 for s in card.std)
        assert card.statistics_source
    card.select(card.rgb_bands)


@pytest.mark.parametrize("name", sorted(EXPECTED_CARDS))
def test_source_urls_are_https_or_null(name):
    source = load_dataset_card(name).extra.get("source", {})
    for key, value in source.items():
        if key.endswith("url") and value is not None:
            assert value.startswith(("https://", "http://")), (key, value)


# ----------------------------------------------------------------------------- Sentinel


def test_sentinel2_centres_match_design():
    card = load_sensor("sentinel2")
    assert {b.name: b.wavelength_nm for b in card.bands} == S2_CENTRES_NM


def test_sentinel1_uses_less_vit_pseudo_wavelengths():
    card = load_sensor("sentinel1")
    assert card.wavelengths(["VV", "VH"]) == [5500.0, 5700.0]
    assert all(b.fwhm_nm is None for b in card.bands)
    assert card.rgb_bands == ()


# ----------------------------------------------------------------------------- EuroSAT


def test_eurosat_ms_band_order_is_file_order_with_b8a_last():
    card = load_dataset_card("eurosat_ms")
    assert list(card.band_names) == EUROSAT_FILE_ORDER


def test_eurosat_ms_mean_at_channel_9_is_the_cirrus_band():
    card = load_dataset_card("eurosat_ms")
    assert card.band_names[9] == "B10"
    assert card.mean[9] == pytest.approx(12, abs=1)
    assert card.wavelengths_nm[9] == S2_CENTRES_NM["B10"]


def test_gfmbench_eurosat_compat_wavelengths_differ_exactly_at_indices_8_to_12():
    card = load_dataset_card("gfmbench_eurosat")
    true = card.wavelengths_nm
    compat = card["gfmbench_compat_wavelengths_nm"]
    assert list(card.band_names) == EUROSAT_FILE_ORDER
    assert len(compat) == len(true) == 13
    differ = [i for i, (t, c) in enumerate(zip(true, compat, strict=True)) if t != c]
    assert differ == [8, 9, 10, 11, 12]
    assert sorted(compat) == sorted(true)  # same wavelengths, shuffled labels


def test_gfmbench_eurosat_statistics_agree_with_eurosat_ms():
    a, b = load_dataset_card("gfmbench_eurosat"), load_dataset_card("eurosat_ms")
    assert a.mean == pytest.approx(b.mean, abs=0.01)
    assert a.std == pytest.approx(b.std, abs=0.01)


def test_eurosat_bundled_samples_confirm_the_file_order():
    rasterio = pytest.importorskip("rasterio")
    np = pytest.importorskip("numpy")
    folder = DATASETS / load_dataset_card("eurosat_ms")["samples"]
    tifs = sorted(folder.glob("*/*.tif"))
    if not tifs:
        pytest.skip(f"no EuroSAT samples under {folder}")
    means = np.mean([rasterio.open(t).read().reshape(13, -1).mean(axis=1) for t in tifs], axis=0)
    assert means[9] < 50 < means[8]  # B10 (cirrus) is dark, B09 is not
    assert means[12] > means[7] * 0.9  # B8A (NIR) last, as bright as B08


# ----------------------------------------------------------------------------- multi-modal


def test_bigearthnet_radar_order_is_the_swapped_data_order():
    card = load_dataset_card("gfmbench_bigearthnet")
    radar = card["radar_bands"]
    assert radar["bands"] == ["VH", "VV"]
    assert card["gfmbench_compat_radar_bands"] == ["VV", "VH"]
    stats = card["radar_statistics"]
    assert stats["bands"] == radar["bands"]
    assert stats["mean"] == list(reversed(stats["gfmbench_compat_mean"]))
    assert load_sensor(radar["sensor"]).select(radar["bands"])


def test_dfc2020_radar_bands_resolve_and_label_mapping_covers_igbp():
    card = load_dataset_card("gfmbench_dfc2020")
    radar = card["radar_bands"]
    assert load_sensor(radar["sensor"]).select(radar["bands"])
    mapping = card["label_mapping"]
    assert set(mapping) == set(range(18))
    assert set(mapping.values()) == set(range(card.num_classes)) | {255}


def test_marida_has_eleven_bands_including_b08():
    card = load_dataset_card("gfmbench_marida")
    assert len(card.bands) == 11 and "B08" in card.band_names
    assert "B8" not in card["gfmbench_compat_bands"]
    assert set(card["label_mapping"].values()) == set(range(card.num_classes)) | {255}


def test_nlcd_l_wavelengths_come_from_the_landsat_sensor_cards():
    card = load_dataset_card("gfmbench_nlcd_l")
    expected = []
    for sensor, names in card["band_sources"].items():
        expected += load_sensor(sensor).wavelengths(names)
    assert card.wavelengths_nm == expected
    assert len(card.bands) == 20 and card.num_classes == 21
    assert card["band_order_verified"] is False


# ----------------------------------------------------------------------------- hyperspectral


def test_indian_pines_has_200_exact_wavelengths():
    card = load_dataset_card("indian_pines")
    assert len(card.wavelengths_nm) == 200
    assert card.wavelengths_approximate is False
    assert card.label_lookup()[0] == 255


@pytest.mark.parametrize("name", ["salinas_a", "salinas"])
def test_salinas_cubes_have_204_approximate_wavelengths(name):
    card = load_dataset_card(name)
    assert len(card.wavelengths_nm) == 204
    assert card.wavelengths_approximate is True
    assert card["extrapolated_bands"] == ["C001", "C033", "C097"]
    dropped = {f"C{n:03d}" for n in [*range(108, 113), *range(154, 168), 224]}
    assert not dropped & set(card.band_names)


def test_salinas_a_classes_use_salinas_ids():
    card = load_dataset_card("salinas_a")
    assert card.class_values == (1, 10, 11, 12, 13, 14)
    assert card.classes[0] == "Brocoli_green_weeds_1"
    assert card.classes[1] == "Corn_senesced_green_weeds"
    assert card.ignore_values == (0,)
    assert card.label_lookup() == {1: 0, 10: 1, 11: 2, 12: 3, 13: 4, 14: 5, 0: 255}
    salinas = load_dataset_card("salinas")
    assert [salinas.classes[v - 1] for v in card.class_values] == list(card.classes)


def test_salinas_a_bundled_labels_match_the_card():
    sio = pytest.importorskip("scipy.io")
    np = pytest.importorskip("numpy")
    card = load_dataset_card("salinas_a")
    path = DATASETS / card["samples"] / card["files"]["labels"]["file"]
    if not path.is_file():
        pytest.skip(f"{path} not bundled")
    gt = sio.loadmat(path)[card["files"]["labels"]["key"]]
    assert gt.shape == tuple(card["shape"][:2])
    assert set(np.unique(gt).tolist()) == set(card.class_values) | set(card.ignore_values)
    assert int((gt > 0).sum()) == card["labelled_pixels"]


@pytest.mark.parametrize("name", ["pavia_university", "whu_hi_longkou", "whu_hi_honghu"])
def test_grid_wavelength_cards_say_they_are_approximate(name):
    card = load_dataset_card(name)
    assert card.wavelengths_approximate is True
    assert len(card.bands) == card["shape"][2]
    assert card.wavelengths_nm == sorted(card.wavelengths_nm)


def test_aviris_sensor_lists_the_220_channels_of_the_spc():
    card = load_sensor("aviris")
    assert len(card.bands) == 220
    assert {"C001", "C033", "C097", "C161"}.isdisjoint(card.band_names)
    assert card.band_names[0] == "C002" and card.band_names[-1] == "C224"


# ----------------------------------------------------------------------------- generators


def test_aviris_extrapolation_stays_within_the_spectrometer():
    script = _load_script("make_aviris_card")
    spc = (
        "FILE test\n----\n"
        + "".join(f"{400 + 10 * (n - 2)}.0 10.0 1.0 0.5 {n}.0\n" for n in range(2, 33))
        + "".join(f"{680 + 10 * (n - 34)}.0 9.0 1.0 0.5 {n}.0\n" for n in range(34, 97))
        + "".join(f"{1270 + 10 * (n - 98)}.0 9.0 1.0 0.5 {n}.0\n" for n in range(98, 161))
        + "".join(f"{1880 + 10 * (n - 162)}.0 14.0 1.0 0.5 {n}.0\n" for n in range(162, 225))
    )
    full = script.complete_channels(script.parse_spc(spc))
    assert len(full) == 224
    assert full[1].centre_nm == pytest.approx(390.0) and not full[1].measured
    assert full[33].centre_nm == pytest.approx(670.0)  # from channels 34, 35 (spectrometer B)
    assert full[97].centre_nm == pytest.approx(1260.0)
    assert full[161].fwhm_nm == pytest.approx(14.0)
    assert full[2].measured


def test_generated_aviris_cards_are_up_to_date():
    if not SPC.is_file():
        pytest.skip(f"{SPC} not bundled")
    script = _load_script("make_aviris_card")
    for rel, text in script.render_all(script.read_spc(SPC)).items():
        assert (DATASETS / rel).read_text(encoding="utf-8") == text, (
            f"{rel} is stale: run python datasets/scripts/make_aviris_card.py {SPC}"
        )


def test_generated_grid_cards_are_up_to_date():
    script = _load_script("make_grid_cards")
    for rel, text in script.render_all().items():
        assert (DATASETS / rel).read_text(encoding="utf-8") == text, (
            f"{rel} is stale: run python datasets/scripts/make_grid_cards.py"
        )


# ----------------------------------------------------------------------------- samples

SHIPPED = ["eurosat_ms", "salinas_a", "landsat_rgb", "s2_l1c_t33uuu"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_cards_point_at_their_samples(name):
    samples = load_dataset_card(name)["samples"]
    assert samples == f"samples/{name}"
    assert (DATASETS / samples).is_dir()


@pytest.mark.parametrize("name", ["salinas_a", "landsat_rgb", "s2_l1c_t33uuu"])
def test_sample_checksums_in_the_card_match_the_files(name):
    card = load_dataset_card(name)
    for rel, digest in card["sample_files"].items():
        path = DATASETS / card["samples"] / rel
        assert _sha256(path) == digest, path


def test_landsat_rgb_card_matches_the_file():
    rasterio = pytest.importorskip("rasterio")
    card = load_dataset_card("landsat_rgb")
    with rasterio.open(DATASETS / card["samples"] / card["files"]["image"]) as src:
        assert (src.count, src.height, src.width) == tuple(card["shape"])
        assert src.nodata == card.nodata
        assert src.crs.to_string() == card["crs"]
        assert src.res[0] == pytest.approx(card.gsd_m, abs=0.1)
        assert src.dtypes[0] == card["dtype"]


# ----------------------------------------------------------------------------- errors


def test_unknown_band_lists_the_valid_names():
    card = load_dataset_card("eurosat_ms")
    with pytest.raises(UnknownBandError) as info:
        card.select(["B04", "B13"])
    message = str(info.value)
    assert "B13" in message
    for name in EUROSAT_FILE_ORDER:
        assert name in message
    with pytest.raises(UnknownBandError, match="VV, VH"):
        load_sensor("sentinel1").select(["HH"])


def test_missing_dataset_card_lists_the_available_ones():
    with pytest.raises(CardNotFoundError) as info:
        load_dataset_card("no_such_dataset")
    message = str(info.value)
    assert "no_such_dataset" in message
    for name in ("eurosat_ms", "indian_pines", "gfmbench_eurosat"):
        assert name in message


def test_missing_sensor_card_lists_the_available_ones():
    with pytest.raises(CardNotFoundError) as info:
        load_sensor("no_such_sensor")
    for name in EXPECTED_SENSORS:
        assert name in str(info.value)


def test_yaml_numbers_are_finite():
    for name in EXPECTED_CARDS:
        card = load_dataset_card(name)
        assert all(math.isfinite(w) for w in card.wavelengths_nm), name


def test_card_with_an_unknown_task_is_refused(tmp_path, monkeypatch):
    import shutil

    from geofm.data import cards

    shutil.copytree(DATASETS / "sensors", tmp_path / "sensors")
    (tmp_path / "cards").mkdir()
    text = (DATASETS / "cards" / "eurosat_ms.yaml").read_text()
    (tmp_path / "cards" / "eurosat_ms.yaml").write_text(
        text.replace("task: classification", "task: clasification")
    )
    monkeypatch.setenv("GEOFM_DATA_DIR", str(tmp_path))
    cards.load_dataset_card.cache_clear()
    try:
        with pytest.raises(ValueError, match="'clasification' is not one of classification"):
            cards.load_dataset_card("eurosat_ms")
    finally:
        cards.load_dataset_card.cache_clear()


def test_match_bands_takes_names_before_wavelengths_and_can_leave_bands_unmatched():
    from geofm.data.cards import BandMatchError, match_bands

    # Indian Pines keeps AVIRIS channel C112 (1412 nm), which Salinas-A lacks; C113 is in
    # both. C112 must not take Salinas-A's C113 by wavelength before C113 asks by name.
    wanted, wanted_wl = ["C112", "C113"], [1412.4, 1422.3]
    have, have_wl = ["C106", "C113"], [1352.7, 1422.3]
    assert match_bands(wanted, wanted_wl, have, have_wl, missing="none") == [None, 1]
    with pytest.raises(BandMatchError, match=r"needs bands C112 \(1412.4 nm\)") as err:
        match_bands(wanted, wanted_wl, have, have_wl, tolerance_nm=5.0)
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    # with a tolerance that reaches it, the free band nearest in wavelength is taken
    assert match_bands(["x"], [1350.0], have, have_wl, tolerance_nm=5.0) == [0]
    with pytest.raises(BandMatchError, match="2 wanted bands but 1 wanted wavelengths"):
        match_bands(wanted, [1.0], have, have_wl)
    with pytest.raises(ValueError, match="missing must be 'error' or 'none'"):
        match_bands(wanted, wanted_wl, have, have_wl, missing="skip")
