import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from geofm.data.datasets import SceneFolderDataset
from geofm.data.hyperspectral import open_envi
from geofm.data.sample import collate_samples
from geofm.data.windows import (
    BandSetBatchSampler,
    EpochConcatDataset,
    RandomWindowDataset,
    scene_header,
)


@pytest.fixture()
def salinas_hdr(salinas_a_dir):
    return salinas_a_dir / "SalinasA_corrected.hdr"


def test_windows_lie_inside_the_scene_and_match_a_full_read(salinas_hdr):
    ds = RandomWindowDataset([salinas_hdr], size=32, length=20, card="salinas_a")
    assert scene_header(salinas_hdr) == (204, 83, 86)
    full = open_envi(salinas_hdr, card="salinas_a")["image"]
    for i in (0, 7, 19):
        _, (col, row, w, h) = ds.window(i)
        assert 0 <= row <= 83 - 32 and 0 <= col <= 86 - 32 and (w, h) == (32, 32)
        torch.testing.assert_close(ds[i]["image"], full[:, row : row + 32, col : col + 32])


def test_windows_are_reproducible_and_change_with_the_epoch(salinas_hdr):
    a = RandomWindowDataset([salinas_hdr], size=16, length=50, seed=3, card="salinas_a")
    b = RandomWindowDataset([salinas_hdr], size=16, length=50, seed=3, card="salinas_a")
    first = [a.window(i)[1] for i in range(50)]
    assert first == [b.window(i)[1] for i in range(50)]
    a.set_epoch(1)
    assert first != [a.window(i)[1] for i in range(50)]


def test_a_scene_smaller_than_the_window_is_named(salinas_hdr):
    with pytest.raises(ValueError, match=r"83 x 86 pixels, smaller than the 90 x 90 window"):
        RandomWindowDataset([salinas_hdr], size=90, length=1)


def test_unsupported_and_missing_scenes_are_refused(tmp_path, salinas_a_dir):
    with pytest.raises(ValueError, match="GeoTIFF/JPEG 2000 files or ENVI cubes"):
        RandomWindowDataset([salinas_a_dir / "SalinasA_gt.mat"], size=8, length=1)
    with pytest.raises(FileNotFoundError, match="nowhere.tif"):
        RandomWindowDataset([tmp_path / "nowhere.tif"], size=8, length=1)


def test_nodata_inside_a_window_is_marked_invalid(landsat_tif):
    ds = RandomWindowDataset([landsat_tif], size=64, length=40, card="landsat_rgb")
    assert any(not bool(ds[i]["valid"].all()) for i in range(40))  # the scene has black borders


