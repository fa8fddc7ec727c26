"""Fused Kronecker combine and output projection of LESS attention.

Si et al., "Towards Scalable Foundation Model for Multi-modal and Hyperspectral Geospatial
Data", 2025. The reference (:func:`~geofm.kernels.reference.kron_combine_proj_reference`)
writes the (B, C+1, N+1, D) pre-projection activation ``X`` and reads it back for the
``Linear(D, O)``. Here neither ``X`` nor the r outer products exist outside registers.

With ``D`` indexed by (head, i, j), i < a, j < b,

    out[c, n, o] = sum_{head, i, j} (sum_k y_c[head, k, c, i] y_s[head, k, n, j]) W[o, head, i, j]

One program computes a tile of ``out`` for one (sample, band c), a block of patches n and a
block of outputs o, as a sum of GEMM steps of inner width b, one per (head, k) or per
(head, i), whichever is fewer:

* r <= a: the left operand is y_s[head, k, n-block, :] as loaded, and the right operand is
  built in registers as ``sum_i y_c[head, k, c, i] * W[o-block, head, i, :]^T``. That is
  h * r steps: r/a of the reference's arithmetic (half of it at the paper's r = 1, a = 2).
* r > a: the left operand is built as ``sum_k y_c[head, k, c, i] * y_s[head, k, n-block, :]``
  (the rows of ``X`` for band c) and the right one is W[o-block, head, i, :]^T: h * a steps,
  the reference's arithmetic.

The backward recomputes through the reference (its memory is the reference's, only during
the backward; the forward keeps nothing but its inputs).
"""

from __future__ import annotations

import torch

from ._common import acc_dtype, check_runnable, dot_precision, next_pow2, tl, triton
from .reference import kron_combine_proj_reference

__all__ = ["kron_combine_proj_triton"]

