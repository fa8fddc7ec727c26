"""Scene-folder and pixel-patch datasets on the real EuroSAT-MS and Salinas-A samples."""

import shutil

import numpy as np
import pytest
import scipy.io
import torch

from geofm.data.cards import load_dataset_card
from geofm.data.datasets import (
    PixelPatchDataset,
    SceneFolderDataset,
    crop_window,
    read_scene,
)
from geofm.data.sample import IGNORE_INDEX, check_sample, collate_samples

# --------------------------------------------------------------------------------------------
# SceneFolderDataset


def test_scene_folder_items_satisfy_the_sample_contract(eurosat_dir):
    ds = SceneFolderDataset(eurosat_dir)
    assert len(ds) == 30
    assert ds.classes == load_dataset_card("eurosat_ms").classes
    for i in (0, 13, 29):
        sample = ds[i]
        check_sample(sample)
        assert sample["image"].shape == (13, 64, 64)
        assert sample["label"].dtype == torch.int64 and sample["label"].ndim == 0


def test_scene_folder_label_is_the_card_index_of_the_folder(eurosat_dir):
    ds = SceneFolderDataset(eurosat_dir)
    card_classes = load_dataset_card("eurosat_ms").classes
    for path, target in zip(ds.files, ds.targets, strict=True):
        assert card_classes[target] == path.parent.name
    assert np.bincount(ds.targets).tolist() == [3] * 10
    assert int(ds[4]["label"]) == ds.targets[4]


def test_scene_folder_reads_the_requested_bands_in_order(eurosat_dir):
    ds = SceneFolderDataset(eurosat_dir, bands=["B04", "B03", "B02"])
    sample = ds[0]
    assert sample["bands"] == ("B04", "B03", "B02")
    assert sample["wavelengths"].tolist() == pytest.approx([664.6, 559.8, 492.4])
    full = SceneFolderDataset(eurosat_dir)[0]
    torch.testing.assert_close(sample["image"], full["image"][[3, 2, 1]])


def test_scene_folder_class_subset_numbers_classes_in_the_given_order(eurosat_dir):
    ds = SceneFolderDataset(eurosat_dir, classes=["River", "Forest"])
    assert len(ds) == 6
    assert {ds.files[i].parent.name: t for i, t in enumerate(ds.targets)} == {
        "River": 0,
        "Forest": 1,
    }


def test_scene_folder_applies_transforms(eurosat_dir):
    ds = SceneFolderDataset(eurosat_dir, transforms=lambda s: {**s, "image": s["image"] * 0})
    assert ds[0]["image"].abs().sum() == 0


def test_scene_folder_missing_root_names_the_path(tmp_path):
    missing = tmp_path / "no_such_eurosat"
    with pytest.raises(FileNotFoundError, match="no_such_eurosat"):
        SceneFolderDataset(missing)


def test_scene_folder_rejects_folders_that_are_not_card_classes(eurosat_dir, tmp_path):
    shutil.copytree(eurosat_dir / "Forest", tmp_path / "Forest")
    (tmp_path / "Clouds").mkdir()
    with pytest.raises(ValueError, match=r"\['Clouds'\].*AnnualCrop, Forest"):
        SceneFolderDataset(tmp_path)


def test_scene_folder_rejects_unknown_class_names(eurosat_dir):
    with pytest.raises(ValueError, match=r"\['Desert'\]"):
        SceneFolderDataset(eurosat_dir, classes=["Forest", "Desert"])


def test_scene_folder_without_rasters_says_so(tmp_path):
    (tmp_path / "Forest").mkdir()
    (tmp_path / "Forest" / "notes.txt").write_text("not a raster")
    with pytest.raises(ValueError, match=r"no \.jp2/\.tif/\.tiff files"):
        SceneFolderDataset(tmp_path)


# --------------------------------------------------------------------------------------------
# PixelPatchDataset


@pytest.fixture(scope="module")
def salinas_scene(salinas_a_dir):
    return read_scene(
        salinas_a_dir / "SalinasA_corrected.hdr",
        salinas_a_dir / "SalinasA_gt.mat",
        card="salinas_a",
        gt_key="salinasA_gt",
    )


def test_read_scene_maps_unlabelled_pixels_to_ignore(salinas_scene):
    mask = salinas_scene["mask"]
    assert mask.shape == (83, 86) and mask.dtype == torch.int64
    assert int((mask != IGNORE_INDEX).sum()) == 5348
    assert set(torch.unique(mask).tolist()) == {0, 1, 2, 3, 4, 5, IGNORE_INDEX}


def test_pixel_patches_default_to_every_labelled_pixel(salinas_scene):
    ds = PixelPatchDataset(salinas_scene, radius=2)
    assert len(ds) == 5348
    assert np.bincount(ds.labels).tolist() == [391, 1343, 616, 1525, 674, 799]


