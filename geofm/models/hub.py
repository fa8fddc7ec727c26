"""Encoder weight files: what ``geofm export`` writes and ``create_model(checkpoint=...)`` reads.

A file holds plain tensors and Python values only, so it loads with
``torch.load(weights_only=True)``:

    {"format": "geofm-encoder/1", "model": registry name, "config": architecture keywords,
     "state_dict": encoder weights, "data": what the encoder was trained on (bands,
     wavelengths, GSD, normalisation), "source": where the weights came from}
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

__all__ = ["FORMAT", "save_encoder", "load_encoder_file", "load_into"]

FORMAT = "geofm-encoder/1"

#: Constructor keywords that do not change the weights' shapes or meaning.
TRAINING_ONLY = frozenset({"num_classes", "drop_rate", "attn_drop_rate", "proj_drop_rate",
                           "drop_path_rate"})


def save_encoder(model: nn.Module, name: str, path: str | os.PathLike,
                 data: Any = None, source: str = "") -> None:
    """Write ``model``'s weights and configuration (``model.config``) to ``path``."""
    config = dict(getattr(model, "config", {}))
    torch.save({"format": FORMAT, "model": name, "config": config,
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "data": data, "source": source}, path)


def load_encoder_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read an encoder file (weights only: nothing in it is executed)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"encoder weights not found: {path}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a geofm encoder file (expected format {FORMAT!r}; "
                         "a training checkpoint is turned into one by `geofm export`)")
    return payload


def load_into(model: nn.Module, name: str, payload: dict[str, Any], path) -> nn.Module:
    """Load ``payload``'s weights into ``model`` built as ``name``; refuse a mismatch."""
    if payload["model"] != name:
        raise ValueError(f"{path} holds {payload['model']!r} weights, not {name!r}")
    mine = getattr(model, "config", {})
    differ = {k: (v, mine.get(k)) for k, v in payload["config"].items()
              if k not in TRAINING_ONLY and mine.get(k) != v}
    if differ:
        detail = ", ".join(f"{k}: file {a!r}, model {b!r}" for k, (a, b) in differ.items())
        raise ValueError(f"{path} was saved from another architecture ({detail}); build the "
                         "model without those overrides")
    state = {k: v for k, v in payload["state_dict"].items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("head.")]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit {name}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    model.data_config = payload.get("data")
    return model