if triton is not None:

    @triton.jit
    def _kron_proj_fwd(
        yc,
        ys,
        w,
        bias,
        out,
        C1,
        N1,
        n_out,
        H,
        s_yc_b,
        s_yc_h,
        s_yc_r,
        s_yc_c,
        s_yc_i,
        s_ys_b,
        s_ys_h,
        s_ys_r,
        s_ys_n,
        s_ys_j,
        s_w_o,
        s_w_d,
        s_out_b,
        s_out_c,
        s_out_n,
        s_out_o,
        R: tl.constexpr,
        A: tl.constexpr,
        BW: tl.constexpr,
        BB: tl.constexpr,
        BN: tl.constexpr,
        BO: tl.constexpr,
        HAS_BIAS: tl.constexpr,
        LOOP_RANK: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        pid_bc = tl.program_id(0)
        pid_n = tl.program_id(1)
        pid_o = tl.program_id(2)
        # offsets in int64: a batch of outputs can exceed 2^31 elements
        bi = (pid_bc // C1).to(tl.int64)
        ci = (pid_bc % C1).to(tl.int64)
        offs_n = pid_n.to(tl.int64) * BN + tl.arange(0, BN)
        offs_o = pid_o.to(tl.int64) * BO + tl.arange(0, BO)
        offs_j = tl.arange(0, BB)
        n_ok = offs_n < N1
        o_ok = offs_o < n_out
        j_ok = offs_j < BW
        ys_mask = n_ok[:, None] & j_ok[None, :]
        w_mask = j_ok[:, None] & o_ok[None, :]
        yc_row = yc + bi * s_yc_b + ci * s_yc_c
        ys_rows = ys + bi * s_ys_b + offs_n[:, None] * s_ys_n + offs_j[None, :] * s_ys_j
        w_cols = w + offs_o[None, :] * s_w_o + offs_j[:, None] * s_w_d
        acc = tl.zeros((BN, BO), dtype=ACC)
        for head in range(0, H):
            w_head = w_cols + (head * A * BW) * s_w_d
            if LOOP_RANK:
                for k in tl.static_range(R):
                    left = tl.load(ys_rows + head * s_ys_h + k * s_ys_r, mask=ys_mask, other=0.0)
                    right = tl.zeros((BB, BO), dtype=ACC)
                    for i in tl.static_range(A):
                        coef = tl.load(yc_row + head * s_yc_h + k * s_yc_r + i * s_yc_i)
                        w_t = tl.load(w_head + (i * BW) * s_w_d, mask=w_mask, other=0.0)
                        right += coef.to(ACC) * w_t.to(ACC)
                    acc = tl.dot(left, right.to(left.dtype), acc, input_precision=PRECISION)
            else:
                for i in tl.static_range(A):
                    left = tl.zeros((BN, BB), dtype=ACC)
                    for k in tl.static_range(R):
                        coef = tl.load(yc_row + head * s_yc_h + k * s_yc_r + i * s_yc_i)
                        y_t = tl.load(ys_rows + head * s_ys_h + k * s_ys_r, mask=ys_mask, other=0.0)
                        left += coef.to(ACC) * y_t.to(ACC)
                    w_t = tl.load(w_head + (i * BW) * s_w_d, mask=w_mask, other=0.0)
                    acc = tl.dot(left.to(w_t.dtype), w_t, acc, input_precision=PRECISION)
        if HAS_BIAS:
            acc += tl.load(bias + offs_o, mask=o_ok, other=0.0).to(ACC)[None, :]
        dst = (
            out
            + bi * s_out_b
            + ci * s_out_c
            + offs_n[:, None] * s_out_n
            + offs_o[None, :] * s_out_o
        )
        tl.store(dst, acc.to(out.dtype.element_ty), mask=n_ok[:, None] & o_ok[None, :])


def _check_shapes(y_c, y_s, weight, bias):
    if y_c.ndim != 5 or y_s.ndim != 5:
        raise ValueError(
            f"y_c and y_s must be (B, h, r, L, width), got {tuple(y_c.shape)} and "
            f"{tuple(y_s.shape)}"
        )
    if y_c.shape[:3] != y_s.shape[:3]:
        raise ValueError(
            f"y_c {tuple(y_c.shape)} and y_s {tuple(y_s.shape)} disagree on (batch, heads, rank)"
        )
    h, a, b = y_c.shape[1], y_c.shape[-1], y_s.shape[-1]
    if weight.ndim != 2 or weight.shape[1] != h * a * b:
        raise ValueError(f"weight must be (O, h*a*b = {h * a * b}), got {tuple(weight.shape)}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must be ({weight.shape[0]},), got {tuple(bias.shape)}")


def _forward(y_c, y_s, weight, bias, block_n: int, block_o: int, num_warps: int):
    check_runnable(*(t for t in (y_c, y_s, weight, bias) if t is not None))
    dtype = y_c.dtype
    if not (y_s.dtype == weight.dtype == dtype and (bias is None or bias.dtype == dtype)):
        raise TypeError(
            "y_c, y_s, weight and bias must share one dtype, got "
            f"{[t.dtype for t in (y_c, y_s, weight, bias) if t is not None]}"
        )
    B, h, r, C1, a = y_c.shape
    N1, b = y_s.shape[-2:]
    n_out = weight.shape[0]
    out = torch.empty(B, C1, N1, n_out, device=y_c.device, dtype=dtype)
    if out.numel() == 0:
        return out
    block_n = min(block_n, next_pow2(N1))
    block_o = min(block_o, next_pow2(n_out))
    grid = (B * C1, triton.cdiv(N1, block_n), triton.cdiv(n_out, block_o))
    _kron_proj_fwd[grid](
        y_c,
        y_s,
        weight,
        bias if bias is not None else weight,
        out,
        C1,
        N1,
        n_out,
        h,
        *y_c.stride(),
        *y_s.stride(),
        *weight.stride(),
        *out.stride(),
        R=r,
        A=a,
        BW=b,
        BB=next_pow2(b),
        BN=block_n,
        BO=block_o,
        HAS_BIAS=bias is not None,
        LOOP_RANK=r <= a,
        ACC=acc_dtype(dtype),
        PRECISION=dot_precision(dtype),
        num_warps=num_warps,
    )
    return out


class _KronCombineProj(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y_c, y_s, weight, bias, block_n, block_o, num_warps):
        ctx.save_for_backward(y_c, y_s, weight, bias)
        return _forward(y_c, y_s, weight, bias, block_n, block_o, num_warps)

    @staticmethod
    def backward(ctx, grad_out):
        y_c, y_s, weight, bias = ctx.saved_tensors
        inputs = [
            t.detach().requires_grad_(need) if t is not None else None
            for t, need in zip((y_c, y_s, weight, bias), ctx.needs_input_grad[:4], strict=True)
        ]
        wanted = [t for t in inputs if t is not None and t.requires_grad]
        grads = {}
        if wanted:
            with torch.enable_grad():
                out = kron_combine_proj_reference(*inputs)
            got = torch.autograd.grad(out, wanted, grad_out)
            grads = {id(t): g for t, g in zip(wanted, got, strict=True)}
        result = [grads.get(id(t)) if t is not None else None for t in inputs]
        return (*result, None, None, None)


def kron_combine_proj_triton(
    y_c: torch.Tensor,
    y_s: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    block_n: int = 64,
    block_o: int = 64,
    num_warps: int = 4,
) -> torch.Tensor:
    """``Linear(kronecker_combine(y_c, y_s))`` in one Triton kernel.

    y_c: (B, h, r, C+1, a), y_s: (B, h, r, N+1, b), weight: (O, h*a*b), bias: (O,) or None,
    one dtype (float16, bfloat16, float32 or float64) -> (B, C+1, N+1, O). Differentiable.
    """
    _check_shapes(y_c, y_s, weight, bias)
    return _KronCombineProj.apply(y_c, y_s, weight, bias, block_n, block_o, num_warps)
