"""Sliding-window prediction: tiled equals untiled, the output keeps the input's grid, and
bad input is refused or reported (real samples: the Landsat GeoTIFF, the Sentinel-2 band
folder, the Salinas-A ENVI cube)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
import torch
import torch.nn as nn
from affine import Affine

from geofm.data.readers import open_raster
from geofm.inference import (
    BandMatchError,
    CentrePixelPredictor,
    DensePredictor,
    NotGeoreferencedWarning,
    ScenePredictor,
    load_predictor,
    plan_tiles,
    predict,
)

LANDSAT_BANDS = ["B3", "B2", "B1"]


class BandMeans(nn.Module):
    """A scene classifier that is cheap and sensitive to every pixel: a linear layer on
    each band's mean (and spread) over the tile."""

    def __init__(self, bands: int, classes: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(2 * bands, classes)

    def forward(self, image, wavelengths, gsd):
        x = image / 100.0
        return 8 * self.lin(torch.cat([x.mean((2, 3)), x.std((2, 3))], 1))


def _scene_predictor(tile: int = 64) -> ScenePredictor:
    classes = [f"c{i}" for i in range(5)]
    return ScenePredictor(BandMeans(3, 5), classes, LANDSAT_BANDS, tile=tile)


@pytest.fixture(scope="module")
def landsat(samples_dir) -> dict:
    return open_raster(samples_dir / "landsat_rgb" / "RGB.byte.tif", card="landsat_rgb")


def _same_labels_where_decided(a: np.ndarray, b: np.ndarray, probs: np.ndarray) -> None:
    """Labels equal wherever the top two probabilities differ by more than rounding can
    move them (different batchings may round differently), and nearly everywhere."""
    predicted = np.isfinite(probs).all(0)
    top2 = np.sort(np.nan_to_num(probs, nan=0.0), axis=0)[-2:]
    decided = ~predicted | ((top2[1] - top2[0]) > 1e-4)  # nodata cells must match too
    np.testing.assert_array_equal(a[decided], b[decided])
    assert decided[predicted].mean() > 0.99


@torch.no_grad()
def _brute_force_scene(pred: ScenePredictor, sample: dict, stride: int, min_valid: float):
    """Every tile of the plan classified one by one, blended by hand: the reference."""
    image, valid = sample["image"], sample["valid"]
    C, H, W = image.shape
    T = pred.tile
    plan = plan_tiles(H, W, "scene", T, stride=stride)
    acc = np.zeros((len(pred.classes), *plan.shape))
    wsum = np.zeros(plan.shape)
    for rt in plan.rows:
        for ct in plan.cols:
            crop = torch.zeros(C, T, T)
            vcrop = torch.zeros(T, T, dtype=torch.bool)
            part = image[:, rt.start : rt.start + T, ct.start : ct.start + T]
            crop[:, : part.shape[1], : part.shape[2]] = part
            vcrop[: part.shape[1], : part.shape[2]] = valid[
                rt.start : rt.start + T, ct.start : ct.start + T
            ]
            if vcrop.float().mean() < min_valid or not vcrop.any():
                continue
            p = pred.model(crop[None], sample["wavelengths"], sample["gsd"]).softmax(-1)[0]
            w = np.outer(rt.weights, ct.weights)
            acc[:, rt.out_start : rt.out_stop, ct.out_start : ct.out_stop] += (
                p.double().numpy()[:, None, None] * w
            )
            wsum[rt.out_start : rt.out_stop, ct.out_start : ct.out_stop] += w
    return acc / np.where(wsum > 0, wsum, 1), wsum > 0


@pytest.mark.parametrize("stride", [64, 32])
def test_tiled_scene_prediction_equals_the_tiles_classified_one_by_one(landsat, stride):
    pred = _scene_predictor()
    whole = predict(
        pred, dict(landsat), stride=stride, probabilities=True, block=10_000, progress=False
    )
    tiled = predict(
        pred,
        dict(landsat),
        stride=stride,
        probabilities=True,
        block=5,
        batch_size=3,
        progress=False,
    )
    assert tiled.blocks > 4 and whole.blocks == 1
    ref, covered = _brute_force_scene(pred, landsat, stride, 0.5)
    H, W = landsat["image"].shape[1:]
    assert whole.labels.shape == (-(-H // stride), -(-W // stride))
    for res in (whole, tiled):
        got = res.probabilities.values
        done = ~np.isnan(got[0])
        # nodata corners of the Landsat scene: no tile there, or no valid pixel in the cell
        assert done.sum() > 0.5 * done.size and (done <= covered).all()
        np.testing.assert_allclose(got[:, done], ref[:, done], atol=1e-5)
        _same_labels_where_decided(res.labels.values[done], ref[:, done].argmax(0), ref[:, done])
        assert (res.labels.values[~done] == 255).all()
    _same_labels_where_decided(tiled.labels.values, whole.labels.values, whole.probabilities.values)


def test_one_label_per_tile_is_the_model_on_that_tile(landsat):
    # an independent check that needs no plan: a crop of whole tiles, stride = tile
    sample = dict(landsat)
    sample["image"] = landsat["image"][:, 256:448, 320:640]
    sample["valid"] = torch.ones(192, 320, dtype=torch.bool)
    pred = _scene_predictor()
    res = predict(pred, sample, progress=False, block=2)
    assert res.labels.shape == (3, 5)
    with torch.no_grad():
        for i in range(3):
            for j in range(5):
                tile = sample["image"][None, :, 64 * i : 64 * (i + 1), 64 * j : 64 * (j + 1)]
                assert res.labels.values[i, j] == int(pred.model(tile, None, None).argmax())


def test_written_cog_keeps_crs_and_cell_grid_and_reads_back_lazily(samples_dir, tmp_path, landsat):
    path = samples_dir / "landsat_rgb" / "RGB.byte.tif"
    out = tmp_path / "map.tif"
    res = predict(
        _scene_predictor(),
        path,
        out,
        stride=32,
        card="landsat_rgb",
        probabilities=True,
        memory_mb=64,
        progress=False,
    )
    assert res.paths == [out, tmp_path / "map.probabilities.tif"]
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform * Affine.scale(32)
        assert (dst.height, dst.width) == (-(-src.height // 32), -(-src.width // 32))
        assert dst.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert dst.nodata == 255 and dst.dtypes[0] == "uint8"
        assert dst.tags()["classes"].split("\n") == ["c0", "c1", "c2", "c3", "c4"]
        assert dst.colormap(1)[0][3] == 255
        np.testing.assert_array_equal(dst.read(1), res.labels.values)
    with rasterio.open(res.paths[1]) as probs:
        assert probs.count == 5 and probs.descriptions == ("c0", "c1", "c2", "c3", "c4")
        p = probs.read()
    valid = ~np.isnan(p[0])
    np.testing.assert_allclose(p[:, valid].sum(0), 1.0, rtol=1e-5)
    assert res.labels.rio.crs == landsat["crs"]
    assert list(res.probabilities["class"].values) == ["c0", "c1", "c2", "c3", "c4"]
    # the same prediction in memory
    mem = predict(_scene_predictor(), path, stride=32, card="landsat_rgb", progress=False)
    np.testing.assert_array_equal(mem.labels.values, res.labels.values)
    np.testing.assert_allclose(mem.labels.x.values, res.labels.x.values)
    np.testing.assert_allclose(mem.labels.y.values, res.labels.y.values)


# --------------------------------------------------------------------------------------------
# Pixel classifiers


class Conv3(nn.Module):
    def __init__(self, bands: int, classes: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(bands, classes, 3, padding=1)

    def forward(self, image):
        return self.conv(image / 100.0)


def test_dense_prediction_with_enough_margin_equals_the_whole_image(landsat):
    sample = dict(landsat)
    model = Conv3(3, 4)
    with torch.no_grad():
        ref = model(landsat["image"][None]).softmax(1)[0]
    classes = ["a", "b", "c", "d"]
    good = predict(
        DensePredictor(model, classes, LANDSAT_BANDS, tile=40, margin=1),
        sample,
        probabilities=True,
        block=50,
        progress=False,
    )
    valid = landsat["valid"].numpy()
    got = good.probabilities.values
    # the scene's border pixels see zero padding in both; everything valid must agree
    np.testing.assert_allclose(got[:, valid], ref.numpy()[:, valid], atol=1e-5)
    assert good.labels.shape == tuple(landsat["image"].shape[1:])
    # without the margin the tiles' seams see zeros where the scene has data: they differ
    bad = predict(
        DensePredictor(model, classes, LANDSAT_BANDS, tile=40, margin=0),
        sample,
        probabilities=True,
        block=50,
        progress=False,
    )
    assert np.abs(bad.probabilities.values[:, valid] - ref.numpy()[:, valid]).max() > 1e-3
    # overlapping cores are blended, and still equal
    blended = predict(
        DensePredictor(model, classes, LANDSAT_BANDS, tile=40, margin=1),
        sample,
        overlap=8,
        probabilities=True,
        block=64,
        progress=False,
    )
    np.testing.assert_allclose(
        blended.probabilities.values[:, valid], ref.numpy()[:, valid], atol=1e-5
    )


def test_tiled_pixel_map_of_an_envi_cube_equals_the_untiled_map(
    tiny_lola_checkpoint, salinas_a_dir, tmp_path
):
    from geofm.data.hyperspectral import open_cube
    from geofm.tasks.pixel import classify_pixels
    from geofm.tasks.pixel_models import load_classifier

    # untiled: every pixel's window cut from the whole reduced scene (the protocol's path)
    model, _ = load_classifier(tiny_lola_checkpoint)
    scene = open_cube(salinas_a_dir / "SalinasA_corrected.hdr", card="salinas_a")
    every = np.argwhere(np.ones((83, 86), dtype=bool))
    labels, probs = classify_pixels(
        model, scene["image"], every, scene.get("valid"), probabilities=True
    )
    untiled, untiled_prob = labels.reshape(83, 86), probs.T.reshape(-1, 83, 86)
    pred = load_predictor(tiny_lola_checkpoint, tile=24)
    assert isinstance(pred, CentrePixelPredictor) and pred.margin == 3
    out = tmp_path / "salinas_a.tif"
    with pytest.warns(NotGeoreferencedWarning, match="no CRS"):
        res = predict(
            pred,
            salinas_a_dir / "SalinasA_corrected.hdr",
            out,
            card="salinas_a",
            probabilities=True,
            block=32,
            progress=False,
        )
    assert res.blocks == 9 and res.crs is None
    _same_labels_where_decided(res.labels.values, untiled, untiled_prob)
    np.testing.assert_allclose(res.probabilities.values, untiled_prob, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(out) as dst:
            assert dst.crs is None and (dst.height, dst.width) == (83, 86)
            assert dst.transform == Affine.identity()
    # the cube names no bands: the card of the scene the model was trained on does
    with pytest.warns(NotGeoreferencedWarning):
        again = predict(pred, salinas_a_dir / "SalinasA_corrected.hdr", block=64, progress=False)
    _same_labels_where_decided(again.labels.values, untiled, untiled_prob)


# --------------------------------------------------------------------------------------------
# Bad input


def test_a_scene_without_the_model_bands_names_the_missing_ones(s2_tile_dir, tmp_path):
    classes = [f"c{i}" for i in range(3)]
    pred = ScenePredictor(BandMeans(4, 3), classes, ["B02", "B03", "B04", "B8A"], tile=64)
    partial = tmp_path / "IMG_DATA"
    partial.mkdir()
    for band in ("B02", "B03", "B04", "B08"):
        name = f"T33UUU_20170216T102101_{band}.jp2"
        (partial / name).symlink_to(s2_tile_dir / name)
    with pytest.raises(BandMatchError, match="missing B8A ") as err:
        predict(pred, partial, progress=False)
    assert "the scene has 4: B02, B03, B04, B08" in str(err.value)
    with pytest.raises(BandMatchError, match="missing B03, B04, B8A "):
        predict(pred, s2_tile_dir / "T33UUU_20170216T102101_B02.jp2", progress=False)
    # the band folder has them all: only the model's four are read, in its order
    res = predict(pred, s2_tile_dir, progress=False, memory_mb=128)
    assert res.labels.shape == (12, 24) and res.crs == "EPSG:32633"


def test_an_existing_output_is_refused_and_kept_and_replaced_only_when_asked(samples_dir, tmp_path):
    path = samples_dir / "landsat_rgb" / "RGB.byte.tif"
    out = tmp_path / "map.tif"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        predict(_scene_predictor(), path, out, card="landsat_rgb", progress=False)
    assert out.read_bytes() == b"precious"

    class Broken(nn.Module):
        calls = 0

        def forward(self, image, wavelengths, gsd):
            Broken.calls += 1
            if Broken.calls > 2:
                raise RuntimeError("out of memory, say")
            return torch.zeros(image.shape[0], 2)

    broken = ScenePredictor(Broken(), ["a", "b"], LANDSAT_BANDS, tile=64)
    with pytest.raises(RuntimeError, match="out of memory"):
        predict(
            broken,
            path,
            out,
            card="landsat_rgb",
            overwrite=True,
            batch_size=4,
            block=4,
            progress=False,
        )
    assert out.read_bytes() == b"precious"  # nothing lost
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]  # nothing left over
    predict(_scene_predictor(), path, out, card="landsat_rgb", overwrite=True, progress=False)
    with rasterio.open(out) as dst:
        assert dst.crs is not None


def test_crs_less_raster_is_predicted_on_its_pixel_grid_with_a_warning(landsat, tmp_path):
    plain = tmp_path / "plain.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(
            plain, "w", driver="GTiff", height=200, width=256, count=3, dtype="uint8"
        ) as dst:
            dst.write(landsat["image"][:, 300:500, 300:556].numpy().astype("uint8"))
    with pytest.warns(NotGeoreferencedWarning, match="scene's own grid"):
        res = predict(
            _scene_predictor(),
            plain,
            tmp_path / "out.tif",
            stride=32,
            card="landsat_rgb",
            progress=False,
        )
    assert res.crs is None
    # no map units: the GSD the model gets is the card's, or the one declared
    from geofm.inference import open_source

    assert open_source(plain, card="landsat_rgb").gsd == 300.0
    declared = open_source(plain, card="landsat_rgb", gsd=30.0)
    assert declared.gsd == 30.0 and (declared.height, declared.width) == (200, 256)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(tmp_path / "out.tif") as dst:
            assert dst.crs is None and (dst.height, dst.width) == (7, 8)
            # cells in units of the scene's pixels
            assert dst.transform == Affine.scale(32)


def test_bad_arguments_are_refused_before_any_work(samples_dir, tmp_path):
    path = samples_dir / "landsat_rgb" / "RGB.byte.tif"
    pred = _scene_predictor()
    with pytest.raises(ValueError, match="must divide the tile"):
        predict(pred, path, card="landsat_rgb", stride=48, progress=False)
    with pytest.raises(ValueError, match="overlap is for pixel"):
        predict(pred, path, card="landsat_rgb", overlap=4, progress=False)
    with pytest.raises(ValueError, match="min_valid"):
        predict(pred, path, card="landsat_rgb", min_valid=2, progress=False)
    with pytest.raises(FileNotFoundError, match="scene not found"):
        predict(pred, tmp_path / "missing.tif", progress=False)
    with pytest.raises(FileNotFoundError, match="output folder"):
        predict(pred, path, tmp_path / "no" / "map.tif", card="landsat_rgb", progress=False)


def test_scenes_smaller_than_a_tile_are_still_classified(landsat):
    pred = _scene_predictor()
    for h, w in ((40, 40), (100, 30), (1, 1)):
        sample = dict(landsat)
        sample["image"] = landsat["image"][:, 300 : 300 + h, 300 : 300 + w]
        sample["valid"] = torch.ones(h, w, dtype=torch.bool)
        res = predict(pred, sample, progress=False)
        assert res.tiles_run >= 1 and (res.labels.values != 255).all(), (h, w)


def test_nan_pixels_of_a_sample_are_nodata_not_nan(landsat):
    sample = dict(landsat)
    image = landsat["image"][:, 256:384, 256:384].clone()
    image[:, 5, 5] = float("nan")
    image[:, 64:, 64:] = float("nan")  # one whole cell without data
    sample["image"], sample["valid"] = image, torch.ones(128, 128, dtype=torch.bool)
    res = predict(
        _scene_predictor(), sample, stride=64, probabilities=True, min_valid=0.1, progress=False
    )
    labels, probs = res.labels.values, res.probabilities.values
    assert labels[1, 1] == 255 and np.isnan(probs[:, 1, 1]).all()
    keep = labels != 255
    assert keep.sum() == 3 and np.isfinite(probs[:, keep]).all()
    assert res.counts.tolist()[-1] == 1 and res.counts.sum() == 4


def test_nothing_classified_is_said_and_stale_probabilities_go(samples_dir, tmp_path, landsat):
    sample = dict(landsat)
    sample["valid"] = torch.zeros_like(landsat["valid"])
    with pytest.warns(UserWarning, match="no tile .* was classified"):
        res = predict(_scene_predictor(), sample, progress=False)
    assert (res.labels.values == 255).all()
    path = samples_dir / "landsat_rgb" / "RGB.byte.tif"
    out = tmp_path / "map.tif"
    predict(_scene_predictor(), path, out, card="landsat_rgb", probabilities=True, progress=False)
    assert (tmp_path / "map.probabilities.tif").exists()
    with pytest.raises(FileExistsError, match="map.probabilities.tif"):
        predict(_scene_predictor(), path, out, card="landsat_rgb", progress=False)
    predict(_scene_predictor(), path, out, card="landsat_rgb", overwrite=True, progress=False)
    assert not (tmp_path / "map.probabilities.tif").exists()  # it described the old map


def test_resampled_and_band_subset_maps_cover_the_input(samples_dir, s2_tile_dir, tmp_path):
    path = samples_dir / "landsat_rgb" / "RGB.byte.tif"
    out = tmp_path / "coarse.tif"
    predict(
        ScenePredictor(BandMeans(3, 5), [f"c{i}" for i in range(5)], LANDSAT_BANDS, tile=8),
        path,
        out,
        card="landsat_rgb",
        gsd=600,
        progress=False,
    )
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.res == pytest.approx((4800.0, 4800.0), rel=0.01)  # 8 cells of ~600 m
        assert dst.bounds.left == src.bounds.left and dst.bounds.top == src.bounds.top
        assert abs(dst.bounds.right - src.bounds.right) < 4800
        assert abs(dst.bounds.bottom - src.bounds.bottom) < 4800
    # a model of the 20 m bands only: the map is on their grid, all of it predicted
    pred = ScenePredictor(BandMeans(2, 3), ["a", "b", "c"], ["B05", "B06"], tile=32)
    res = predict(pred, s2_tile_dir, progress=False)
    assert res.labels.shape == (12, 24) and res.counts[-1] == 0
    assert res.transform.a == 20 * 32


def test_tiles_the_model_cannot_answer_blank_only_their_own_cells(landsat):
    class NaNOnDark(nn.Module):
        def forward(self, image, wavelengths, gsd):
            logits = torch.zeros(image.shape[0], 2)
            logits[:, 0] = image.mean((1, 2, 3)) / 100
            logits[image.mean((1, 2, 3)) < 20] = float("nan")  # no answer for dark tiles
            return logits

    sample = dict(landsat)
    sample["image"] = torch.full((3, 256, 256), 100.0)
    sample["image"][:, :64, :64] = 1.0  # one dark corner tile
    sample["valid"] = torch.ones(256, 256, dtype=torch.bool)
    pred = ScenePredictor(NaNOnDark(), ["a", "b"], LANDSAT_BANDS, tile=64)
    res = predict(pred, sample, stride=16, probabilities=True, progress=False)
    labels = res.labels.values
    assert (labels[:1, :1] == 255).all()  # seen by the dark tile alone
    assert (labels[1:, :] != 255).all() and (labels[:, 1:] != 255).all()
    assert np.isfinite(res.probabilities.values[:, labels != 255]).all()


def test_blocks_smaller_than_a_tile_are_warned_about(landsat):
    with pytest.warns(UserWarning, match="blocks of 2 cells are smaller than a tile's"):
        predict(_scene_predictor(), dict(landsat), stride=16, block=2, progress=False)


def test_a_pixel_map_averages_the_symmetries_when_the_model_does(salinas_a_dir):
    """A model with ``tta`` maps a scene as the protocol scores it: the tiled predictor and
    :func:`classify_pixels` both average the 8 flips and rotations of each window."""
    from geofm.data.hyperspectral import open_cube
    from geofm.models.lola_specvit import LoLASpecViT
    from geofm.tasks.pixel import classify_pixels

    scene = open_cube(salinas_a_dir / "SalinasA_corrected.hdr", card="salinas_a")
    image = scene["image"].float()[:, :24, :24]
    torch.manual_seed(0)
    model = LoLASpecViT(
        image.shape[0], 6, patch=7, components=15, conv_padding="same", depths=(1, 1), tta=True
    )
    model.fit_reduction(image.flatten(1).T).eval()
    every = np.argwhere(np.ones((24, 24), dtype=bool))
    _, probs = classify_pixels(model, image, every, probabilities=True)
    pred = CentrePixelPredictor(model, [str(k) for k in range(6)], None, tile=24)
    tiled = pred(image[None], None, None, None)[0]  # the core: pixels 3..20
    expected = torch.as_tensor(probs).T.reshape(6, 24, 24)[:, 3:21, 3:21]
    torch.testing.assert_close(tiled, expected, atol=1e-5, rtol=1e-5)
    model.tta = False
    plain = pred(image[None], None, None, None)[0]
    assert (plain - tiled).abs().max() > 1e-4
