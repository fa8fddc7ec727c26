import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from geofm.data import load_dataset_card, open_envi, open_raster, read_label_mat
from geofm.data.plot import (
    nearest_band_indices,
    plot_class_map,
    plot_class_spectra,
    plot_rgb,
    plot_sample,
    plot_spectra,
    rgb_composite,
)


@pytest.fixture(scope="module")
def salinas(salinas_a_dir):
    s = open_envi(salinas_a_dir / "SalinasA_corrected.hdr", card="salinas_a")
    s["mask"] = torch.from_numpy(
        read_label_mat(salinas_a_dir / "SalinasA_gt.mat", card="salinas_a")
    )
    return s


def test_rgb_uses_the_bands_nearest_in_wavelength(salinas):
    idx = nearest_band_indices(salinas["wavelengths"])
    wl = salinas["wavelengths"].numpy()
    for i, target in zip(idx, (640, 550, 470), strict=True):
        assert abs(wl[i] - target) == pytest.approx(np.abs(wl - target).min())
    eurosat_idx = nearest_band_indices(torch.tensor(load_dataset_card("eurosat_ms").wavelengths_nm))
    assert eurosat_idx == [3, 2, 1]


def test_rgb_composite_is_stretched_and_blacks_out_nodata(landsat_tif):
    s = open_raster(landsat_tif, card="landsat_rgb")
    rgb = rgb_composite(s)
    assert rgb.shape == (718, 791, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert (rgb[~s["valid"].numpy()] == 0).all()
    inside = rgb[s["valid"].numpy()]
    assert 0.01 < (inside == 1.0).mean() < 0.05  # about 2% clipped at the top of the stretch


def test_figures_render(tmp_path, salinas, eurosat_dir):
    classes = load_dataset_card("salinas_a").classes
    figs = [
        plot_rgb(open_raster(eurosat_dir / "SeaLake" / "SeaLake_1.tif", card="eurosat_ms")),
        plot_spectra(salinas, [(10, 10), (40, 60)]),
        plot_class_map(salinas["mask"], classes),
        plot_class_spectra(salinas, classes),
        plot_sample(salinas, classes=classes),
    ]
    for i, fig in enumerate(figs):
        assert isinstance(fig, Figure)
        fig.savefig(tmp_path / f"{i}.png")
        assert (tmp_path / f"{i}.png").stat().st_size > 5000


def test_class_map_with_more_ids_than_names_is_refused(salinas):
    with pytest.raises(ValueError, match=r"class ids \[.*5\].*only 3"):
        plot_class_map(salinas["mask"], ["a", "b", "c"])


def test_spectrum_of_a_pixel_outside_the_image_is_refused(salinas):
    with pytest.raises(ValueError, match="outside the 83 x 86"):
        plot_spectra(salinas, [(83, 0)])


def test_fixed_limits_give_patches_one_shared_stretch(eurosat_dir):
    a = open_raster(eurosat_dir / "SeaLake" / "SeaLake_1.tif", card="eurosat_ms")
    limits = [(0.0, 4000.0)] * 3
    rgb = rgb_composite(a, limits=limits)
    red = a["image"][3].numpy()
    np.testing.assert_allclose(rgb[..., 0], np.clip(red / 4000.0, 0, 1))
    with pytest.raises(ValueError, match="3 channels"):
        rgb_composite(a, limits=[(0.0, 1.0)])


def test_class_spectra_with_too_few_class_names_are_refused(salinas):
    with pytest.raises(ValueError, match="only 2 class names"):
        plot_class_spectra(salinas, ["a", "b"])
