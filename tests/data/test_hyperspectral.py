"""ENVI and MATLAB cube readers on the real Salinas-A cube and its ground truth."""

import shutil

import h5py
import numpy as np
import pytest
import rasterio
import scipy.io
import torch
from rasterio.errors import NotGeoreferencedWarning

from geofm.data import load_dataset_card
from geofm.data.hyperspectral import (
    envi_gsd,
    envi_memmap,
    envi_paths,
    open_cube,
    open_envi,
    open_mat,
    read_envi_header,
    read_label_mat,
)
from geofm.data.sample import IGNORE_INDEX, BandMismatchError, check_sample


@pytest.fixture(scope="module")
def salinas_raw(salinas_a_dir):
    """The cube as GDAL's ENVI driver reads it: (204, 83, 86) int16."""
    with (
        pytest.warns(NotGeoreferencedWarning),
        rasterio.open(salinas_a_dir / "SalinasA_corrected.img") as src,
    ):
        return src.read()


def test_envi_cube_matches_gdal_and_card(salinas_a_dir, salinas_raw):
    s = open_envi(salinas_a_dir / "SalinasA_corrected.hdr", card="salinas_a")
    check_sample(s)
    assert s["image"].shape == (204, 83, 86)
    np.testing.assert_array_equal(s["image"].numpy(), salinas_raw.astype(np.float32))
    card = load_dataset_card("salinas_a")
    assert s["wavelengths"].tolist() == pytest.approx(card.wavelengths_nm)
    assert s["gsd"] == pytest.approx(3.7)


def test_envi_header_fields(salinas_a_dir):
    h = read_envi_header(salinas_a_dir / "SalinasA_corrected.hdr")
    assert (h["samples"], h["lines"], h["bands"]) == (86, 83, 204)
    assert h["interleave"] == "bip" and h["data type"] == 2


def _write_envi(path, cube_bhw, interleave, byteorder="<", extra=""):
    axes = {"bsq": (0, 1, 2), "bil": (1, 0, 2), "bip": (1, 2, 0)}[interleave]
    data = np.ascontiguousarray(cube_bhw.transpose(axes)).astype(
        cube_bhw.dtype.newbyteorder(byteorder)
    )
    data.tofile(path.with_suffix(".img"))
    b, h, w = cube_bhw.shape
    path.with_suffix(".hdr").write_text(
        f"ENVI\nsamples = {w}\nlines = {h}\nbands = {b}\nheader offset = 0\n"
        f"data type = 2\ninterleave = {interleave}\nbyte order = {int(byteorder == '>')}\n" + extra
    )
    return path.with_suffix(".hdr")


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_every_interleave_and_byte_order_reads_the_same_cube(
    tmp_path, salinas_raw, interleave, byteorder
):
    hdr = _write_envi(tmp_path / "cube", salinas_raw[:20], interleave, byteorder)
    s = open_envi(hdr, wavelengths=np.linspace(400, 600, 20), gsd=3.7)
    np.testing.assert_array_equal(s["image"].numpy(), salinas_raw[:20])


def test_header_wavelengths_in_micrometres_become_nanometres(tmp_path, salinas_raw):
    wl_um = ", ".join(f"{0.4 + 0.01 * i:.3f}" for i in range(5))
    hdr = _write_envi(
        tmp_path / "cube",
        salinas_raw[:5],
        "bsq",
        extra=f"wavelength units = Micrometers\nwavelength = {{{wl_um}}}\n"
        "map info = {UTM, 1, 1, 500000, 4000000, 3.7, 3.7, 10, North}\n",
    )
    s = open_envi(hdr)
    assert s["wavelengths"].tolist() == pytest.approx([400, 410, 420, 430, 440], abs=1e-3)
    assert s["gsd"] == pytest.approx(3.7)


def test_envi_window_reads_only_that_window(salinas_a_dir, salinas_raw):
    s = open_envi(
        salinas_a_dir / "SalinasA_corrected.hdr",
        card="salinas_a",
        window=(10, 20, 30, 40),
        bands=[0, 100, 203],
    )
    np.testing.assert_array_equal(s["image"].numpy(), salinas_raw[[0, 100, 203], 20:60, 10:40])


def test_envi_header_and_binary_disagreeing_in_size_is_refused(tmp_path, salinas_raw):
    hdr = _write_envi(tmp_path / "cube", salinas_raw[:4], "bsq")
    hdr.write_text(hdr.read_text().replace("bands = 4", "bands = 8"))
    with pytest.raises(ValueError, match="bytes but its header describes"):
        envi_memmap(hdr)


def test_envi_without_header_names_the_missing_file(tmp_path, salinas_a_dir):
    shutil.copy(salinas_a_dir / "SalinasA_corrected.img", tmp_path / "lonely.img")
    with pytest.raises(FileNotFoundError, match="lonely.hdr"):
        open_envi(tmp_path / "lonely.img")


def test_wavelength_count_mismatch_names_both_counts(salinas_a_dir):
    with pytest.raises(BandMismatchError, match="200 wavelengths given for an image with 204"):
        open_envi(salinas_a_dir / "SalinasA_corrected.hdr", wavelengths=[500.0] * 200, gsd=3.7)


def test_ground_truth_is_remapped_with_the_card(salinas_a_dir):
    raw = scipy.io.loadmat(salinas_a_dir / "SalinasA_gt.mat")["salinasA_gt"]
    gt = read_label_mat(salinas_a_dir / "SalinasA_gt.mat", card="salinas_a")
    assert gt.shape == (83, 86) and gt.dtype == np.int64
    assert int((gt != IGNORE_INDEX).sum()) == 5348
    assert sorted(np.unique(gt).tolist()) == [0, 1, 2, 3, 4, 5, IGNORE_INDEX]
    for class_id, raw_value in enumerate([1, 10, 11, 12, 13, 14]):
        np.testing.assert_array_equal(gt == class_id, raw == raw_value)


