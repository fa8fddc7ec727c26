"""The GFM-Bench readers on generated trees of every layout (EuroSAT from the real samples)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader

from geofm.data.cards import load_dataset_card
from geofm.data.sample import check_sample, collate_samples
from gfm_bench.datasets import (
    DATASETS,
    NINE_CROPS,
    DatasetNotFoundError,
    GFMBenchDataset,
    UnverifiedLayoutWarning,
    check_root,
    heldout_val_split,
    list_datasets,
    load_bench_data,
    open_split,
)
from gfm_bench.datasets.base import label_mask
from gfm_bench.datasets.nlcd_l import torchgeo_split
from gfm_bench.datasets.segmunich import segmunich_label_mapping
from gfm_bench.generate import GENERATORS, generate

LAYOUTS = [(name, layout) for name, layouts in GENERATORS.items() for layout in layouts]

# (train, val, test) lengths of the generated trees with their default n
SIZES = {
    ("eurosat", "old"): (10, 10, 10),  # 3 real samples per class, one per split
    ("bigearthnet", "old"): (6, 2, 2),
    ("so2sat", "old"): (18, 2, 5),  # 20 training rows: 90/10 held out
    ("segmunich", "final"): (6, 2, 2),
    ("segmunich", "old"): (9, 1, 3),  # 10 train rows: 90/10 held out
    ("dfc2020", "final"): (6, 2, 3),  # pre-cut tiles
    ("dfc2020", "old"): (81, 9, 18),  # 9 / 1 / 2 images x 9 crops
    ("marida", "old"): (18, 9, 18),  # 2 / 1 / 2 images x 9 crops
    ("nlcd_l", "torchgeo"): (14, 3, 3),  # 20 samples: 70/15/15
}

RADAR = {"bigearthnet", "dfc2020"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``tree(name, layout)``: a generated tree, written once per module."""
    made = {}

    def get(name: str, layout: str):
        if (name, layout) not in made:
            made[name, layout] = generate(
                name, tmp_path_factory.mktemp(f"{name}_{layout}"), layout=layout
            )
        return made[name, layout]

    return get


def load(name, root, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedLayoutWarning)
        return load_bench_data(name, root, **kwargs)


def split(name, root, which, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnverifiedLayoutWarning)
        return open_split(name, root, which, **kwargs)


# ----------------------------------------------------------------------------- registry


def test_registry_lists_the_seven_datasets_with_their_cards():
    assert list_datasets() == [
        "bigearthnet",
        "dfc2020",
        "eurosat",
        "marida",
        "nlcd_l",
        "segmunich",
        "so2sat",
    ]
    for name, spec in DATASETS.items():
        card = load_dataset_card(spec.card)
        assert spec.task == card.task
        assert spec.repo_id.startswith("GFM-Bench/")
        assert spec.url == f"https://huggingface.co/datasets/{spec.repo_id}"
        assert issubclass(spec.reader_class(), GFMBenchDataset)
        assert spec.reader_class().name == name
        assert spec.layouts and all(layout.required for layout in spec.layouts)
        assert spec.download_layout().archives
        assert set(GENERATORS[name]) == {layout.name for layout in spec.layouts}


def test_only_the_nlcd_layout_is_marked_probable():
    probable = {
        (n, x.name) for n, s in DATASETS.items() for x in s.layouts if "probable" in x.status
    }
    assert probable == {("nlcd_l", "torchgeo")}
    assert "UNVERIFIED" in DATASETS["nlcd_l"].notes


def test_unknown_names_splits_and_modalities_are_refused(tree):
    root = tree("eurosat", "old")
    with pytest.raises(KeyError, match="known: bigearthnet"):
        open_split("eurosat2", root, "train")
    with pytest.raises(ValueError, match="use one of train, val, test"):
        open_split("eurosat", root, "validation")
    with pytest.raises(ValueError, match="modalities must be distinct names"):
        open_split("eurosat", root, "train", modalities=("optical", "sar"))
    with pytest.raises(TypeError, match="sequence"):
        open_split("eurosat", root, "train", modalities="optical")


