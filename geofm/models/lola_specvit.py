"""LoLA-SpecViT: a light hyperspectral pixel classifier with local windows, SwiGLU and LoRA.

After Zidi et al., "LoLA-SpecViT: Local Attention SwiGLU Vision Transformer with LoRA for
Hyperspectral Imaging" (2025). The model classifies the centre pixel of a small window of
a hyperspectral scene:

1. **Spectral reduction** (:class:`SpectralReduction`): PCA of the bands to ``K``
   standardised components. It is fitted on the training pixels by default; fitting on
   every pixel of the scene (the released code's transductive choice) is an option kept for
   parity with the paper. Pixels outside the scene become 0 (the training mean).
2. **3-D convolutional front-end** over (components, rows, cols), with batch norm and Swish,
   then the spectral axis folded into channels.
3. **Patch embedding** (1 x 1 convolution) to tokens, one per pixel of the feature map.
4. **Stages of local-window attention** (:class:`WindowBlock`): windows of ``w x w`` tokens,
   every second block shifted by ``w // 2`` with the attention mask that keeps wrapped-around
   regions apart, the map padded to a multiple of ``w`` with padding masked out, a learned
   relative position bias, and **SwiGLU** feed-forward layers. Between stages, 2 x 2 patch
   merging halves the map and doubles the width.
5. Layer norm, mean over tokens, linear head.

This module follows the paper's description where the released training code does
otherwise (the differences: ``docs/design_notes.md``, "LoLA-SpecViT"): windows smaller than
the feature map, plain LoRA (:mod:`geofm.models.lora`) on ``qkv``, the attention ``proj``
and the SwiGLU projections ``w12`` and ``w3``, and a cyclical LoRA scale
(:class:`geofm.tasks.callbacks.CyclicLoRAScale`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath, trunc_normal_

from .lora import freeze_except_lora, inject_lora
from .registry import register_model

__all__ = [
    "LOLA_LORA_TARGETS",
    "LoLASpecViT",
    "SpectralReduction",
    "SwiGLU",
    "WindowAttention",
    "WindowBlock",
    "WindowClassifier",
    "shifted_window_mask",
    "square_symmetry",
    "window_logits",
    "window_partition",
    "window_reverse",
]

#: The linear layers LoRA adapts in ``lora`` mode: attention qkv and output projection, the
#: SwiGLU input (gate and value, fused) and output projections.
LOLA_LORA_TARGETS = ("qkv", "proj", "w12", "w3")


class SpectralReduction(nn.Module):
    """PCA of the spectra to ``components`` scores, stored as buffers.

    ``fit(pixels)`` takes ``(N, C)`` spectra; ``forward`` maps ``(B, C, H, W)`` to
    ``(B, K, H, W)`` with ``(x - mean) @ V / sd``, where ``V`` holds the leading right singular
    vectors of the centred training pixels (or directions kept from a base model: :meth:`fit`
    with ``keep_basis``). With ``whiten`` every score is divided by its
    own standard deviation (all components weigh the same); without (the default), all are
    divided by the first component's, so the scores keep their relative variances and the
    weak components, which a few training pixels estimate poorly, stay small. Signs are fixed
    so that each component's largest loading is positive (SVD signs are arbitrary). Invalid
    pixels (``valid`` False) come out as 0.
    """

    # the buffers registered in __init__ (declared for type checkers)
    mean: torch.Tensor
    basis: torch.Tensor
    scale: torch.Tensor
    fitted: torch.Tensor
    explained: torch.Tensor

    def __init__(self, bands: int, components: int, whiten: bool = False) -> None:
        super().__init__()
        if components < 1 or components > bands:
            raise ValueError(
                f"PCA components must lie in 1..{bands} (the band count), got {components}"
            )
        self.bands, self.components, self.whiten = bands, components, whiten
        self.register_buffer("mean", torch.zeros(bands))
        self.register_buffer("basis", torch.eye(bands)[:, :components].clone())
        self.register_buffer("scale", torch.ones(components))
        self.register_buffer("fitted", torch.tensor(False))
        self.register_buffer("explained", torch.zeros(components))

    @torch.no_grad()
    def fit(self, pixels: torch.Tensor, keep_basis: bool = False) -> SpectralReduction:
        """Fit on ``(N, C)`` spectra (float64 internally); returns ``self``.

        With ``keep_basis`` the directions already in :attr:`basis` are kept (a base
        model's components carried to this scene's bands, matched by name and wavelength:
        :func:`geofm.tasks.pixel_models.matched_basis`; set them first, the initial basis
        is the first ``components`` bands) and only the mean and the scale are fitted to
        these pixels. ``explained`` is then the share of these pixels' variance each
        kept direction carries.
        """
        x = torch.as_tensor(pixels).to(torch.float64)
        if x.ndim != 2 or x.shape[1] != self.bands:
            raise ValueError(f"PCA expects (pixels, {self.bands}) spectra, got {tuple(x.shape)}")
        if x.shape[0] < 2:
            raise ValueError(f"PCA needs at least 2 pixels to fit, got {x.shape[0]}")
        if not torch.isfinite(x).all():
            raise ValueError("PCA training pixels contain NaN or infinite values")
        mean = x.mean(0)
        explained = torch.zeros(self.components, dtype=torch.float64)
        if keep_basis:
            basis = self.basis.to(torch.float64)
            scores = (x - mean) @ basis
            total = (x - mean).pow(2).sum().clamp_min(1e-300)
            explained[:] = scores.pow(2).sum(0) / total
        else:
            _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)
            k = min(self.components, vh.shape[0])
            basis = torch.zeros(self.bands, self.components, dtype=torch.float64)
            basis[:, :k] = vh[:k].T
            signs = torch.sign(basis.gather(0, basis.abs().argmax(0, keepdim=True)))
            basis = basis * torch.where(signs == 0, 1.0, signs)
            var = s**2
            explained[:k] = var[:k] / var.sum().clamp_min(1e-300)
        sd = ((x - mean) @ basis).std(0)
        self.mean.copy_(mean)
        self.basis.copy_(basis)
        sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))
        self.scale.copy_(sd if self.whiten else sd[:1].expand_as(sd))
        self.explained.copy_(explained)
        self.fitted.fill_(True)
        return self

    def offset(self) -> torch.Tensor:
        """``(K,)`` ``mean @ basis / scale``: scores of ``a x`` are ``a s + (a - 1) offset``."""
        return self.mean @ (self.basis / self.scale)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError(
                "the spectral reduction is not fitted: call fit(pixels) with "
                "training spectra (LoLASpecViT.fit_reduction) before use"
            )
        if x.shape[1] != self.bands:
            raise ValueError(
                f"the model's PCA was fitted on {self.bands} bands, the input has {x.shape[1]}"
            )
        scores = torch.einsum(
            "bchw,ck->bkhw",
            x - self.mean[:, None, None].to(x.dtype),
            (self.basis / self.scale).to(x.dtype),
        )
        if valid is not None:
            scores = scores * valid[:, None].to(scores.dtype)
        return scores


# ------------------------------------------------------------------------------------------
# Windows


def square_symmetry(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th of the 8 symmetries of the square on the last two axes of ``x`` (square
    windows): ``k`` quarter turns, after a left-right flip for ``k >= 4``. Symmetry 0 is the
    identity; every one keeps the centre pixel of an odd window at the centre."""
    if not 0 <= k < 8:
        raise ValueError(f"a square has 8 symmetries (k = 0..7), got k = {k}")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"square windows only, got {x.shape[-2]} x {x.shape[-1]}")
    return torch.rot90(x.flip(-1) if k >= 4 else x, k % 4, dims=(-2, -1))


