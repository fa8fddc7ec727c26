"""Fused LoRA linear: the base GEMM and the low-rank update in one pass over the input.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022:
``y = x W^T + b + s (x A^T) B^T`` with A (r, in), B (out, r). The reference
(:func:`~geofm.kernels.reference.lora_linear_reference`, which is what
:class:`geofm.models.lora.LoRALinear` computes) runs three GEMMs and an addition, reading x
twice and writing the output twice. Here one program computes a (rows, outputs) tile: the
loop over the input width accumulates ``x W^T`` and ``x A^T`` from the same x tile, then adds
``s (x A^T) B^T`` before the single store. ``x A^T`` (r wide) is recomputed by every output
tile of a row block, r / block_n more arithmetic.

The backward is PyTorch (the gradient GEMMs are what they would be anyway): ``x A^T`` is
recomputed from the saved input rather than kept.
"""

from __future__ import annotations

import torch

from ._common import acc_dtype, check_runnable, dot_precision, next_pow2, tl, triton

__all__ = ["lora_linear_triton"]

if triton is not None:

    @triton.jit
    def _lora_linear_fwd(
        X,
        W,
        Bias,
        A,
        Bm,
        Y,
        M,
        N,
        K,
        R,
        scaling,
        s_xm,
        s_xk,
        s_wn,
        s_wk,
        s_ar,
        s_ak,
        s_bn,
        s_br,
        s_ym,
        s_yn,
        RP: tl.constexpr,
        BM: tl.constexpr,
        BN: tl.constexpr,
        BK: tl.constexpr,
        HAS_BIAS: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        # offsets in int64: rows x width can exceed 2^31 elements
        offs_m = pid_m.to(tl.int64) * BM + tl.arange(0, BM)
        offs_n = pid_n.to(tl.int64) * BN + tl.arange(0, BN)
        offs_r = tl.arange(0, RP)
        m_ok = offs_m < M
        n_ok = offs_n < N
        r_ok = offs_r < R
        acc = tl.zeros((BM, BN), dtype=ACC)
        xa = tl.zeros((BM, RP), dtype=ACC)
        for k0 in range(0, K, BK):
            offs_k = k0 + tl.arange(0, BK)
            k_ok = offs_k < K
            x = tl.load(
                X + offs_m[:, None] * s_xm + offs_k[None, :] * s_xk,
                mask=m_ok[:, None] & k_ok[None, :],
                other=0.0,
            )
            w_t = tl.load(
                W + offs_n[None, :] * s_wn + offs_k[:, None] * s_wk,
                mask=k_ok[:, None] & n_ok[None, :],
                other=0.0,
            )
            a_t = tl.load(
                A + offs_r[None, :] * s_ar + offs_k[:, None] * s_ak,
                mask=k_ok[:, None] & r_ok[None, :],
                other=0.0,
            )
            acc = tl.dot(x, w_t, acc, input_precision=PRECISION)
            xa = tl.dot(x, a_t, xa, input_precision=PRECISION)
        b_t = tl.load(
            Bm + offs_n[None, :] * s_bn + offs_r[:, None] * s_br,
            mask=r_ok[:, None] & n_ok[None, :],
            other=0.0,
        )
        # x A^T is rounded to the input dtype as the reference's middle GEMM output is
        low = tl.dot(xa.to(b_t.dtype), b_t, input_precision=PRECISION, out_dtype=ACC)
        acc += low * scaling
        if HAS_BIAS:
            acc += tl.load(Bias + offs_n, mask=n_ok, other=0.0).to(ACC)[None, :]
        tl.store(
            Y + offs_m[:, None] * s_ym + offs_n[None, :] * s_yn,
            acc.to(Y.dtype.element_ty),
            mask=m_ok[:, None] & n_ok[None, :],
        )


def _forward(x2, weight, bias, lora_a, lora_b, scaling, block_m, block_n, block_k, num_warps):
    M, K = x2.shape
    N, R = weight.shape[0], lora_a.shape[0]
    y = torch.empty(M, N, device=x2.device, dtype=x2.dtype)
    if y.numel() == 0:
        return y
    block_m = min(block_m, next_pow2(M))
    block_n = min(block_n, next_pow2(N))
    block_k = min(block_k, next_pow2(K))
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n))
    _lora_linear_fwd[grid](
        x2,
        weight,
        bias if bias is not None else weight,
        lora_a,
        lora_b,
        y,
        M,
        N,
        K,
        R,
        float(scaling),
        *x2.stride(),
        *weight.stride(),
        *lora_a.stride(),
        *lora_b.stride(),
        *y.stride(),
        RP=next_pow2(R),
        BM=block_m,
        BN=block_n,
        BK=block_k,
        HAS_BIAS=bias is not None,
        ACC=acc_dtype(x2.dtype),
        PRECISION=dot_precision(x2.dtype),
        num_warps=num_warps,
    )
    return y


