"""``geofm export``: a pretraining checkpoint -> an encoder file for ``create_model``."""

from __future__ import annotations

import os
from pathlib import Path

from geofm.data.outputs import check_outputs
from geofm.models import create_model
from geofm.models.checkpoints import (
    CheckpointError,
    check_architecture,
    check_shapes,
    read_checkpoint,
    require,
    save_encoder,
)

__all__ = ["encoder_from_checkpoint", "export_encoder"]

ENCODER_PREFIX = "mae.encoder."


def encoder_from_checkpoint(checkpoint: str | os.PathLike):
    """The encoder of an MAE pretraining checkpoint, read without running code and checked
    before it is built (:mod:`geofm.models.checkpoints`).

    Returns ``(registry name, model kwargs, encoder with its weights, checkpoint dict)``.
    """
    _, ckpt = read_checkpoint(checkpoint, "pretraining")
    require(ckpt, checkpoint, {"hyper_parameters": dict, "state_dict": dict})
    if not all(isinstance(k, str) for k in ckpt["state_dict"]):
        raise CheckpointError(f"{checkpoint}: its state_dict has keys that are not names")
    hp = ckpt["hyper_parameters"]
    name = hp.get("model")
    state = {
        k[len(ENCODER_PREFIX) :]: v
        for k, v in ckpt["state_dict"].items()
        if k.startswith(ENCODER_PREFIX)
    }
    if name is None or not state:
        raise CheckpointError(
            f"{checkpoint} is not a geofm MAE pretraining checkpoint (no "
            "hyper_parameters.model or no mae.encoder.* weights)"
        )
    kwargs = hp.get("model_kwargs") or {}
    check_shapes(checkpoint, check_architecture(checkpoint, name, kwargs), state)
    encoder = create_model(name, **kwargs)
    encoder.load_state_dict(state)
    return name, kwargs, encoder, ckpt


def export_encoder(
    checkpoint: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Write the encoder of an MAE pretraining checkpoint, with its data configuration.

    The result loads with ``create_model(<model>, checkpoint=out)``.
    """
    out = Path(out)
    check_outputs([out], [checkpoint], overwrite)
    name, _, encoder, ckpt = encoder_from_checkpoint(checkpoint)
    return save_encoder(
        encoder,
        name,
        out,
        data=ckpt.get("geofm_data"),
        source=f"{Path(checkpoint).name}: epoch {ckpt.get('epoch')}, "
        f"step {ckpt.get('global_step')}",
    )
