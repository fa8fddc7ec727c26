"""Masked autoencoding for LESS ViT: independent position and band masking, a LESS decoder.

The hyperspectral MAE of Si et al., "Towards Scalable Foundation Model for Multi-modal and
Hyperspectral Geospatial Data", 2025:

* positions (patches) and bands are masked independently, 75% and 50% by default, at least
  two bands kept; the encoder sees only the kept (band, patch) tokens and the CLS slots;
* a decoder of LESS blocks (width 512, depth 4, 16 heads in the paper) puts three kinds of
  mask token where tokens were removed: patch tokens, channel-CLS tokens of removed
  positions and spatial-CLS tokens of removed bands; it adds its own positional-channel
  embedding over the full grid, so every band of every patch is reconstructed;
* a linear head per modality (optical, SAR) maps each token to the p x p pixels of its band;
* the loss is a position loss (mean over removed positions, all bands) plus a band loss
  (mean over removed bands, all positions), each a mean of squared pixel errors; pixels
  marked invalid (nodata) count in neither.

This module holds tensors only; the training loop lives in :mod:`geofm.tasks.mae`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
from einops import rearrange

from .embeddings import patchify, positional_channel_parts
from .encoder import drop_path_rates, init_weights
from .less_vit import LayerNorm, LESSBlock, LESSViT, by_modality, perception_field_mask

__all__ = ["LESSMAE", "MAEOutput", "random_keep", "patchify", "unpatchify", "masked_losses"]


def random_keep(
    batch: int,
    total: int,
    ratio: float,
    min_keep: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw which of ``total`` items each sample keeps when ``ratio`` of them are masked.

    Returns kept indices (B, K), sorted, and a boolean mask (B, total), True = removed.
    K = max(int(total * (1 - ratio)), min_keep), never more than ``total``.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"a mask ratio must be in [0, 1), got {ratio}")
    keep = min(max(int(total * (1.0 - ratio)), min_keep), total)
    noise = torch.rand(batch, total, generator=generator, device=device)
    kept = noise.argsort(dim=1)[:, :keep].sort(dim=1).values
    removed = torch.ones(batch, total, dtype=torch.bool, device=kept.device)
    removed.scatter_(1, kept, False)
    return kept, removed


def unpatchify(patches: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """(B, C, N, p*p) -> (B, C, H, W); the inverse of :func:`patchify`."""
    p = int(round(patches.shape[-1] ** 0.5))
    return rearrange(patches, "b c (h w) (p q) -> b c (h p) (w q)", h=grid_hw[0], p=p)


def masked_losses(
    pred: torch.Tensor,
    target: torch.Tensor,
    removed_positions: torch.Tensor,
    removed_bands: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Position loss and band loss of a reconstruction.

    pred, target: (B, C, N, P) pixels per (band, patch); removed_positions: (B, N) and
    removed_bands: (B, C), True = masked; valid: (B, N, P) pixels that count (None: all).
    Position loss: mean squared error over the pixels of removed positions, all bands. Band
    loss: over removed bands, all positions. A part with no pixel to count gives 0.
    """
    err = (pred.float() - target.float()).square()  # (B, C, N, P)
    weight = torch.ones_like(err[:, :1]) if valid is None else valid[:, None].to(err.dtype)
    pixel_err = (err * weight).sum(dim=-1)  # (B, C, N)
    pixel_count = weight.sum(dim=-1).expand_as(pixel_err)  # (B, C, N)

    def mean_over(select: torch.Tensor) -> torch.Tensor:
        count = (pixel_count * select).sum()
        return (pixel_err * select).sum() / count.clamp_min(1.0)

    position = mean_over(removed_positions[:, None, :].to(err.dtype))
    band = mean_over(removed_bands[:, :, None].to(err.dtype))
    return position, band


@dataclass
class MAEOutput:
    """What one masked-autoencoding pass returns (all tensors keep the batch first)."""

    loss: torch.Tensor  # position_loss + band_loss
    position_loss: torch.Tensor
    band_loss: torch.Tensor
    pred: torch.Tensor  # (B, C, N, p*p) reconstruction, in the target's units
    target: torch.Tensor  # (B, C, N, p*p), normalised per patch when norm_pix_loss
    removed_positions: torch.Tensor  # (B, N) bool
    removed_bands: torch.Tensor  # (B, C) bool


