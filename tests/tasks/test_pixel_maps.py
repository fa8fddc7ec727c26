"""Class maps of whole scenes: xarray, PNG, NetCDF, GeoTIFF with the scene's grid; the
classify-pixels and predict commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
import yaml
from affine import Affine

from geofm.cli import main
from geofm.data.cards import data_dir
from geofm.tasks.pixel_maps import predict_map, write_map
from geofm.tasks.pixel_protocol import load_classifier, load_recipe, run_protocol


@pytest.fixture
def checkpoint(tiny_lola_checkpoint) -> Path:
    return tiny_lola_checkpoint


def test_predict_map_of_the_training_scene(checkpoint, tmp_path):
    da, prob = predict_map(checkpoint, probabilities=True, progress=False)
    assert da.shape == (83, 86) and da.dtype == np.uint8
    assert da.attrs["flag_meanings"].split()[0] == "Brocoli_green_weeds_1"
    assert list(da.attrs["flag_values"]) == list(range(6))
    assert prob.shape == (6, 83, 86)
    np.testing.assert_allclose(prob.sum("class").values, 1.0, rtol=1e-5)
    np.testing.assert_array_equal(prob.argmax("class").values, da.values)
    # the same pixels through the protocol's own path give the same labels
    model, _ = load_classifier(checkpoint)
    from geofm.data.datasets import read_scene
    from geofm.tasks.pixel import predict_scene

    root = data_dir() / "samples" / "salinas_a"
    scene = read_scene(root / "SalinasA_corrected.hdr", root / "SalinasA_gt.mat", "salinas_a")
    coords = np.array([[10, 10], [50, 60], [0, 85]])
    labels, _ = predict_scene(model, scene["image"], coords=coords)
    np.testing.assert_array_equal(labels, da.values[coords[:, 0], coords[:, 1]])

    paths = write_map(da, tmp_path, "salinas_a", ground_truth=scene["mask"].numpy())
    assert set(paths) == {"png", "netcdf"}                 # no CRS: no GeoTIFF
    back = xr.open_dataarray(paths["netcdf"])
    np.testing.assert_array_equal(back.values, da.values)
    assert back.attrs["flag_meanings"] == da.attrs["flag_meanings"]
    back.close()
    with pytest.raises(FileExistsError, match="overwrite"):
        write_map(da, tmp_path, "salinas_a")
    write_map(da, tmp_path, "salinas_a", overwrite=True)


def _geotiff_of_salinas_a(path: Path) -> tuple[Affine, str]:
    """The bundled cube written as a GeoTIFF on a UTM grid (a made-up position: the test is
    about keeping whatever grid the input has)."""
    from geofm.data.hyperspectral import open_envi

    cube = open_envi(data_dir() / "samples" / "salinas_a" / "SalinasA_corrected.hdr",
                     card="salinas_a")
    image = cube["image"].numpy().astype(np.float32)
    transform = Affine(3.7, 0, 610000.0, 0, -3.7, 4060000.0)
    with rasterio.open(path, "w", driver="GTiff", height=image.shape[1], width=image.shape[2],
                       count=image.shape[0], dtype="float32", crs="EPSG:32610",
                       transform=transform) as dst:
        dst.write(image)
    return transform, "EPSG:32610"


def test_georeferenced_scene_gives_a_geotiff_on_its_grid(checkpoint, tmp_path):
    tif = tmp_path / "salinas_a_utm.tif"
    transform, crs = _geotiff_of_salinas_a(tif)
    da = predict_map(checkpoint, tif, progress=False)
    plain = predict_map(checkpoint, progress=False)
    np.testing.assert_array_equal(da.values, plain.values)     # same data, same classes
    paths = write_map(da, tmp_path / "out", "utm")
    with rasterio.open(paths["geotiff"]) as src:
        assert src.crs.to_string() == crs
        assert src.transform == transform
        assert (src.height, src.width, src.count) == (83, 86, 1)
        assert src.nodata == 255
        np.testing.assert_array_equal(src.read(1), da.values)
        assert src.tags(1)["class_0"] == "Brocoli_green_weeds_1"
    assert da.rio.crs.to_string() == crs
    assert float(da.x[0]) == pytest.approx(610000.0 + 1.85)


def test_wrong_band_count_is_refused(checkpoint, tmp_path):
    tif = tmp_path / "three_bands.tif"
    with rasterio.open(tif, "w", driver="GTiff", height=20, width=20, count=3, dtype="uint8",
                       crs="EPSG:32610", transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.zeros((3, 20, 20), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"3 bands.*204 bands"):
        predict_map(checkpoint, tif, progress=False)


def test_classify_pixels_and_predict_commands(tmp_path, capsys, tiny_lola_recipe):
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(tiny_lola_recipe))
    out = tmp_path / "res" / "results.csv"
    argv = ["classify-pixels", "--config", str(config), "--seeds", "0", "--epochs", "1",
            "--output", str(out), "--methods", "lola", "svm", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "lola" in text and "svm" in text and "mean ± sample std" in text
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + 2 + 4                      # header, 2 seeds rows, mean+std each
    assert main(argv) == 2                             # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    ckpt = next((tmp_path / "res" / "models").glob("lola_full_random_*seed0.pt"))
    gt = data_dir() / "samples" / "salinas_a" / "SalinasA_gt.mat"
    assert main(["predict", str(ckpt), "--out-dir", str(tmp_path / "maps"), "--gt", str(gt),
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "no CRS" in captured.err and (tmp_path / "maps" / f"{ckpt.stem}.png").is_file()
    assert main(["classify-pixels", "--config", str(config), "--cube", "x.mat",
                 "--output", str(tmp_path / "o.csv")]) == 2
    assert "--cube and --gt go together" in capsys.readouterr().err


def test_any_mat_scene_without_a_card(tmp_path, capsys, tiny_lola_recipe):
    """--cube/--gt with a scene geofm has no card for: class ids from the ground truth."""
    import scipy.io

    from geofm.data.hyperspectral import open_envi

    cube = open_envi(data_dir() / "samples" / "salinas_a" / "SalinasA_corrected.hdr",
                     card="salinas_a")["image"].numpy()
    from geofm.data.hyperspectral import load_mat_arrays

    gt = load_mat_arrays(data_dir() / "samples" / "salinas_a" / "SalinasA_gt.mat")["salinasA_gt"]
    scipy.io.savemat(tmp_path / "scene.mat", {"cube": np.moveaxis(cube, 0, -1)})
    scipy.io.savemat(tmp_path / "scene_gt.mat", {"labels": gt})
    recipe = load_recipe({**tiny_lola_recipe, "scene": {"cube": str(tmp_path / "scene.mat"),
                                              "gt": str(tmp_path / "scene_gt.mat")}})
    results, classes = run_protocol(recipe, "random", 0.1, [0], methods=["svm", "lola"],
                                    progress=False, echo=lambda s: None,
                                    save_dir=tmp_path / "models")
    # without a card: 0 is unlabelled, the other raw values become the classes, in order
    assert classes == ["class 1", "class 10", "class 11", "class 12", "class 13", "class 14"]
    assert results[0].metrics.oa > 0.9
    assert torch.isfinite(torch.tensor(results[0].metrics.aa))
    # the map's ground truth goes through the same value -> class mapping (0 unlabelled)
    ckpt = results[1].details["checkpoint"]
    assert main(["predict", ckpt, "--gt", str(tmp_path / "scene_gt.mat"), "--out-dir",
                 str(tmp_path / "maps"), "--no-progress"]) == 0
    assert "on its 5348 labelled pixels" in capsys.readouterr().out


def test_ground_truth_of_another_shape_is_refused(tmp_path, tiny_lola_recipe):
    import scipy.io

    from geofm.tasks.pixel_protocol import load_recipe_scene

    cube = np.zeros((83, 86, 5), dtype=np.int16)
    scipy.io.savemat(tmp_path / "scene.mat", {"cube": cube})
    scipy.io.savemat(tmp_path / "gt.mat", {"gt": np.ones((80, 86), dtype=np.uint8)})
    recipe = load_recipe({"scene": {"cube": str(tmp_path / "scene.mat"),
                                    "gt": str(tmp_path / "gt.mat")}})
    with pytest.raises(ValueError, match="are 80 x 86 but the cube .* is 83 x 86"):
        load_recipe_scene(recipe)
    carded = load_recipe({"scene": {**tiny_lola_recipe["scene"], "gt": str(tmp_path / "gt.mat")}})
    with pytest.raises(ValueError, match="80 x 86"):
        load_recipe_scene(carded)