def test_pixel_patch_is_the_window_around_its_centre(salinas_scene):
    coords = np.array([[40, 50], [10, 5]])
    ds = PixelPatchDataset(salinas_scene, coords, radius=3)
    sample = ds[0]
    check_sample(sample)
    assert sample["image"].shape == (204, 7, 7)
    torch.testing.assert_close(sample["image"], salinas_scene["image"][:, 37:44, 47:54])
    torch.testing.assert_close(sample["mask"], salinas_scene["mask"][37:44, 47:54])
    assert sample["label"].dtype == torch.int64 and sample["label"].ndim == 0
    assert sample["label"] == salinas_scene["mask"][40, 50] == sample["mask"][3, 3]
    assert sample["center"].tolist() == [40, 50]
    assert bool(sample["valid"].all())
    assert sample["gsd"] == pytest.approx(3.7)
    assert sample["bands"] == salinas_scene["bands"]
    torch.testing.assert_close(sample["wavelengths"], salinas_scene["wavelengths"])


def test_pixel_patch_at_the_scene_edge_is_zero_padded_and_marked_invalid(salinas_scene):
    mask = salinas_scene["mask"]
    corner = (
        [0, 0]
        if mask[0, 0] != IGNORE_INDEX
        else np.argwhere(mask.numpy()[0] != IGNORE_INDEX)[0].tolist()
    )
    row, col = 0, int(corner[1])
    radius = 2
    sample = PixelPatchDataset(salinas_scene, [[row, col]], radius=radius)[0]
    check_sample(sample)
    image, valid, window_mask = sample["image"], sample["valid"], sample["mask"]
    # Rows above the scene are outside: zeros, invalid, unlabelled.
    assert not valid[:radius].any()
    assert image[:, :radius].abs().sum() == 0
    assert bool((window_mask[:radius] == IGNORE_INDEX).all())
    # The rows inside hold the scene.
    c0 = col - radius
    inside_cols = slice(max(-c0, 0), 2 * radius + 1)
    torch.testing.assert_close(
        image[:, radius:, inside_cols],
        salinas_scene["image"][:, 0 : radius + 1, max(c0, 0) : col + radius + 1],
    )
    assert bool(valid[radius:, inside_cols].all())
    assert sample["label"] == mask[row, col]


def test_crop_window_past_the_corner_pads_with_the_fill_value():
    array = torch.arange(12).reshape(1, 3, 4)
    window, inside = crop_window(array, 0, 3, 1, fill=-1)
    assert window[0].tolist() == [[-1, -1, -1], [2, 3, -1], [6, 7, -1]]
    assert inside.tolist() == [[False] * 3, [True, True, False], [True, True, False]]


def test_pixel_patches_reject_a_label_map_on_another_grid(salinas_scene):
    wrong = salinas_scene["mask"][:, :85]
    with pytest.raises(ValueError, match=r"83 x 85.*83 x 86"):
        PixelPatchDataset(salinas_scene, mask=wrong)


def test_pixel_patches_reject_coords_outside_the_scene(salinas_scene):
    with pytest.raises(ValueError, match=r"outside the 83 x 86 scene, e.g. \(83, 0\)"):
        PixelPatchDataset(salinas_scene, [[10, 10], [83, 0]])


def test_pixel_patches_reject_unlabelled_centres(salinas_scene):
    row, col = np.argwhere(salinas_scene["mask"].numpy() == IGNORE_INDEX)[0]
    with pytest.raises(ValueError, match=rf"unlabelled.*\({row}, {col}\)"):
        PixelPatchDataset(salinas_scene, [[row, col]])


def test_pixel_patches_from_mat_and_envi_agree(salinas_a_dir, salinas_scene, tmp_path):
    cube = np.moveaxis(salinas_scene["image"].numpy().astype(np.int16), 0, -1)
    scipy.io.savemat(tmp_path / "SalinasA_corrected.mat", {"salinasA_corrected": cube})
    coords = np.array([[20, 30], [0, 85]])
    from_mat = PixelPatchDataset.from_files(
        tmp_path / "SalinasA_corrected.mat",
        salinas_a_dir / "SalinasA_gt.mat",
        card="salinas_a",
        radius=1,
        coords=coords,
    )
    from_envi = PixelPatchDataset.from_files(
        salinas_a_dir / "SalinasA_corrected.hdr",
        salinas_a_dir / "SalinasA_gt.mat",
        card="salinas_a",
        radius=1,
        coords=coords,
    )
    for i in range(2):
        a, b = from_mat[i], from_envi[i]
        torch.testing.assert_close(a["image"], b["image"])
        assert a["label"] == b["label"]
        torch.testing.assert_close(a["valid"], b["valid"])


def test_pixel_patch_batch_keeps_centres(salinas_scene):
    ds = PixelPatchDataset(salinas_scene, [[40, 50], [41, 50], [42, 50]], radius=1)
    batch = collate_samples([ds[i] for i in range(3)])
    assert batch["image"].shape == (3, 204, 3, 3)
    assert batch["center"].tolist() == [[40, 50], [41, 50], [42, 50]]
    assert batch["label"].shape == (3,) and batch["mask"].shape == (3, 3, 3)


def test_datasets_plot_their_samples(eurosat_dir, salinas_scene, tmp_path):
    scenes = SceneFolderDataset(eurosat_dir)
    fig = scenes.plot(scenes[0])
    assert fig._suptitle.get_text() == scenes.classes[scenes.targets[0]]
    patches = PixelPatchDataset(salinas_scene, [[40, 50]], radius=4)
    fig = patches.plot(patches[0], classes=load_dataset_card("salinas_a").classes)
    assert len(fig.axes) == 2  # RGB beside the label map
    fig.savefig(tmp_path / "patch.png")
