"""Hyperspectral masked-autoencoder pretraining of LESS ViT as a LightningModule.

The recipe of Si et al., "Towards Scalable Foundation Model for Multi-modal and Hyperspectral
Geospatial Data", 2025: positions masked at 0.75 and bands at 0.5 (at least 2 kept),
position loss plus band loss, AdamW (lr 1e-4, betas 0.9/0.95, weight decay 0.05) with a 5%
linear warm-up and cosine decay (the optimiser and schedule of
:class:`~geofm.tasks.base.BaseTask`). Gradient clipping (1.0 in the paper), precision (bf16),
devices and strategy are trainer settings, not code here.

A batch is a collated sample dict (:func:`geofm.data.sample.collate_samples`): ``image``
(B, C, H, W), ``wavelengths`` (C,), ``gsd`` (B,), optionally ``valid`` (B, H, W).
"""

from __future__ import annotations

from typing import Any

import torch

from geofm.models import create_model
from geofm.models.checkpoints import tag_lightning_checkpoint
from geofm.models.less_mae import LESSMAE, MAEOutput
from geofm.tasks.base import BaseTask

__all__ = ["MAEPretrainTask"]


class MAEPretrainTask(BaseTask):
    """Masked-autoencoder pretraining of a registry LESS ViT.

    Args:
        model: registry name of the encoder (``less_vit_tiny``, ``less_vit_small`` ...).
        model_kwargs: overrides for it (``rank``, ``perception_radius_m``, ``drop_path_rate``).
        decoder_dim, decoder_depth, decoder_heads: the LESS decoder (paper: 512, 4, 16).
        mask_ratio, band_mask_ratio, min_bands_kept: the masking (paper: 0.75, 0.5, 2).
        norm_pix_loss: reconstruct pixels normalised per patch.
        lr, betas, weight_decay: AdamW (paper: 1e-4, (0.9, 0.95), 0.05).
        warmup_fraction: share of all optimiser steps spent warming up (paper: 0.05).
        min_lr_factor: where the cosine ends, as a fraction of ``lr``.
    """

    def __init__(
        self,
        model: str = "less_vit_tiny",
        model_kwargs: dict[str, Any] | None = None,
        decoder_dim: int = 512,
        decoder_depth: int = 4,
        decoder_heads: int = 16,
        mask_ratio: float = 0.75,
        band_mask_ratio: float = 0.5,
        min_bands_kept: int = 2,
        norm_pix_loss: bool = False,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        min_lr_factor: float = 0.0,
    ):
        super().__init__(
            lr=lr,
            weight_decay=weight_decay,
            betas=betas,
            warmup_fraction=warmup_fraction,
            min_lr_factor=min_lr_factor,
        )
        self.save_hyperparameters()
        encoder = create_model(model, **(model_kwargs or {}))
        self.mae = LESSMAE(
            encoder,
            decoder_dim=decoder_dim,
            decoder_depth=decoder_depth,
            decoder_heads=decoder_heads,
            mask_ratio=mask_ratio,
            band_mask_ratio=band_mask_ratio,
            min_bands_kept=min_bands_kept,
            norm_pix_loss=norm_pix_loss,
        )

    @property
    def encoder(self):
        return self.mae.encoder

    def forward(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> MAEOutput:
        return self.mae(
            batch["image"],
            batch["wavelengths"],
            batch["gsd"],
            valid=batch.get("valid"),
            generator=generator,
        )

    def _log_losses(self, stage: str, out: MAEOutput, batch_size: int) -> None:
        on_step = stage == "train"
        self.log(
            f"{stage}/loss",
            out.loss,
            prog_bar=True,
            on_step=on_step,
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=not on_step,
        )
        self.log_dict(
            {f"{stage}/position_loss": out.position_loss, f"{stage}/band_loss": out.band_loss},
            on_step=False,
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=True,
        )

    def _train_generator(self, batch, batch_idx: int) -> torch.Generator:
        """Masks drawn from (epoch, batch, rank): different on every process (seeding all
        ranks alike would give them the same masks) and the same again after a resume."""
        seed = hash((self.current_epoch, batch_idx, self.global_rank)) & (2**62 - 1)
        return torch.Generator(device=batch["image"].device).manual_seed(seed)

    def training_step(self, batch, batch_idx):
        out = self(batch, generator=self._train_generator(batch, batch_idx))
        self._log_losses("train", out, batch["image"].shape[0])
        # unreadable files the data passed over (each also warned about, by name)
        self.log(
            "train/skipped_reads",
            float(len(batch.get("skipped", ()))),
            on_step=False,
            on_epoch=True,
            reduce_fx="sum",
            sync_dist=True,
        )
        return out.loss

    def validation_step(self, batch, batch_idx):
        # the same masks every epoch, so validation losses compare across epochs
        generator = torch.Generator(device=batch["image"].device).manual_seed(batch_idx)
        out = self(batch, generator=generator)
        self._log_losses("val", out, batch["image"].shape[0])
        return out.loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        tag_lightning_checkpoint(checkpoint, "pretraining")
        # what the encoder was trained on travels with its weights (see `geofm export`)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if callable(getattr(datamodule, "data_config", None)):
            checkpoint["geofm_data"] = datamodule.data_config()
