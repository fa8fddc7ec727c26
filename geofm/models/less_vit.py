"""LESS ViT: low-rank spatial-spectral attention over (band, patch) tokens.

Si et al., "Towards Scalable Foundation Model for Multi-modal and Hyperspectral Geospatial
Data", 2025. Where geofm follows the authors' code and where it computes the same result
differently: ``docs/design_notes.md``, "LESS ViT".

Every band of every patch is a token; with C bands and N patches plus CLS slots the grid is
``x: (B, C+1, N+1, D)``. Full attention over that grid costs ((C+1)(N+1))^2. LESS attention
instead pools the grid into C+1 spectral tokens and N+1 spatial tokens, attends within each
set with r query/key components per head, and combines the two with a Kronecker product:

    out[c, n] = vec( sum_k Y_c^k[c] (outer) Y_s^k[n] ),   heads concatenated, then Linear(D, D)

which equals attention over all (C+1)(N+1) tokens with the map sum_k (A_c^k kron A_s^k)
applied to Kronecker-factored values V_c kron V_s. Here the sum over k is the inner dimension
of one batched GEMM, so the r outer products are never formed.

The perception field restricts the spatial branch to patches within a disk of
``perception_radius_m`` metres; CLS rows and columns are never masked.

File layout (timm's): building blocks, the model, its sizes, registered constructors.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
from timm.layers import DropPath, LayerScale, Mlp
from torch.nn.modules import module as _global_hooks  # torch's registry of global hooks

from ..kernels import kron_combine_proj, kronecker_combine, masked_attention, triton_selected
from .embeddings import BandPatchEmbed, positional_channel_parts, radar_bands
from .encoder import InputError, SpectralEncoder, check_heads, drop_path_rates, init_weights
from .lora import effective_weight
from .registry import register_model

__all__ = [
    "perception_field_mask",
    "kronecker_combine",
    "AttentionPool",
    "SpectralSpatialPool",
    "LowRankBranch",
    "LESSAttention",
    "LESSBlock",
    "LESSViT",
    "TokenGrid",
    "by_modality",
    "VIT_SIZES",
]

LayerNorm = partial(nn.LayerNorm, eps=1e-6)

#: Widths, depths and heads of the named sizes (timm's ViT-Ti, ViT-S, ViT-B).
VIT_SIZES = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
}


# --------------------------------------------------------------------------- building blocks
def perception_field_mask(
    grid_hw: tuple[int, int],
    patch_size: int,
    gsd_m: torch.Tensor,
    radius_m: float | None,
    patches: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Which spatial tokens may attend to which: a disk of ``radius_m`` metres on the ground.

    gsd_m: (B,); patches: the (B, L) row-major indices of the patches present (after
    masking), or None for the whole grid. Returns bool (B', 1, L+1, L+1), True = may attend;
    B' is 1 when the whole grid is present and the batch shares one GSD. Patch p sees q when
    ``|grid_p - grid_q| * patch_size * gsd <= radius``; row and column 0 (the spatial CLS)
    are always open. ``radius_m=None`` (no perception field) returns None: all may attend.
    """
    if radius_m is None:
        return None
    h, w = grid_hw
    gsd = gsd_m.to(torch.float64)
    if patches is None:
        patches = torch.arange(h * w, device=gsd_m.device)[None]
        if bool((gsd == gsd[0]).all()):
            gsd = gsd[:1]
    rows, cols = patches // w, patches % w
    # squared distances in grid units are integers: compare exactly, not after a sqrt
    d2 = (rows[:, :, None] - rows[:, None, :]) ** 2 + (cols[:, :, None] - cols[:, None, :]) ** 2
    step = patch_size * gsd.reshape(-1, 1, 1)
    inside = d2.to(torch.float64) * step**2 <= float(radius_m) ** 2  # (B', L, L)
    n = patches.shape[1]
    mask = torch.ones(inside.shape[0], n + 1, n + 1, dtype=torch.bool, device=gsd_m.device)
    mask[:, 1:, 1:] = inside
    return mask[:, None]


