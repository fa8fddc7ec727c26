"""LightningModules: :class:`BaseTask` owns the optimiser, schedule and metrics; each task
adds its losses and steps, and the model is injected or built from the registry.

The names below are resolved on first use (PEP 562), so that ``import geofm.tasks.pixel_results``
and the other Lightning-free modules here do not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import BaseTask, warmup_cosine
    from .mae import MAEPretrainTask

_LAZY = {"BaseTask": ".base", "warmup_cosine": ".base", "MAEPretrainTask": ".mae"}

__all__ = ["BaseTask", "MAEPretrainTask", "warmup_cosine"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name], __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
