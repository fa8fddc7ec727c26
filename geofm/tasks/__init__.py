"""LightningModules: each task owns its losses, metrics and optimiser; the model is injected."""

from .mae import MAEPretrainTask, warmup_cosine

__all__ = ["MAEPretrainTask", "warmup_cosine"]
