"""LightningModules: :class:`BaseTask` owns the optimiser, schedule and metrics; each task
adds its losses and steps, and the model is injected or built from the registry."""

from .base import BaseTask, warmup_cosine
from .mae import MAEPretrainTask

__all__ = ["BaseTask", "MAEPretrainTask", "warmup_cosine"]
