"""PyTorch references of the kernels: each is the specification its Triton kernel must meet.

Shapes follow LESS attention (Si et al., "Towards Scalable Foundation Model for Multi-modal
and Hyperspectral Geospatial Data", 2025): h heads, rank r, C+1 spectral and N+1 spatial
tokens, spectral head width a and spatial head width b, so a head's output is a*b wide.
This module imports only torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "kronecker_combine",
    "kron_combine_proj_reference",
    "masked_attention_reference",
    "lora_linear_reference",
]


def kronecker_combine(y_c: torch.Tensor, y_s: torch.Tensor) -> torch.Tensor:
    """Sum over the rank of the outer products of spectral and spatial branch outputs.

    y_c: (B, h, r, C+1, a); y_s: (B, h, r, N+1, b) -> (B, C+1, N+1, h*a*b), where element
    ``[c, n, head*a*b + i*b + j] = sum_k y_c[head, k, c, i] * y_s[head, k, n, j]``.

    One batched GEMM per (sample, head) with the rank as its inner dimension: the r outer
    products are never materialised (the pre-projection activation is).
    """
    B, h, r, C1, a = y_c.shape
    N1, b = y_s.shape[-2:]
    left = y_c.permute(0, 1, 3, 4, 2).reshape(B * h, C1 * a, r)
    right = y_s.reshape(B * h, r, N1 * b)
    out = torch.bmm(left, right).reshape(B, h, C1, a, N1, b)
    return out.permute(0, 2, 4, 1, 3, 5).reshape(B, C1, N1, h * a * b)


def kron_combine_proj_reference(
    y_c: torch.Tensor,
    y_s: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The LESS output projection of the Kronecker combine: ``Linear(kronecker_combine)``.

    y_c: (B, h, r, C+1, a), y_s: (B, h, r, N+1, b), weight: (O, h*a*b), bias: (O,) or None
    -> (B, C+1, N+1, O). Writes the (B, C+1, N+1, h*a*b) pre-projection activation.
    """
    return F.linear(kronecker_combine(y_c, y_s), weight, bias)


def masked_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention with an optional boolean mask (True = may attend).

    q, k, v: (B, H, L, d); mask broadcastable to (B, H, L, L). This is
    :func:`torch.nn.functional.scaled_dot_product_attention`, dense whatever the mask.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)


def lora_linear_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
) -> torch.Tensor:
    """A LoRA linear layer (Hu et al., 2022): ``x W^T + b + scaling * (x A^T) B^T``.

    x: (..., in); weight: (out, in); lora_a: (r, in); lora_b: (out, r). Three GEMMs and an
    addition, in the order :class:`geofm.models.lora.LoRALinear` has always used.
    """
    out = F.linear(x, weight, bias)
    return out + F.linear(F.linear(x, lora_a), lora_b) * scaling
