"""Transforms keep the sample contract and keep band and georeferencing metadata true.

Run on the bundled real samples: a Landsat-7 subset (3 bands, 718 x 791, nodata border,
300 m UTM), EuroSAT-MS patches (13 Sentinel-2 bands, 64 x 64, 10 m UTM) and the
Salinas-A AVIRIS cube (204 bands) with its ground truth.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from geofm.data.cards import UnknownBandError, load_dataset_card, load_sensor
from geofm.data.hyperspectral import open_envi, read_label_mat
from geofm.data.readers import open_raster
from geofm.data.sample import IGNORE_INDEX, BandMismatchError, check_sample
from geofm.data.transforms import (
    CenterCrop,
    Compose,
    MAEScaleNormalize,
    Normalize,
    RandomBandSubset,
    RandomCrop,
    RandomHorizontalFlip,
    RandomRotate90,
    RandomVerticalFlip,
    Resize,
    SelectBands,
    crop,
    hflip,
    resize,
    rot90,
    select_bands,
    vflip,
)

# --------------------------------------------------------------------------------------------
# Real samples


def _threshold_mask(
    image: torch.Tensor, valid: torch.Tensor, channel: int, level: float
) -> torch.Tensor:
    """A two-class map from one band (1 above ``level``), 255 where the pixel is invalid."""
    mask = (image[channel] > level).long()
    mask[~valid] = IGNORE_INDEX
    return mask


@pytest.fixture(scope="module")
def landsat(landsat_tif):
    """Georeferenced, non-square (718 x 791), with a nodata border; mask from thresholding."""
    sample = open_raster(landsat_tif, wavelengths=[660.0, 560.0, 485.0])
    level = float(sample["image"][0][sample["valid"]].median())
    sample["mask"] = _threshold_mask(sample["image"], sample["valid"], 0, level)
    return sample


@pytest.fixture(scope="module")
def eurosat(eurosat_dir):
    """13 Sentinel-2 bands, 64 x 64; water mask from the NIR band of a River patch."""
    sample = open_raster(eurosat_dir / "River" / "River_1.tif", card="eurosat_ms")
    nir = sample["bands"].index("B08")
    level = float(sample["image"][nir].median())
    sample["mask"] = _threshold_mask(sample["image"], sample["valid"], nir, level)
    return sample


@pytest.fixture(scope="module")
def salinas_a(salinas_a_dir):
    """204-band AVIRIS cube with its real ground truth as mask (0 = unlabelled -> 255)."""
    # The header carries no wavelengths; evenly spaced AVIRIS-range stand-ins suffice here,
    # where only their order and their pairing with the channels matter.
    sample = open_envi(
        salinas_a_dir / "SalinasA_corrected.hdr",
        wavelengths=np.linspace(400.0, 2500.0, 204),
        gsd=3.7,
    )
    gt = read_label_mat(salinas_a_dir / "SalinasA_gt.mat")
    sample["mask"] = torch.from_numpy(np.where(gt == 0, IGNORE_INDEX, gt)).long()
    return sample


@pytest.fixture(params=["landsat", "eurosat"])
def georeferenced(request):
    return request.getfixturevalue(request.param)


def _with_pixel_ids(sample):
    """A copy whose mask holds each pixel's input index ``row * W + col``, to trace pixels."""
    _, h, w = sample["image"].shape
    return dict(sample, mask=torch.arange(h * w, dtype=torch.int64).reshape(h, w))


def _world_of_pixel_centres(transform, rows: np.ndarray, cols: np.ndarray):
    return transform @ (cols + 0.5, rows + 0.5)


def _assert_each_pixel_keeps_its_world_location(before, after):
    """Every output pixel maps to the world location (and value) of its source pixel."""
    _, _, w_in = before["image"].shape
    ids = after["mask"].numpy()
    src_rows, src_cols = np.divmod(ids, w_in)
    out_rows, out_cols = np.indices(ids.shape)
    x_in, y_in = _world_of_pixel_centres(before["transform"], src_rows, src_cols)
    x_out, y_out = _world_of_pixel_centres(after["transform"], out_rows, out_cols)
    np.testing.assert_allclose(x_out, x_in, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_out, y_in, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        after["image"],
        before["image"][:, torch.from_numpy(src_rows), torch.from_numpy(src_cols)],
        rtol=0,
        atol=0,
    )
    if "valid" in before:
        assert torch.equal(
            after["valid"], before["valid"][torch.from_numpy(src_rows), torch.from_numpy(src_cols)]
        )