# ----------------------------------------------------------------------------- every layout


@pytest.mark.parametrize("name, layout", LAYOUTS)
def test_generated_tree_loads_as_bench_data(tree, name, layout):
    root = tree(name, layout)
    assert check_root(name, root).layout.name == layout
    data = load(name, root)
    card = load_dataset_card(DATASETS[name].card)
    assert (data.name, data.task, data.num_classes) == (name, card.task, card.num_classes)
    assert tuple(data.classes) == card.classes and data.card is card
    assert data.crop == card["protocol"]["crop"]
    assert data.upscale == card["protocol"].get("upscale", 1.0)
    assert (len(data.train), len(data.val), len(data.test)) == SIZES[name, layout]
    assert tuple(data.bands) == card.band_names
    if card.mean is not None:
        assert tuple(data.mean) == card.mean and tuple(data.std) == card.std
    for part in (data.train, data.val, data.test):
        assert part.layout == layout
        sample = part[len(part) - 1]
        check_sample(sample)
        image = sample["image"]
        assert image.dtype == torch.float32 and image.shape[0] == len(card.bands)
        assert torch.isfinite(image).all()
        assert sample["bands"] == card.band_names
        assert sample["wavelengths"].tolist() == pytest.approx(card.wavelengths_nm)
        assert sample["gsd"] == card.gsd_m
        if card.task == "segmentation":
            mask = sample["mask"]
            assert mask.dtype == torch.int64 and mask.shape == image.shape[1:]
            assert set(mask.unique().tolist()) <= set(range(card.num_classes)) | {255}
        elif card.task == "multilabel":
            label = sample["label"]
            assert label.dtype == torch.float32 and label.shape == (card.num_classes,)
            assert set(label.unique().tolist()) <= {0.0, 1.0}
        else:
            assert sample["label"].dtype == torch.int64 and sample["label"].ndim == 0
            assert 0 <= int(sample["label"]) < card.num_classes
    if card.task == "classification":
        labels = data.train_labels
        assert labels is not None and len(labels) == len(data.train)
        assert set(labels.tolist()) == set(range(card.num_classes))  # every class in train
        assert [int(data.train[i]["label"]) for i in range(3)] == labels[:3].tolist()
    else:
        assert data.train_labels is None


@pytest.mark.parametrize("name, layout", LAYOUTS)
def test_radar_is_stacked_after_optical_or_refused(tree, name, layout):
    root = tree(name, layout)
    if name not in RADAR:
        with pytest.raises(ValueError, match=f"{name} has no radar modality"):
            split(name, root, "train", modalities=("optical", "radar"))
        return
    both = split(name, root, "test", modalities=("optical", "radar"))
    optical = split(name, root, "test")
    radar = split(name, root, "test", modalities=("radar",))
    s_both, s_opt, s_rad = both[0], optical[0], radar[0]
    assert torch.equal(s_both["image"], torch.cat([s_opt["image"], s_rad["image"]]))
    assert s_both["bands"] == s_opt["bands"] + s_rad["bands"]
    assert len(both.mean) == len(both.bands) == s_both["image"].shape[0]


@pytest.mark.parametrize("name, layout", LAYOUTS)
def test_compat_exists_only_where_the_card_records_it(tree, name, layout):
    root = tree(name, layout)
    if name in ("eurosat", "bigearthnet"):
        assert split(name, root, "val", compat=True).compat
        return
    with pytest.raises(ValueError, match="compat=True is not available"):
        split(name, root, "val", compat=True)


def test_a_dataloader_batches_samples(tree):
    data = load("dfc2020", tree("dfc2020", "old"), modalities=("optical", "radar"))
    batch = next(iter(DataLoader(data.val, batch_size=4, collate_fn=collate_samples)))
    assert batch["image"].shape == (4, 15, 96, 96) and batch["mask"].shape == (4, 96, 96)