def window_logits(model: nn.Module, scores: torch.Tensor) -> torch.Tensor:
    """Logits ``(B, num_classes)`` of a window classifier on reduced windows ``(B, K, p, p)``:
    ``model.head(model.forward_reduced(scores))``, or, for a model with ``tta`` set and in
    eval mode, the mean of the logits of the 8 symmetries of each window
    (:func:`square_symmetry`; test-time augmentation with the flips and rotations the model
    is trained with). What the pixel protocol scores and what maps are drawn with; the
    per-epoch validation of training uses the plain logits."""
    m: Any = model  # duck-typed: any module with forward_reduced and head
    if m.training or not getattr(m, "tta", False):
        return m.head(m.forward_reduced(scores))
    total = m.head(m.forward_reduced(scores))
    for k in range(1, 8):
        total = total + m.head(m.forward_reduced(square_symmetry(scores, k)))
    return total / 8


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, D)`` with H, W multiples of ``window`` -> ``(B, nW, window**2, D)``."""
    return rearrange(x, "b (h p) (w q) d -> b (h w) (p q) d", p=window, q=window)


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    return rearrange(windows, "b (h w) (p q) d -> b (h p) (w q) d", h=H // window, p=window)


def _padded(size: int, window: int) -> int:
    return -(-size // window) * window


def shifted_window_mask(
    height: int, width: int, window: int, shift: int, device: torch.device | None = None
) -> torch.Tensor:
    """Which keys each query may attend to in the (shifted) windows of a ``height x width`` map.

    The map is padded at the bottom and right to multiples of ``window`` and rolled by
    ``-shift`` along both axes before partitioning (as in Swin, Liu et al., ICCV 2021). A
    pair may attend if both tokens come from the same region of the rolled map (so tokens
    wrapped around from the opposite edge stay apart) and the key is not padding. Padded
    queries follow the same rule and may also attend to themselves (so that no row is
    empty); their outputs are discarded.

    Returns ``(nW, window**2, window**2)`` bool, True = may attend, in the order of
    :func:`window_partition` applied to the rolled, padded map.
    """
    hp, wp = _padded(height, window), _padded(width, window)

    def regions(size: int, padded: int) -> torch.Tensor:
        # region of each position of the rolled axis: 0 interior, 1 last window's own part,
        # 2 the part wrapped around from the start of the axis
        ids = torch.zeros(padded, dtype=torch.long, device=device)
        if shift:
            ids[padded - window : padded - shift] = 1
            ids[padded - shift :] = 2
        return ids

    def padding(size: int, padded: int) -> torch.Tensor:
        pad = torch.zeros(padded, dtype=torch.bool, device=device)
        pad[size:] = True
        return torch.roll(pad, -shift) if shift else pad

    rows, cols = regions(height, hp), regions(width, wp)
    region = rows[:, None] * 3 + cols[None, :]
    pad = padding(height, hp)[:, None] | padding(width, wp)[None, :]
    region_w = window_partition(region[None, :, :, None], window)[0, :, :, 0]  # (nW, L)
    pad_w = window_partition(pad[None, :, :, None], window)[0, :, :, 0]
    allowed = (region_w[:, :, None] == region_w[:, None, :]) & ~pad_w[:, None, :]
    eye = torch.eye(window**2, dtype=torch.bool, device=device)
    return allowed | (pad_w[:, :, None] & eye)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias.

    ``forward(x, mask)``: x ``(B, nW, L, D)`` windows of ``L = window**2`` tokens, mask
    ``(nW, L, L)`` bool (True = may attend) -> ``(B, nW, L, D)``.
    """

    relative_index: torch.Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.window = num_heads, window
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_bias = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        trunc_normal_(self.relative_bias, std=0.02)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)  # (2, L)
        rel = coords[:, :, None] - coords[:, None, :] + window - 1  # (2, L, L)
        self.register_buffer("relative_index", rel[0] * (2 * window - 1) + rel[1], persistent=False)

    def no_weight_decay(self) -> set[str]:
        """The position-bias table is not decayed (as Swin's, Liu et al., ICCV 2021)."""
        return {"relative_bias"}

    def position_bias(self) -> torch.Tensor:
        """``(heads, L, L)`` bias added to the logits."""
        L = self.window**2
        return (
            self.relative_bias[self.relative_index.reshape(-1)].reshape(L, L, -1).permute(2, 0, 1)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, nW, L, D = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).reshape(B, nW, L, 3, h, D // h).permute(3, 0, 1, 4, 2, 5)
        bias = self.position_bias().to(q.dtype)[None, None]  # (1,1,h,L,L)
        if mask is not None:
            bias = bias.masked_fill(~mask[None, :, None], float("-inf"))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.0
        )
        out = out.transpose(2, 3).reshape(B, nW, L, D)
        return self.proj_drop(self.proj(out))


