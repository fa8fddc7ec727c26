"""The scene DataModule on the real EuroSAT-MS samples: splits and one batch of every loader."""

import numpy as np
import pytest
import torch

from geofm.data.datamodules import SceneFolderDataModule

# --------------------------------------------------------------------------------------------
# SceneFolderDataModule


@pytest.fixture()
def eurosat_dm(eurosat_dir):
    dm = SceneFolderDataModule(
        eurosat_dir, batch_size=4, val_fraction=1 / 3, test_fraction=1 / 3, seed=0
    )
    dm.setup("fit")
    return dm


def test_scene_folder_loaders_yield_batches_of_the_expected_shape(eurosat_dm):
    for loader in (
        eurosat_dm.train_dataloader(),
        eurosat_dm.val_dataloader(),
        eurosat_dm.test_dataloader(),
    ):
        batch = next(iter(loader))
        assert batch["image"].shape == (4, 13, 64, 64)
        assert batch["image"].dtype == torch.float32
        assert batch["label"].shape == (4,) and batch["label"].dtype == torch.int64
        assert batch["wavelengths"].shape == (13,)
        assert batch["valid"].shape == (4, 64, 64)
    assert eurosat_dm.num_classes == 10


def test_scene_folder_split_is_stratified_and_disjoint(eurosat_dm):
    targets = np.array(eurosat_dm.dataset.targets)
    split = eurosat_dm.split
    for part in split:
        assert np.bincount(targets[part], minlength=10).tolist() == [1] * 10
    assert len(set(split.train) | set(split.val) | set(split.test)) == 30


def test_scene_folder_split_follows_the_seed(eurosat_dir):
    def split_of(seed):
        dm = SceneFolderDataModule(eurosat_dir, val_fraction=1 / 3, test_fraction=1 / 3, seed=seed)
        dm.setup()
        return dm.split

    assert all(np.array_equal(a, b) for a, b in zip(split_of(1), split_of(1), strict=True))
    assert not np.array_equal(split_of(1).train, split_of(2).train)


def test_scene_folder_train_transforms_touch_only_training_samples(eurosat_dir):
    dm = SceneFolderDataModule(
        eurosat_dir,
        batch_size=2,
        val_fraction=1 / 3,
        test_fraction=1 / 3,
        train_transforms=lambda s: {**s, "image": s["image"] * 0},
    )
    dm.setup()
    assert next(iter(dm.train_dataloader()))["image"].abs().sum() == 0
    assert next(iter(dm.val_dataloader()))["image"].abs().sum() > 0


def test_scene_folder_fractions_that_leave_no_training_data_are_rejected(eurosat_dir):
    with pytest.raises(ValueError, match=r"0.5 \+ 0.5"):
        SceneFolderDataModule(eurosat_dir, val_fraction=0.5, test_fraction=0.5)
