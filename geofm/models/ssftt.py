"""SSFTT: the spectral-spatial feature tokenisation transformer, a pixel-classification baseline.

After Sun, Zhao, Zheng and Wu, "Spectral-Spatial Feature Tokenization Transformer for
Hyperspectral Image Classification", IEEE TGRS 60, 2022. The model classifies the centre
pixel of a window of a hyperspectral scene:

1. **PCA** of the bands to 30 components (:class:`~geofm.models.lola_specvit.SpectralReduction`,
   whitened, as the paper's PCA is).
2. **Shallow spectral-spatial features**: one 3-D convolution (8 kernels of 3 x 3 x 3, no
   padding) with batch norm and ReLU over (components, rows, cols); the spectral axis folded
   into channels; one 2-D convolution (64 kernels of 3 x 3, no padding) with batch norm and
   ReLU. A 13 x 13 window becomes a 9 x 9 map of 64-wide features, 81 tokens.
3. **Gaussian-weighted feature tokeniser** (:class:`FeatureTokenizer`): the 81 tokens are
   summarised into 4 semantic tokens, each a softmax-weighted mean (over the 81 positions)
   of a linear projection of the features; both projections are drawn from a Gaussian at
   initialisation (Xavier normal), which is what the paper's name refers to.
4. A learnable class token is prepended, position embeddings added, and **one transformer
   encoder layer** (pre-norm multi-head self-attention with 8 heads and a GELU MLP of width
   8, dropout 0.1) mixes the 5 tokens; the class token's output goes to a linear head.

geofm uses it as the reference spectral-spatial transformer beside LoLA-SpecViT and the SVM
in the pixel protocol (``baselines: [ssftt]`` in a recipe; the settings it is trained with
are :data:`geofm.tasks.pixel_recipe.BASELINE_RECIPES`). It has LoLA-SpecViT's interface:
``reduction``, ``fit_reduction``, ``forward_reduced``, ``head`` and ``patch``, so the same
training, prediction and map code serve both.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .lola_specvit import SpectralReduction, WindowClassifier
from .registry import register_model

__all__ = ["SSFTT", "FeatureTokenizer", "ssftt"]


class FeatureTokenizer(nn.Module):
    """``(B, N, D)`` features -> ``(B, L, D)`` semantic tokens.

    ``A = softmax_N(X W_a)`` (``(B, N, L)``, a distribution over the ``N`` positions for each
    token) and ``T = A^T (X W_v)``: each token is a weighted mean of projected features.
    ``W_a`` (``D x L``) and ``W_v`` (``D x D``) start Gaussian, with the standard deviations
    the public code's Xavier-normal initialisation of ``(1, L, D)`` and ``(1, D, D)`` tensors
    gives (its fan-in counts the last axis as a receptive field):
    ``sqrt(2 / (L D + D))`` and ``sqrt(2 / (D^2 + D))``.
    """

    def __init__(self, dim: int, tokens: int) -> None:
        super().__init__()
        std_a = (2.0 / (tokens * dim + dim)) ** 0.5
        std_v = (2.0 / (dim * dim + dim)) ** 0.5
        self.weight_a = nn.Parameter(torch.randn(dim, tokens) * std_a)
        self.weight_v = nn.Parameter(torch.randn(dim, dim) * std_v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = (x @ self.weight_a).softmax(dim=1)  # (B, N, L)
        return attention.transpose(1, 2) @ (x @ self.weight_v)  # (B, L, D)


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: multi-head self-attention, then a GELU MLP, each with a
    residual; ``(B, T, D) -> (B, T, D)``. The attention logits are scaled by ``D ** -0.5``
    (the model width, as in the public code), not by the head width."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, scale=D**-0.5)
        x = x + F.dropout(
            self.proj(attended.transpose(1, 2).reshape(B, T, D)), self.dropout, self.training
        )
        return x + self.mlp(self.norm2(x))


class SSFTT(WindowClassifier):
    """SSFTT pixel classifier; see the module docstring.

    Args:
        bands: spectral bands of the input cube.
        num_classes: classes of the head.
        patch: width of the input window in pixels (odd: the centre pixel is classified).
        components: PCA components kept.
        whiten: scale every PCA score to unit variance (see
            :class:`~geofm.models.lola_specvit.SpectralReduction`).
        conv3d_channels, conv3d_kernel: the 3-D convolution (kernel: spectral, row, col).
        conv2d_channels, conv2d_kernel: the 2-D convolution; its channels are the token width.
        tokens: semantic tokens of the tokeniser.
        depth, heads, mlp_dim: the transformer encoder.
        dropout: after the position embedding, the attention's output projection and in
            the MLP.

    ``forward(image, valid=None)``: ``(B, bands, patch, patch)`` raw spectra and an optional
    ``(B, patch, patch)`` validity mask -> logits ``(B, num_classes)``. Call
    :meth:`fit_reduction` with training spectra first.
    """

    def __init__(
        self,
        bands: int,
        num_classes: int,
        patch: int = 13,
        components: int = 30,
        whiten: bool = True,
        conv3d_channels: int = 8,
        conv3d_kernel: tuple[int, int, int] = (3, 3, 3),
        conv2d_channels: int = 64,
        conv2d_kernel: int = 3,
        tokens: int = 4,
        depth: int = 1,
        heads: int = 8,
        mlp_dim: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.check_patch(patch)
        ks, kh, kw = conv3d_kernel
        size = patch - kh + 1 - conv2d_kernel + 1
        if ks > components or kh != kw or size < 1:
            raise ValueError(
                f"the 3-D kernel {tuple(conv3d_kernel)} and the {conv2d_kernel} x "
                f"{conv2d_kernel} 2-D kernel do not fit a {components} x {patch} x {patch} "
                "input (components x window; square kernels, no padding)"
            )
        self.bands, self.num_classes, self.patch = bands, num_classes, patch
        #: the architecture in the registry's terms (``geofm models`` prints it)
        self.config = {
            "bands": bands,
            "num_classes": num_classes,
            "patch": patch,
            "components": components,
            "embed_dim": conv2d_channels,
            "depth": depth,
            "num_heads": heads,
        }
        self.reduction = SpectralReduction(bands, components, whiten)
        self.conv3d = nn.Sequential(
            nn.Conv3d(1, conv3d_channels, (ks, kh, kw)),
            nn.BatchNorm3d(conv3d_channels),
            nn.ReLU(),
        )
        self.conv2d = nn.Sequential(
            nn.Conv2d(conv3d_channels * (components - ks + 1), conv2d_channels, conv2d_kernel),
            nn.BatchNorm2d(conv2d_channels),
            nn.ReLU(),
        )
        self.tokenizer = FeatureTokenizer(conv2d_channels, tokens)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, conv2d_channels))
        self.pos_embed = nn.Parameter(torch.empty(1, tokens + 1, conv2d_channels))
        nn.init.normal_(self.pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            EncoderLayer(conv2d_channels, heads, mlp_dim, dropout) for _ in range(depth)
        )
        self.head = nn.Linear(conv2d_channels, num_classes)
        self._init_head()

    def _init_head(self) -> None:
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.normal_(self.head.bias, std=1e-6)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token", "pos_embed"}

    def forward_reduced(self, scores: torch.Tensor) -> torch.Tensor:
        """Class-token features ``(B, width)`` of windows already reduced by :attr:`reduction`:
        ``(B, components, patch, patch)``."""
        self.check_reduced(scores)
        x = self.conv3d(scores[:, None])  # (B, c, K', s, s)
        x = self.conv2d(x.flatten(1, 2))  # (B, D, s', s')
        x = self.tokenizer(x.flatten(2).transpose(1, 2))  # (B, L, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return x[:, 0]


@register_model
def ssftt(bands: int = 200, num_classes: int = 16, **kwargs) -> SSFTT:
    """SSFTT as published (Sun et al., TGRS 2022): PCA 30 (whitened), 13 x 13 windows, 3-D
    conv 8 x (3, 3, 3), 2-D conv 64 x (3, 3), 4 tokens, one 8-head layer (about 150k
    parameters for 200 bands and 16 classes)."""
    return SSFTT(bands, num_classes, **kwargs)
