"""Block-sparse masked attention against dense SDPA with the same boolean mask (Triton's CPU
interpreter, ``TRITON_INTERPRET=1`` from tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geofm.kernels.block_sparse_attention import block_layout, block_sparse_attention_triton
from geofm.models.less_vit import perception_field_mask


def _qkv(B, H, L, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, d, generator=g).to(dtype) for _ in range(3)]


def _field(grid, B=1, radius=400.0, gsd=10.0):
    """The LESS perception field: 16 px patches, ``radius`` metres; CLS row/column open."""
    return perception_field_mask(grid, 16, torch.full((B,), gsd), radius)


def _dense(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


CASES = {
    # grid, heads, head width, block: L = rows*cols + 1 is never a multiple of the block
    "grid8x10-d20-b32": ((8, 10), 3, 20, 32),
    "grid12x12-d32-b64": ((12, 12), 2, 32, 64),
    "grid5x7-d8-b16": ((5, 7), 2, 8, 16),
}


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("masked", [True, False], ids=["mask", "nomask"])
def test_forward_matches_dense_sdpa(case, dtype, masked):
    grid, H, d, block = CASES[case]
    L = grid[0] * grid[1] + 1
    q, k, v = _qkv(2, H, L, d, dtype)
    mask = _field(grid) if masked else None
    exact = _dense(q.double(), k.double(), v.double(), mask)
    ours = block_sparse_attention_triton(q, k, v, mask, block_q=block, block_k=block)
    assert ours.dtype == dtype and ours.shape == q.shape
    err = (ours.double() - exact).abs().max().item()
    ref_err = (
        (_dense(q, k, v, mask).double() - exact).abs().max().item()
        if dtype != torch.float16
        else 1e-3
    )  # SDPA on the CPU in float16 is itself approximate
    assert err <= 3 * ref_err + (1e-5 if dtype == torch.float32 else 2e-3), (err, ref_err)


@pytest.mark.parametrize("masked", [True, False], ids=["mask", "nomask"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_gradients_match_dense_sdpa(masked, dtype):
    grid, H, d, block = (8, 10), 2, 20, 32
    L = grid[0] * grid[1] + 1
    mask = _field(grid) if masked else None
    ours = [t.requires_grad_() for t in _qkv(2, H, L, d, dtype, seed=1)]
    exact = [t.detach().double().requires_grad_() for t in ours]
    g = torch.randn(2, H, L, d, generator=torch.Generator().manual_seed(2)).to(dtype)
    torch.autograd.backward(
        block_sparse_attention_triton(*ours, mask, block_q=block, block_k=block), g
    )
    torch.autograd.backward(_dense(*exact, mask), g.double())
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    for a, b in zip(ours, exact, strict=True):
        torch.testing.assert_close(a.grad.double(), b.grad, rtol=tol, atol=tol)


def test_per_sample_masks_of_kept_patches():
    """The masked autoencoder's encoder keeps a different subset of patches per sample."""
    grid = (9, 9)
    kept = torch.stack(
        [torch.randperm(81, generator=torch.Generator().manual_seed(s))[:40] for s in range(3)]
    )
    mask = perception_field_mask(grid, 16, torch.tensor([10.0, 10.0, 20.0]), 400.0, patches=kept)
    assert mask.shape == (3, 1, 41, 41)
    q, k, v = _qkv(3, 2, 41, 16, torch.float32)
    torch.testing.assert_close(
        block_sparse_attention_triton(q, k, v, mask, block_q=16, block_k=16),
        _dense(q, k, v, mask),
        rtol=1e-5,
        atol=1e-5,
    )


def test_per_head_mask_and_explicit_scale():
    L = 50
    mask = torch.rand(1, 3, L, L, generator=torch.Generator().manual_seed(0)) < 0.3
    mask[..., 0] = True
    q, k, v = _qkv(2, 3, L, 16, torch.float64)
    torch.testing.assert_close(
        block_sparse_attention_triton(q, k, v, mask, scale=0.1, block_q=16, block_k=16),
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.1),
    )


def test_gradcheck_in_float64():
    grid = (4, 5)
    mask = _field(grid, radius=250.0)
    q, k, v = [t.requires_grad_() for t in _qkv(1, 2, 21, 4, torch.float64)]
    assert torch.autograd.gradcheck(
        lambda q, k, v: block_sparse_attention_triton(q, k, v, mask, block_q=16, block_k=16),
        (q, k, v),
        fast_mode=True,
    )


