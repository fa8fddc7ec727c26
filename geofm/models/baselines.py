"""Baseline encoders for every comparison with LESS ViT: same widths, depths and interface.

* ``joint_vit_*``: one token per (band, patch) and full attention over all of them, the
  design of Channel-ViT (Bao et al., "Channel Vision Transformers", 2024). It shares LESS
  ViT's tokeniser (band-shared patch embedding, wavelength and ground-distance codes, CLS
  slots) and differs only in the attention, so timing and accuracy gaps are the attention's.
* ``grouped_vit_*``: adjacent bands (by wavelength) grouped, each group one token per patch,
  full attention (Cong et al., "SatMAE", 2022). SatMAE fixes its groups per sensor; here
  groups of ``bands_per_group`` bands are formed from any band set, sorted by wavelength, the
  last group zero-padded, and each group carries the code of its mean wavelength.
* ``stacked_vit_*``: a plain ViT with all bands stacked in the patch (Dosovitskiy et al.,
  2021): wavelength-blind and built for one band count (``in_chans``).

All take ``forward(image, wavelengths, gsd)`` and return the token grid of
:class:`~geofm.models.encoder.SpectralEncoder`.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn as nn
from einops import rearrange
from timm.models.vision_transformer import Block

from .embeddings import GroupPatchEmbed, grid_sincos_2d
from .encoder import BandCountError, SpectralEncoder, check_heads, drop_path_rates, init_weights
from .less_vit import VIT_SIZES, BandTokenizer, LayerNorm, TokenGrid
from .registry import register_model

__all__ = ["JointViT", "GroupedViT", "StackedViT"]


class _FullAttentionEncoder(SpectralEncoder):
    """Standard ViT blocks over the flattened token grid."""

    def _build_blocks(
        self,
        embed_dim,
        depth,
        num_heads,
        mlp_ratio,
        qkv_bias,
        attn_drop_rate,
        proj_drop_rate,
        drop_path_rate,
        init_values,
        **_,  # the rest of the model's config (``self.config``)
    ):
        check_heads(embed_dim, num_heads)
        # timm annotates norm_layer as a class; a partial of one is called the same way
        norm_layer = cast("type[nn.Module]", LayerNorm)
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate,
                attn_drop=attn_drop_rate,
                init_values=init_values,
                drop_path=dpr,
                norm_layer=norm_layer,
            )
            for dpr in drop_path_rates(drop_path_rate, depth)
        )
        self.norm = LayerNorm(embed_dim)

    def _run_block(self, block, x, context):
        B, R, L, D = x.shape
        return block(x.reshape(B, R * L, D)).reshape(B, R, L, D)


class JointViT(_FullAttentionEncoder):
    """Full attention over all (C+1)(N+1) band-patch tokens (Channel-ViT style)."""

    def __init__(
        self,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        init_values: float | None = None,
    ):
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.patch_size, self.embed_dim = patch_size, embed_dim
        self.tokenizer = BandTokenizer(patch_size, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        self._build_blocks(**self.config)
        self._init_head(num_classes, drop_rate)
        self.apply(init_weights)

    def _tokens(self, image, wavelengths, gsd):
        return self.pos_drop(self.tokenizer(image, wavelengths, gsd)), None


class GroupedViT(_FullAttentionEncoder):
    """Band groups as tokens (SatMAE style) with full attention over (G+1)(N+1) tokens."""

    def __init__(
        self,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        bands_per_group: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        init_values: float | None = None,
    ):
        super().__init__()
        if bands_per_group < 1:
            raise ValueError(f"bands_per_group must be at least 1, got {bands_per_group}")
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.patch_size, self.embed_dim = patch_size, embed_dim
        self.bands_per_group = bands_per_group
        self.patch_embed = GroupPatchEmbed(patch_size, embed_dim, bands_per_group)
        self.grid = TokenGrid(embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        self._build_blocks(**self.config)
        self._init_head(num_classes, drop_rate)
        self.apply(init_weights)

    def group_bands(self, image: torch.Tensor, wavelengths: torch.Tensor):
        """Sort bands by wavelength and cut them into groups of ``bands_per_group``.

        image: (B, C, H, W) -> groups (B, G, g, H, W) zero-padded, mean wavelength (G,).
        """
        B, C, H, W = image.shape
        g = self.bands_per_group
        G = math.ceil(C / g)
        order = torch.argsort(wavelengths)
        image, wavelengths = image[:, order], wavelengths[order]
        pad = G * g - C
        if pad:
            image = torch.cat([image, image.new_zeros(B, pad, H, W)], dim=1)
        counts = torch.full((G,), float(g), device=wavelengths.device)
        counts[-1] = g - pad
        padded = torch.cat([wavelengths, wavelengths.new_zeros(pad)])
        return image.reshape(B, G, g, H, W), padded.reshape(G, g).sum(dim=1) / counts

    def _tokens(self, image, wavelengths, gsd):
        groups, group_wl = self.group_bands(image, wavelengths)
        x = self.patch_embed(groups)  # (B, G, N, D)
        x = self.grid(x, group_wl, self.grid_size(image, self.patch_size), gsd)
        return self.pos_drop(x), None


class StackedViT(_FullAttentionEncoder):
    """A plain ViT: the ``in_chans`` bands stacked in each patch; wavelengths are not used.

    Its token grid has a single row: (B, 1, N+1, D), the global CLS at ``[0, 0]``.
    """

    def __init__(
        self,
        in_chans: int = 13,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        init_values: float | None = None,
    ):
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.patch_size, self.embed_dim, self.in_chans = patch_size, embed_dim, in_chans
        self.patch_embed = nn.Linear(in_chans * patch_size * patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        self._build_blocks(**self.config)
        self._init_head(num_classes, drop_rate)
        self.apply(init_weights)
        nn.init.normal_(self.cls_token, std=0.02)

    def check_inputs(self, image, wavelengths, gsd):
        wl, gsd_t = super().check_inputs(image, wavelengths, gsd)
        if image.shape[1] != self.in_chans:
            raise BandCountError(
                f"this stacked ViT was built for {self.in_chans} bands but the image has "
                f"{image.shape[1]}; build it with in_chans={image.shape[1]}"
            )
        return wl, gsd_t

    def _tokens(self, image, wavelengths, gsd):
        p = self.patch_size
        x = self.patch_embed(rearrange(image, "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=p))
        dtype = torch.promote_types(x.dtype, self.cls_token.dtype)  # float32 under autocast
        x = x.to(dtype) + grid_sincos_2d(self.grid_size(image, p), gsd, self.embed_dim).to(dtype)
        x = torch.cat([self.cls_token[:, 0].to(dtype).expand(len(x), 1, -1), x], dim=1)
        return self.pos_drop(x[:, None]), None


# --------------------------------------------------------------------------- constructors
def _sized(cls, size: str, **overrides):
    return cls(**{**VIT_SIZES[size], **overrides})


@register_model
def joint_vit_tiny(**overrides) -> JointViT:
    return _sized(JointViT, "tiny", **overrides)


@register_model
def joint_vit_small(**overrides) -> JointViT:
    return _sized(JointViT, "small", **overrides)


@register_model
def joint_vit_base(**overrides) -> JointViT:
    return _sized(JointViT, "base", **overrides)


@register_model
def grouped_vit_tiny(**overrides) -> GroupedViT:
    return _sized(GroupedViT, "tiny", **overrides)


@register_model
def grouped_vit_small(**overrides) -> GroupedViT:
    return _sized(GroupedViT, "small", **overrides)


@register_model
def grouped_vit_base(**overrides) -> GroupedViT:
    return _sized(GroupedViT, "base", **overrides)


@register_model
def stacked_vit_tiny(**overrides) -> StackedViT:
    return _sized(StackedViT, "tiny", **overrides)


@register_model
def stacked_vit_small(**overrides) -> StackedViT:
    return _sized(StackedViT, "small", **overrides)


@register_model
def stacked_vit_base(**overrides) -> StackedViT:
    return _sized(StackedViT, "base", **overrides)