def test_label_value_unknown_to_the_card_is_an_error(tmp_path, salinas_a_dir):
    raw = scipy.io.loadmat(salinas_a_dir / "SalinasA_gt.mat")["salinasA_gt"].copy()
    raw[0, 0] = 7
    scipy.io.savemat(tmp_path / "gt.mat", {"gt": raw})
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        read_label_mat(tmp_path / "gt.mat", card="salinas_a")


@pytest.fixture(scope="module")
def salinas_mat_v5(tmp_path_factory, salinas_raw):
    path = tmp_path_factory.mktemp("mat") / "SalinasA_corrected.mat"
    scipy.io.savemat(path, {"salinasA_corrected": np.moveaxis(salinas_raw, 0, -1)})
    return path


def test_mat_v5_cube_with_ground_truth(salinas_mat_v5, salinas_a_dir, salinas_raw):
    s = open_cube(salinas_mat_v5, card="salinas_a", gt_path=salinas_a_dir / "SalinasA_gt.mat")
    check_sample(s)
    np.testing.assert_array_equal(s["image"].numpy(), salinas_raw)
    assert int((s["mask"] != IGNORE_INDEX).sum()) == 5348


def test_mat_v73_hdf5_cube_reads_like_v5(tmp_path, salinas_raw, salinas_mat_v5):
    path = tmp_path / "SalinasA_v73.mat"
    # MATLAB v7.3 files are HDF5 with a 512-byte user block and column-major arrays.
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("salinasA_corrected", data=np.moveaxis(salinas_raw, 0, -1).T)
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" "))
    v73 = open_mat(path, key="salinasA_corrected", card="salinas_a")
    v5 = open_mat(salinas_mat_v5, card="salinas_a")
    np.testing.assert_array_equal(v73["image"].numpy(), v5["image"].numpy())


def test_image_and_label_grids_that_disagree_name_both_shapes(tmp_path, salinas_raw, salinas_a_dir):
    path = tmp_path / "cropped.mat"
    scipy.io.savemat(path, {"cube": np.moveaxis(salinas_raw[:, :80], 0, -1)})
    with pytest.raises(ValueError, match=r"83 x 86.*80 x 86"):
        open_mat(path, card="salinas_a", gt_path=salinas_a_dir / "SalinasA_gt.mat")


def test_mat_without_the_named_key_lists_the_arrays(salinas_mat_v5):
    with pytest.raises(KeyError, match="salinasA_corrected"):
        open_mat(salinas_mat_v5, key="indian_pines_corrected", card="salinas_a")


def test_header_wavelengths_without_units_below_30_are_micrometres(tmp_path, salinas_raw):
    hdr = _write_envi(
        tmp_path / "cube", salinas_raw[:3], "bsq", extra="wavelength = {0.45, 0.55, 0.65}\n"
    )
    s = open_envi(hdr, gsd=3.7)
    assert s["wavelengths"].tolist() == pytest.approx([450, 550, 650], abs=1e-3)


def test_envi_header_with_a_negative_size_is_refused(tmp_path, salinas_raw):
    hdr = _write_envi(tmp_path / "cube", salinas_raw[:3], "bsq")
    hdr.write_text(hdr.read_text().replace("header offset = 0", "header offset = -8"))
    with pytest.raises(ValueError, match="header offset = -8"):
        open_envi(hdr, wavelengths=[500.0, 510.0, 520.0], gsd=3.7)


@pytest.mark.parametrize("content", [b"garbage, not MATLAB", b"\x89HDF\r\n\x1a\n broken"])
def test_corrupt_mat_file_is_named(tmp_path, content):
    bad = tmp_path / "broken.mat"
    bad.write_bytes(content)
    with pytest.raises(OSError, match="broken.mat"):
        open_mat(bad, card="salinas_a")


def test_mat_window_partly_outside_is_padded_like_the_other_readers(
    salinas_mat_v5, salinas_a_dir, salinas_raw
):
    s = open_mat(
        salinas_mat_v5,
        card="salinas_a",
        window=(70, -5, 20, 10),
        gt_path=salinas_a_dir / "SalinasA_gt.mat",
    )
    np.testing.assert_array_equal(s["image"][:, 5:, :16].numpy(), salinas_raw[:, :5, 70:86])
    assert not s["valid"][:5].any() and not s["valid"][:, 16:].any()
    assert (s["mask"][:5] == IGNORE_INDEX).all() and (s["mask"][:, 16:] == IGNORE_INDEX).all()
    envi = open_envi(
        salinas_a_dir / "SalinasA_corrected.hdr", card="salinas_a", window=(70, -5, 20, 10)
    )
    assert torch.equal(envi["image"], s["image"]) and torch.equal(envi["valid"], s["valid"])


def test_envi_paths_pair_the_header_and_the_binary_from_either(salinas_a_dir, tmp_path):
    hdr, img = salinas_a_dir / "SalinasA_corrected.hdr", salinas_a_dir / "SalinasA_corrected.img"
    assert envi_paths(hdr) == (hdr, img)
    assert envi_paths(img) == (hdr, img)
    lone = tmp_path / "lone.img"
    lone.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no ENVI header for .*lone.img"):
        envi_paths(lone)


def test_envi_gsd_is_the_pixel_size_of_map_info():
    info = ["UTM", "1", "1", "500000", "4000000", "3.7", "3.7", "13", "North"]
    assert envi_gsd({"map info": info}) == 3.7
    assert envi_gsd({"map info": info[:5]}) is None
    assert envi_gsd({}) is None
