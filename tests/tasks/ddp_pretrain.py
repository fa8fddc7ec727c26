"""Two-process DDP pretraining on the CPU (gloo), run by test_ddp.py in a subprocess.

Usage: python tests/tasks/ddp_pretrain.py OUT_DIR. Each rank writes ``rank<r>.pt`` with its
final weights and the window indices it trained on.
"""

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from geofm.data.datamodules import PretrainDataModule
from geofm.tasks.mae import MAEPretrainTask


class Record(pl.Callback):
    def __init__(self, out: Path):
        self.out, self.seen = out, []

    def on_fit_start(self, trainer, pl_module):
        self.initial = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((trainer.current_epoch, float(batch["image"].sum())))

    def on_fit_end(self, trainer, pl_module):
        state = {k: v.detach().cpu() for k, v in pl_module.state_dict().items()}
        torch.save(
            {
                "state": state,
                "initial": self.initial,
                "seen": self.seen,
                "world": trainer.world_size,
            },
            self.out / f"rank{trainer.global_rank}.pt",
        )


def main(out: Path) -> None:
    pl.seed_everything(0)
    task = MAEPretrainTask(
        model="less_vit_tiny",
        model_kwargs={"depth": 1},
        decoder_dim=32,
        decoder_depth=1,
        decoder_heads=2,
        lr=1e-3,
    )
    data = PretrainDataModule(
        [
            {"path": "samples/eurosat_ms", "card": "eurosat_ms", "size": 64, "windows": 8},
            {
                "path": "samples/salinas_a/SalinasA_corrected.hdr",
                "card": "salinas_a",
                "size": 32,
                "windows": 4,
            },
        ],
        batch_size=2,
        val_windows=0,
    )
    trainer = pl.Trainer(
        strategy="ddp",
        devices=2,
        accelerator="cpu",
        max_epochs=2,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
        callbacks=[Record(out)],
    )
    trainer.fit(task, datamodule=data)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