# ----------------------------------------------------------------------------- splits


def test_heldout_split_is_the_scripts_global_seed_shuffle():
    state = np.random.get_state()
    try:
        for n in (10, 37, 31713):
            np.random.seed(42)
            expected = np.arange(n)
            np.random.shuffle(expected)
            train, val = heldout_val_split(n)
            assert len(train) == int(0.9 * n) and len(val) == n - int(0.9 * n)
            assert np.array_equal(np.concatenate([train, val]), expected)
    finally:
        np.random.set_state(state)


def test_segmunich_old_val_is_held_out_of_the_train_rows(tree):
    root = tree("segmunich", "old")
    train, val, test = (split("segmunich", root, s) for s in ("train", "val", "test"))
    ids = lambda d: [p.stem for p, _ in d.items]  # noqa: E731
    keep, held = heldout_val_split(10)
    assert ids(train) == [str(i) for i in keep] and ids(val) == [str(i) for i in held]
    assert ids(test) == ["10", "11", "12"]
    assert all(p.parent.parent.name == "test" for p, _ in test.items)


def test_nlcd_split_is_torchgeos_seed_0_shuffle_70_15_15(tree):
    state = np.random.get_state()
    try:
        np.random.seed(0)
        order = np.arange(20)
        np.random.shuffle(order)
    finally:
        np.random.set_state(state)
    assert np.array_equal(
        np.concatenate([torchgeo_split(20, s) for s in ("train", "val", "test")]), order
    )
    assert [len(torchgeo_split(25000, s)) for s in ("train", "val", "test")] == [17500, 3750, 3750]
    root = tree("nlcd_l", "torchgeo")
    folders = [
        [etm.parent.name for etm, _, _ in split("nlcd_l", root, s).items]
        for s in ("train", "val", "test")
    ]
    assert sorted(sum(folders, [])) == [f"{k:07d}" for k in range(20)]
    assert folders[0] == [f"{k:07d}" for k in order[:14]]


# ----------------------------------------------------------------------------- patching


def test_nine_crops_are_at_offsets_0_80_160():
    assert NINE_CROPS == tuple((r, c) for r in (0, 80, 160) for c in (0, 80, 160))


@pytest.mark.parametrize("name", ["dfc2020", "marida"])
def test_each_256_image_gives_nine_96_px_crops(tree, name):
    root = tree(name, "old")
    data = split(name, root, "test")
    assert len(data) == 9 * len(data.items)
    path = data.items[1][0]
    with rasterio.open(path) as src:
        full = src.read().astype(np.float32)
    for k, (row, col) in enumerate(NINE_CROPS):
        image = data[9 + k]["image"].numpy()
        expected = full[:, row : row + 96, col : col + 96]
        if name == "marida":
            expected = np.where(np.isnan(expected), image, expected)
        assert image.shape == (len(data.card.bands), 96, 96)
        np.testing.assert_array_equal(image, expected)


def test_dfc2020_old_val_is_held_out_on_images_before_patching(tree):
    root = tree("dfc2020", "old")
    train, val = split("dfc2020", root, "train"), split("dfc2020", root, "val")
    names = lambda d: [p.name for p, _, _ in d.items]  # noqa: E731
    keep, held = heldout_val_split(10)
    assert names(train) == [f"ROIs0000_test_s2_0_p{i}.tif" for i in keep]
    assert names(val) == [f"ROIs0000_test_s2_0_p{i}.tif" for i in held]


# ----------------------------------------------------------------------------- labels


def raw_band(path, window=None):
    with rasterio.open(path) as src:
        return src.read(1, window=window)


