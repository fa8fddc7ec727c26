"""Low-rank adaptation (LoRA) for any model: a LoRA linear layer, injection, merging.

LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022) freezes a
linear layer's weight ``W`` (out x in) and learns a rank-``r`` update::

    y = W x + b + m * (alpha / r) * B A dropout(x),     A: r x in,  B: out x r

``B`` starts at zero, so an injected model computes exactly what the base model computes
until training moves ``B``. ``m`` is a multiplier of the adaptation strength (1 by default)
that :class:`~geofm.tasks.callbacks.CyclicLoRAScale` modulates during training, the
cyclical schedule of LoLA-SpecViT (Zidi et al., "LoLA-SpecViT: Local Attention SwiGLU Vision
Transformer with LoRA for Hyperspectral Imaging", 2025).

:class:`LoRALinear` subclasses :class:`torch.nn.Linear` and keeps its ``weight`` and ``bias``
under the same names, so a base model's state dict loads into an injected model unchanged
(the LoRA factors are the only new keys). Code that reads a linear layer's weight directly
instead of calling it must go through :func:`effective_weight`, which includes the update.

Typical use::

    model = create_model("less_vit_small", num_classes=10)
    model.load_state_dict(base_weights)
    inject_lora(model, ["qkv", "qk", "v", "proj", "fc1", "fc2"], rank=8, alpha=16)
    freeze_except_lora(model, train=["norm", "head"])
    print(parameter_counts(model))        # trainable / total
    ...                                   # train
    merge_lora(model)                     # deploy at the cost of the base model
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..kernels import lora_linear

__all__ = [
    "DEFAULT_EXCLUDE",
    "DEFAULT_TARGETS",
    "LoRALinear",
    "ParameterCounts",
    "effective_weight",
    "freeze_except_lora",
    "inject_lora",
    "lora_layers",
    "merge_lora",
    "parameter_counts",
    "remove_lora",
    "set_lora_multiplier",
    "unmerge_lora",
]

#: Linear layers adapted when no targets are given: the attention projections (``qkv``;
#: LESS attention's ``qk``, ``v``, ``q``, ``kv``; ``proj``) and the feed-forward layers
#: (``fc1``, ``fc2``; SwiGLU's ``w12`` and ``w3``) of every model in the registry ...
DEFAULT_TARGETS = ("qkv", "qk", "q", "kv", "v", "proj", "fc1", "fc2", "w12", "w3")
#: ... except the patch embeddings, whose layers share those names (LESS ViT's
#: ``tokenizer.patch_embed.fc1``, the grouped ViT's ``patch_embed.proj``).
DEFAULT_EXCLUDE = ("*patch_embed*",)


class LoRALinear(nn.Linear):
    """A linear layer with a trainable low-rank update; see the module docstring.

    Args:
        in_features, out_features, bias: as :class:`torch.nn.Linear`.
        rank: ``r >= 1``.
        alpha: the update is scaled by ``alpha / rank``.
        dropout: dropout on the input of the low-rank path only.

    ``A`` is initialised like a linear layer (Kaiming uniform), ``B`` at zero. After
    :meth:`merge` the update lives in ``weight`` and the forward pass is a plain linear
    layer; :meth:`unmerge` takes it out again (to float rounding).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise ValueError(f"LoRA rank must be a whole number >= 1, got {rank!r}")
        if rank > min(in_features, out_features):
            raise ValueError(
                f"LoRA rank {rank} exceeds min(in, out) = "
                f"{min(in_features, out_features)} of a {in_features} -> "
                f"{out_features} layer: the update would not be low-rank"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LoRA dropout must lie in [0, 1), got {dropout}")
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.rank, self.alpha = rank, float(alpha)
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.multiplier = 1.0
        self.merged = False

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0
    ) -> LoRALinear:
        """A LoRA layer sharing ``linear``'s weight and bias tensors (not copies)."""
        w = linear.weight
        layer = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            rank=rank,
            alpha=alpha,
            dropout=dropout,
            device=w.device,
            dtype=w.dtype,
        )
        layer.weight, layer.bias = linear.weight, linear.bias
        layer.train(linear.training)
        return layer

    @property
    def scaling(self) -> float:
        """The factor of ``B A`` in the output: ``multiplier * alpha / rank``."""
        return self.multiplier * self.alpha / self.rank

    def delta_weight(self) -> torch.Tensor:
        """The update ``scaling * B A`` (out x in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def effective_weight(self) -> torch.Tensor:
        """``W + scaling * B A`` (``W`` alone once merged). Ignores LoRA dropout."""
        return self.weight if self.merged else self.weight + self.delta_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.weight, self.bias)
        if isinstance(self.lora_dropout, nn.Identity) or not self.training:
            # base GEMM and update: fused in Triton on CUDA (geofm.kernels)
            return lora_linear(x, self.weight, self.bias, self.lora_A, self.lora_B, self.scaling)
        out = F.linear(x, self.weight, self.bias)
        low = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)
        return out + low * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``weight`` (computed in float64, then rounded once)."""
        if self.merged:
            return
        merged = self.weight.double() + self.delta_weight().double()
        self.weight.copy_(merged.to(self.weight.dtype))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out of ``weight`` again."""
        if not self.merged:
            return
        restored = self.weight.double() - self.delta_weight().double()
        self.weight.copy_(restored.to(self.weight.dtype))
        self.merged = False

    def set_multiplier(self, value: float) -> None:
        if self.merged:
            raise RuntimeError(
                "cannot change the LoRA multiplier of a merged layer: its "
                "update is folded into the weight; unmerge first"
            )
        self.multiplier = float(value)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha:g}" + (
            ", merged" if self.merged else ""
        )


def effective_weight(linear: nn.Linear) -> torch.Tensor:
    """The weight a linear layer applies: ``W`` for a plain one, ``W + s B A`` for LoRA.

    For modules that use a linear layer's weight algebraically instead of calling it (for
    example the attention pooling of LESS ViT), so that LoRA applies there too.
    """
    if isinstance(linear, LoRALinear):
        return linear.effective_weight()
    return linear.weight


def _matches(name: str, pattern: str) -> bool:
    """A plain pattern matches the last part of the module name; a glob the whole name."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return name.rsplit(".", 1)[-1] == pattern


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def inject_lora(
    model: nn.Module,
    targets: Sequence[str] = DEFAULT_TARGETS,
    rank: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    skip_narrow: bool = False,
) -> list[str]:
    """Replace the linear layers named by ``targets`` with :class:`LoRALinear`, in place.

    Args:
        model: any module.
        targets: patterns; a plain name (``"qkv"``) matches modules whose last name part is
            that name, a glob (``"blocks.*.attn.qkv"``) matches the full module name.
        rank, alpha, dropout: of every injected layer.
        exclude: patterns (same rules) of modules to leave alone; default the patch
            embeddings (pass ``()`` to adapt them too).
        skip_narrow: leave out targeted layers with ``min(in, out) <= rank``, where a rank-r
            update would not be low-rank (LESS ViT-Ti's 6-wide spectral branch at rank 8);
            without it such a layer raises ``ValueError``.

    Returns:
        The names of the layers that were replaced, in module order.

    Raises:
        ValueError: no linear layer matched any target (the message lists the model's linear
            layers), a module that matched is not a linear layer, or LoRA is already there.
    """
    if isinstance(targets, str):
        targets = [targets]
    chosen: list[str] = []
    linear_names: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            raise ValueError(
                f"{name} already has LoRA; inject once (remove_lora first to "
                "inject again with other settings)"
            )
        if isinstance(module, nn.Linear):
            linear_names.append(name)
        if not name or not any(_matches(name, t) for t in targets):
            continue
        if any(_matches(name, e) for e in exclude):
            continue
        if not isinstance(module, nn.Linear):
            if any(_matches(name, t) and any(c in t for c in "*?[") for t in targets):
                continue  # a glob may also cover containers; only linear layers count
            raise ValueError(
                f"LoRA target {name!r} is a {type(module).__name__}, not "
                "nn.Linear; LoRA here adapts linear layers only"
            )
        if skip_narrow and min(module.in_features, module.out_features) <= rank:
            continue
        chosen.append(name)
    if not chosen:
        shown = ", ".join(linear_names[:12]) + (" ..." if len(linear_names) > 12 else "")
        raise ValueError(
            f"no linear layer matches the LoRA targets {list(targets)}; this "
            f"model's linear layers: {shown or 'none'}"
        )
    for name in chosen:
        layer = cast(nn.Linear, model.get_submodule(name))  # chosen: linear layers only
        _set_submodule(model, name, LoRALinear.from_linear(layer, rank, alpha, dropout))
    return chosen


