import pytest
import torch

from geofm.data.sample import BandMismatchError, check_sample, collate_samples, make_sample


def _sample(c=3, h=4, w=5, wavelengths=None, bands=None):
    wl = wavelengths if wavelengths is not None else [float(400 + 10 * i) for i in range(c)]
    return make_sample(torch.zeros(c, h, w), wl, 10.0, bands)


def test_wavelength_count_mismatch_names_both_counts():
    with pytest.raises(
        BandMismatchError, match=r"4 wavelengths given for an image with 3 channels"
    ):
        make_sample(torch.zeros(3, 2, 2), [1.0, 2.0, 3.0, 4.0], 10.0)


def test_band_name_count_mismatch_names_both_counts():
    with pytest.raises(BandMismatchError, match=r"2 band names .* 3 channels"):
        make_sample(torch.zeros(3, 2, 2), [1.0, 2.0, 3.0], 10.0, bands=("a", "b"))


def test_mask_on_another_grid_is_refused():
    s = _sample()
    s["mask"] = torch.zeros(4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        check_sample(s)


def test_nonpositive_gsd_is_refused():
    with pytest.raises(ValueError, match="gsd"):
        make_sample(torch.zeros(1, 2, 2), [500.0], 0.0)


def test_collate_stacks_images_and_keeps_one_band_set():
    batch = collate_samples([_sample() | {"label": torch.tensor(i)} for i in range(4)])
    assert batch["image"].shape == (4, 3, 4, 5)
    assert batch["wavelengths"].shape == (3,)
    assert batch["label"].tolist() == [0, 1, 2, 3]
    assert batch["gsd"].tolist() == [10.0] * 4


def test_collate_refuses_two_band_sets_and_says_so():
    a = _sample(bands=("B02", "B03", "B04"))
    b = _sample(bands=("B02", "B03", "B08"), wavelengths=[492.4, 559.8, 832.8])
    with pytest.raises(BandMismatchError, match="share one band set"):
        collate_samples([a, b])