def _bounds(sample):
    """World coordinates of the image's outer corners (upper-left, lower-right)."""
    _, h, w = sample["image"].shape
    t = sample["transform"]
    return np.array([*(t @ (0, 0)), *(t @ (w, h))])


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Every transform, as (id, factory); factories take a generator for the random ones.
TRANSFORMS = [
    ("random_crop", lambda g: RandomCrop((40, 48), generator=g)),
    ("center_crop", lambda g: CenterCrop(32)),
    ("hflip", lambda g: RandomHorizontalFlip(p=1.0, generator=g)),
    ("vflip", lambda g: RandomVerticalFlip(p=1.0, generator=g)),
    ("rot90", lambda g: RandomRotate90(generator=g)),
    ("resize_size", lambda g: Resize((50, 30))),
    ("resize_scale", lambda g: Resize(scale=1.5)),
    ("select_bands", lambda g: SelectBands(["band_3", "band_1"])),
    ("band_subset", lambda g: RandomBandSubset(1, 2, generator=g)),
    ("normalize", lambda g: Normalize([10.0, 20.0, 30.0], [2.0, 3.0, 4.0])),
    ("mae_scale", lambda g: MAEScaleNormalize([10.0, 20.0, 30.0], [2.0, 3.0, 4.0])),
    (
        "compose",
        lambda g: Compose(
            [
                RandomCrop(64, generator=g),
                RandomRotate90(generator=g),
                Resize(scale=0.5),
                RandomBandSubset(2, generator=g),
            ]
        ),
    ),
]


# --------------------------------------------------------------------------------------------
# The contract