class _LoRALinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling, blocks):
        x2 = x.reshape(-1, x.shape[-1])
        y = _forward(x2, weight, bias, lora_a, lora_b, scaling, *blocks)
        ctx.save_for_backward(x2, weight, lora_a, lora_b)
        ctx.scaling, ctx.x_shape, ctx.has_bias = scaling, x.shape, bias is not None
        return y.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_y):
        x2, weight, lora_a, lora_b = ctx.saved_tensors
        s = ctx.scaling
        g = grad_y.reshape(-1, grad_y.shape[-1])
        need_x, need_w, need_b, need_a, need_bb = ctx.needs_input_grad[:5]
        gb = g @ lora_b if (need_x or need_a) else None  # (M, r)
        grad_x = grad_w = grad_bias = grad_a = grad_bb = None
        if need_x:
            grad_x = (g @ weight + (gb @ lora_a) * s).reshape(ctx.x_shape)
        if need_w:
            grad_w = g.t() @ x2
        if need_b and ctx.has_bias:
            grad_bias = g.sum(0)
        if need_a:
            grad_a = (gb.t() @ x2) * s
        if need_bb:
            grad_bb = (g.t() @ (x2 @ lora_a.t())) * s
        return grad_x, grad_w, grad_bias, grad_a, grad_bb, None, None


def lora_linear_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scaling: float,
    *,
    block_m: int = 64,
    block_n: int = 64,
    block_k: int = 64,
    num_warps: int = 4,
) -> torch.Tensor:
    """``F.linear(x, weight, bias) + scaling * F.linear(F.linear(x, lora_a), lora_b)`` in
    one Triton kernel. x: (..., in); weight: (out, in); lora_a: (r, in); lora_b: (out, r);
    one dtype. Differentiable in every tensor."""
    check_runnable(*(t for t in (x, weight, bias, lora_a, lora_b) if t is not None))
    n_out, n_in = weight.shape
    r = lora_a.shape[0]
    if x.shape[-1] != n_in or lora_a.shape != (r, n_in) or lora_b.shape != (n_out, r):
        raise ValueError(
            f"shapes do not compose: x {tuple(x.shape)}, weight "
            f"{tuple(weight.shape)}, lora_A {tuple(lora_a.shape)}, lora_B "
            f"{tuple(lora_b.shape)}"
        )
    if bias is not None and bias.shape != (n_out,):
        raise ValueError(f"bias must be ({n_out},), got {tuple(bias.shape)}")
    dtypes = {t.dtype for t in (x, weight, bias, lora_a, lora_b) if t is not None}
    if len(dtypes) != 1:
        raise TypeError(
            f"x, weight, bias and the LoRA factors must share one dtype, got "
            f"{sorted(map(str, dtypes))}"
        )
    return _LoRALinear.apply(
        x, weight, bias, lora_a, lora_b, float(scaling), (block_m, block_n, block_k, num_warps)
    )