@pytest.mark.parametrize("layout", ["old", "final"])
def test_dfc2020_labels_follow_the_card_igbp_mapping(tree, layout):
    data = split("dfc2020", tree("dfc2020", layout), "train")
    mapping = {int(k): int(v) for k, v in data.card["label_mapping"].items()}
    seen = set()
    for index in range(0, len(data), 7 if layout == "old" else 1):
        image, crop = divmod(index, data.crops_per_image)
        row, col = NINE_CROPS[crop] if layout == "old" else (0, 0)
        raw = raw_band(data.items[image][2])[row : row + 96, col : col + 96]
        mask = data[index]["mask"].numpy()
        assert np.array_equal(mask, np.vectorize(mapping.get)(raw))
        seen |= set(np.unique(raw).tolist())
    assert {0, 8, 9, 15} & seen  # raw values that must become 255 were exercised
    assert mapping[8] == mapping[9] == mapping[15] == mapping[0] == 255


def test_dfc2020_radar_is_vv_then_vh(tree):
    data = split("dfc2020", tree("dfc2020", "old"), "train", modalities=("radar",))
    sample = data[0]
    assert sample["bands"] == ("VV", "VH")
    assert sample["wavelengths"].tolist() == [5500.0, 5700.0]
    vv, vh = sample["image"]
    assert vv.mean() > vh.mean()  # VV backscatter is stronger than VH
    assert data.mean == pytest.approx([-12.54847273, -20.19237134])


def test_marida_fills_nan_with_the_band_mean_and_merges_codes(tree):
    data = split("marida", tree("marida", "old"), "train")
    image_path, label_path = data.items[0]
    with rasterio.open(image_path) as src:
        assert np.isnan(src.read(1)[8:24, 8:24]).all()
    sample = data[0]  # crop (0, 0) holds the NaN cell of band 0
    assert torch.all(sample["image"][0, 8:24, 8:24] == torch.tensor(data.card.mean[0]))
    raw = raw_band(label_path)[:96, :96]
    mask = sample["mask"].numpy()
    assert np.all(mask[raw == 0] == 255)
    assert np.all(mask[(raw >= 12) & (raw <= 15)] == 6)
    for code in range(1, 12):
        assert np.all(mask[raw == code] == code - 1)
    assert set(np.unique(raw).tolist()) & {0, 12, 13, 14, 15}


@pytest.mark.parametrize("layout", ["final", "old"])
def test_segmunich_labels_follow_the_card_class_values(tree, layout):
    data = split("segmunich", tree("segmunich", layout), "train")
    class_values = data.card.class_values
    raw = raw_band(data.items[0][1])
    mask = data[0]["mask"].numpy()
    for k, value in enumerate(class_values):
        assert (raw == value).any() and np.all(mask[raw == value] == k)
    assert set(np.unique(mask).tolist()) == set(range(13))  # no ignore value, 13 classes


def test_segmunich_mapping_reads_raw_and_remapped_labels_alike():
    card = load_dataset_card("gfmbench_segmunich")
    mapping = segmunich_label_mapping(card.class_values)
    script = {
        21: 1,
        22: 2,
        23: 3,
        31: 4,
        32: 6,
        33: 7,
        41: 8,
        13: 9,
        14: 10,
        0: 0,
        5: 5,
        11: 11,
        12: 12,
    }
    assert {k: mapping[k] for k in script} == script
    assert all(mapping[k] == k for k in range(13))  # already-remapped values are kept
    with pytest.raises(ValueError, match=r"values \[99\]"):
        label_mask(np.array([[0, 99]]), mapping, "x.tif")


def test_an_unknown_label_value_is_an_error_naming_the_file(tree, tmp_path):
    root = tmp_path / "segmunich"
    shutil.copytree(tree("segmunich", "final"), root)
    data = split("segmunich", root, "test")
    label = data.items[0][1]
    with rasterio.open(label, "r+") as dst:
        band = dst.read(1)
        band[0, 0] = 99
        dst.write(band, 1)
    with pytest.raises(ValueError, match=rf"{label.name} holds label values \[99\]"):
        data[0]


