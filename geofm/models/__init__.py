"""Models: embeddings, LESS attention, LESS ViT and its baselines, in a timm-style registry.

``models`` holds ``nn.Module``s working on tensors only; it never reads files and never
imports :mod:`geofm.data` or :mod:`geofm.tasks`.
"""

from . import baselines, less_vit, lola_specvit, ssftt  # noqa: F401  (register the named sizes)
from .baselines import GroupedViT, JointViT, StackedViT
from .encoder import BandCountError, InputError, MixedBandSetError, SpectralEncoder
from .less_vit import LESSAttention, LESSBlock, LESSViT, kronecker_combine, perception_field_mask
from .lola_specvit import LoLASpecViT
from .lora import LoRALinear, inject_lora, merge_lora, parameter_counts, unmerge_lora
from .registry import UnknownModelError, create_model, is_model, list_models, register_model
from .ssftt import SSFTT

__all__ = [
    "BandCountError",
    "GroupedViT",
    "JointViT",
    "StackedViT",
    "InputError",
    "LESSAttention",
    "LESSBlock",
    "LESSViT",
    "LoLASpecViT",
    "LoRALinear",
    "SSFTT",
    "MixedBandSetError",
    "SpectralEncoder",
    "UnknownModelError",
    "create_model",
    "is_model",
    "inject_lora",
    "kronecker_combine",
    "list_models",
    "merge_lora",
    "parameter_counts",
    "perception_field_mask",
    "register_model",
    "unmerge_lora",
]
