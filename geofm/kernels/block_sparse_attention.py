"""Block-sparse masked attention: the perception-field spatial branch of LESS attention.

Si et al., "Towards Scalable Foundation Model for Multi-modal and Hyperspectral Geospatial
Data", 2025, restrict a patch's spatial attention to patches within a radius on the ground
(the perception field); the official code applies that as a dense boolean mask, which costs
as much as unmasked attention. Here attention is computed the way of FlashAttention (Dao et
al., 2022; Dao, 2023): query blocks stream over key blocks with an online softmax, and a key
block is visited only when the mask lets at least one of its keys be seen from the query
block, so a field of fixed radius over a large grid costs O(N * field) instead of O(N^2).

The mask is any boolean mask (True = may attend) broadcastable over batch and heads, which is
what :func:`geofm.models.less_vit.perception_field_mask` builds; the block layout is derived
from it on the host (:func:`block_layout`), and inside a visited block the mask is applied
element by element, so the result equals dense SDPA with the same mask. A query whose every
key is masked gets zeros and zero gradients, as torch 2.14's SDPA does (LESS masks never
leave a row empty: the CLS column is always open). The backward is two more kernels, one for
dK/dV that visits the query blocks seeing a key block, one for dQ.
"""

from __future__ import annotations

import math
import warnings

import torch

from ._common import (
    acc_dtype,
    check_runnable,
    dot_precision,
    has_failed,
    is_triton_failure,
    next_pow2,
    record_failure,
    tl,
    triton,
)

__all__ = ["BLOCK", "default_block", "block_layout", "block_sparse_attention_triton"]

#: query and key block size of the kernels (tokens) for head widths up to 64 in 16-bit
#: floats and up to 32 in float32 (LESS ViT's spatial branch has b = 32)
BLOCK = 64


def default_block(head_dim: int, dtype: torch.dtype) -> int:
    """The largest block (64, 32 or 16 tokens) whose (block x padded head width) tile is at
    most 16 KiB: the float32 backward at head width 128 needs 214 KB of shared memory with
    64-token blocks, at the edge of an H200's 227 KB, and 103 KB with 32."""
    width = next_pow2(head_dim) * torch.empty((), dtype=dtype).element_size()
    for block in (BLOCK, 32, 16):
        if block * width <= 16 * 1024:
            return block
    return 16


