"""Scene classification: fine-tune any registry encoder, fully or with LoRA.

:class:`SceneClassificationTask` wraps an encoder with a linear head (``create_model(name,
num_classes=K)``), normalises raw scenes itself (the statistics of a dataset card, stored
as buffers, so a checkpoint classifies raw rasters on its own) and trains with
cross-entropy and the optimiser, schedule and metrics of :class:`~geofm.tasks.base.BaseTask`
(``val/oa``, ``val/aa``, ``val/kappa``). ``lora`` adapts a frozen encoder with low-rank
updates (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022); the
head and norms train in full.

Every checkpoint carries ``geofm_scene``: the model, its classes, the bands (names and
wavelengths, in order), the GSD and tile size it was trained on, which is what
:func:`geofm.inference.load_predictor` needs to classify a scene of any size tile by tile.
``geofm classify-scenes --config configs/classify/eurosat_less_vit.yaml`` runs it through
LightningCLI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from geofm.data.transforms import scale_bands
from geofm.models import create_model
from geofm.models.checkpoints import (
    build_on_meta,
    check_config,
    check_parameters,
    check_shapes,
    read_checkpoint,
    require,
    tag_lightning_checkpoint,
)
from geofm.tasks.base import BaseTask

__all__ = ["SceneClassificationTask"]

NORMALIZATIONS = ("mae_scale", "standard")


class SceneClassificationTask(BaseTask):
    """Fine-tune a registry encoder on labelled scenes.

    Args:
        model: registry name of a scene encoder (``less_vit_tiny``, ``joint_vit_small`` ...;
            not the pixel classifier ``lola_specvit``).
        num_classes: classes of the head.
        classes: their names (default: the card's classes when there are ``num_classes`` of
            them, else ``class_0`` ...).
        card: dataset card giving the bands and the normalisation statistics.
        bands: the band names the model is trained on (default all of the card's), in order.
        model_kwargs: architecture overrides for ``create_model``.
        encoder_checkpoint: encoder weights from ``geofm export`` (default: random init).
        lora: ``{"rank": 8, "alpha": 16, "dropout": 0.0}`` to train LoRA adapters, the head
            and norms only; ``None`` trains every weight.
        normalization: ``"mae_scale"`` (each band's mean +- 2 std onto [0, 1], the LESS ViT
            pretraining input) or ``"standard"`` ((x - mean) / std).
        tile: the scene size in pixels the model is trained on (what inference tiles use).
        lr, weight_decay, warmup_fraction, label_smoothing: the optimisation.
    """

    def __init__(
        self,
        model: str = "less_vit_tiny",
        num_classes: int = 10,
        classes: Sequence[str] | None = None,
        card: str = "eurosat_ms",
        bands: Sequence[str] | None = None,
        model_kwargs: dict[str, Any] | None = None,
        encoder_checkpoint: str | None = None,
        lora: dict[str, Any] | None = None,
        normalization: str = "mae_scale",
        tile: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.1,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__(
            lr=lr,
            weight_decay=weight_decay,
            warmup_fraction=warmup_fraction,
            num_classes=num_classes,
        )
        from geofm.data.cards import as_dataset_card, card_statistics

        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}"
            )
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"{len(classes)} class names for num_classes={num_classes}")
        card_obj = as_dataset_card(card)
        mean, std, bands = card_statistics(card_obj, bands)
        if classes is None and len(card_obj.classes or ()) == num_classes:
            classes = card_obj.classes
        classes = (
            list(classes) if classes is not None else [f"class_{i}" for i in range(num_classes)]
        )
        self.save_hyperparameters()
        self.classes = classes
        self.bands = bands
        self.register_buffer(
            "wavelengths",
            torch.tensor([b.wavelength_nm for b in card_obj.select(bands)], dtype=torch.float32),
        )
        self.register_buffer("mean", torch.tensor(mean))
        self.register_buffer("std", torch.tensor(std))
        self.gsd_m = float(card_obj.gsd_m) if card_obj.gsd_m else None
        self.encoder = create_model(
            model, checkpoint=encoder_checkpoint, num_classes=num_classes, **(model_kwargs or {})
        )
        from geofm.models.encoder import SpectralEncoder

        if not isinstance(self.encoder, SpectralEncoder):
            raise ValueError(
                f"{model!r} is not a scene encoder (it is a "
                f"{type(self.encoder).__name__}); scene classification takes the "
                "registry's LESS ViT, joint, grouped and stacked ViTs"
            )
        #: the encoder's whole architecture (an encoder file brings its own)
        self.model_config = {
            k: v for k, v in getattr(self.encoder, "config", {}).items() if k != "num_classes"
        }
        if lora:
            from geofm.models.lora import freeze_except_lora, inject_lora

            inject_lora(
                self.encoder,
                rank=int(lora.get("rank", 8)),
                alpha=float(lora.get("alpha", 16.0)),
                dropout=float(lora.get("dropout", 0.0)),
                skip_narrow=True,
            )
            freeze_except_lora(self.encoder)

    @property
    def test_confusion(self) -> torch.Tensor | None:
        """The test part's confusion matrix after ``trainer.test`` (rows true, columns
        predicted), over every process's scenes."""
        return self.confusions.get("test")

    # ------------------------------------------------------------------ model
    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean[:, None, None], self.std[:, None, None]
        return scale_bands(image, mean, std, self.hparams.normalization)

    def forward(self, image: torch.Tensor, wavelengths=None, gsd=None) -> torch.Tensor:
        """Logits of raw scenes ``(B, C, H, W)`` holding :attr:`bands` in order."""
        if image.shape[1] != len(self.bands):
            raise ValueError(
                f"the classifier takes {len(self.bands)} bands "
                f"({', '.join(self.bands)}), got an image with {image.shape[1]}"
            )
        wavelengths = self.wavelengths if wavelengths is None else wavelengths
        gsd = (self.gsd_m or 10.0) if gsd is None else gsd
        return self.encoder(self.normalize(image.float()), wavelengths, gsd)

    # ------------------------------------------------------------------ steps
    def _check_batch(self, batch: dict[str, Any]) -> None:
        got = tuple(batch.get("bands", ()))
        if got and got != tuple(self.bands):
            raise ValueError(f"the batch holds bands {got}, the classifier {tuple(self.bands)}")
        h, w = batch["image"].shape[-2:]
        if (h, w) != (self.hparams.tile, self.hparams.tile):
            # inference tiles a scene with `tile`: it must be the size the model learnt on
            raise ValueError(
                f"scenes are {h} x {w} pixels but tile={self.hparams.tile}; set "
                f"model.tile to the scene size ({h}) or crop the scenes to it"
            )

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        self._check_batch(batch)
        logits = self(batch["image"], batch["wavelengths"], batch["gsd"])
        target = batch["label"]
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0
        loss = F.cross_entropy(logits, target, label_smoothing=smoothing)
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=stage != "test",
            on_step=False,
            on_epoch=True,
            batch_size=target.shape[0],
            sync_dist=True,
        )
        if stage != "train":  # OA, AA and kappa at the epoch's end (BaseTask)
            self.update_confusion(stage, logits.argmax(1), target)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    # ------------------------------------------------------------------ files
    def scene_metadata(self) -> dict[str, Any]:
        """What inference needs to know, as plain values (see the module docstring)."""
        hp = self.hparams
        return {
            "model": hp.model,
            "model_config": dict(self.model_config),
            "classes": list(self.classes),
            "bands": list(self.bands),
            "wavelengths": [float(w) for w in self.wavelengths.tolist()],
            "gsd_m": self.gsd_m,
            "tile": int(hp.tile),
            "card": hp.card,
            "normalization": hp.normalization,
            "lora": hp.lora,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        tag_lightning_checkpoint(checkpoint, "scene")
        checkpoint["geofm_scene"] = self.scene_metadata()

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, payload: dict[str, Any] | None = None, merge: bool = True
    ) -> SceneClassificationTask:
        """The task of a checkpoint, in eval mode; LoRA updates merged into the weights
        with ``merge`` (same outputs, the base model's cost). The file is read without
        running code and checked before the model is allocated
        (:mod:`geofm.models.checkpoints`); ``payload``: its contents when already read."""
        if payload is None:
            _, payload = read_checkpoint(path, "scene")
        require(payload, path, {"geofm_scene": dict, "hyper_parameters": dict, "state_dict": dict})
        import inspect

        accepted = inspect.signature(cls.__init__).parameters
        # LightningCLI adds its own keys (`_instantiator`) beside the constructor's
        hp = {k: v for k, v in payload["hyper_parameters"].items() if k in accepted}
        # the weights and architecture come from the checkpoint: the encoder file it
        # started from need not exist any more
        hp["encoder_checkpoint"] = None
        hp["model_kwargs"] = dict(
            payload["geofm_scene"].get("model_config") or hp.get("model_kwargs") or {}
        )
        # sizes checked before the task (its encoder, head and LoRA) is built on the meta
        # device, where its parameters and shapes are checked before it is allocated
        check_config(path, hp.get("model", accepted["model"].default), hp["model_kwargs"])
        meta = check_parameters(path, build_on_meta(path, lambda: cls(**hp)))
        check_shapes(path, meta, payload["state_dict"])
        task = cls(**hp)
        task.load_state_dict(payload["state_dict"])
        if merge and hp.get("lora"):
            from geofm.models.lora import remove_lora

            # plain linear layers with the updates folded in; saved again, the task is
            # then one without LoRA (nothing is applied twice)
            remove_lora(task.encoder, merge=True)
            task.hparams.lora = None
        return task.eval()
