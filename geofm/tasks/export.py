"""``geofm export``: a pretraining checkpoint -> an encoder file for ``create_model``."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from geofm.models import create_model
from geofm.models.hub import save_encoder

__all__ = ["encoder_from_checkpoint", "export_encoder"]

ENCODER_PREFIX = "mae.encoder."


def encoder_from_checkpoint(checkpoint: str | os.PathLike):
    """The encoder of an MAE pretraining checkpoint, read with ``weights_only=True``.

    Returns ``(registry name, model kwargs, encoder with its weights, checkpoint dict)``.
    """
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}") from None
    hp = ckpt.get("hyper_parameters") or {}
    name = hp.get("model")
    state = {k[len(ENCODER_PREFIX):]: v for k, v in ckpt.get("state_dict", {}).items()
             if k.startswith(ENCODER_PREFIX)}
    if name is None or not state:
        raise ValueError(f"{checkpoint} is not a geofm MAE pretraining checkpoint (no "
                         "hyper_parameters.model or no mae.encoder.* weights)")
    kwargs = hp.get("model_kwargs") or {}
    encoder = create_model(name, **kwargs)
    encoder.load_state_dict(state)
    return name, kwargs, encoder, ckpt


def export_encoder(checkpoint: str | os.PathLike, out: str | os.PathLike,
                   overwrite: bool = False) -> Path:
    """Write the encoder of an MAE pretraining checkpoint, with its data configuration.

    The result loads with ``create_model(<model>, checkpoint=out)``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    name, _, encoder, ckpt = encoder_from_checkpoint(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_encoder(encoder, name, out, data=ckpt.get("geofm_data"),
                 source=f"{Path(checkpoint).name}: epoch {ckpt.get('epoch')}, "
                        f"step {ckpt.get('global_step')}")
    return out
