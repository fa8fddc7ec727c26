"""DataModules on the real samples: splits, one batch of every loader, a Lightning run."""

import lightning as L
import numpy as np
import pytest
import torch

from geofm.data.datamodules import PixelPatchDataModule, SceneFolderDataModule
from geofm.data.sample import IGNORE_INDEX
from geofm.data.splits import check_no_leakage

# --------------------------------------------------------------------------------------------
# SceneFolderDataModule


@pytest.fixture()
def eurosat_dm(eurosat_dir):
    dm = SceneFolderDataModule(eurosat_dir, batch_size=4, val_fraction=1 / 3,
                               test_fraction=1 / 3, seed=0)
    dm.setup("fit")
    return dm


def test_scene_folder_loaders_yield_batches_of_the_expected_shape(eurosat_dm):
    for loader in (eurosat_dm.train_dataloader(), eurosat_dm.val_dataloader(),
                   eurosat_dm.test_dataloader()):
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
        dm = SceneFolderDataModule(eurosat_dir, val_fraction=1 / 3, test_fraction=1 / 3,
                                   seed=seed)
        dm.setup()
        return dm.split

    assert all(np.array_equal(a, b) for a, b in zip(split_of(1), split_of(1), strict=True))
    assert not np.array_equal(split_of(1).train, split_of(2).train)


def test_scene_folder_train_transforms_touch_only_training_samples(eurosat_dir):
    dm = SceneFolderDataModule(eurosat_dir, batch_size=2, val_fraction=1 / 3,
                               test_fraction=1 / 3,
                               train_transforms=lambda s: {**s, "image": s["image"] * 0})
    dm.setup()
    assert next(iter(dm.train_dataloader()))["image"].abs().sum() == 0
    assert next(iter(dm.val_dataloader()))["image"].abs().sum() > 0


def test_scene_folder_fractions_that_leave_no_training_data_are_rejected(eurosat_dir):
    with pytest.raises(ValueError, match=r"0.5 \+ 0.5"):
        SceneFolderDataModule(eurosat_dir, val_fraction=0.5, test_fraction=0.5)


# --------------------------------------------------------------------------------------------
# PixelPatchDataModule


def salinas_dm(salinas_a_dir, **kwargs):
    options = {"card": "salinas_a", "radius": 2, "train": 0.5, "val": 0.2, "batch_size": 8,
               "block_size": 12, "seed": 0, **kwargs}
    return PixelPatchDataModule(salinas_a_dir / "SalinasA_corrected.hdr",
                                salinas_a_dir / "SalinasA_gt.mat", **options)


@pytest.mark.parametrize("split", ["random", "spatial"])
def test_pixel_patch_loaders_yield_batches_of_the_expected_shape(salinas_a_dir, split):
    dm = salinas_dm(salinas_a_dir, split=split)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        assert batch["image"].shape == (8, 204, 5, 5)
        assert batch["label"].shape == (8,) and batch["label"].dtype == torch.int64
        assert batch["mask"].shape == (8, 5, 5)
        assert batch["center"].shape == (8, 2)
        assert torch.equal(batch["label"], batch["mask"][:, 2, 2])
        assert bool((batch["label"] != IGNORE_INDEX).all())
    assert dm.num_classes == 6


def test_pixel_patch_random_split_is_stratified(salinas_a_dir):
    dm = salinas_dm(salinas_a_dir, split="random", train=10, val=5)
    dm.setup()
    for part, count in (("train", 10), ("val", 5)):
        assert np.bincount(dm.parts[part].labels).tolist() == [count] * 6
    assert len(dm.parts["test"]) == 5348 - 6 * 15


def test_pixel_patch_spatial_split_keeps_training_pixels_out_of_eval_windows(salinas_a_dir):
    dm = salinas_dm(salinas_a_dir, split="spatial", radius=3)
    dm.setup()
    check_no_leakage(dm.coords["train"], dm.coords["val"], 3)
    check_no_leakage(dm.coords["train"], dm.coords["test"], 3)
    dropped = dm.spatial_split.dropped
    assert sum(len(c) for c in dm.coords.values()) + dropped["val"] + dropped["test"] == 5348


def test_pixel_patch_unknown_split_lists_the_choices(salinas_a_dir):
    with pytest.raises(ValueError, match="random, spatial"):
        salinas_dm(salinas_a_dir, split="checkerboard")


def test_pixel_patch_spatial_split_rejects_per_class_counts(salinas_a_dir):
    with pytest.raises(TypeError, match="fractions"):
        salinas_dm(salinas_a_dir, split="spatial", train=10, val=5)


class _CentrePixelClassifier(L.LightningModule):
    def __init__(self, bands: int, classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(bands, classes)

    def _loss(self, batch):
        centre = batch["image"][:, :, batch["image"].shape[-1] // 2, batch["image"].shape[-1] // 2]
        return torch.nn.functional.cross_entropy(self.head(centre / 1000), batch["label"])

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch), batch_size=len(batch["label"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_pixel_patch_datamodule_drives_a_lightning_trainer(salinas_a_dir):
    dm = salinas_dm(salinas_a_dir, split="spatial")
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(_CentrePixelClassifier(204, dm.num_classes), datamodule=dm)
    assert trainer.state.finished