def test_block_layout_lists_exactly_the_open_blocks():
    grid, block = (16, 16), 32
    mask = _field(grid, radius=300.0)
    lut, counts, lut_t, counts_t = block_layout(mask, block, block)
    L = 257
    n = -(-L // block)
    padded = torch.zeros(n * block, n * block, dtype=torch.bool)
    padded[:L, :L] = mask[0, 0]
    for qb in range(n):
        tile = padded[qb * block : (qb + 1) * block]
        expected = [kb for kb in range(n) if tile[:, kb * block : (kb + 1) * block].any()]
        assert lut[0, 0, qb, : counts[0, 0, qb]].tolist() == expected
    # the transposed listing holds the same pairs
    pairs = {(qb, int(kb)) for qb in range(n) for kb in lut[0, 0, qb, : counts[0, 0, qb]]}
    pairs_t = {(int(qb), kb) for kb in range(n) for qb in lut_t[0, 0, kb, : counts_t[0, 0, kb]]}
    assert pairs == pairs_t
    # a 300 m field on a 160 m patch grid leaves most key blocks of a patch row unvisited
    assert counts[0, 0, 1:].float().mean() < 0.5 * n


def test_a_query_that_sees_nothing_gets_zeros():
    q, k, v = _qkv(1, 1, 20, 16, torch.float32)
    mask = torch.ones(20, 20, dtype=torch.bool)
    mask[3] = False
    out = block_sparse_attention_triton(q, k, v, mask, block_q=16, block_k=16)
    assert torch.equal(out[0, 0, 3], torch.zeros(16))
    keep = torch.arange(20) != 3
    torch.testing.assert_close(out[:, :, keep], _dense(q, k, v, mask)[:, :, keep])


def test_bad_input_is_refused_with_a_message():
    q, k, v = _qkv(2, 2, 10, 16, torch.float32)
    with pytest.raises(TypeError, match="boolean"):
        block_sparse_attention_triton(q, k, v, torch.ones(10, 10))
    with pytest.raises(ValueError, match="does not broadcast"):
        block_sparse_attention_triton(q, k, v, torch.ones(3, 1, 10, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        block_sparse_attention_triton(q, k, v, torch.ones(10, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="the mask is on meta"):
        block_sparse_attention_triton(q, k, v, torch.ones(10, 10, dtype=torch.bool, device="meta"))
    with pytest.raises(ValueError, match="one shape"):
        block_sparse_attention_triton(q, k[:, :, :5], v)
    with pytest.raises(TypeError, match="share a dtype"):
        block_sparse_attention_triton(q, k.double(), v)


def test_the_layout_is_built_once_per_mask_and_reads_the_mask_in_place():
    from geofm.kernels.block_sparse_attention import _Layout

    mask = _field((6, 6))
    first = _Layout.of(mask, 2, 3, 37, mask.device, 16, 16)
    assert _Layout.of(mask, 2, 3, 37, mask.device, 16, 16) is first  # the next block's call
    assert first.m.data_ptr() == mask.data_ptr()  # no uint8 copy
    mask[0, 0, 1, 30] = ~mask[0, 0, 1, 30]  # changed in place
    assert _Layout.of(mask, 2, 3, 37, mask.device, 16, 16) is not first
    assert _Layout.of(mask.clone(), 2, 3, 37, mask.device, 16, 16) is not first


def test_a_backward_kernel_that_cannot_be_built_falls_back_only_when_allowed(
    monkeypatch, no_kernel_failures
):
    import geofm.kernels.block_sparse_attention as bsa
    from geofm.kernels._common import failures

    def broken(*args):
        raise RuntimeError("PassManager::run failed")

    monkeypatch.setattr(bsa, "_kernels_backward", broken)
    mask = _field((5, 7))
    qkv = [t.requires_grad_() for t in _qkv(1, 2, 36, 16, torch.float32)]
    exact = [t.detach().clone().requires_grad_() for t in qkv]
    out = block_sparse_attention_triton(*qkv, mask, block_q=16, block_k=16, fallback=True)
    with pytest.warns(RuntimeWarning, match="come from the PyTorch reference"):
        out.sum().backward()
    _dense(*exact, mask).sum().backward()
    for a, b in zip(qkv, exact, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    # remembered: the forward under auto stays on the reference in float32 from now on,
    # and a later fall-back backward does not try the kernels again
    assert set(failures()) == {
        ("masked_attention", torch.float32),
        ("masked_attention backward", torch.float32),
    }
    calls = []
    monkeypatch.setattr(bsa, "_kernels_backward", lambda *a: calls.append(1))
    out = block_sparse_attention_triton(*qkv, mask, block_q=16, block_k=16, fallback=True)
    out.sum().backward()
    assert calls == []
    monkeypatch.setattr(bsa, "_kernels_backward", broken)
    out = block_sparse_attention_triton(*qkv, mask, block_q=16, block_k=16)
    with pytest.raises(RuntimeError, match="PassManager"):
        out.sum().backward()


def test_changing_the_mask_in_place_before_the_backward_is_an_error():
    mask = _field((5, 7))
    q, k, v = [t.requires_grad_() for t in _qkv(1, 2, 36, 16, torch.float32)]
    out = block_sparse_attention_triton(q, k, v, mask, block_q=16, block_k=16)
    mask[0, 0, 3, 9] = ~mask[0, 0, 3, 9]
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_default_blocks_shrink_for_wide_float32_heads():
    from geofm.kernels.block_sparse_attention import default_block

    assert default_block(32, torch.float32) == 64  # LESS ViT's spatial heads
    assert default_block(128, torch.bfloat16) == 64
    assert default_block(128, torch.float32) == 32  # 214 KB of shared memory at 64
    assert default_block(256, torch.float32) == 16
    assert default_block(20, torch.float16) == 64