def test_nlcd_stacks_etm_then_oli_and_maps_codes_to_ordinals(tree):
    root = tree("nlcd_l", "torchgeo")
    with pytest.warns(UnverifiedLayoutWarning, match="PROBABLE, UNVERIFIED"):
        data = open_split("nlcd_l", root, "train")
    etm_path, oli_path, mask_path = data.items[0]
    sample = data[0]
    assert sample["image"].shape == (20, 264, 264) and sample["gsd"] == 30.0
    with rasterio.open(etm_path) as etm, rasterio.open(oli_path) as oli:
        expected = np.concatenate([etm.read(), oli.read()]).astype(np.float32)
    np.testing.assert_array_equal(sample["image"].numpy(), expected)
    assert sample["bands"][:2] == ("ETM_B1", "ETM_B2") and sample["bands"][9] == "OLI_B1"
    raw, mask = raw_band(mask_path), sample["mask"].numpy()
    for k, code in enumerate(data.card.class_values):
        assert np.all(mask[raw == code] == k)
    assert (raw == 250).any() and np.all(mask[raw == 250] == 0)  # not an NLCD code
    assert data.mean is None  # the card has no statistics for NLCD-L


# ----------------------------------------------------------------------------- band truth


def test_eurosat_reads_the_real_samples_in_true_band_order(tree, samples_dir):
    data = split("eurosat", tree("eurosat", "old"), "train")
    sample = data[0]
    with rasterio.open(samples_dir / "eurosat_ms" / "AnnualCrop" / "AnnualCrop_1.tif") as src:
        np.testing.assert_array_equal(sample["image"].numpy(), src.read().astype(np.float32))
    assert sample["bands"][8:] == ("B09", "B10", "B11", "B12", "B8A")
    assert sample["wavelengths"][8:].tolist() == pytest.approx(
        [945.1, 1373.5, 1613.7, 2202.4, 864.7]
    )
    means = torch.stack([data[i]["image"].mean(dim=(1, 2)) for i in range(len(data))]).mean(0)
    assert sample["bands"][int(means.argmin())] == "B10"  # the cirrus band is darkest


def test_eurosat_compat_reproduces_the_scripts_wrong_wavelengths(tree):
    root = tree("eurosat", "old")
    true, compat = split("eurosat", root, "test"), split("eurosat", root, "test", compat=True)
    a, b = true[3], compat[3]
    assert torch.equal(a["image"], b["image"])  # same data, other labels
    card = true.card
    assert b["wavelengths"].tolist() == pytest.approx(card["gfmbench_compat_wavelengths_nm"])
    assert b["bands"] == tuple(card["gfmbench_compat_bands"])
    differ = (a["wavelengths"] != b["wavelengths"]).nonzero().flatten().tolist()
    assert differ == [8, 9, 10, 11, 12]
    assert compat.mean == true.mean  # statistics are in file order either way


def test_bigearthnet_radar_is_vh_vv_named_truly_and_compat_reproduces_the_swap(tree):
    root = tree("bigearthnet", "old")
    true = split("bigearthnet", root, "train", modalities=("optical", "radar"))
    compat = split("bigearthnet", root, "train", modalities=("optical", "radar"), compat=True)
    a, b = true[0], compat[0]
    assert a["bands"][-2:] == ("VH", "VV") and a["wavelengths"][-2:].tolist() == [5700, 5500]
    assert b["bands"][-2:] == ("VV", "VH") and b["wavelengths"][-2:].tolist() == [5500, 5700]
    assert torch.equal(a["image"], b["image"])
    vh, vv = a["image"][-2], a["image"][-1]
    assert vh.mean() < -15 < vv.mean()  # generated VH about -20 dB, VV about -12.5 dB
    assert true.mean[-2:] == pytest.approx([-20.19237134, -12.54847273])
    assert compat.mean[-2:] == pytest.approx([-12.54847273, -20.19237134])
    s1 = true.s1_folders[0]
    with rasterio.open(next(s1.glob("*_VH.tif"))) as src:
        assert src.dtypes[0] == "float32"
    assert not torch.equal(vh, vh.round())  # dB read as float, not truncated to int32
    assert a["bands"][:12] == true.card.band_names