def test_batches_never_mix_band_sets_and_cover_every_index_once():
    keys = ["a"] * 7 + ["b"] * 5 + ["c"] * 1
    sampler = BandSetBatchSampler(keys, batch_size=3, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 2 + 1
    assert all(len({keys[i] for i in batch}) == 1 for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(13))
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_drop_last_drops_each_band_sets_incomplete_batch():
    sampler = BandSetBatchSampler([0] * 7 + [1] * 5, batch_size=3, drop_last=True)
    assert len(sampler) == len(list(sampler)) == 3
    assert all(len(b) == 3 for b in sampler)


def test_eurosat_scenes_and_salinas_windows_load_in_one_run(eurosat_dir, salinas_hdr):
    both = ConcatDataset(
        [
            SceneFolderDataset(eurosat_dir, card="eurosat_ms"),
            RandomWindowDataset([salinas_hdr], size=64, length=6, card="salinas_a"),
        ]
    )
    sampler = BandSetBatchSampler.for_datasets(both, batch_size=4, seed=0)
    loader = DataLoader(both, batch_sampler=sampler, collate_fn=collate_samples)
    seen = {tuple(batch["image"].shape[1:]) for batch in loader}
    assert seen == {(13, 64, 64), (204, 64, 64)}


def test_replicas_take_disjoint_equal_shares_of_the_same_epoch():
    keys = [0] * 10 + [1] * 7
    shares = [list(BandSetBatchSampler(keys, 2, seed=4, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == len(
        BandSetBatchSampler(keys, 2, num_replicas=3, rank=0)
    )
    flat = [i for s in shares for b in s for i in b]
    assert len(flat) == len(set(flat))


def test_lightning_sets_the_epoch_and_the_epoch_travels_with_the_indices(salinas_hdr):
    from lightning.fabric.utilities.data import _set_sampler_epoch

    windows = RandomWindowDataset([salinas_hdr], size=16, length=4, card="salinas_a")
    both = EpochConcatDataset([windows])
    sampler = BandSetBatchSampler.for_datasets(both, batch_size=2, with_epoch=True)
    loader = DataLoader(both, batch_sampler=sampler, collate_fn=collate_samples)
    _set_sampler_epoch(loader, 5)  # what Lightning's fit loop calls each epoch
    assert sampler.epoch == 5
    assert all(item[0] == 5 for batch in sampler for item in batch)
    # the dataset copy in a worker keeps epoch 0; the (epoch, index) item still reads epoch 5
    torch.testing.assert_close(
        both[(5, 3)]["image"],
        open_envi(salinas_hdr, window=windows.window(3, epoch=5)[1], card="salinas_a")["image"],
    )
    assert windows.window(3, epoch=5) != windows.window(3, epoch=0)


def test_a_distributed_sampler_in_place_of_keys_is_refused_with_advice():
    from torch.utils.data import SequentialSampler

    with pytest.raises(TypeError, match="use_distributed_sampler=False"):
        BandSetBatchSampler(SequentialSampler(range(4)), batch_size=2)


def test_files_whose_band_count_differs_from_the_card_are_refused(s2_tile_dir):
    band_file = sorted(s2_tile_dir.glob("*B02*.jp2"))[0]
    with pytest.raises(ValueError, match=r"has 1 band\(s\) but card 's2_l1c_t33uuu' has 13"):
        RandomWindowDataset([band_file], size=64, length=1, card="s2_l1c_t33uuu")


def test_an_unreadable_file_is_skipped_with_a_warning_and_reported(tmp_path, eurosat_dir):
    good = sorted(eurosat_dir.rglob("*.tif"))[:2]
    bad = tmp_path / "truncated.tif"
    data = good[0].read_bytes()
    bad.write_bytes(data)
    ds = RandomWindowDataset([good[0], bad, good[1]], size=64, length=30, card="eurosat_ms")
    bad.write_bytes(data[: len(data) // 2])  # goes bad mid-run: header intact, pixels gone
    with pytest.warns(UserWarning, match="skipping unreadable file .*truncated.tif"):
        samples = [ds[i] for i in range(30)]
    skipped = [s for s in samples if "skipped" in s]
    assert len(skipped) == 1 and skipped[0]["skipped"] == (str(bad),)  # then never drawn
    batch = collate_samples([s for s in samples if "skipped" not in s][:3] + skipped)
    assert batch["skipped"] == [str(bad)]
    assert ds.unreadable == {bad}


def test_a_run_of_failures_raises_naming_the_files(tmp_path, eurosat_dir):
    data = sorted(eurosat_dir.rglob("*.tif"))[0].read_bytes()
    scene = tmp_path / "scene.tif"
    scene.write_bytes(data)
    ds = RandomWindowDataset([scene], size=64, length=3, card="eurosat_ms", max_failures=3)
    scene.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="scene.tif"):
        ds[0]


def test_a_file_unreadable_from_the_start_is_skipped_but_all_unreadable_is_an_error(
    tmp_path, eurosat_dir
):
    good = sorted(eurosat_dir.rglob("*.tif"))[0]
    data = good.read_bytes()
    bad = tmp_path / "truncated.tif"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="truncated.tif"):
        ds = RandomWindowDataset([bad, good], size=64, length=4, card="eurosat_ms")
    assert ds.unreadable == {bad} and all("skipped" not in ds[i] for i in range(4))
    with pytest.raises(OSError, match="truncated.tif"):
        RandomWindowDataset([bad], size=64, length=4, card="eurosat_ms")


def test_pretraining_data_without_statistics_says_how_to_get_them():
    from geofm.data.datamodules import mae_transforms

    # the one transform builder of both pretraining data modules
    with pytest.raises(ValueError, match=r"no normalisation statistics.*geofm stats"):
        mae_transforms(["eurosat_ms", "s2_l1c_t33uuu"], flips=True)


def test_windows_per_epoch_default_to_the_tiles_of_the_scenes(salinas_hdr):
    assert len(RandomWindowDataset([salinas_hdr], size=32, card="salinas_a")) == 2 * 2


def test_pretraining_sources_that_do_not_exist_are_named(tmp_path):
    from geofm.data.datamodules import PretrainDataModule

    dm = PretrainDataModule([{"path": str(tmp_path / "nowhere"), "card": "eurosat_ms"}])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        dm.setup()
    empty = tmp_path / "empty"
    empty.mkdir()
    dm = PretrainDataModule([{"path": str(empty), "card": "eurosat_ms"}])
    with pytest.raises(FileNotFoundError, match="no GeoTIFF, JPEG 2000 or ENVI"):
        dm.setup()


def test_a_card_that_cannot_name_the_bands_fails_at_construction(salinas_hdr):
    with pytest.raises(ValueError, match="has no wavelengths"):
        RandomWindowDataset([salinas_hdr], size=16, length=4)
