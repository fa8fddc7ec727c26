"""Two-process DDP scene classification on the CPU (gloo), run by test_ddp.py in a
subprocess.

Usage: python tests/tasks/ddp_scene.py SAMPLES_DIR OUT_DIR. Each rank writes
``rank<r>.pt`` with the validation labels and predictions it saw, the confusion matrix the
task computed and the metrics it logged.
"""

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from geofm.data.datamodules import SceneFolderDataModule
from geofm.tasks.scene import SceneClassificationTask


class Record(pl.Callback):
    def __init__(self, out: Path):
        self.out, self.labels, self.preds = out, [], []

    @torch.no_grad()
    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        logits = pl_module(batch["image"], batch["wavelengths"], batch["gsd"])
        self.labels.append(batch["label"].cpu())
        self.preds.append(logits.argmax(1).cpu())

    def on_validation_end(self, trainer, pl_module):
        torch.save(
            {
                "labels": torch.cat(self.labels),
                "preds": torch.cat(self.preds),
                "confusion": pl_module.confusions["val"],
                "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
                "world": trainer.world_size,
            },
            self.out / f"rank{trainer.global_rank}.pt",
        )


def main(samples: Path, out: Path) -> None:
    pl.seed_everything(0)
    task = SceneClassificationTask(
        "less_vit_tiny",
        num_classes=10,
        model_kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2, "rank": 2},
    )
    # 1 validation scene per class: 10, 5 per rank (an even split, so no padding)
    data = SceneFolderDataModule(samples, batch_size=2, val_fraction=0.34, test_fraction=0.34)
    trainer = pl.Trainer(
        strategy="ddp",
        devices=2,
        accelerator="cpu",
        max_epochs=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
        callbacks=[Record(out)],
    )
    trainer.fit(task, datamodule=data)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