class AttentionPool(nn.Module):
    """Pool one axis of the token grid into a single token per row or column.

    The axis' first element (its CLS token) is the only query; keys and values are every
    element of the axis. x: (B, C+1, N+1, E); ``axis=2`` pools over patches -> (B, C+1, E),
    ``axis=1`` pools over bands -> (B, N+1, E). Weights are named as in a standard attention
    (``q``, ``kv``, ``proj``).

    With one query per head the keys and values need not be formed: the logits are
    ``q_h . (W_k,h x + b_k,h) / sqrt(e) = (W_k,h^T q_h / sqrt(e)) . x + const``, where the
    constant cancels in the softmax, and since the weights sum to one the output is
    ``W_v,h (sum_l p_l x_l) + b_v,h``. That is exactly the attention, at O(h E) per token
    instead of the O(E^2) of projecting every token to keys and values.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        check_heads(dim, num_heads)
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        B, R, L, E = x.shape
        h, e = self.num_heads, E // self.num_heads
        if axis == 2:  # one query per band row, keys over its patches
            query, elements = x[:, :, 0], x.reshape(B * R, L, E)
        elif axis == 1:  # one query per patch column, keys over its bands
            query, elements = x[:, 0], x.transpose(1, 2).reshape(B * L, R, E)
        else:
            raise ValueError(f"axis must be 1 (bands) or 2 (patches), got {axis}")
        M = query.shape[1]
        q = self.q(query).reshape(B * M, h, e)
        # through effective_weight, so that a LoRA update of kv applies here too
        w_k, w_v = effective_weight(self.kv).reshape(2, h, e, E).unbind(0)
        # queries pulled back to the input space: (B*M, h, E)
        u = torch.einsum("mhe,hef->mhf", q, w_k.to(q.dtype)) * e**-0.5
        logits = torch.bmm(u, elements.transpose(1, 2).to(u.dtype))  # (B*M, h, keys)
        weights = self.attn_drop(logits.softmax(dim=-1))
        pooled = torch.bmm(weights, elements.to(weights.dtype))  # (B*M, h, E)
        out = torch.einsum("mhf,hef->mhe", pooled, w_v.to(pooled.dtype))
        if self.kv.bias is not None:
            # the weights sum to one, except where attention dropout removed some
            total = weights.sum(dim=-1, keepdim=True)
            out = out + total * self.kv.bias.reshape(2, h, e)[1].to(out.dtype)
        return self.proj_drop(self.proj(out.reshape(B, M, E)))


class SpectralSpatialPool(nn.Module):
    """Reduce the token grid to C+1 spectral and N+1 spatial tokens.

    x: (B, C+1, N+1, D) -> x_c: (B, C+1, h*a), x_s: (B, N+1, h*b). The spectral token of a
    band is its spatial-CLS element plus an attention pool over its patches; the spatial token
    of a patch is its channel-CLS element plus an attention pool over its bands.
    """

    def __init__(
        self,
        dim: int,
        channel_dim: int,
        spatial_dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        self.channel_in = nn.Linear(dim, channel_dim)
        self.spatial_in = nn.Linear(dim, spatial_dim)
        self.channel_norm = LayerNorm(channel_dim)
        self.spatial_norm = LayerNorm(spatial_dim)
        pool = partial(
            AttentionPool,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
        )
        self.channel_pool = pool(channel_dim)
        self.spatial_pool = pool(spatial_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xc = self.channel_in(x)
        x_c = xc[:, :, 0] + self.channel_pool(self.channel_norm(xc), axis=2)
        xs = self.spatial_in(x)
        x_s = xs[:, 0] + self.spatial_pool(self.spatial_norm(xs), axis=1)
        return x_c, x_s


class LowRankBranch(nn.Module):
    """Attention within one token set with r query/key components per head and one value.

    x: (B, L, h*d) -> (B, h, r, L, d):  Y^k = softmax(Q^k K^k^T / sqrt(d) + M) V.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        head_dim: int,
        rank: int = 1,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
    ):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        self.num_heads, self.head_dim, self.rank = num_heads, head_dim, rank
        # output features ordered (q/k, head, rank, d), as in the authors' code
        self.qk = nn.Linear(dim, 2 * num_heads * rank * head_dim, bias=qkv_bias)
        self.v = nn.Linear(dim, num_heads * head_dim, bias=qkv_bias)
        self.attn_drop = attn_drop

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (B, L, dim) -> q, k: (B, h, r, L, d) and v: (B, h, 1, L, d)."""
        B, L, _ = x.shape
        h, r, d = self.num_heads, self.rank, self.head_dim
        q, k = self.qk(x).reshape(B, L, 2, h, r, d).permute(2, 0, 3, 4, 1, 5).unbind(0)
        v = self.v(x).reshape(B, L, h, 1, d).permute(0, 2, 3, 1, 4)
        return q, k, v

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.qkv(x)
        B, h, r, L, d = q.shape
        # SDPA, or on CUDA with a mask the block-sparse Triton kernel (geofm.kernels)
        out = masked_attention(
            q.reshape(B, h * r, L, d),
            k.reshape(B, h * r, L, d),
            v.expand(B, h, r, L, d).reshape(B, h * r, L, d),
            mask,
            dropout_p=self.attn_drop if self.training else 0.0,
        )
        return out.reshape(B, h, r, L, d)


_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _plain_linear(module: nn.Module) -> bool:
    """A bare ``nn.Linear`` that no hook watches and whose ``forward`` is its class's, so
    that applying its weight directly is the same as calling it (a hook could prune, shard,
    offload, observe or replace the call)."""
    return (
        type(module) is nn.Linear
        and "forward" not in vars(module)
        and not any(getattr(module, name, None) for name in _HOOKS)
        and not any(getattr(_global_hooks, "_global" + name, None) for name in _HOOKS)
    )


class LESSAttention(nn.Module):
    """The LESS attention of one block. x: (B, C+1, N+1, D) -> (B, C+1, N+1, D).

    dims_per_head is a (spectral width per head); b = D / (num_heads * a) is the spatial width,
    so a head's output a*b equals D / num_heads.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        dims_per_head: int = 2,
        rank: int = 1,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ):
        super().__init__()
        check_heads(dim, num_heads, dims_per_head)
        a = dims_per_head
        b = dim // (num_heads * a)
        self.num_heads, self.rank = num_heads, rank
        self.pool = SpectralSpatialPool(
            dim, num_heads * a, num_heads * b, num_heads, qkv_bias, attn_drop, proj_drop
        )
        self.channel_norm = LayerNorm(num_heads * a)
        self.spatial_norm = LayerNorm(num_heads * b)
        self.channel_branch = LowRankBranch(num_heads * a, num_heads, a, rank, qkv_bias, attn_drop)
        self.spatial_branch = LowRankBranch(num_heads * b, num_heads, b, rank, qkv_bias, attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def branches(
        self, x: torch.Tensor, spatial_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C+1, N+1, D) -> Y_c: (B, h, r, C+1, a), Y_s: (B, h, r, N+1, b)."""
        x_c, x_s = self.pool(x)
        y_c = self.channel_branch(self.channel_norm(x_c))
        y_s = self.spatial_branch(self.spatial_norm(x_s), spatial_mask)
        return y_c, y_s

    def forward(self, x: torch.Tensor, spatial_mask: torch.Tensor | None = None) -> torch.Tensor:
        y_c, y_s = self.branches(x, spatial_mask)
        weight = self.proj.weight
        if _plain_linear(self.proj) and triton_selected(y_c, y_s, weight, op="kron_combine_proj"):
            # combine and projection fused in one Triton kernel (geofm.kernels)
            out = kron_combine_proj(y_c, y_s, weight, self.proj.bias)
        else:  # the reference, or LoRA, or a projection with hooks: called as a module
            out = self.proj(kronecker_combine(y_c, y_s))
        return self.proj_drop(out)


class LESSBlock(nn.Module):
    """Pre-norm LESS attention and MLP, each with LayerScale and DropPath."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        dims_per_head: int = 2,
        rank: int = 1,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
    ):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = LESSAttention(
            dim, num_heads, dims_per_head, rank, qkv_bias, attn_drop, proj_drop
        )
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, spatial_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), spatial_mask)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


