"""Band-shared patch embeddings and the continuous positional-channel embedding.

Both follow LESS ViT (Si et al., "Towards Scalable Foundation Model for Multi-modal and
Hyperspectral Geospatial Data", 2025):

* every band is embedded on its own by one shared network, so the number of bands is free;
  optical and SAR bands have separate networks;
* a token's position is encoded from where it lies on the ground (patch grid index times the
  ground sampling distance, in metres) and its band from its centre wavelength in nanometres,
  each with a fixed sine-cosine code; the two codes are averaged. Nothing is learnt, so one
  set of weights serves every band set and every resolution.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange

__all__ = [
    "SAR_PSEUDO_WAVELENGTHS_NM",
    "BandPatchEmbed",
    "GroupPatchEmbed",
    "sincos_1d",
    "grid_sincos_2d",
    "patchify",
    "positional_channel_embedding",
    "positional_channel_parts",
    "radar_bands",
]

#: Sentinel-1 VV and VH carry these pseudo-wavelengths (the LESS ViT authors' convention).
SAR_PSEUDO_WAVELENGTHS_NM = (5500.0, 5700.0)


def radar_bands(wavelengths_nm: torch.Tensor) -> torch.Tensor:
    """Which bands are SAR, by the pseudo-wavelength convention. wavelengths: (C,) -> bool (C,)."""
    sar = torch.tensor(
        SAR_PSEUDO_WAVELENGTHS_NM, dtype=wavelengths_nm.dtype, device=wavelengths_nm.device
    )
    return (wavelengths_nm[:, None] == sar).any(dim=1)


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sine-cosine code of real-valued ``positions``: (M,) -> (M, dim).

    The first half holds ``sin(pos * w_i)``, the second ``cos(pos * w_i)`` with
    ``w_i = 10000 ** (-i / (dim / 2))``. Computed in float64: wavelengths reach thousands of
    nanometres, where float32 phases lose the fourth decimal.
    """
    if dim % 2:
        raise ValueError(f"a sine-cosine code needs an even width, got {dim}")
    half = dim // 2
    omega = 1.0 / 10000.0 ** (
        torch.arange(half, dtype=torch.float64, device=positions.device) / half
    )
    phase = positions.to(torch.float64).reshape(-1, 1) * omega
    return torch.cat([phase.sin(), phase.cos()], dim=1)


def grid_sincos_2d(grid_hw: tuple[int, int], gsd_m: torch.Tensor, dim: int) -> torch.Tensor:
    """Ground-distance code of a patch grid: (B,) metres -> (B, h*w, dim), float64.

    Patch (i, j) sits at ``(i * gsd, j * gsd)``; the first half of the code encodes the column
    distance, the second the row distance (the MAE layout). Patches are row-major.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine code needs a width divisible by 4, got {dim}")
    h, w = grid_hw
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64, device=gsd_m.device),
        torch.arange(w, dtype=torch.float64, device=gsd_m.device),
        indexing="ij",
    )
    gsd = gsd_m.to(torch.float64).reshape(-1, 1)  # (B, 1)
    col_m = (cols.reshape(1, -1) * gsd).reshape(-1)
    row_m = (rows.reshape(1, -1) * gsd).reshape(-1)
    code = torch.cat([sincos_1d(col_m, dim // 2), sincos_1d(row_m, dim // 2)], dim=1)
    return code.reshape(gsd.shape[0], h * w, dim)


def positional_channel_parts(
    wavelengths_nm: torch.Tensor,
    grid_hw: tuple[int, int],
    gsd_m: torch.Tensor,
    dim: int,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two halves of :func:`positional_channel_embedding`, ready to broadcast-add:
    ``pos / 2`` as (B, 1, N+1, dim) and ``chan / 2`` as (1, C+1, 1, dim), in ``dtype``.

    Adding them to the token grid one after the other never builds the full
    (B, C+1, N+1, dim) table (gigabytes at hundreds of bands).
    """
    pos = grid_sincos_2d(grid_hw, gsd_m, dim)  # (B, N, D)
    chan = sincos_1d(wavelengths_nm, dim)  # (C, D)
    pos = torch.cat([pos.new_zeros(pos.shape[0], 1, dim), pos], dim=1) / 2
    chan = torch.cat([chan.new_zeros(1, dim), chan], dim=0) / 2
    return pos[:, None].to(dtype), chan[None, :, None].to(dtype)


def positional_channel_embedding(
    wavelengths_nm: torch.Tensor, grid_hw: tuple[int, int], gsd_m: torch.Tensor, dim: int
) -> torch.Tensor:
    """The LESS ViT token embedding for a (C+1) x (N+1) token grid.

    wavelengths_nm: (C,); gsd_m: (B,) -> (B, C+1, N+1, dim) in float64.

    Slot ``[c, n]`` gets ``(chan[c] + pos[n]) / 2`` where ``chan[0]`` and ``pos[0]`` (the CLS
    indices) are zero: the global CLS at ``[0, 0]`` gets zeros, a channel-CLS ``[0, n]`` keeps
    half its patch's position code and a spatial-CLS ``[c, 0]`` half its band's code, as in
    the authors' implementation. Models add :func:`positional_channel_parts` instead.
    """
    pos, chan = positional_channel_parts(wavelengths_nm, grid_hw, gsd_m, dim)
    return pos + chan


def patchify(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, h*w, p*p), patches row-major, pixels row-major inside a patch."""
    return rearrange(image, "b c (h p) (w q) -> b c (h w) (p q)", p=patch_size, q=patch_size)


class BandPatchEmbed(nn.Module):
    """Embed each band's p x p patches with one network shared by all bands.

    image: (B, C, H, W) -> tokens (B, C, N, D), N = (H/p)(W/p).

    The paper writes it as Conv3d(1 -> 2D, kernel (1, p, p), stride (1, p, p)), ReLU, then a
    1 x 1 x 1 Conv3d(2D -> D); convolutions whose kernel equals their stride are linear maps
    of the flattened patch, which is how it is computed here (no 5-D layout, no permute).
    """

    def __init__(self, patch_size: int = 16, embed_dim: int = 768, hidden_ratio: int = 2):
        super().__init__()
        self.patch_size = patch_size
        self.fc1 = nn.Linear(patch_size * patch_size, hidden_ratio * embed_dim)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_ratio * embed_dim, embed_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(patchify(image, self.patch_size))))


class GroupPatchEmbed(nn.Module):
    """Embed groups of ``bands_per_group`` adjacent bands jointly (SatMAE-style groups).

    bands: (B, G, g, H, W) -> tokens (B, G, N, D): a linear map of the g x p x p block, the
    grouped-ViT baseline's tokeniser (Cong et al., "SatMAE", 2022).
    """

    def __init__(self, patch_size: int = 16, embed_dim: int = 768, bands_per_group: int = 4):
        super().__init__()
        self.patch_size = patch_size
        self.bands_per_group = bands_per_group
        self.proj = nn.Linear(bands_per_group * patch_size * patch_size, embed_dim)

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        return self.proj(rearrange(groups, "b G g (h p) (w q) -> b G (h w) (g p q)", p=p, q=p))
