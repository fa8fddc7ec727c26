"""Scene classification: the LightningModule on the bundled EuroSAT-MS scenes, its
checkpoints, LoRA, and the classify-scenes / predict-scene commands."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch

from geofm.cli import main
from geofm.data.datamodules import SceneFolderDataModule
from geofm.data.sample import collate_samples
from geofm.models.checkpoints import read_torch_file
from geofm.tasks.scene import SceneClassificationTask

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "classify" / "eurosat_less_vit.yaml"
SMALL = {"depth": 2, "embed_dim": 64, "num_heads": 2, "rank": 2}


def _trainer(tmp_path, epochs=2) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        accelerator="cpu",
        log_every_n_steps=1,
    )


def test_task_takes_classes_bands_and_statistics_from_the_card():
    task = SceneClassificationTask("less_vit_tiny", num_classes=10, model_kwargs=SMALL)
    assert task.classes[0] == "AnnualCrop" and task.bands[-1] == "B8A"
    assert task.wavelengths.shape == (13,) and task.mean.shape == (13,)
    x = torch.full((2, 13, 64, 64), 1000.0)
    assert task(x).shape == (2, 10)
    with pytest.raises(ValueError, match="takes 13 bands"):
        task(x[:, :4])
    sub = SceneClassificationTask(
        "less_vit_tiny", num_classes=3, bands=["B04", "B03", "B02"], model_kwargs=SMALL
    )
    assert sub.classes == ["class_0", "class_1", "class_2"]
    assert sub.wavelengths[0] > sub.wavelengths[2]  # red first, as asked
    with pytest.raises(ValueError, match="normalization"):
        SceneClassificationTask(normalization="minmax")


def test_training_saves_a_checkpoint_that_classifies_raw_scenes_alone(eurosat_dir, tmp_path):
    pl.seed_everything(0)
    data = SceneFolderDataModule(
        eurosat_dir, batch_size=10, val_fraction=0.34, test_fraction=0.34, augment=True
    )
    task = SceneClassificationTask("less_vit_tiny", num_classes=10, model_kwargs=SMALL)
    trainer = _trainer(tmp_path)
    before = {k: v.clone() for k, v in task.state_dict().items()}
    trainer.fit(task, datamodule=data)
    assert any(
        not torch.equal(before[k], v)
        for k, v in task.state_dict().items()
        if k.startswith("encoder.")
    )
    trainer.test(task, datamodule=data, verbose=False)
    assert task.test_confusion.sum() == 10 and task.test_confusion.shape == (10, 10)
    ckpt = tmp_path / "scene.ckpt"
    trainer.save_checkpoint(ckpt)
    payload = read_torch_file(ckpt)
    meta = payload["geofm_scene"]
    assert meta["bands"] == task.bands and meta["tile"] == 64 and meta["gsd_m"] == 10
    assert meta["model_config"]["depth"] == 2
    back = SceneClassificationTask.from_checkpoint(ckpt)
    batch = collate_samples([data.dataset[i] for i in range(4)])
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(back(batch["image"]), task(batch["image"]))


def test_lora_trains_only_the_adapters_head_and_norms_and_merges(eurosat_dir, tmp_path):
    pl.seed_everything(0)
    task = SceneClassificationTask(
        "less_vit_tiny", num_classes=10, model_kwargs=SMALL, lora={"rank": 4}
    )
    trainable = [n for n, p in task.named_parameters() if p.requires_grad]
    assert trainable and all(("lora_" in n) or ("norm" in n) or ("head" in n) for n in trainable)
    frozen = {n: p.clone() for n, p in task.named_parameters() if not p.requires_grad}
    data = SceneFolderDataModule(eurosat_dir, batch_size=10, val_fraction=0.34, test_fraction=0.34)
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(task, datamodule=data)
    assert all(torch.equal(p, frozen[n]) for n, p in task.named_parameters() if n in frozen)
    ckpt = tmp_path / "lora.ckpt"
    trainer.save_checkpoint(ckpt)
    merged = SceneClassificationTask.from_checkpoint(ckpt)
    from geofm.models.lora import lora_layers

    assert not lora_layers(merged.encoder)  # plain layers: the base model's cost
    assert merged.hparams.lora is None
    x = collate_samples([data.dataset[i] for i in range(3)])["image"]
    task.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(x), task(x), rtol=1e-4, atol=1e-4)
    # saved again and loaded again: the updates are not applied a second time
    payload = read_torch_file(ckpt)
    payload["state_dict"] = merged.state_dict()
    payload["hyper_parameters"] = dict(merged.hparams)
    again = tmp_path / "again.ckpt"
    torch.save(payload, again)
    with torch.no_grad():
        torch.testing.assert_close(
            SceneClassificationTask.from_checkpoint(again)(x), task(x), rtol=1e-4, atol=1e-4
        )


def test_scenes_of_another_size_than_the_tile_are_refused(eurosat_dir, tmp_path):
    task = SceneClassificationTask("less_vit_tiny", num_classes=10, model_kwargs=SMALL, tile=32)
    data = SceneFolderDataModule(eurosat_dir, batch_size=10, val_fraction=0.34, test_fraction=0.34)
    with pytest.raises(ValueError, match="scenes are 64 x 64 pixels but tile=32"):
        _trainer(tmp_path, epochs=1).fit(task, datamodule=data)


def test_classify_scenes_then_map_the_sentinel2_tile(tmp_path, capsys, s2_tile_dir):
    root = tmp_path / "run"
    code = main(
        [
            "classify-scenes",
            "--config",
            str(CONFIG),
            "--trainer.max_epochs",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(root),
            "--trainer.logger",
            "false",  # checkpoints go to <root>/checkpoints
            "--model.model_kwargs",
            '{"depth": 2, "embed_dim": 64, "num_heads": 2}',
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "test accuracy" in out and "on 10 scenes" in out
    assert out.count("AnnualCrop") >= 1 and "confusion matrix" in out
    best = next((root / "checkpoints").glob("best-*.ckpt"))
    assert str(best) in out
    assert f"geofm map IN OUT.tif --checkpoint {best}" in out  # what to run next
    target = tmp_path / "s2_map.tif"
    code = main(
        [
            "map",
            str(s2_tile_dir),
            str(target),
            "--checkpoint",
            str(best),
            "--model",
            "less_vit_tiny",
            "--stride",
            "32",
            "--no-progress",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "24 x 48 cells" in out and f"wrote {target}" in out
    with (
        rasterio.open(target) as dst,
        rasterio.open(s2_tile_dir / "T33UUU_20170216T102101_B02.jp2") as src,
    ):
        assert dst.crs == src.crs and dst.crs.to_epsg() == 32633
        assert dst.transform == src.transform * rasterio.Affine.scale(32)
        labels = dst.read(1)
        assert labels.max() < 10
    # the deprecated name still maps, and says what replaces it
    code = main(
        [
            "predict-scene",
            str(s2_tile_dir),
            str(tmp_path / "old.tif"),
            "--checkpoint",
            str(best),
            "--stride",
            "32",
            "--no-progress",
        ]
    )
    assert code == 0 and "use `geofm map" in capsys.readouterr().err
    # refused: the output exists; a wrong --model; bands missing from the input
    code = main(["map", str(s2_tile_dir), str(target), "--checkpoint", str(best), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "exist" in err and "--overwrite" in err
    code = main(
        [
            "map",
            str(s2_tile_dir),
            str(tmp_path / "x.tif"),
            "--checkpoint",
            str(best),
            "--model",
            "joint_vit_tiny",
            "--no-progress",
        ]
    )
    assert code == 2 and "holds a 'less_vit_tiny'" in capsys.readouterr().err
    code = main(
        [
            "map",
            str(REPO / "datasets/samples/landsat_rgb/RGB.byte.tif"),
            str(tmp_path / "y.tif"),
            "--checkpoint",
            str(best),
            "--card",
            "landsat_rgb",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "missing B01, B02" in err
    assert not (tmp_path / "y.tif").exists()
    assert np.isin(labels, np.arange(10)).mean() > 0.99  # a label nearly everywhere