# --------------------------------------------------------------------------- the model
def by_modality(
    x: torch.Tensor, wavelengths: torch.Tensor, optical: nn.Module, radar: nn.Module
) -> torch.Tensor:
    """Apply ``optical`` to the optical bands of ``x`` (dim 1) and ``radar`` to the SAR ones.

    Both modules always run, the one without bands on an empty slice, so that every
    parameter takes part in the graph (distributed data-parallel training requires it) and
    the result keeps the band order. The idle module gets zero gradients (AdamW's weight
    decay still shrinks it).
    """
    is_radar = radar_bands(wavelengths)
    optical_idx, radar_idx = (~is_radar).nonzero().flatten(), is_radar.nonzero().flatten()
    out = torch.cat([optical(x[:, optical_idx]), radar(x[:, radar_idx])], dim=1)
    if radar_idx.numel() == 0:
        return out
    return out[:, torch.argsort(torch.cat([optical_idx, radar_idx]))]


class TokenGrid(nn.Module):
    """Frame row tokens with the learnt CLS slots and add the positional-channel embedding.

    x: (B, R, N, D) with one wavelength per row (R,) -> (B, R+1, N+1, D): a global CLS at
    ``[0, 0]``, channel-CLS tokens along row 0, spatial-CLS tokens down column 0.
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 1, embed_dim))
        self.channel_cls_token = nn.Parameter(torch.zeros(1, 1, 1, embed_dim))
        self.spatial_cls_token = nn.Parameter(torch.zeros(1, 1, 1, embed_dim))
        for token in (self.cls_token, self.channel_cls_token, self.spatial_cls_token):
            nn.init.normal_(token, std=0.02)

    def forward(
        self,
        x: torch.Tensor,
        wavelengths: torch.Tensor,
        grid_hw: tuple[int, int],
        gsd: torch.Tensor,
    ) -> torch.Tensor:
        B, R, N, D = x.shape
        # the residual stream stays in the parameters' precision (float32 under bf16
        # autocast, as in timm's ViT); only the matrix products run in bf16
        dtype = torch.promote_types(x.dtype, self.cls_token.dtype)
        top = torch.cat(
            [
                self.cls_token.to(dtype).expand(B, 1, 1, D),
                self.channel_cls_token.to(dtype).expand(B, 1, N, D),
            ],
            dim=2,
        )
        body = torch.cat([self.spatial_cls_token.to(dtype).expand(B, R, 1, D), x.to(dtype)], dim=2)
        x = torch.cat([top, body], dim=1)
        pos, chan = positional_channel_parts(wavelengths, grid_hw, gsd, D, dtype)
        return x + pos + chan


class BandTokenizer(nn.Module):
    """Shared by LESS ViT and the joint-attention baseline: the (C+1) x (N+1) token grid.

    Optical and SAR bands (by :data:`~geofm.models.embeddings.SAR_PSEUDO_WAVELENGTHS_NM`)
    go through separate band-shared patch embeddings; CLS slots are learnt; the
    positional-channel embedding is added once.
    """

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.patch_size, self.embed_dim = patch_size, embed_dim
        self.patch_embed = BandPatchEmbed(patch_size, embed_dim)
        self.radar_patch_embed = BandPatchEmbed(patch_size, embed_dim)
        self.grid = TokenGrid(embed_dim)

    def embed_bands(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """image: (B, C, H, W) -> (B, C, N, D)."""
        return by_modality(image, wavelengths, self.patch_embed, self.radar_patch_embed)

    def forward(self, image, wavelengths, gsd) -> torch.Tensor:
        """-> x: (B, C+1, N+1, D)."""
        grid_hw = (image.shape[-2] // self.patch_size, image.shape[-1] // self.patch_size)
        return self.grid(self.embed_bands(image, wavelengths), wavelengths, grid_hw, gsd)


class LESSViT(SpectralEncoder):
    """The LESS ViT encoder: any band set, any GSD, one set of weights.

    forward(image (B, C, H, W), wavelengths (C,) nm, gsd metres) -> (B, D) global-CLS features
    (or logits when ``num_classes > 0``). ``perception_radius_m=None`` turns the perception
    field off.
    """

    def __init__(
        self,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        dims_per_head: int = 2,
        rank: int = 1,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        perception_radius_m: float | None = 640.0,
        num_classes: int = 0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        init_values: float | None = None,
    ):
        super().__init__()
        check_heads(embed_dim, num_heads, dims_per_head)
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.patch_size, self.embed_dim = patch_size, embed_dim
        self.rank, self.perception_radius_m = rank, perception_radius_m
        self.tokenizer = BandTokenizer(patch_size, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.ModuleList(
            LESSBlock(
                embed_dim,
                num_heads,
                dims_per_head,
                rank,
                mlp_ratio,
                qkv_bias,
                attn_drop_rate,
                proj_drop_rate,
                dpr,
                init_values,
            )
            for dpr in drop_path_rates(drop_path_rate, depth)
        )
        self.norm = LayerNorm(embed_dim)
        self._init_head(num_classes, drop_rate)
        self.apply(init_weights)

    def _tokens(self, image, wavelengths, gsd):
        x = self.pos_drop(self.tokenizer(image, wavelengths, gsd))
        grid_hw = self.grid_size(image, self.patch_size)
        return x, perception_field_mask(grid_hw, self.patch_size, gsd, self.perception_radius_m)

    def forward_masked(
        self,
        image: torch.Tensor,
        wavelengths,
        gsd,
        kept_bands: torch.Tensor,
        kept_patches: torch.Tensor,
    ) -> torch.Tensor:
        """Encode only some bands and patches of each sample (masked-autoencoder input).

        kept_bands: (B, Kc) band indices; kept_patches: (B, Kn) row-major patch indices.
        Returns the normalised grid (B, Kc+1, Kn+1, D) of the kept tokens and the CLS slots.
        Embeddings are those of the full grid, so a kept token knows its band and place; the
        perception field is built from the kept patches' positions.
        """
        wl, gsd_t = self.check_inputs(image, wavelengths, gsd)
        B, C = image.shape[:2]
        grid_hw = self.grid_size(image, self.patch_size)
        N = grid_hw[0] * grid_hw[1]
        for name, kept, total in (("kept_bands", kept_bands, C), ("kept_patches", kept_patches, N)):
            if kept.ndim != 2 or kept.shape[0] != B:
                raise InputError(f"{name} must be (B={B}, K), got {tuple(kept.shape)}")
            if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= total):
                raise InputError(f"{name} must index 0..{total - 1}")
        return self.encode_kept(image, wl, gsd_t, kept_bands, kept_patches)

    def encode_kept(
        self,
        image: torch.Tensor,
        wavelengths: torch.Tensor,
        gsd: torch.Tensor,
        kept_bands: torch.Tensor,
        kept_patches: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`forward_masked` for inputs already checked: ``wavelengths`` (C,) and
        ``gsd`` (B,) as :meth:`check_inputs` returns them, indices in range (the
        masked autoencoder draws them itself and checks its batch once)."""
        B = image.shape[0]
        grid_hw = self.grid_size(image, self.patch_size)
        x = self.pos_drop(self.tokenizer(image, wavelengths, gsd))
        zero = kept_bands.new_zeros(B, 1)
        rows = torch.cat([zero, kept_bands + 1], dim=1)
        cols = torch.cat([zero, kept_patches + 1], dim=1)
        D = x.shape[-1]
        x = x.gather(1, rows[:, :, None, None].expand(-1, -1, x.shape[2], D))
        x = x.gather(2, cols[:, None, :, None].expand(-1, x.shape[1], -1, D))
        mask = perception_field_mask(
            grid_hw, self.patch_size, gsd, self.perception_radius_m, patches=kept_patches
        )
        for block in self.blocks:
            x = self._block(block, x, mask)
        return self.norm(x)

    def _run_block(self, block, x, spatial_mask):
        return block(x, spatial_mask)


# --------------------------------------------------------------------------- constructors
def _less_vit(size: str, **overrides) -> LESSViT:
    return LESSViT(**{**VIT_SIZES[size], **overrides})


@register_model
def less_vit_tiny(**overrides) -> LESSViT:
    """LESS ViT-Ti (D 192, 12 blocks, 3 heads): for tests and CPU demos."""
    return _less_vit("tiny", **overrides)


@register_model
def less_vit_small(**overrides) -> LESSViT:
    """LESS ViT-S (D 384, 12 blocks, 6 heads)."""
    return _less_vit("small", **overrides)


@register_model
def less_vit_base(**overrides) -> LESSViT:
    """LESS ViT-B (D 768, 12 blocks, 12 heads; a = 2, b = 32)."""
    return _less_vit("base", **overrides)