class SwiGLU(nn.Module):
    """SwiGLU feed-forward (Shazeer, "GLU Variants Improve Transformer", 2020):
    ``w3(silu(x W_g) * (x W_v))``, with the gate and value projections fused in ``w12``."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.drop(self.w3(self.drop(F.silu(gate) * value)))


class WindowBlock(nn.Module):
    """Pre-norm block: (shifted) window attention, then SwiGLU, each with a residual.

    ``forward(x)``: ``(B, H, W, D) -> (B, H, W, D)``. Maps whose sides are not multiples of
    the window are padded, with the padding masked out of the attention.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int,
        shift: bool,
        mlp_ratio: float = 2.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1 token, got {window}")
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwiGLU(dim, int(dim * mlp_ratio), drop)
        self._masks: dict[tuple, torch.Tensor] = {}

    def shift_for(self, H: int, W: int) -> int:
        """The shift used on an ``H x W`` map: ``window // 2`` for a shifted block, unless
        one window covers the whole map (then shifting changes nothing)."""
        return self.window // 2 if self.shift and self.window < max(H, W) else 0

    def _mask(self, H: int, W: int, window: int, shift: int, device) -> torch.Tensor:
        key = (H, W, window, shift, str(device))
        if key not in self._masks:
            self._masks[key] = shifted_window_mask(H, W, window, shift, device)
        return self._masks[key]

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The attention part alone on ``(B, H, W, D)`` (normed input, no residual)."""
        B, H, W, D = x.shape
        window, shift = self.window, self.shift_for(H, W)
        if window > max(H, W):
            raise ValueError(
                f"a {H} x {W} map is smaller than the {window}-token window; "
                "use a smaller window for this stage"
            )
        hp, wp = _padded(H, window), _padded(W, window)
        x = F.pad(x, (0, 0, 0, wp - W, 0, hp - H))
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = self.attn(window_partition(x, window), self._mask(H, W, window, shift, x.device))
        x = window_reverse(windows, window, hp, wp)
        if shift:
            x = torch.roll(x, shifts=(shift, shift), dims=(1, 2))
        return x[:, :H, :W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attend(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2 x 2 neighbouring tokens concatenated and projected: ``(B, H, W, D) ->
    (B, ceil(H/2), ceil(W/2), out)``; odd maps are zero padded first."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, D = x.shape
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = torch.cat(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1
        )
        return self.reduction(self.norm(x))


# ------------------------------------------------------------------------------------------
# The model


class WindowClassifier(nn.Module):
    """What the pixel protocol, prediction and maps use of a centre-pixel window classifier
    (LoLA-SpecViT, :class:`~geofm.models.ssftt.SSFTT`): a :class:`SpectralReduction` as
    ``reduction``, ``forward_reduced`` on reduced windows, a linear ``head``, the window
    width ``patch`` and the band count ``bands``. Subclasses set those and ``_init_head``."""

    bands: int
    patch: int
    num_classes: int
    reduction: SpectralReduction
    head: nn.Linear
    #: average the logits of the 8 flips and rotations of each window in eval mode
    #: (:func:`window_logits`)
    tta: bool = False

    def forward_reduced(self, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _init_head(self) -> None:
        raise NotImplementedError

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def fit_reduction(self, pixels: torch.Tensor, keep_basis: bool = False) -> WindowClassifier:
        """Fit the PCA on ``(N, bands)`` spectra; see :meth:`SpectralReduction.fit`."""
        self.reduction.fit(pixels, keep_basis)
        return self

    @staticmethod
    def check_patch(patch: int) -> None:
        if patch < 1 or patch % 2 == 0:
            raise ValueError(
                f"patch must be an odd number of pixels (the centre pixel is "
                f"classified), got {patch}"
            )

    def check_reduced(self, scores: torch.Tensor) -> None:
        """``scores`` must be ``(B, components, patch, patch)`` reduced windows."""
        K = self.reduction.components
        if scores.ndim != 4 or scores.shape[1:] != (K, self.patch, self.patch):
            raise ValueError(
                f"expected ({K}, {self.patch}, {self.patch}) reduced windows, got "
                f"{tuple(scores.shape)}"
            )

    def check_input(self, image: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1:] != (self.bands, self.patch, self.patch):
            raise ValueError(
                f"{type(self).__name__} expects (batch, {self.bands}, {self.patch}, "
                f"{self.patch}) windows, got {tuple(image.shape)}"
            )

    def forward_features(
        self, image: torch.Tensor, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled features of raw ``(B, bands, patch, patch)`` windows."""
        self.check_input(image)
        return self.forward_reduced(self.reduction(image.float(), valid))

    def forward(self, image: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of raw ``(B, bands, patch, patch)`` windows (:func:`window_logits`)."""
        self.check_input(image)
        return window_logits(self, self.reduction(image.float(), valid))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.head.in_features, num_classes)
        self._init_head()


class LoLASpecViT(WindowClassifier):
    """LoLA-SpecViT pixel classifier; see the module docstring.

    Args:
        bands: spectral bands of the input cube.
        num_classes: classes of the head.
        patch: width of the input window in pixels (odd: the centre pixel is classified).
        dilation: the model sees every ``dilation``-th row and column of the window, from
            the centre out: ``(patch - 1) // dilation + 1`` samples a side, so a wider
            extent of the scene at the cost of a smaller window (``patch=13, dilation=2``
            costs what ``patch=7`` does). ``patch - 1`` must be a multiple of
            ``2 * dilation`` (the centre pixel is sampled).
        components: PCA components kept (``K``).
        whiten: scale every PCA score to unit variance (see :class:`SpectralReduction`).
        conv_channels, conv_kernels: the 3-D front-end; each kernel is (spectral, row, col).
        conv_padding: ``"valid"`` (no padding: each layer shrinks the window, as in the
            released code) or ``"same"`` (spatial zero padding: the map keeps the window's
            size). The spectral axis is never padded.
        embed_dims, depths, num_heads: width, blocks and heads of each stage; between stages
            2 x 2 patch merging.
        window: attention window in tokens: one per stage, or one for all stages (then
            capped at each stage's map size).
        mlp_ratio: SwiGLU hidden width over the block width.
        drop_rate, attn_drop_rate, drop_path_rate: dropout, attention dropout and the
            largest stochastic depth (rising linearly over the blocks).
        pool: what the head sees: ``"mean"`` of the last stage's tokens (the released code),
            ``"center"`` the token(s) at the centre of the last map (the pixel being
            classified; attention brings the context in), or ``"both"`` concatenated.
        tta: when classifying in eval mode, average the logits of the 8 flips and rotations
            of each window (:func:`window_logits`); 8 times the inference cost.
        center_spectrum: a spectral branch beside the window's: the centre pixel's
            components, standardised (batch norm) and projected to ``embed_dims[-1]``,
            concatenated to the pooled features, so the head sees the pixel's own spectrum
            unmixed with its surroundings (the two-branch design of Xu et al.,
            "Multisource Remote Sensing Data Classification Based on Convolutional Neural
            Network", IEEE TGRS 2018, with a linear layer and SiLU in place of their 1-D
            CNN). In ``lora`` mode (:meth:`to_lora`) the branch is trained in full.

    ``forward(image, valid=None)``: ``(B, bands, patch, patch)`` raw spectra (reflectance
    or radiance as stored) and an optional ``(B, patch, patch)`` validity mask -> logits
    ``(B, num_classes)``. Call :meth:`fit_reduction` with training spectra first.
    """

    def __init__(
        self,
        bands: int,
        num_classes: int,
        patch: int = 15,
        components: int = 15,
        whiten: bool = False,
        conv_channels: Sequence[int] = (8, 16, 32),
        conv_kernels: Sequence[Sequence[int]] = ((7, 3, 3), (5, 3, 3), (3, 3, 3)),
        conv_padding: str = "valid",
        embed_dims: Sequence[int] = (64, 128),
        depths: Sequence[int] = (2, 2),
        num_heads: Sequence[int] = (2, 4),
        window: int | Sequence[int] = 4,
        mlp_ratio: float = 2.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        pool: str = "mean",
        tta: bool = False,
        dilation: int = 1,
        center_spectrum: bool = False,
    ) -> None:
        super().__init__()
        self.check_patch(patch)
        if not isinstance(tta, bool):
            raise TypeError(f"tta must be True or False, got {tta!r}")
        self.tta = tta
        if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
            raise ValueError(f"dilation must be a positive integer, got {dilation!r}")
        if (patch - 1) % (2 * dilation):
            raise ValueError(
                f"a {patch} x {patch} window sampled every {dilation} pixels misses its "
                f"centre or its edge: patch - 1 = {patch - 1} must be a multiple of "
                f"2 * dilation = {2 * dilation}"
            )
        self.dilation = dilation
        if len(conv_channels) != len(conv_kernels):
            raise ValueError(
                f"{len(conv_channels)} conv channel counts but {len(conv_kernels)} kernels"
            )
        if not len(embed_dims) == len(depths) == len(num_heads):
            raise ValueError(
                f"embed_dims {list(embed_dims)}, depths {list(depths)} and "
                f"num_heads {list(num_heads)} must have one entry per stage"
            )
        one_window = isinstance(window, int)
        windows = [window] * len(depths) if isinstance(window, int) else list(window)
        if len(windows) != len(depths):
            raise ValueError(f"{len(windows)} windows for {len(depths)} stages")
        self.bands, self.num_classes, self.patch = bands, num_classes, patch
        #: the architecture in the registry's terms (``geofm models`` prints it)
        self.config = {
            "bands": bands,
            "num_classes": num_classes,
            "patch": patch,
            "dilation": dilation,
            "components": components,
            "embed_dim": embed_dims[-1],
            "depth": sum(depths),
            "num_heads": num_heads[-1],
        }
        self.reduction = SpectralReduction(bands, components, whiten)

        if conv_padding not in ("valid", "same"):
            raise ValueError(f"conv_padding must be 'valid' or 'same', got {conv_padding!r}")
        layers: list[nn.Module] = []
        spectral, size, channels = components, (patch - 1) // dilation + 1, 1
        for out, kernel in zip(conv_channels, conv_kernels, strict=True):
            ks, kh, kw = kernel
            if kh != kw or kh % 2 == 0 or ks > spectral or kh > size:
                raise ValueError(
                    f"the 3-D kernel {tuple(kernel)} does not fit a "
                    f"{spectral} x {size} x {size} input (components x the window's "
                    "samples a side, after any dilation; square, odd spatial kernels)"
                )
            pad: int | tuple[int, int, int] = (0, kh // 2, kw // 2) if conv_padding == "same" else 0
            layers += [
                nn.Conv3d(channels, out, (ks, kh, kw), padding=pad),
                nn.BatchNorm3d(out),
                nn.SiLU(),
            ]
            spectral, channels = spectral - ks + 1, out
            size = size if conv_padding == "same" else size - kh + 1
        self.frontend = nn.Sequential(*layers)
        self.feature_size = size
        self.patch_embed = nn.Sequential(
            nn.Conv2d(channels * spectral, embed_dims[0], 1),
            nn.BatchNorm2d(embed_dims[0]),
            nn.SiLU(),
        )

        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        self.merges = nn.ModuleList()
        k, size_s = 0, size
        for s, (dim, depth, heads, win) in enumerate(
            zip(embed_dims, depths, num_heads, windows, strict=True)
        ):
            if s > 0:
                self.merges.append(PatchMerging(embed_dims[s - 1], dim))
                size_s = -(-size_s // 2)
            if one_window:
                win = min(win, size_s)  # later, smaller maps: one window covers them
            if win > size_s:
                raise ValueError(
                    f"stage {s} works on a {size_s} x {size_s} map; its window "
                    f"{win} is larger than the map (use window <= {size_s})"
                )
            self.stages.append(
                nn.ModuleList(
                    WindowBlock(
                        dim,
                        heads,
                        win,
                        shift=bool(i % 2),
                        mlp_ratio=mlp_ratio,
                        drop=drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=rates[k + i],
                    )
                    for i in range(depth)
                )
            )
            k += depth
        if pool not in ("mean", "center", "both"):
            raise ValueError(f"pool must be 'mean', 'center' or 'both', got {pool!r}")
        self.pool = pool
        self.norm = nn.LayerNorm(embed_dims[-1])
        if not isinstance(center_spectrum, bool):
            raise TypeError(f"center_spectrum must be True or False, got {center_spectrum!r}")
        self.spectral: nn.Module | None = None
        if center_spectrum:
            self.spectral = nn.Sequential(
                nn.BatchNorm1d(components), nn.Linear(components, embed_dims[-1]), nn.SiLU()
            )
        branches = (2 if pool == "both" else 1) + int(center_spectrum)
        self.head = nn.Linear(embed_dims[-1] * branches, num_classes)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _init_head(self) -> None:
        self._init(self.head)

    def forward_reduced(self, scores: torch.Tensor) -> torch.Tensor:
        """Pooled features of windows already reduced by :attr:`reduction`:
        ``(B, components, patch, patch)`` -> ``(B, embed_dims[-1] * n)``, ``n`` = 1, or 2
        for ``pool="both"``, plus 1 with ``center_spectrum``. Predicting a whole scene
        reduces it once and crops windows of the scores, instead of reducing every window."""
        self.check_reduced(scores)
        pooled = self._pool(self._tokens(scores))
        if self.spectral is None:
            return pooled
        r = self.patch // 2
        return torch.cat([pooled, self.spectral(scores[:, :, r, r])], dim=-1)

    def _tokens(self, scores: torch.Tensor) -> torch.Tensor:
        """The last stage's normalised token map ``(B, s, s, embed_dims[-1])``."""
        if self.dilation > 1:
            scores = scores[:, :, :: self.dilation, :: self.dilation]
        x = self.frontend(scores[:, None])  # (B, c, k', s, s)
        x = self.patch_embed(x.flatten(1, 2))  # (B, D, s, s)
        x = x.permute(0, 2, 3, 1)  # (B, s, s, D)
        for s, blocks in enumerate(self.stages):
            if s > 0:
                x = self.merges[s - 1](x)
            for block in cast(nn.ModuleList, blocks):
                x = block(x)
        return self.norm(x)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2))
        if self.pool == "mean":
            return mean
        H, W = x.shape[1:3]
        # the centre token of an odd map; the 2 x 2 centre of an even one
        rows = slice((H - 1) // 2, H // 2 + 1)
        cols = slice((W - 1) // 2, W // 2 + 1)
        center = x[:, rows, cols].mean(dim=(1, 2))
        return center if self.pool == "center" else torch.cat([mean, center], dim=-1)

    def to_lora(
        self,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        targets: Sequence[str] = LOLA_LORA_TARGETS,
        train: Sequence[str] = (),
    ) -> list[str]:
        """``lora`` mode: inject LoRA into ``targets`` and freeze all but LoRA, norms, head,
        the centre-spectrum branch (if any) and the modules named in ``train`` (trained in
        full: for example ``frontend`` and ``patch_embed``, the convolutional stem that
        first sees the new scene's spectra; patterns as
        :func:`~geofm.models.lora.freeze_except_lora` takes them).

        The spectral reduction is a fixed transform (buffers), fitted per scene.
        """
        names = inject_lora(self, targets, rank=rank, alpha=alpha, dropout=dropout)
        # the spectral branch reads the PCA components, which a new scene refits
        own = ("spectral",) if self.spectral is not None else ()
        freeze_except_lora(self, train=("norm", "head", *own, *train))
        return names


@register_model
def lola_specvit(bands: int = 204, num_classes: int = 16, **kwargs) -> LoLASpecViT:
    """LoLA-SpecViT sized for a CPU: 15 x 15 windows, PCA 15, 3-D convs 8/16/32, two
    stages of width 64 and 128 with 4 x 4 windows (about 0.5M parameters)."""
    return LoLASpecViT(bands, num_classes, **kwargs)
