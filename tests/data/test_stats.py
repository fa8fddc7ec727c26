"""Streaming statistics against numpy over the same real pixels."""

import numpy as np
import pytest
import rasterio
import yaml
from timeouts import HANG_TIMEOUT_S

from geofm.cli import main
from geofm.data import load_sensor
from geofm.data.stats import BandStatistics, compute_statistics


@pytest.fixture(scope="module")
def eurosat_pixels(eurosat_dir):
    arrays = []
    for path in sorted(eurosat_dir.rglob("*.tif")):
        with rasterio.open(path) as src:
            arrays.append(src.read().reshape(13, -1))
    return np.concatenate(arrays, axis=1)


def test_eurosat_statistics_equal_numpy_over_all_pixels(eurosat_dir, eurosat_pixels):
    stats = compute_statistics(
        [eurosat_dir], card="eurosat_ms", progress=False, percentiles=(2, 50, 98)
    )
    x = eurosat_pixels.astype(np.float64)
    np.testing.assert_allclose(stats["mean"], x.mean(axis=1), rtol=1e-7)
    np.testing.assert_allclose(stats["std"], x.std(axis=1, ddof=1), rtol=1e-6)
    assert stats["percentiles_exact"]
    for q in (2, 50, 98):
        np.testing.assert_array_equal(
            stats["percentiles"][f"p{q}"], np.percentile(eurosat_pixels, q, axis=1, method="lower")
        )
    assert stats["bands"][9] == "B10" and stats["mean"][9] < 20  # cirrus band, file order
    assert stats["count"] == [x.shape[1]] * 13


def test_small_windows_give_the_same_statistics_as_whole_files(landsat_tif):
    big = compute_statistics([landsat_tif], tile=1024, progress=False)
    small = compute_statistics([landsat_tif], tile=37, progress=False)
    np.testing.assert_allclose(small["mean"], big["mean"], rtol=1e-9)
    np.testing.assert_allclose(small["std"], big["std"], rtol=1e-9)
    assert small["percentiles"] == big["percentiles"]


def test_nodata_is_left_out(landsat_tif):
    stats = compute_statistics([landsat_tif], progress=False)
    with rasterio.open(landsat_tif) as src:
        raw = src.read()
    valid = (raw != 0).all(axis=0)
    np.testing.assert_allclose(stats["mean"], raw[:, valid].mean(axis=1), rtol=1e-7)
    assert stats["count"][0] == int(valid.sum())
    assert min(stats["min"]) > 0


def test_float_data_percentiles_are_estimated_and_flagged(salinas_a_dir):
    from geofm.data import open_envi

    cube = open_envi(salinas_a_dir / "SalinasA_corrected.hdr", card="salinas_a")
    values = cube["image"].numpy().reshape(204, -1)[:3].astype(np.float32)
    s = BandStatistics(3, reservoir=2000, seed=1)
    for chunk in np.array_split(values, 7, axis=1):
        s.update(chunk)
    assert not s.percentiles_exact
    p50 = s.percentiles([50])[0]
    spread = values.std(axis=1)
    assert np.all(np.abs(p50 - np.median(values, axis=1)) < 0.2 * spread)
    np.testing.assert_allclose(s.mean, values.astype(np.float64).mean(axis=1), rtol=1e-6)


def test_inputs_with_different_band_counts_are_refused(eurosat_dir, landsat_tif):
    with pytest.raises(ValueError, match="different band counts"):
        compute_statistics([eurosat_dir / "Forest" / "Forest_1.tif", landsat_tif], progress=False)


def test_missing_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.tif"):
        compute_statistics([tmp_path / "absent.tif"], progress=False)


def test_stats_command_writes_card_format_yaml(tmp_path, eurosat_dir, eurosat_pixels):
    out = tmp_path / "stats.yaml"
    assert (
        main(
            ["stats", str(eurosat_dir), "--card", "eurosat_ms", "--out", str(out), "--no-progress"]
        )
        == 0
    )
    stats = yaml.safe_load(out.read_text())["statistics"]
    assert len(stats["mean"]) == len(stats["std"]) == 13
    np.testing.assert_allclose(stats["mean"], eurosat_pixels.mean(axis=1), rtol=1e-6)


def test_stats_command_reports_a_missing_path_without_a_traceback(tmp_path, capsys):
    assert main(["stats", str(tmp_path / "nothing_here"), "--no-progress"]) == 2
    assert "nothing_here" in capsys.readouterr().err


def test_many_files_are_read_one_at_a_time(tmp_path, eurosat_dir):
    """Statistics over more files than the process may hold open at once."""
    import subprocess
    import sys

    forest = sorted((eurosat_dir / "Forest").glob("*.tif"))[0]
    for i in range(150):
        (tmp_path / f"copy_{i:03d}.tif").symlink_to(forest)
    script = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100)); "
        "from geofm.data.stats import compute_statistics; "
        "s = compute_statistics([sys.argv[1]], progress=False); print(s['count'][0])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=HANG_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) == 150 * 64 * 64


def test_bands_follow_the_order_of_the_data_not_the_card(s2_tile_dir):
    stats = compute_statistics([s2_tile_dir], card="sentinel2", progress=False)
    with rasterio.open(s2_tile_dir / "T33UUU_20170216T102101_B8A.jp2") as src:
        b8a = src.read(1).astype(np.float64)
    # B8A is a 20 m band upsampled by nearest to 10 m: each pixel counted four times.
    assert stats["mean"][stats["bands"].index("B8A")] == pytest.approx(b8a.mean(), rel=1e-9)
    assert stats["bands"] == list(load_sensor("sentinel2").band_names)


def test_a_sensor_card_cannot_name_the_bands_of_a_multiband_file(eurosat_dir):
    with pytest.raises(ValueError, match="sensor card"):
        compute_statistics([eurosat_dir / "Forest"], card="sentinel2", progress=False)


def test_float_raster_with_nan_is_summarised_without_the_nan(tmp_path, landsat_tif):
    with rasterio.open(landsat_tif) as src:
        data = src.read().astype(np.float32)
        profile = src.profile | {"dtype": "float32", "nodata": None}
    data[data == 0] = np.nan
    path = tmp_path / "float.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    stats = compute_statistics([path], progress=False)
    valid = np.isfinite(data).all(axis=0)
    np.testing.assert_allclose(
        stats["mean"], data[:, valid].astype(np.float64).mean(axis=1), rtol=1e-7
    )
    assert not stats["percentiles_exact"]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a_float.tif").symlink_to(path)
    (mixed / "b_bytes.tif").symlink_to(landsat_tif)
    with pytest.raises(ValueError, match=r"b_bytes.tif: inputs mix data types"):
        compute_statistics([mixed], progress=False)


def test_percentiles_outside_0_to_100_are_refused(landsat_tif):
    with pytest.raises(ValueError, match=r"\[150\.0, -5\.0\]"):
        compute_statistics([landsat_tif], percentiles=(150.0, -5.0), progress=False)