class LESSMAE(nn.Module):
    """A LESS ViT encoder with the hyperspectral MAE decoder and pixel heads.

    forward(image (B, C, H, W), wavelengths (C,), gsd, valid=None (B, H, W)) -> MAEOutput.
    ``decoder_rank`` and ``decoder_radius_m`` default to the encoder's.
    """

    def __init__(
        self,
        encoder: LESSViT,
        decoder_dim: int = 512,
        decoder_depth: int = 4,
        decoder_heads: int = 16,
        decoder_dims_per_head: int = 2,
        decoder_rank: int | None = None,
        decoder_radius_m: float | Literal["encoder"] | None = "encoder",
        mask_ratio: float = 0.75,
        band_mask_ratio: float = 0.5,
        min_bands_kept: int = 2,
        norm_pix_loss: bool = False,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        if not isinstance(encoder, LESSViT):
            raise TypeError(f"LESSMAE needs a LESSViT encoder, got {type(encoder).__name__}")
        for name, ratio in (("mask_ratio", mask_ratio), ("band_mask_ratio", band_mask_ratio)):
            if not 0.0 <= ratio < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {ratio}")
        self.encoder = encoder
        self.patch_size = encoder.patch_size
        self.mask_ratio, self.band_mask_ratio = mask_ratio, band_mask_ratio
        self.min_bands_kept = min_bands_kept
        self.norm_pix_loss = norm_pix_loss
        if isinstance(decoder_radius_m, str) and decoder_radius_m != "encoder":
            raise ValueError(
                f"decoder_radius_m must be a radius in metres, None (no limit) "
                f"or 'encoder' (the encoder's), got {decoder_radius_m!r}"
            )
        self.decoder_radius_m = (
            encoder.perception_radius_m if decoder_radius_m == "encoder" else decoder_radius_m
        )
        rank = encoder.rank if decoder_rank is None else decoder_rank
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, decoder_dim))
        self.channel_mask_token = nn.Parameter(torch.zeros(1, 1, 1, decoder_dim))
        self.spatial_mask_token = nn.Parameter(torch.zeros(1, 1, 1, decoder_dim))
        self.decoder_blocks = nn.ModuleList(
            LESSBlock(decoder_dim, decoder_heads, decoder_dims_per_head, rank, drop_path=dpr)
            for dpr in drop_path_rates(drop_path_rate, decoder_depth)
        )
        self.decoder_norm = LayerNorm(decoder_dim)
        pixels = self.patch_size**2
        self.optical_head = nn.Linear(decoder_dim, pixels)
        self.radar_head = nn.Linear(decoder_dim, pixels)
        for module in (
            self.decoder_embed,
            self.decoder_blocks,
            self.decoder_norm,
            self.optical_head,
            self.radar_head,
        ):
            module.apply(init_weights)
        for token in (self.mask_token, self.channel_mask_token, self.spatial_mask_token):
            nn.init.normal_(token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        names = {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
        return names | {n for n, _ in self.named_parameters() if n.endswith("mask_token")}

    # ------------------------------------------------------------------ pieces
    def draw_masks(
        self, batch: int, bands: int, patches: int, device, generator: torch.Generator | None = None
    ):
        """Kept and removed bands and positions, drawn independently per sample."""
        kept_bands, removed_bands = random_keep(
            batch, bands, self.band_mask_ratio, self.min_bands_kept, generator, device
        )
        kept_patches, removed_positions = random_keep(
            batch, patches, self.mask_ratio, 1, generator, device
        )
        return kept_bands, removed_bands, kept_patches, removed_positions

    def decode(
        self,
        latent: torch.Tensor,
        kept_bands: torch.Tensor,
        kept_patches: torch.Tensor,
        wavelengths: torch.Tensor,
        grid_hw: tuple[int, int],
        gsd: torch.Tensor,
    ) -> torch.Tensor:
        """latent: (B, Kc+1, Kn+1, D) -> pixels (B, C, N, p*p) for every band and patch."""
        B = latent.shape[0]
        C, N = wavelengths.shape[0], grid_hw[0] * grid_hw[1]
        y = self.decoder_embed(latent)
        Dd = y.shape[-1]
        rows = torch.arange(C + 1, device=y.device)[None, :, None, None]
        cols = torch.arange(N + 1, device=y.device)[None, None, :, None]
        dtype = torch.promote_types(y.dtype, self.mask_token.dtype)  # float32 under autocast
        y = y.to(dtype)
        grid = torch.where(
            rows == 0,
            self.channel_mask_token.to(dtype),
            torch.where(cols == 0, self.spatial_mask_token.to(dtype), self.mask_token.to(dtype)),
        )
        grid = grid.expand(B, C + 1, N + 1, Dd).clone()
        zero = kept_bands.new_zeros(B, 1)
        row_idx = torch.cat([zero, kept_bands + 1], dim=1)  # (B, Kc+1)
        col_idx = torch.cat([zero, kept_patches + 1], dim=1)  # (B, Kn+1)
        batch_idx = torch.arange(B, device=y.device)[:, None, None]
        grid[batch_idx, row_idx[:, :, None], col_idx[:, None, :]] = y
        pos, chan = positional_channel_parts(wavelengths, grid_hw, gsd, Dd, dtype)
        grid = grid + pos + chan
        mask = perception_field_mask(grid_hw, self.patch_size, gsd, self.decoder_radius_m)
        for block in self.decoder_blocks:
            grid = block(grid, mask)
        tokens = self.decoder_norm(grid)[:, 1:, 1:]  # (B, C, N, Dd)
        return by_modality(tokens, wavelengths, self.optical_head, self.radar_head)

    def target(self, image: torch.Tensor, valid_px: torch.Tensor | None = None) -> torch.Tensor:
        """The pixels to reconstruct: (B, C, N, p*p), normalised per patch if asked.

        valid_px: (B, N, p*p) pixels that count; with ``norm_pix_loss`` each patch's mean and
        variance come from those alone, so nodata does not shift the valid pixels' targets.
        """
        target = patchify(image, self.patch_size)
        if self.norm_pix_loss:
            w = (
                torch.ones_like(target[:, :1])
                if valid_px is None
                else valid_px[:, None].to(target.dtype)
            )
            count = w.sum(dim=-1, keepdim=True)
            mean = (target * w).sum(dim=-1, keepdim=True) / count.clamp_min(1.0)
            # unbiased, as MAE's; a patch with one counted pixel gets variance 0
            var = ((target - mean).square() * w).sum(dim=-1, keepdim=True) / (
                count - 1.0
            ).clamp_min(1.0)
            target = (target - mean) / (var + 1e-6).sqrt()
        return target

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        image: torch.Tensor,
        wavelengths,
        gsd,
        valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MAEOutput:
        wl, gsd_t = self.encoder.check_inputs(image, wavelengths, gsd)
        B, C, H, W = image.shape
        p = self.patch_size
        grid_hw = (H // p, W // p)
        N = grid_hw[0] * grid_hw[1]
        if C < self.min_bands_kept:
            raise ValueError(
                f"the MAE keeps at least {self.min_bands_kept} bands; this image has {C}"
            )
        kept_bands, removed_bands, kept_patches, removed_positions = self.draw_masks(
            B, C, N, image.device, generator
        )
        latent = self.encoder.encode_kept(image, wl, gsd_t, kept_bands, kept_patches)
        pred = self.decode(latent, kept_bands, kept_patches, wl, grid_hw, gsd_t)
        valid_px = None if valid is None else patchify(valid[:, None].float(), p)[:, 0]
        target = self.target(image, valid_px)
        position_loss, band_loss = masked_losses(
            pred, target, removed_positions, removed_bands, valid_px
        )
        return MAEOutput(
            position_loss + band_loss,
            position_loss,
            band_loss,
            pred,
            target,
            removed_positions,
            removed_bands,
        )