def block_layout(mask: torch.Tensor, block_q: int, block_k: int):
    """Which key blocks each query block must visit, and which query blocks each key block.

    mask: bool (Bm, Hm, L, L). Returns ``(lut, counts, lut_t, counts_t)``: ``lut[b, h, qb, :
    counts[b, h, qb]]`` lists in ascending order the key blocks with at least one open entry
    for query block qb; ``lut_t``/``counts_t`` the same for key blocks over query blocks.
    """
    Bm, Hm, Lq, Lk = mask.shape
    nq, nk = -(-Lq // block_q), -(-Lk // block_k)
    padded = mask.new_zeros(Bm, Hm, nq * block_q, nk * block_k)
    padded[..., :Lq, :Lk] = mask
    blocks = padded.view(Bm, Hm, nq, block_q, nk, block_k).any(dim=5).any(dim=3)

    def listing(table):
        counts = table.sum(dim=-1, dtype=torch.int32)
        # stable sort of "closed" puts the open blocks first, in ascending order
        order = torch.sort((~table).to(torch.int8), dim=-1, stable=True).indices
        return order.to(torch.int32).contiguous(), counts.contiguous()

    return (*listing(blocks), *listing(blocks.transpose(-1, -2)))


if triton is not None:

    @triton.jit
    def _rows(ptr, offs_r, offs_d, s_r, s_d, r_ok, d_ok):
        """A (rows, DP) tile; rows or columns out of range read as zero."""
        return tl.load(
            ptr + offs_r[:, None] * s_r + offs_d[None, :] * s_d,
            mask=r_ok[:, None] & d_ok[None, :],
            other=0.0,
        )

    @triton.jit
    def _open(M, offs_q, offs_k, s_ml, s_mk, q_ok, k_ok, HAS_MASK: tl.constexpr):
        """Which (query, key) pairs of the tile may attend: in range, and open in the mask."""
        valid = q_ok[:, None] & k_ok[None, :]
        if HAS_MASK:
            mt = tl.load(M + offs_q[:, None] * s_ml + offs_k[None, :] * s_mk, mask=valid, other=0)
            valid = valid & (mt != 0)
        return valid

    @triton.jit
    def _probabilities(q, k, lse, valid, scale, ACC: tl.constexpr, PRECISION: tl.constexpr):
        """The attention weights of a tile, recomputed from the saved log-sum-exp."""
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION, out_dtype=ACC) * scale
        return tl.where(valid, tl.exp(s - lse[:, None]), 0.0)

    @triton.jit
    def _attn_fwd(
        Q,
        K,
        V,
        M,
        LUT,
        CNT,
        Out,
        Lse,
        scale,
        L,
        H,
        s_qb,
        s_qh,
        s_ql,
        s_qd,
        s_kb,
        s_kh,
        s_kl,
        s_kd,
        s_vb,
        s_vh,
        s_vl,
        s_vd,
        s_mb,
        s_mh,
        s_ml,
        s_mk,
        s_tb,
        s_th,
        s_tq,
        s_tk,
        s_cb,
        s_ch,
        s_cq,
        s_ob,
        s_oh,
        s_ol,
        s_od,
        DH: tl.constexpr,
        DP: tl.constexpr,
        BQ: tl.constexpr,
        BK: tl.constexpr,
        HAS_MASK: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        """One query block against the key blocks its listing names, online softmax."""
        pid_bh = tl.program_id(0).to(tl.int64)
        pid_q = tl.program_id(1).to(tl.int64)  # row offsets as L x L mask strides: 64-bit
        bi = pid_bh // H
        hi = pid_bh % H
        offs_q = pid_q * BQ + tl.arange(0, BQ)
        offs_d = tl.arange(0, DP)
        q_ok = offs_q < L
        d_ok = offs_d < DH
        q = _rows(Q + bi * s_qb + hi * s_qh, offs_q, offs_d, s_ql, s_qd, q_ok, d_ok)
        m_i = tl.full((BQ,), -float("inf"), dtype=ACC)
        l_i = tl.zeros((BQ,), dtype=ACC)
        acc = tl.zeros((BQ, DP), dtype=ACC)
        n_blocks = tl.load(CNT + bi * s_cb + hi * s_ch + pid_q * s_cq)
        for t in range(0, n_blocks):
            kb = tl.load(LUT + bi * s_tb + hi * s_th + pid_q * s_tq + t * s_tk).to(tl.int64)
            offs_k = kb * BK + tl.arange(0, BK)
            k_ok = offs_k < L
            k = _rows(K + bi * s_kb + hi * s_kh, offs_k, offs_d, s_kl, s_kd, k_ok, d_ok)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION, out_dtype=ACC) * scale
            valid = _open(
                M + bi * s_mb + hi * s_mh, offs_q, offs_k, s_ml, s_mk, q_ok, k_ok, HAS_MASK
            )
            s = tl.where(valid, s, -float("inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            m_safe = tl.where(m_new == -float("inf"), 0.0, m_new)
            p = tl.exp(s - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = _rows(V + bi * s_vb + hi * s_vh, offs_k, offs_d, s_vl, s_vd, k_ok, d_ok)
            acc = acc * alpha[:, None]
            acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
            m_i = m_new
        out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
        tl.store(
            Out + bi * s_ob + hi * s_oh + offs_q[:, None] * s_ol + offs_d[None, :] * s_od,
            out.to(Out.dtype.element_ty),
            mask=q_ok[:, None] & d_ok[None, :],
        )
        lse = tl.where(l_i > 0, m_i + tl.log(tl.where(l_i > 0, l_i, 1.0)), float("inf"))
        tl.store(Lse + pid_bh * L + offs_q, lse, mask=q_ok)

    @triton.jit
    def _attn_bwd_dkdv(
        Q,
        K,
        V,
        M,
        LUT,
        CNT,
        dO,
        Lse,
        Delta,
        dK,
        dV,
        scale,
        L,
        H,
        s_qb,
        s_qh,
        s_ql,
        s_qd,
        s_kb,
        s_kh,
        s_kl,
        s_kd,
        s_vb,
        s_vh,
        s_vl,
        s_vd,
        s_mb,
        s_mh,
        s_ml,
        s_mk,
        s_tb,
        s_th,
        s_tq,
        s_tk,
        s_cb,
        s_ch,
        s_cq,
        s_gb,
        s_gh,
        s_gl,
        s_gd,
        DH: tl.constexpr,
        DP: tl.constexpr,
        BQ: tl.constexpr,
        BK: tl.constexpr,
        HAS_MASK: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        """One key block: dV = sum P^T dO and dK = scale * sum dS^T Q over the query blocks
        that see it (LUT and CNT are the transposed listing here)."""
        pid_bh = tl.program_id(0).to(tl.int64)
        pid_k = tl.program_id(1).to(tl.int64)
        bi = pid_bh // H
        hi = pid_bh % H
        offs_k = pid_k * BK + tl.arange(0, BK)
        offs_d = tl.arange(0, DP)
        k_ok = offs_k < L
        d_ok = offs_d < DH
        k = _rows(K + bi * s_kb + hi * s_kh, offs_k, offs_d, s_kl, s_kd, k_ok, d_ok)
        v = _rows(V + bi * s_vb + hi * s_vh, offs_k, offs_d, s_vl, s_vd, k_ok, d_ok)
        dk = tl.zeros((BK, DP), dtype=ACC)
        dv = tl.zeros((BK, DP), dtype=ACC)
        n_blocks = tl.load(CNT + bi * s_cb + hi * s_ch + pid_k * s_cq)
        for t in range(0, n_blocks):
            qb = tl.load(LUT + bi * s_tb + hi * s_th + pid_k * s_tq + t * s_tk).to(tl.int64)
            offs_q = qb * BQ + tl.arange(0, BQ)
            q_ok = offs_q < L
            q = _rows(Q + bi * s_qb + hi * s_qh, offs_q, offs_d, s_ql, s_qd, q_ok, d_ok)
            do = _rows(dO + bi * s_gb + hi * s_gh, offs_q, offs_d, s_gl, s_gd, q_ok, d_ok)
            lse = tl.load(Lse + pid_bh * L + offs_q, mask=q_ok, other=float("inf"))
            delta = tl.load(Delta + pid_bh * L + offs_q, mask=q_ok, other=0.0)
            valid = _open(
                M + bi * s_mb + hi * s_mh, offs_q, offs_k, s_ml, s_mk, q_ok, k_ok, HAS_MASK
            )
            p = _probabilities(q, k, lse, valid, scale, ACC, PRECISION)
            dv = tl.dot(tl.trans(p).to(do.dtype), do, dv, input_precision=PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION, out_dtype=ACC)
            ds = p * (dp - delta[:, None])
            dk = tl.dot(tl.trans(ds).to(q.dtype), q, dk, input_precision=PRECISION)
        dk = dk * scale
        kd_mask = k_ok[:, None] & d_ok[None, :]
        tl.store(
            dK + pid_bh * L * DH + offs_k[:, None] * DH + offs_d[None, :],
            dk.to(dK.dtype.element_ty),
            mask=kd_mask,
        )
        tl.store(
            dV + pid_bh * L * DH + offs_k[:, None] * DH + offs_d[None, :],
            dv.to(dV.dtype.element_ty),
            mask=kd_mask,
        )

    @triton.jit
    def _attn_bwd_dq(
        Q,
        K,
        V,
        M,
        LUT,
        CNT,
        dO,
        Lse,
        Delta,
        dQ,
        scale,
        L,
        H,
        s_qb,
        s_qh,
        s_ql,
        s_qd,
        s_kb,
        s_kh,
        s_kl,
        s_kd,
        s_vb,
        s_vh,
        s_vl,
        s_vd,
        s_mb,
        s_mh,
        s_ml,
        s_mk,
        s_tb,
        s_th,
        s_tq,
        s_tk,
        s_cb,
        s_ch,
        s_cq,
        s_gb,
        s_gh,
        s_gl,
        s_gd,
        DH: tl.constexpr,
        DP: tl.constexpr,
        BQ: tl.constexpr,
        BK: tl.constexpr,
        HAS_MASK: tl.constexpr,
        ACC: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        """One query block: dQ = scale * sum dS K over the key blocks it sees."""
        pid_bh = tl.program_id(0).to(tl.int64)
        pid_q = tl.program_id(1).to(tl.int64)  # row offsets as L x L mask strides: 64-bit
        bi = pid_bh // H
        hi = pid_bh % H
        offs_q = pid_q * BQ + tl.arange(0, BQ)
        offs_d = tl.arange(0, DP)
        q_ok = offs_q < L
        d_ok = offs_d < DH
        q = _rows(Q + bi * s_qb + hi * s_qh, offs_q, offs_d, s_ql, s_qd, q_ok, d_ok)
        do = _rows(dO + bi * s_gb + hi * s_gh, offs_q, offs_d, s_gl, s_gd, q_ok, d_ok)
        lse = tl.load(Lse + pid_bh * L + offs_q, mask=q_ok, other=float("inf"))
        delta = tl.load(Delta + pid_bh * L + offs_q, mask=q_ok, other=0.0)
        dq = tl.zeros((BQ, DP), dtype=ACC)
        n_blocks = tl.load(CNT + bi * s_cb + hi * s_ch + pid_q * s_cq)
        for t in range(0, n_blocks):
            kb = tl.load(LUT + bi * s_tb + hi * s_th + pid_q * s_tq + t * s_tk).to(tl.int64)
            offs_k = kb * BK + tl.arange(0, BK)
            k_ok = offs_k < L
            k = _rows(K + bi * s_kb + hi * s_kh, offs_k, offs_d, s_kl, s_kd, k_ok, d_ok)
            v = _rows(V + bi * s_vb + hi * s_vh, offs_k, offs_d, s_vl, s_vd, k_ok, d_ok)
            valid = _open(
                M + bi * s_mb + hi * s_mh, offs_q, offs_k, s_ml, s_mk, q_ok, k_ok, HAS_MASK
            )
            p = _probabilities(q, k, lse, valid, scale, ACC, PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION, out_dtype=ACC)
            ds = p * (dp - delta[:, None])
            dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=PRECISION)
        dq = dq * scale
        tl.store(
            dQ + pid_bh * L * DH + offs_q[:, None] * DH + offs_d[None, :],
            dq.to(dQ.dtype.element_ty),
            mask=q_ok[:, None] & d_ok[None, :],
        )


def _broadcast_strides(t: torch.Tensor, dims: int) -> list[int]:
    """Strides of t's first ``dims`` dims with size-1 dims given stride 0 (broadcast)."""
    return [0 if t.shape[i] == 1 else t.stride(i) for i in range(dims)] + list(t.stride()[dims:])


def _prepare_mask(mask: torch.Tensor | None, B: int, H: int, L: int, device):
    if mask is None:  # a placeholder the kernel never reads (HAS_MASK is off)
        u8 = torch.zeros(1, 1, 1, 1, dtype=torch.uint8, device=device)
        return u8, torch.ones(1, 1, L, L, dtype=torch.bool, device=device)
    if mask.dtype != torch.bool:
        raise TypeError(f"the mask must be boolean (True = may attend), got {mask.dtype}")
    while mask.ndim < 4:
        mask = mask[None]
    if (
        mask.ndim != 4
        or mask.shape[0] not in (1, B)
        or mask.shape[1] not in (1, H)
        or mask.shape[2] not in (1, L)
        or mask.shape[3] not in (1, L)
    ):
        raise ValueError(
            f"the mask {tuple(mask.shape)} does not broadcast to (B={B}, H={H}, "
            f"L={L}, L={L}) over batch and heads"
        )
    if mask.device != device:
        raise ValueError(f"the mask is on {mask.device}, the queries on {device}")
    mask = mask.expand(mask.shape[0], mask.shape[1], L, L)
    return mask.view(torch.uint8), mask  # the same bytes, read as 0/1: no copy


class _Layout:
    """The mask and its block listings, with the strides a kernel takes.

    Every block of a LESS ViT passes the same mask tensor: :meth:`of` keeps the last layout
    built and returns it again while the mask is that same tensor, unmodified (its version
    counter: a write through ``.data`` or a shared numpy array is not seen, as with any
    autograd-saved tensor).
    """

    _last: tuple | None = None

    @classmethod
    def of(cls, mask, B, H, L, device, block_q, block_k) -> _Layout:
        if mask is None:  # dense: cheap to list, and must not evict the masked layout
            return cls(mask, B, H, L, device, block_q, block_k)
        key = (
            B,
            H,
            L,
            device,
            block_q,
            block_k,
            mask.data_ptr(),
            mask._version,
            tuple(mask.shape),
            mask.stride(),
        )
        last = cls._last
        if last is not None and last[0] is mask and last[1] == key:
            return last[2]
        layout = cls(mask, B, H, L, device, block_q, block_k)
        cls._last = (mask, key, layout)  # holds the mask, so its identity stays its own
        return layout

    def __init__(self, mask, B, H, L, device, block_q, block_k):
        self.m, bool_mask = _prepare_mask(mask, B, H, L, device)
        self.lut, self.cnt, self.lut_t, self.cnt_t = block_layout(bool_mask, block_q, block_k)
        self.m_strides = _broadcast_strides(self.m, 2)

    def args(self, transposed: bool = False):
        lut, cnt = (self.lut_t, self.cnt_t) if transposed else (self.lut, self.cnt)
        return (
            [self.m, lut, cnt],
            [*self.m_strides, *_broadcast_strides(lut, 2), *_broadcast_strides(cnt, 2)],
        )


def _check(q, k, v):
    if not (q.ndim == k.ndim == v.ndim == 4):
        raise ValueError("q, k and v must be (B, H, L, d)")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(
            f"q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} must "
            "have one shape (self-attention with one head width)"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k and v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    check_runnable(q, k, v)


class _BlockSparseAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, mask, scale, block_q, block_k, num_warps, fallback):
        B, H, L, d = q.shape
        layout = _Layout.of(mask, B, H, L, q.device, block_q, block_k)
        out = torch.empty(B, H, L, d, device=q.device, dtype=q.dtype)
        lse_dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        lse = torch.empty(B * H, L, device=q.device, dtype=lse_dtype)
        tensors, strides = layout.args()
        meta = dict(
            DH=d,
            DP=next_pow2(d),
            BQ=block_q,
            BK=block_k,
            HAS_MASK=mask is not None,
            ACC=acc_dtype(q.dtype),
            PRECISION=dot_precision(q.dtype),
            num_warps=num_warps,
        )
        if out.numel():
            grid = (B * H, triton.cdiv(L, block_q))
            _attn_fwd[grid](
                q,
                k,
                v,
                *tensors,
                out,
                lse,
                scale,
                L,
                H,
                *q.stride(),
                *k.stride(),
                *v.stride(),
                *strides,
                *out.stride(),
                **meta,
            )
        # the mask is saved too, so that changing it in place before the backward is an error
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.layout, ctx.scale, ctx.meta, ctx.fallback = layout, scale, meta, fallback
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, mask = ctx.saved_tensors
        B, H, L, d = q.shape
        delta = (grad_out.to(lse.dtype) * out.to(lse.dtype)).sum(-1).reshape(B * H, L).contiguous()
        dq = torch.empty(B, H, L, d, device=q.device, dtype=q.dtype)
        dk, dv = torch.empty_like(dq), torch.empty_like(dq)
        if dq.numel():
            if ctx.fallback and has_failed("masked_attention backward", q.dtype):
                dq, dk, dv = _reference_grads(q, k, v, mask, ctx.scale, grad_out)
                return dq, dk, dv, None, None, None, None, None, None
            try:
                _kernels_backward(ctx, (q, k, v, lse), grad_out, delta, dq, dk, dv)
            except Exception as error:
                if not (ctx.fallback and is_triton_failure(error)):
                    raise
                record_failure("masked_attention backward", q.dtype, error)
                # the forward stays on the reference from now on too
                record_failure("masked_attention", q.dtype, error)
                warnings.warn(
                    f"geofm.kernels: the Triton backward of masked_attention failed "
                    f"on this device in {q.dtype} ({type(error).__name__}); its "
                    "gradients, and masked_attention in that dtype from now on, "
                    "come from the PyTorch reference",
                    RuntimeWarning,
                    stacklevel=2,
                )
                dq, dk, dv = _reference_grads(q, k, v, mask, ctx.scale, grad_out)
        return dq, dk, dv, None, None, None, None, None, None


def _kernels_backward(ctx, saved, grad_out, delta, dq, dk, dv):
    """dK and dV, then dQ, written into the given tensors (``saved``: q, k, v, lse, read
    from ``ctx.saved_tensors`` once, as checkpointing requires)."""
    q, k, v, lse = saved
    B, H, L, _ = q.shape
    layout, scale, meta = ctx.layout, ctx.scale, ctx.meta
    common = (*q.stride(), *k.stride(), *v.stride())
    tensors_t, strides_t = layout.args(transposed=True)
    _attn_bwd_dkdv[(B * H, triton.cdiv(L, meta["BK"]))](
        q,
        k,
        v,
        *tensors_t,
        grad_out,
        lse,
        delta,
        dk,
        dv,
        scale,
        L,
        H,
        *common,
        *strides_t,
        *grad_out.stride(),
        **meta,
    )
    tensors, strides = layout.args()
    _attn_bwd_dq[(B * H, triton.cdiv(L, meta["BQ"]))](
        q,
        k,
        v,
        *tensors,
        grad_out,
        lse,
        delta,
        dq,
        scale,
        L,
        H,
        *common,
        *strides,
        *grad_out.stride(),
        **meta,
    )


def _reference_grads(q, k, v, mask, scale, grad_out):
    """Gradients of dense SDPA with the mask, recomputed (the backward's fall-back)."""
    inputs = [t.detach().requires_grad_() for t in (q, k, v)]
    with torch.enable_grad():
        out = torch.nn.functional.scaled_dot_product_attention(*inputs, attn_mask=mask, scale=scale)
    return torch.autograd.grad(out, inputs, grad_out)


def block_sparse_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    block_q: int | None = None,
    block_k: int | None = None,
    num_warps: int = 4,
    fallback: bool = False,
) -> torch.Tensor:
    """Attention that skips key blocks the boolean mask closes wholly; equals dense SDPA.

    q, k, v: (B, H, L, d), one dtype (float16, bfloat16, float32 or float64); mask: bool,
    broadcastable to (B, H, L, L) over batch and heads, True = may attend, or None (dense).
    ``scale`` defaults to 1/sqrt(d); the blocks to :func:`default_block`. Differentiable in
    q, k and v. With ``fallback``, a
    backward kernel that Triton cannot build for this device is replaced by the reference's
    gradients (with a warning) instead of raising.
    """
    _check(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    block_q = block_q or default_block(q.shape[-1], q.dtype)
    block_k = block_k or default_block(q.shape[-1], q.dtype)
    return _BlockSparseAttention.apply(q, k, v, mask, scale, block_q, block_k, num_warps, fallback)