@pytest.mark.parametrize(("name", "factory"), TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_every_transform_output_passes_check_sample(name, factory, landsat):
    for seed in range(3):
        out = factory(_generator(seed))(landsat)
        check_sample(out)
        assert out["image"].dtype == torch.float32
        assert out["wavelengths"].dtype == torch.float32
        assert out["mask"].dtype == torch.int64
        assert out["valid"].dtype == torch.bool
        assert out["crs"] == landsat["crs"]


@pytest.mark.parametrize(("name", "factory"), TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_transforms_return_a_new_dict_and_leave_the_input_untouched(name, factory, landsat):
    before = {k: v.clone() for k, v in landsat.items() if isinstance(v, torch.Tensor)}
    keys, transform = set(landsat), landsat["transform"]
    out = factory(_generator(1))(landsat)
    assert out is not landsat
    assert set(landsat) == keys and landsat["transform"] == transform
    for key, value in before.items():
        assert torch.equal(landsat[key], value), key


def test_hyperspectral_cube_with_ground_truth_passes_through_a_pipeline(salinas_a):
    pipeline = Compose(
        [
            RandomCrop(48, generator=_generator()),
            RandomRotate90(_generator()),
            RandomBandSubset(16, 64, generator=_generator()),
            Resize(64),
        ]
    )
    out = pipeline(salinas_a)
    check_sample(out)
    assert 16 <= out["image"].shape[0] <= 64
    assert set(out["mask"].unique().tolist()) <= set(salinas_a["mask"].unique().tolist())
    assert out["gsd"] == pytest.approx(3.7 * 48 / 64)


# --------------------------------------------------------------------------------------------
# Geometry keeps each pixel where it is on Earth


def test_crop_keeps_world_coordinates_of_each_pixel(georeferenced):
    before = _with_pixel_ids(georeferenced)
    _assert_each_pixel_keeps_its_world_location(before, crop(before, 7, 11, 30, 41))
    for seed in range(3):
        out = RandomCrop((33, 21), generator=_generator(seed))(before)
        _assert_each_pixel_keeps_its_world_location(before, out)
    _assert_each_pixel_keeps_its_world_location(before, CenterCrop((20, 31))(before))


def test_crop_moves_the_origin_by_the_crop_offset(eurosat):
    out = crop(eurosat, 5, 9, 20, 20)
    t = eurosat["transform"]
    assert out["transform"].c == pytest.approx(t.c + 9 * t.a)
    assert out["transform"].f == pytest.approx(t.f + 5 * t.e)
    assert out["gsd"] == eurosat["gsd"]


def test_center_crop_takes_the_middle_of_the_image(eurosat):
    out = CenterCrop((32, 16))(eurosat)
    assert torch.equal(out["image"], eurosat["image"][:, 16:48, 24:40])


@pytest.mark.parametrize("flip", [hflip, vflip])
def test_flip_keeps_world_coordinates_of_each_pixel(flip, georeferenced):
    before = _with_pixel_ids(georeferenced)
    out = flip(before)
    assert not torch.equal(out["mask"], before["mask"])
    _assert_each_pixel_keeps_its_world_location(before, out)


@pytest.mark.parametrize("k", [0, 1, 2, 3, -1, 5])
def test_rot90_keeps_world_coordinates_of_each_pixel(k, georeferenced):
    before = _with_pixel_ids(georeferenced)
    out = rot90(before, k)
    _, h, w = before["image"].shape
    assert out["image"].shape[1:] == ((h, w) if k % 2 == 0 else (w, h))
    _assert_each_pixel_keeps_its_world_location(before, out)


def test_random_flips_and_rotations_keep_world_coordinates_of_each_pixel(georeferenced):
    before = _with_pixel_ids(georeferenced)
    g = _generator(3)
    pipeline = Compose(
        [
            RandomHorizontalFlip(generator=g),
            RandomVerticalFlip(generator=g),
            RandomRotate90(generator=g),
            RandomCrop(17, generator=g),
        ]
    )
    for _ in range(8):
        _assert_each_pixel_keeps_its_world_location(before, pipeline(before))


def test_flip_with_probability_zero_keeps_the_image_and_with_one_always_flips(eurosat):
    assert torch.equal(RandomHorizontalFlip(p=0.0)(eurosat)["image"], eurosat["image"])
    assert torch.equal(RandomVerticalFlip(p=1.0)(eurosat)["image"], eurosat["image"].flip(-2))


def test_random_rotation_draws_every_quarter_turn(landsat):
    rotate = RandomRotate90(generator=_generator(0))
    pixel_axes = {tuple(round(v, 6) for v in rotate(landsat)["transform"][:2]) for _ in range(40)}
    assert len(pixel_axes) == 4


@pytest.mark.parametrize("size", [(128, 128), (40, 100), (1, 7)])
def test_resize_keeps_the_bounds_of_the_image(size, georeferenced):
    out = resize(georeferenced, size)
    assert out["image"].shape[1:] == size
    np.testing.assert_allclose(_bounds(out), _bounds(georeferenced), rtol=0, atol=1e-6)


def test_resize_by_scale_keeps_the_bounds_of_the_image(landsat):
    out = Resize(scale=(0.5, 0.25))(landsat)
    assert out["image"].shape[1:] == (359, 198)
    np.testing.assert_allclose(_bounds(out), _bounds(landsat), rtol=0, atol=1e-6)


def test_resize_takes_labels_from_the_input_pixel_under_each_output_centre(georeferenced):
    before = _with_pixel_ids(georeferenced)
    _, h_in, w_in = before["image"].shape
    out = resize(before, (97, 53))
    src_rows, src_cols = np.divmod(out["mask"].numpy(), w_in)
    out_rows, out_cols = np.indices(out["mask"].shape)
    x, y = _world_of_pixel_centres(out["transform"], out_rows, out_cols)
    col_in, row_in = ~before["transform"] @ (x, y)
    assert np.all((src_cols <= col_in) & (col_in < src_cols + 1))
    assert np.all((src_rows <= row_in) & (row_in < src_rows + 1))


def test_resize_scales_gsd_by_the_change_of_pixel_size(eurosat):
    gsd = eurosat["gsd"]
    assert resize(eurosat, 128)["gsd"] == pytest.approx(gsd / 2)
    assert resize(eurosat, 16)["gsd"] == pytest.approx(gsd * 4)
    # 64 x 64 -> 32 x 128: pixels become 2 gsd tall and gsd/2 wide; geometric mean is gsd.
    out = resize(eurosat, (32, 128))
    assert out["gsd"] == pytest.approx(math.sqrt((2 * gsd) * (gsd / 2)))
    # The same number as the side of a square pixel of the affine's pixel area.
    t = out["transform"]
    assert out["gsd"] == pytest.approx(math.sqrt(abs(t.a * t.e - t.b * t.d)))


def test_resize_is_bilinear_for_the_image(eurosat):
    out = resize(eurosat, (32, 32), antialias=False)
    # Halving with the half-pixel convention samples midway between pixels 2i and 2i+1.
    img = eurosat["image"].double()
    expected = (
        img[:, 0::2, 0::2] + img[:, 1::2, 0::2] + img[:, 0::2, 1::2] + img[:, 1::2, 1::2]
    ) / 4
    torch.testing.assert_close(out["image"].double(), expected, rtol=1e-6, atol=1e-3)


def test_resize_values_at_valid_pixels_do_not_depend_on_nodata_fill(landsat):
    filled = dict(
        landsat, image=torch.where(landsat["valid"], landsat["image"], torch.tensor(1000.0))
    )
    for size in [(1436, 1582), (359, 395), (200, 500)]:
        out, out_filled = resize(landsat, size), resize(filled, size)
        valid = out["valid"]
        assert torch.equal(valid, out_filled["valid"])
        assert valid.float().mean() > 0.6
        torch.testing.assert_close(
            out["image"][:, valid], out_filled["image"][:, valid], rtol=0, atol=1e-2
        )


def test_all_valid_image_stays_valid_after_resize(eurosat):
    assert eurosat["valid"].all()
    assert resize(eurosat, (17, 130))["valid"].all()


# --------------------------------------------------------------------------------------------
# Mask and valid move with the image


GEOMETRIC_OPS = [
    ("crop", lambda s: crop(s, 3, 8, 41, 37)),
    ("hflip", hflip),
    ("vflip", vflip),
    ("rot90_1", lambda s: rot90(s, 1)),
    ("rot90_2", lambda s: rot90(s, 2)),
    ("rot90_3", lambda s: rot90(s, 3)),
    (
        "random",
        Compose(
            [
                RandomRotate90(_generator(5)),
                RandomCrop(30, generator=_generator(5)),
                RandomHorizontalFlip(generator=_generator(6)),
            ]
        ),
    ),
]


@pytest.mark.parametrize("op", [o[1] for o in GEOMETRIC_OPS], ids=[o[0] for o in GEOMETRIC_OPS])
def test_mask_and_valid_move_with_the_image(op, landsat, eurosat):
    for sample, band, has_nodata in ((landsat, "band_1", True), (eurosat, "B08", False)):
        channel = sample["bands"].index(band)
        level = float(sample["image"][channel][sample["valid"]].median())
        out = op(sample)
        if has_nodata:  # Landsat: a pixel is valid where no band holds the nodata value 0
            assert torch.equal(out["valid"], (out["image"] != 0).all(0))
        assert torch.equal(out["mask"], _threshold_mask(out["image"], out["valid"], channel, level))


@pytest.mark.parametrize("factor", [2, 3])
def test_upsampling_by_a_whole_factor_repeats_each_label(factor, eurosat):
    out = Resize(scale=factor)(eurosat)
    expected = eurosat["mask"].repeat_interleave(factor, 0).repeat_interleave(factor, 1)
    assert torch.equal(out["mask"], expected)


def test_downsampling_by_two_keeps_the_label_under_each_output_centre(landsat):
    cropped = crop(landsat, 0, 0, 718, 790)
    out = resize(cropped, (359, 395))
    assert torch.equal(out["mask"], cropped["mask"][1::2, 1::2])


# --------------------------------------------------------------------------------------------
# Bands


def test_select_bands_reorders_channels_and_updates_wavelengths_to_card_values(eurosat):
    names = ["B04", "B03", "B02", "B8A"]
    out = SelectBands(names)(eurosat)
    assert out["bands"] == tuple(names)
    sentinel2 = load_sensor("sentinel2")
    torch.testing.assert_close(
        out["wavelengths"], torch.tensor(sentinel2.wavelengths(names), dtype=torch.float32)
    )
    assert out["wavelengths"][0] == pytest.approx(664.6)
    card = load_dataset_card("eurosat_ms")
    assert torch.equal(out["image"], eurosat["image"][card.band_indices(names)])
    assert torch.equal(out["mask"], eurosat["mask"])


def test_select_unknown_band_lists_valid_names(eurosat):
    with pytest.raises(UnknownBandError) as err:
        select_bands(eurosat, ["B04", "B13"])
    message = str(err.value)
    assert "B13" in message
    assert all(name in message for name in eurosat["bands"])


def test_select_bands_rejects_a_string_and_repeated_names():
    with pytest.raises(TypeError, match="string"):
        SelectBands("B04")
    with pytest.raises(ValueError, match="B04"):
        SelectBands(["B04", "B03", "B04"])


def test_random_band_subset_keeps_order_and_respects_bounds(salinas_a):
    c = salinas_a["image"].shape[0]
    subset = RandomBandSubset(3, 9, generator=_generator(0))
    counts = set()
    for _ in range(200):
        out = subset(salinas_a)
        positions = [salinas_a["bands"].index(b) for b in out["bands"]]
        assert 3 <= len(positions) <= 9
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert torch.equal(out["wavelengths"], salinas_a["wavelengths"][positions])
        assert torch.equal(out["image"], salinas_a["image"][positions])
        counts.add(len(positions))
    assert counts == set(range(3, 10))
    assert max(positions) < c


def test_random_band_subset_without_max_can_keep_every_band(eurosat):
    subset = RandomBandSubset(12, generator=_generator(0))
    counts = {subset(eurosat)["image"].shape[0] for _ in range(50)}
    assert counts == {12, 13}
    capped = RandomBandSubset(2, 100, generator=_generator(0))
    assert all(capped(eurosat)["image"].shape[0] <= 13 for _ in range(20))


def test_random_band_subset_checks_its_bounds(eurosat):
    with pytest.raises(ValueError, match=">= 1"):
        RandomBandSubset(0)
    with pytest.raises(ValueError, match="max_bands"):
        RandomBandSubset(5, 4)
    with pytest.raises(BandMismatchError, match=r"14 bands.*13 channels"):
        RandomBandSubset(14)(eurosat)


def test_random_transforms_repeat_with_the_same_generator_seed(landsat):
    def pipeline(seed):
        g = _generator(seed)
        return Compose(
            [
                RandomCrop(64, generator=g),
                RandomHorizontalFlip(generator=g),
                RandomRotate90(generator=g),
                RandomBandSubset(1, generator=g),
            ]
        )

    a, b = pipeline(7)(landsat), pipeline(7)(landsat)
    assert torch.equal(a["image"], b["image"]) and a["transform"] == b["transform"]
    assert a["bands"] == b["bands"]
    outputs = {pipeline(s)(landsat)["transform"] for s in range(5)}
    assert len(outputs) > 1


# --------------------------------------------------------------------------------------------
# Normalisation


def test_normalize_from_card_matches_numpy_standardisation(eurosat):
    card = load_dataset_card("eurosat_ms")
    out = Normalize.from_card("eurosat_ms")(eurosat)
    image = eurosat["image"].numpy().astype(np.float64)
    mean, std = np.array(card.mean)[:, None, None], np.array(card.std)[:, None, None]
    np.testing.assert_allclose(out["image"].numpy(), (image - mean) / std, rtol=1e-5, atol=1e-5)
    assert out["image"].dtype == torch.float32


def test_mae_scale_normalize_matches_the_less_vit_formula(eurosat):
    card = load_dataset_card("eurosat_ms")
    out = MAEScaleNormalize.from_card(card)(eurosat)
    image = eurosat["image"].numpy().astype(np.float64)
    mean, std = np.array(card.mean)[:, None, None], np.array(card.std)[:, None, None]
    expected = np.clip((image - (mean - 2 * std)) / (4 * std), 0.0, 1.0)
    np.testing.assert_allclose(out["image"].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0


def test_normalize_picks_statistics_by_band_name_after_band_selection(eurosat):
    card = load_dataset_card("eurosat_ms")
    g = _generator(2)
    pipeline = Compose([RandomBandSubset(2, 6, generator=g), Normalize.from_card(card)])
    for _ in range(5):
        out = pipeline(eurosat)
        idx = card.band_indices(out["bands"])
        image = eurosat["image"].numpy()[idx].astype(np.float64)
        expected = (image - np.array(card.mean)[idx, None, None]) / np.array(card.std)[
            idx, None, None
        ]
        np.testing.assert_allclose(out["image"].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_normalize_from_card_with_bands_takes_those_bands_statistics(eurosat):
    card = load_dataset_card("eurosat_ms")
    normalize = Normalize.from_card("eurosat_ms", bands=["B8A", "B02"])
    assert normalize.mean == (card.mean[12], card.mean[1])
    out = normalize(select_bands(eurosat, ["B02", "B8A"]))
    expected = (eurosat["image"][1] - card.mean[1]) / card.std[1]
    torch.testing.assert_close(out["image"][0], expected)
    with pytest.raises(UnknownBandError, match="B04"):
        normalize(eurosat)
    with pytest.raises(UnknownBandError, match="B8A"):
        Normalize.from_card("eurosat_ms", bands=["B99"])


def test_normalize_with_wrong_number_of_means_names_both_counts(landsat):
    with pytest.raises(BandMismatchError, match=r"13 bands.*3 channels"):
        Normalize([0.0] * 13, [1.0] * 13)(landsat)
    with pytest.raises(ValueError, match=r"3 means and 2 standard deviations"):
        Normalize([0.0] * 3, [1.0] * 2)
    with pytest.raises(ValueError, match="positive"):
        Normalize([0.0], [0.0])


def test_normalize_from_card_without_statistics_says_so():
    bare = dataclasses.replace(load_dataset_card("eurosat_ms"), mean=None, std=None)
    with pytest.raises(ValueError, match="no normalisation statistics"):
        Normalize.from_card(bare)
    with pytest.raises(ValueError, match="sensor card 'sentinel2' has no normalisation"):
        MAEScaleNormalize.from_card("sentinel2")


# --------------------------------------------------------------------------------------------
# Bad input


def test_crop_larger_than_image_names_both_sizes(eurosat):
    for transform in (RandomCrop(100), CenterCrop((100, 30))):
        with pytest.raises(ValueError, match=r"100 x \d+ .*larger than the image.*64 x 64"):
            transform(eurosat)
    with pytest.raises(ValueError, match="does not fit"):
        crop(eurosat, 40, 0, 30, 30)


def test_resize_takes_exactly_one_of_size_and_scale():
    with pytest.raises(ValueError, match="exactly one"):
        Resize()
    with pytest.raises(ValueError, match="exactly one"):
        Resize(32, scale=2.0)
    with pytest.raises(ValueError, match="positive"):
        Resize(scale=0.0)


def test_transforms_reject_a_sample_that_breaks_the_contract(eurosat):
    broken = dict(eurosat, wavelengths=eurosat["wavelengths"][:5])
    with pytest.raises(BandMismatchError, match=r"5 wavelengths.*13 channels"):
        RandomHorizontalFlip(p=1.0)(broken)


def test_compose_repr_lists_its_transforms():
    text = repr(Compose([CenterCrop(8), SelectBands(["B02"])]))
    assert "CenterCrop(size=(8, 8))" in text and "SelectBands(names=('B02',))" in text
