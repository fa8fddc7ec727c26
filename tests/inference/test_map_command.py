"""`geofm map`: class maps of whole scenes as COG, PNG and NetCDF on the scene's grid, from
a pixel classifier; the deprecated `geofm predict`; classify-pixels end to end."""

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
from geofm.tasks.pixel_models import load_classifier
from geofm.tasks.pixel_protocol import run_protocol
from geofm.tasks.pixel_recipe import load_recipe


@pytest.fixture
def checkpoint(tiny_lola_checkpoint) -> Path:
    return tiny_lola_checkpoint


def _read(path: Path) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(1)


def test_map_of_the_training_scene_with_png_and_netcdf(checkpoint, tmp_path, capsys):
    out = tmp_path / "maps" / "salinas_a.tif"  # the folder is made
    gt = data_dir() / "samples" / "salinas_a" / "SalinasA_gt.mat"
    assert (
        main(
            [
                "map",
                "--training-scene",
                str(out),
                "--checkpoint",
                str(checkpoint),
                "--netcdf",
                "--gt",
                str(gt),
                "--probabilities",
                "--no-progress",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "no CRS" in captured.err  # a pixel grid, said so
    assert "83 x 86 pixels" in captured.out and "labelled pixels" in captured.out
    labels = _read(out)
    assert labels.shape == (83, 86) and labels.max() < 6
    for suffix in (".png", ".nc", ".probabilities.tif"):
        assert (out.parent / f"salinas_a{suffix}").is_file(), suffix
    back = xr.open_dataarray(out.parent / "salinas_a.nc")
    np.testing.assert_array_equal(back.values, labels)
    assert back.attrs["flag_meanings"].split()[0] == "Brocoli_green_weeds_1"
    assert list(back.attrs["flag_values"]) == list(range(6))
    assert back.attrs["nodata"] == 255 and back.attrs["checkpoint"] == str(checkpoint)
    back.close()
    # the same pixels through the protocol's own path give the same labels
    model, _ = load_classifier(checkpoint)
    from geofm.data.datasets import read_scene
    from geofm.tasks.pixel import classify_pixels

    root = data_dir() / "samples" / "salinas_a"
    scene = read_scene(root / "SalinasA_corrected.hdr", root / "SalinasA_gt.mat", "salinas_a")
    coords = np.array([[10, 10], [50, 60], [0, 85]])
    expected, _ = classify_pixels(model, scene["image"], coords)
    np.testing.assert_array_equal(expected, labels[coords[:, 0], coords[:, 1]])
    # every output exists: refused without --overwrite, before any work
    assert (
        main(
            [
                "map",
                "--training-scene",
                str(out),
                "--checkpoint",
                str(checkpoint),
                "--png",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err
    # one path is the map to write only with --training-scene: a scene given alone (the
    # output forgotten) is never taken for the output
    scene = tmp_path / "my_scene.tif"
    scene.write_bytes(b"a raster")
    assert (
        main(["map", str(scene), "--checkpoint", str(checkpoint), "--overwrite", "--no-progress"])
        == 2
    )
    assert "IN OUT" in capsys.readouterr().err and scene.read_bytes() == b"a raster"
    # a ground truth of another size is refused before anything is written
    import scipy.io

    scipy.io.savemat(tmp_path / "small_gt.mat", {"gt": np.ones((80, 86), dtype=np.uint8)})
    assert (
        main(
            [
                "map",
                "--training-scene",
                str(tmp_path / "g.tif"),
                "--checkpoint",
                str(checkpoint),
                "--gt",
                str(tmp_path / "small_gt.mat"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "is 80 x 86 pixels, the scene 83 x 86" in capsys.readouterr().err
    assert not (tmp_path / "g.tif").exists()


def _geotiff_of_salinas_a(path: Path) -> tuple[Affine, str]:
    """The bundled cube written as a GeoTIFF on a UTM grid (a made-up position: the test is
    about keeping whatever grid the input has)."""
    from geofm.data.hyperspectral import open_envi

    cube = open_envi(
        data_dir() / "samples" / "salinas_a" / "SalinasA_corrected.hdr", card="salinas_a"
    )
    image = cube["image"].numpy().astype(np.float32)
    transform = Affine(3.7, 0, 610000.0, 0, -3.7, 4060000.0)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=image.shape[1],
        width=image.shape[2],
        count=image.shape[0],
        dtype="float32",
        crs="EPSG:32610",
        transform=transform,
    ) as dst:
        dst.write(image)
    return transform, "EPSG:32610"


def test_georeferenced_scene_gives_a_cog_on_its_grid(checkpoint, tmp_path, capsys):
    tif = tmp_path / "salinas_a_utm.tif"
    transform, crs = _geotiff_of_salinas_a(tif)
    assert (
        main(
            [
                "map",
                str(tif),
                str(tmp_path / "utm_map.tif"),
                "--checkpoint",
                str(checkpoint),
                "--netcdf",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "map",
                "--training-scene",
                str(tmp_path / "plain.tif"),
                "--checkpoint",
                str(checkpoint),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    with rasterio.open(tmp_path / "utm_map.tif") as src:
        assert src.crs.to_string() == crs
        assert src.transform == transform
        assert (src.height, src.width, src.count) == (83, 86, 1)
        assert src.nodata == 255
        assert src.tags(1)["class_0"] == "Brocoli_green_weeds_1"
        labels = src.read(1)
    np.testing.assert_array_equal(labels, _read(tmp_path / "plain.tif"))  # same data
    da = xr.open_dataarray(tmp_path / "utm_map.nc")
    assert float(da.x[0]) == pytest.approx(610000.0 + 1.85)
    assert "UTM zone 10N" in da.attrs["crs_wkt"]
    da.close()


def test_wrong_band_count_is_refused(checkpoint, tmp_path, capsys):
    tif = tmp_path / "three_bands.tif"
    with rasterio.open(
        tif,
        "w",
        driver="GTiff",
        height=20,
        width=20,
        count=3,
        dtype="uint8",
        crs="EPSG:32610",
        transform=Affine(10, 0, 0, 0, -10, 0),
    ) as dst:
        dst.write(np.zeros((3, 20, 20), dtype=np.uint8))
    assert (
        main(
            [
                "map",
                str(tif),
                str(tmp_path / "m.tif"),
                "--checkpoint",
                str(checkpoint),
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "3" in err and "204" in err, err
    assert not (tmp_path / "m.tif").exists()


def test_classify_pixels_and_predict_commands(tmp_path, capsys, tiny_lola_recipe):
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(tiny_lola_recipe))
    out = tmp_path / "res" / "results.csv"
    argv = [
        "classify-pixels",
        "--config",
        str(config),
        "--seeds",
        "0",
        "--train.epochs",
        "1",
        "--output",
        str(out),
        "--methods",
        "lola",
        "svm",
        "--no-progress",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "lola" in text and "svm" in text and "mean ± sample std" in text
    # one dialect: the recipe with dotted overrides, printed as it will run
    assert (
        main(
            [
                "classify-pixels",
                "--config",
                str(config),
                "--train.epochs",
                "3",
                "--split.kind",
                "disjoint",
                "--print_config",
            ]
        )
        == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["epochs"] == 3 and printed["split"]["kind"] == "disjoint"
    assert printed["model"]["kwargs"] == tiny_lola_recipe["model"]["kwargs"]
    # a typo is named, with a one-line error and no traceback
    assert main(["classify-pixels", "--config", str(config), "--train.epoch", "3"]) == 2
    err = capsys.readouterr().err
    assert "train.epoch" in err and "Traceback" not in err
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + 2 + 4  # header, 2 seeds rows, mean+std each
    assert main(argv) == 2  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    ckpt = next((tmp_path / "res" / "models").glob("lola_full_random_*seed0.pt"))
    gt = data_dir() / "samples" / "salinas_a" / "SalinasA_gt.mat"
    # the deprecated name: PNG, NetCDF and the COG in --out-dir, and a note on what replaces it
    assert (
        main(
            [
                "predict",
                str(ckpt),
                "--out-dir",
                str(tmp_path / "maps"),
                "--gt",
                str(gt),
                "--no-progress",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "no CRS" in captured.err and "use `geofm map" in captured.err
    for suffix in (".png", ".nc", ".tif"):
        assert (tmp_path / "maps" / f"{ckpt.stem}{suffix}").is_file(), suffix
    assert (
        main(
            [
                "classify-pixels",
                "--config",
                str(config),
                "--scene.cube",
                "x.mat",
                "--output",
                str(tmp_path / "o.csv"),
            ]
        )
        == 2
    )
    assert "--scene.cube and --scene.gt go together" in capsys.readouterr().err


def test_any_mat_scene_without_a_card(tmp_path, capsys, tiny_lola_recipe):
    """--cube/--gt with a scene geofm has no card for: class ids from the ground truth."""
    import scipy.io

    from geofm.data.hyperspectral import open_envi

    cube = open_envi(
        data_dir() / "samples" / "salinas_a" / "SalinasA_corrected.hdr", card="salinas_a"
    )["image"].numpy()
    from geofm.data.hyperspectral import read_mat_array

    gt = read_mat_array(data_dir() / "samples" / "salinas_a" / "SalinasA_gt.mat", "salinasA_gt")
    scipy.io.savemat(tmp_path / "scene.mat", {"cube": np.moveaxis(cube, 0, -1)})
    scipy.io.savemat(tmp_path / "scene_gt.mat", {"labels": gt})
    recipe = load_recipe(
        {
            **tiny_lola_recipe,
            "scene": {"cube": str(tmp_path / "scene.mat"), "gt": str(tmp_path / "scene_gt.mat")},
        }
    )
    results, classes = run_protocol(
        recipe,
        0.1,
        [0],
        methods=["svm", "lola"],
        progress=False,
        echo=lambda s: None,
        save_dir=tmp_path / "models",
    )
    # without a card: 0 is unlabelled, the other raw values become the classes, in order
    assert classes == ["class 1", "class 10", "class 11", "class 12", "class 13", "class 14"]
    assert results[0].metrics.oa > 0.9
    assert torch.isfinite(torch.tensor(results[0].metrics.aa))
    # the map's ground truth goes through the same value -> class mapping (0 unlabelled)
    ckpt = results[1].details["checkpoint"]
    assert (
        main(
            [
                "map",
                "--training-scene",
                str(tmp_path / "map.tif"),
                "--checkpoint",
                ckpt,
                "--gt",
                str(tmp_path / "scene_gt.mat"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "on its 5348 labelled pixels" in capsys.readouterr().out


def test_ground_truth_of_another_shape_is_refused(tmp_path, tiny_lola_recipe):
    import scipy.io

    from geofm.tasks.pixel_protocol import load_recipe_scene

    cube = np.zeros((83, 86, 5), dtype=np.int16)
    scipy.io.savemat(tmp_path / "scene.mat", {"cube": cube})
    scipy.io.savemat(tmp_path / "gt.mat", {"gt": np.ones((80, 86), dtype=np.uint8)})
    recipe = load_recipe(
        {"scene": {"cube": str(tmp_path / "scene.mat"), "gt": str(tmp_path / "gt.mat")}}
    )
    with pytest.raises(ValueError, match="are 80 x 86 but the cube .* is 83 x 86"):
        load_recipe_scene(recipe)
    carded = load_recipe({"scene": {**tiny_lola_recipe["scene"], "gt": str(tmp_path / "gt.mat")}})
    with pytest.raises(ValueError, match="80 x 86"):
        load_recipe_scene(carded)
