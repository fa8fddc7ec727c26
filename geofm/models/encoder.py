"""What every geofm encoder shares: input checks, the token-grid loop, heads, intermediates.

Every encoder takes ``forward(image, wavelengths, gsd)`` and works on a token grid
``x: (B, R+1, N+1, D)``: row 0 holds the channel-CLS tokens (one per patch), column 0 the
spatial-CLS tokens (one per row), ``x[:, 0, 0]`` the global CLS. What a row is depends on the
model: a band (LESS ViT, joint ViT), a band group (grouped ViT) or nothing but the CLS row
(stacked ViT, whose grid is B x 1 x (N+1) x D).

The interface follows timm's (``forward_features``, ``forward_head(pre_logits=...)``,
``forward_intermediates``, ``reset_classifier``, ``set_grad_checkpointing``,
``no_weight_decay``) so probes, UPerNet heads and other tools can use any of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint

from ..kernels import get_backend, use_backend

__all__ = ["SpectralEncoder", "BandCountError", "MixedBandSetError", "InputError", "init_weights"]


class InputError(ValueError):
    """An encoder input that cannot be used as given."""


class BandCountError(InputError):
    """The number of wavelengths differs from the number of image bands."""


class MixedBandSetError(InputError):
    """One batch holds more than one band set."""


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform linear weights and zero biases, the initialisation of the LESS ViT code."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _describe(values: torch.Tensor, limit: int = 6) -> str:
    items = [f"{v:g}" for v in values[:limit].tolist()]
    return ", ".join(items) + (", ..." if len(values) > limit else "")


class SpectralEncoder(nn.Module):
    """Base class of the registry's encoders; subclasses build tokens and run blocks.

    Subclasses set ``patch_size``, ``embed_dim``, ``blocks`` and ``norm`` and implement
    ``_tokens(image, wavelengths, gsd) -> (x, context)`` and ``_run_block(block, x, context)``.
    """

    patch_size: int
    embed_dim: int
    blocks: nn.ModuleList
    norm: nn.Module

    #: Check inputs (shapes, wavelengths, NaN) on every call. The NaN check reads the whole
    #: image, and on a GPU waits for it; a training loop that has checked its data once may
    #: set this to False.
    validate_inputs: bool = True

    def _init_head(self, num_classes: int, drop_rate: float) -> None:
        self.grad_checkpointing = False
        self.head_drop = nn.Dropout(drop_rate)
        SpectralEncoder.reset_classifier(self, num_classes)  # not an override: runs in __init__

    # ---------------------------------------------------------------- inputs
    def check_inputs(
        self, image: torch.Tensor, wavelengths: torch.Tensor | Sequence[float], gsd
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate one batch; return wavelengths (C,) and gsd (B,) as float tensors.

        image: (B, C, H, W); wavelengths: (C,) or (B, C) in nm, identical rows;
        gsd: metres per pixel, a number or (B,).
        """
        if not torch.is_tensor(image) or image.ndim != 4:
            shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
            raise InputError(f"image must be a (B, C, H, W) tensor, got {shape}")
        B, C, H, W = image.shape
        device = image.device
        wl = torch.as_tensor(wavelengths, dtype=torch.float32, device=device)
        if wl.ndim == 2:
            if wl.shape[0] != B:
                raise InputError(
                    f"wavelengths of shape {tuple(wl.shape)} do not match a batch of {B}"
                )
            differs = (wl != wl[:1]).any(dim=1)
            if bool(differs.any()):
                other = int(differs.nonzero()[0])
                raise MixedBandSetError(
                    f"one batch must share one band set: sample 0 has wavelengths "
                    f"[{_describe(wl[0])}] but sample {other} has [{_describe(wl[other])}]; "
                    "bucket batches by band set"
                )
            wl = wl[0]
        if wl.ndim != 1:
            raise InputError(f"wavelengths must be (C,) or (B, C), got shape {tuple(wl.shape)}")
        if wl.shape[0] != C:
            raise BandCountError(f"image has {C} bands but {wl.shape[0]} wavelengths were given")
        if not bool(torch.isfinite(wl).all()) or bool((wl <= 0).any()):
            raise InputError(f"wavelengths must be positive nanometres, got [{_describe(wl)}]")
        p = self.patch_size
        if H % p or W % p:
            raise InputError(
                f"image size {H} x {W} is not divisible by the patch size {p}; "
                f"crop or pad to {H // p * p or p} x {W // p * p or p}"
            )
        gsd_t = torch.as_tensor(gsd, dtype=torch.float32, device=device).reshape(-1)
        if gsd_t.numel() == 1:
            gsd_t = gsd_t.expand(B)
        if gsd_t.numel() != B:
            raise InputError(f"gsd must be one number or one per sample ({B}), got {gsd_t.numel()}")
        if not bool(torch.isfinite(gsd_t).all()) or bool((gsd_t <= 0).any()):
            raise InputError(f"gsd must be positive metres per pixel, got [{_describe(gsd_t)}]")
        if self.validate_inputs:
            nan = torch.isnan(image)
            if bool(nan.any()):
                per_band = nan.sum(dim=(0, 2, 3))
                bands = per_band.nonzero().flatten().tolist()
                raise InputError(
                    f"image contains {int(per_band.sum())} NaN values in band(s) "
                    f"{bands[:10]}{' ...' if len(bands) > 10 else ''}; fill nodata before the "
                    "model (the sample's 'valid' mask says where)"
                )
        return wl, gsd_t

    # ---------------------------------------------------------------- subclass hooks
    def _tokens(self, image, wavelengths, gsd):  # pragma: no cover - abstract
        raise NotImplementedError

    def _run_block(self, block, x, context):  # pragma: no cover - abstract
        raise NotImplementedError

    def _block(self, block: nn.Module, x: torch.Tensor, context) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            # the recomputation in the backward must take the forward's kernel path
            # (geofm.kernels), even when the backward runs outside its use_backend block
            return torch.utils.checkpoint.checkpoint(
                self._run_block_on, get_backend(), block, x, context, use_reentrant=False
            )
        return self._run_block(block, x, context)

    def _run_block_on(self, backend: str, block: nn.Module, x: torch.Tensor, context):
        with use_backend(backend):
            return self._run_block(block, x, context)

    # ---------------------------------------------------------------- interface
    def forward_features(self, image: torch.Tensor, wavelengths, gsd) -> torch.Tensor:
        """image: (B, C, H, W) -> normalised token grid (B, R+1, N+1, D)."""
        wl, gsd_t = self.check_inputs(image, wavelengths, gsd)
        x, context = self._tokens(image, wl, gsd_t)
        for block in self.blocks:
            x = self._block(block, x, context)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Token grid (B, R+1, N+1, D) -> global-CLS features (B, D) or logits (B, classes)."""
        x = self.head_drop(x[:, 0, 0])
        return x if pre_logits else self.head(x)

    def forward(self, image: torch.Tensor, wavelengths, gsd) -> torch.Tensor:
        return self.forward_head(self.forward_features(image, wavelengths, gsd))

    def forward_intermediates(
        self,
        image: torch.Tensor,
        wavelengths,
        gsd,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        intermediates_only: bool = False,
    ):
        """Channel-CLS maps after chosen blocks, for dense heads.

        indices: an int n takes the last n blocks, a sequence takes those block indices
        (negative counts from the end), None takes every block. Each map is the channel-CLS
        row ``x[:, 0, 1:]`` as (B, D, h, w); ``norm`` applies the final norm first.
        Returns the list, or (final token grid, list) unless ``intermediates_only``.
        """
        depth = len(self.blocks)
        if indices is None:
            take = list(range(depth))
        elif isinstance(indices, int):
            if not 0 < indices <= depth:
                raise InputError(f"indices={indices}: the model has {depth} blocks")
            take = list(range(depth - indices, depth))
        else:
            take = []
            for i in indices:
                if not -depth <= i < depth:
                    raise InputError(f"block index {i} out of range for {depth} blocks")
                take.append(i % depth)
        wl, gsd_t = self.check_inputs(image, wavelengths, gsd)
        h, w = image.shape[-2] // self.patch_size, image.shape[-1] // self.patch_size
        x, context = self._tokens(image, wl, gsd_t)
        maps = []
        last = max(take) if intermediates_only else depth - 1
        for i, block in enumerate(self.blocks[: last + 1]):
            x = self._block(block, x, context)
            if i in take:
                row = (self.norm(x) if norm else x)[:, 0, 1:]
                maps.append(row.transpose(1, 2).reshape(x.shape[0], -1, h, w))
        if intermediates_only:
            return maps
        return self.norm(x), maps

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith("cls_token")}

    @staticmethod
    def grid_size(image: torch.Tensor, patch_size: int) -> tuple[int, int]:
        return image.shape[-2] // patch_size, image.shape[-1] // patch_size

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic depth growing linearly from 0 to ``rate`` over the blocks."""
    if depth == 1:
        return [rate]
    return [rate * i / (depth - 1) for i in range(depth)]


def check_heads(embed_dim: int, num_heads: int, dims_per_head: int = 1) -> None:
    if embed_dim % (num_heads * dims_per_head):
        raise ValueError(
            f"embed_dim {embed_dim} is not divisible by num_heads x dims_per_head = "
            f"{num_heads} x {dims_per_head}"
        )
