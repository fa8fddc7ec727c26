"""MAE pretraining as a LightningModule, trained for a few steps on the real EuroSAT samples."""

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from geofm.data.datasets import SceneFolderDataset
from geofm.data.sample import collate_samples
from geofm.data.transforms import MAEScaleNormalize
from geofm.tasks.base import warmup_cosine
from geofm.tasks.mae import MAEPretrainTask

TINY = dict(
    model="less_vit_tiny",
    model_kwargs={"depth": 2},
    decoder_dim=64,
    decoder_depth=1,
    decoder_heads=2,
)


def test_warmup_then_cosine():
    factors = [warmup_cosine(s, 100, 10) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert warmup_cosine(100, 100, 10, min_factor=0.1) == pytest.approx(0.1)


@pytest.fixture(scope="module")
def eurosat_batches(eurosat_dir):
    dataset = SceneFolderDataset(
        eurosat_dir, card="eurosat_ms", transforms=MAEScaleNormalize.from_card("eurosat_ms")
    )
    return DataLoader(
        dataset,
        batch_size=6,
        shuffle=True,
        collate_fn=collate_samples,
        generator=torch.Generator().manual_seed(0),
    )


def test_a_few_steps_on_eurosat_lower_the_loss(eurosat_batches, tmp_path):
    pl.seed_everything(0)
    task = MAEPretrainTask(**TINY, lr=2e-3, warmup_fraction=0.1)
    batch = next(iter(eurosat_batches))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = task(batch, generator=generator).loss.item()
    trainer = pl.Trainer(
        max_steps=25,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        default_root_dir=tmp_path,
        limit_val_batches=0,
    )
    trainer.fit(task, train_dataloaders=DataLoader([batch] * 25, batch_size=None))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        after = task(batch, generator=generator).loss.item()
    assert after < 0.7 * before, (before, after)


def test_every_epoch_draws_new_windows_even_in_persistent_workers(tmp_path):
    from geofm.data.datamodules import PretrainDataModule

    class Record(pl.Callback):
        seen: list = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.seen.append((trainer.current_epoch, float(batch["image"].sum())))

    record = Record()
    data = PretrainDataModule(
        [
            {
                "path": "samples/salinas_a/SalinasA_corrected.hdr",
                "card": "salinas_a",
                "size": 16,
                "windows": 4,
            }
        ],
        batch_size=2,
        val_windows=0,
        num_workers=1,
    )
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[record],
    )
    trainer.fit(MAEPretrainTask(**TINY), datamodule=data)
    epochs = [sorted(v for e, v in record.seen if e == k) for k in (0, 1)]
    assert len(epochs[0]) == len(epochs[1]) == 2 and epochs[0] != epochs[1]