def lora_layers(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    """``(name, layer)`` of every :class:`LoRALinear` in ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def _require_lora(model: nn.Module) -> list[tuple[str, LoRALinear]]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no LoRA layers; call inject_lora first")
    return layers


def merge_lora(model: nn.Module) -> None:
    """Fold every LoRA update into its weight (inference at the base model's cost)."""
    for _, layer in _require_lora(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Undo :func:`merge_lora` (the weights come back to float rounding)."""
    for _, layer in _require_lora(model):
        layer.unmerge()


def set_lora_multiplier(model: nn.Module, value: float) -> int:
    """Set the multiplier ``m`` of every LoRA layer; returns how many layers were set."""
    layers = _require_lora(model)
    for _, layer in layers:
        layer.set_multiplier(value)
    return len(layers)


def remove_lora(model: nn.Module, merge: bool = True) -> list[str]:
    """Replace every :class:`LoRALinear` by a plain :class:`torch.nn.Linear`, in place.

    With ``merge`` the updates are folded in first (the model computes the same function);
    without, they are dropped (the base model comes back). Returns the layer names.
    """
    names = []
    for name, layer in _require_lora(model):
        if merge:
            layer.merge()
        elif layer.merged:
            layer.unmerge()
        plain = nn.Linear(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            device=layer.weight.device,
            dtype=layer.weight.dtype,
        )
        plain.weight, plain.bias = layer.weight, layer.bias
        plain.train(layer.training)
        _set_submodule(model, name, plain)
        names.append(name)
    return names


def freeze_except_lora(model: nn.Module, train: Iterable[str] = ("norm", "head")) -> None:
    """Freeze every parameter except the LoRA factors, normalisation layers and ``train``.

    ``train``: patterns of modules whose parameters stay trainable; ``"norm"`` stands for
    every normalisation layer (LayerNorm, BatchNorm, GroupNorm, RMSNorm), other plain names
    match the last part of a module name, globs the full name.
    """
    train = list(train)
    norms = (nn.LayerNorm, nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.RMSNorm)
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in model.named_modules():
        keep = ("norm" in train and isinstance(module, norms)) or (
            name and any(_matches(name, t) for t in train if t != "norm")
        )
        if keep:
            for p in module.parameters():
                p.requires_grad_(True)
        if isinstance(module, LoRALinear):
            module.lora_A.requires_grad_(True)
            module.lora_B.requires_grad_(True)


class ParameterCounts(NamedTuple):
    trainable: int
    total: int

    def __str__(self) -> str:
        share = 100.0 * self.trainable / max(self.total, 1)
        return f"{self.trainable:,} trainable of {self.total:,} parameters ({share:.2f}%)"


def parameter_counts(model: nn.Module) -> ParameterCounts:
    """Trainable and total parameters (shared tensors counted once)."""
    seen = {id(p): p for p in model.parameters()}
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return ParameterCounts(trainable, sum(p.numel() for p in seen.values()))