def test_bigearthnet_labels_are_19_class_multi_hot(tree):
    root = tree("bigearthnet", "old")
    data = split("bigearthnet", root, "train")
    card = data.card
    union = torch.zeros(19)
    for i in range(len(data)):
        union += data[i]["label"]
    assert bool((union > 0).all())  # every class appears in train
    names = json.loads(next(data.s2_folders[0].glob("*.json")).read_text())["labels"]
    assert "Airports" in names  # a 43-class label without a 19-class counterpart...
    index43 = {n: i for i, n in enumerate(card["classes_43"])}
    mapping = {int(k): int(v) for k, v in card["label_mapping_43_to_19"].items()}
    expected = sorted({mapping[index43[n]] for n in names if index43[n] in mapping})
    assert data[0]["label"].nonzero().flatten().tolist() == expected  # ...is dropped


def test_bigearthnet_rows_without_s1_are_zero_filled_and_listed(tree):
    data = split("bigearthnet", tree("bigearthnet", "old"), "val", modalities=("radar",))
    assert data.rows_without_radar.tolist() == [1]
    assert torch.count_nonzero(data[1]["image"]) == 0
    assert torch.count_nonzero(data[0]["image"]) > 0


def test_so2sat_reads_sen2_as_channels_first_with_argmax_labels(tree):
    import h5py

    root = tree("so2sat", "old")
    data = split("so2sat", root, "val")
    with h5py.File(root / "culture_10" / "training.h5") as f:
        row = int(data.indices[1])
        expected = np.moveaxis(f["sen2"][row], -1, 0).astype(np.float32)
        label = int(f["label"][row].argmax())
    sample = data[1]
    np.testing.assert_array_equal(sample["image"].numpy(), expected)
    assert int(sample["label"]) == label == data.labels[1]


# ----------------------------------------------------------------------------- check_root


def test_a_missing_root_names_the_files_and_how_to_get_them(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        open_split("so2sat", root, "train")
    message = str(info.value)
    assert "does not exist" in message
    assert "culture_10/training.h5" in message and "culture_10/testing.h5" in message
    assert f"gfm-bench download so2sat --root {root}" in message
    assert "https://huggingface.co/datasets/GFM-Bench/So2Sat" in message
    assert isinstance(info.value, FileNotFoundError)


def test_an_incomplete_root_names_exactly_what_is_missing(tree, tmp_path):
    root = tmp_path / "eurosat"
    shutil.copytree(tree("eurosat", "old"), root)
    (root / "eurosat-val.txt").unlink()
    shutil.rmtree(root / "EuroSAT" / "Forest")
    with pytest.raises(DatasetNotFoundError) as info:
        check_root("eurosat", root)
    assert info.value.missing == ("eurosat-val.txt", "EuroSAT/Forest/")
    message = str(info.value)
    assert "is incomplete" in message and "lacks 2 of 14" in message
    assert "eurosat-val.txt" in message and "EuroSAT/Forest/" in message
    assert "eurosat-train.txt" not in message.split("Missing")[1].split("Download")[0]
    assert "gfm-bench download eurosat" in message


def test_a_long_list_of_missing_entries_is_cut_with_a_count(tmp_path):
    (tmp_path / "eurosat-train.txt").write_text("")
    with pytest.raises(DatasetNotFoundError) as info:
        check_root("eurosat", tmp_path)
    assert len(info.value.missing) == 13
    assert "... and 3 more" in str(info.value)


def test_layouts_are_told_apart_by_their_csv_columns(tree, tmp_path):
    assert check_root("dfc2020", tree("dfc2020", "final")).base.name == "DFC2020"
    assert check_root("dfc2020", tree("dfc2020", "old")).layout.name == "old"
    (tmp_path / "metadata.csv").write_text("a,b,split\n")
    with pytest.raises(DatasetNotFoundError, match="metadata.csv with columns optical_path"):
        check_root("dfc2020", tmp_path)
