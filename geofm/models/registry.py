"""A timm-style model registry: a decorator, a dict, ``create_model`` and ``list_models``.

Every encoder in :mod:`geofm.models` registers its named sizes here (``less_vit_small``,
``joint_vit_tiny`` ...). Downstream code builds models by name, with keyword overrides for
the architecture (``rank``, ``depth``, ``perception_radius_m``, ``num_classes`` ...).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

import torch.nn as nn

__all__ = ["register_model", "create_model", "list_models", "is_model", "UnknownModelError"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(KeyError):
    """Raised for a model name that is not in the registry; the message lists close names."""

    def __str__(self) -> str:  # KeyError quotes its argument; a sentence reads better
        return str(self.args[0])


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` under its ``__name__``; names must be unique."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is registered twice")
    _MODELS[name] = fn
    return fn


def is_model(name: str) -> bool:
    return name in _MODELS


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (``"less_vit_*"``), sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def create_model(name: str, checkpoint: str | None = None, **overrides) -> nn.Module:
    """Build the registered model ``name``; ``overrides`` replace its configuration values.

    >>> model = create_model("less_vit_tiny", depth=2, rank=4)  # doctest: +SKIP
    >>> model = create_model("less_vit_small", checkpoint="encoder.pt")  # doctest: +SKIP

    ``checkpoint`` is an encoder file written by ``geofm export``: its architecture must be
    the one built (``num_classes`` may differ: the head is not loaded), and what it was
    trained on is kept as ``model.data_config``. The file is read without running code and
    checked before the model is allocated (:mod:`geofm.models.checkpoints`). An override the model does not take raises
    ``TypeError`` naming it.
    """
    try:
        builder = _MODELS[name]
    except KeyError:
        family = name.rsplit("_", 1)[0]
        close = list_models(f"{family}*") or list_models()
        raise UnknownModelError(
            f"no model named {name!r}; registered models include: {', '.join(close)}"
        ) from None
    if checkpoint is None:
        return builder(**overrides)
    from .checkpoints import load_into, read_encoder

    # the file's architecture and the caller's overrides, checked before anything is built
    payload, config = read_encoder(checkpoint, name, overrides)
    return load_into(builder(**config), payload)
