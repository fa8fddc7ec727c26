"""LESS attention against the mathematics of the paper, on tiny inputs in float64."""

import math

import pytest
import torch
import torch.nn.functional as F

from geofm.models.less_vit import (
    AttentionPool,
    LESSAttention,
    kronecker_combine,
    perception_field_mask,
)


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _softmax_map(q, k, scale, mask=None):
    logits = q @ k.T * scale
    if mask is not None:
        logits = logits.masked_fill(~mask, -math.inf)
    return logits.softmax(dim=-1)


@pytest.mark.parametrize("rank", [1, 4])
@pytest.mark.parametrize("masked", [False, True])
def test_output_equals_kronecker_sum_map_applied_to_kronecker_values(rank, masked):
    torch.manual_seed(rank + 10 * masked)
    heads, a, b = 2, 2, 3
    C, grid = 3, (3, 3)
    N = grid[0] * grid[1]
    attn = LESSAttention(dim=heads * a * b, num_heads=heads, dims_per_head=a, rank=rank).eval()
    x = torch.randn(2, C + 1, N + 1, heads * a * b)
    # radius 1.2 grid steps: the four direct neighbours, not the diagonals
    mask = perception_field_mask(grid, 1, torch.tensor([1.0, 1.0]), 1.2) if masked else None
    if masked:
        assert not mask.all()

    y_c, y_s = attn.branches(x, mask)
    ours = kronecker_combine(y_c, y_s)  # (B, C+1, N+1, D) before the projection

    # the same factors, combined by the definition: one big map per head and sample
    x_c, x_s = attn.pool(x)
    q_c, k_c, v_c = attn.channel_branch.qkv(attn.channel_norm(x_c))
    q_s, k_s, v_s = attn.spatial_branch.qkv(attn.spatial_norm(x_s))
    for i in range(x.shape[0]):
        per_head = []
        for h in range(heads):
            big = sum(
                torch.kron(
                    _softmax_map(q_c[i, h, k], k_c[i, h, k], a**-0.5),
                    _softmax_map(
                        q_s[i, h, k], k_s[i, h, k], b**-0.5, None if mask is None else mask[0, 0]
                    ),
                )
                for k in range(rank)
            )  # ((C+1)(N+1), (C+1)(N+1))
            assert big.shape == ((C + 1) * (N + 1),) * 2
            values = torch.kron(v_c[i, h, 0], v_s[i, h, 0])  # ((C+1)(N+1), a*b)
            per_head.append((big @ values).reshape(C + 1, N + 1, a * b))
        expected = torch.cat(per_head, dim=-1)
        torch.testing.assert_close(ours[i], expected, rtol=1e-10, atol=1e-12)

    torch.testing.assert_close(attn(x, mask), attn.proj(ours), rtol=1e-10, atol=1e-12)


def test_combine_contracts_the_rank_like_the_sum_of_outer_products():
    torch.manual_seed(0)
    y_c, y_s = torch.randn(2, 3, 5, 4, 2), torch.randn(2, 3, 5, 6, 7)
    outer = torch.einsum("bhkci,bhknj->bkcnhij", y_c, y_s).sum(dim=1)  # the r-times way
    torch.testing.assert_close(kronecker_combine(y_c, y_s), outer.reshape(2, 4, 6, 3 * 2 * 7))


@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_attention_pool_equals_attention_with_the_cls_element_as_query(axis, bias):
    torch.manual_seed(axis)
    heads, E = 3, 12
    pool = AttentionPool(E, heads, qkv_bias=bias).eval()
    with torch.no_grad():
        for p in pool.parameters():
            p.normal_()
    x = torch.randn(2, 4, 5, E)
    seq = x if axis == 2 else x.transpose(1, 2)  # (B, M, keys, E)
    B, M, L, _ = seq.shape
    q = pool.q(seq[:, :, :1]).reshape(B, M, 1, heads, E // heads).transpose(2, 3)
    k, v = pool.kv(seq).reshape(B, M, L, 2, heads, E // heads).permute(3, 0, 1, 4, 2, 5)
    expected = F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(B, M, E)
    torch.testing.assert_close(pool(x, axis), pool.proj(expected))


def test_attention_pool_rejects_another_axis():
    with pytest.raises(ValueError, match="axis must be 1"):
        AttentionPool(4, 2)(torch.zeros(1, 2, 2, 4), axis=3)


def test_perception_mask_is_a_disk_in_metres_with_open_cls():
    grid, patch, gsd, radius = (7, 9), 16, 10.0, 640.0  # 4 patches of 160 m
    mask = perception_field_mask(grid, patch, torch.tensor([gsd, gsd]), radius)
    assert mask.shape == (1, 1, 64, 64)  # one GSD in the batch: one mask
    mask = mask[0, 0]
    assert mask[0].all() and mask[:, 0].all()
    rows, cols = torch.meshgrid(torch.arange(7), torch.arange(9), indexing="ij")
    pts = torch.stack([rows.flatten(), cols.flatten()], 1).double() * patch * gsd
    expected = torch.cdist(pts, pts) <= radius + 1e-9
    assert torch.equal(mask[1:, 1:], expected)
    centre = 3 * 9 + 4  # patch (3, 4)
    seen = mask[1 + centre, 1:].reshape(7, 9)
    assert seen[3, 0] and seen[3, 8]  # 4 patches away along a row: on the rim, inside
    assert seen[0, 2] and not seen[0, 1]  # (3, 2) patches away is 577 m, (3, 3) is 679 m
    assert not seen[0, 0]  # (3, 4) patches: 800 m
    assert torch.equal(mask, mask.T)


def test_perception_mask_follows_each_samples_gsd():
    mask = perception_field_mask((4, 4), 16, torch.tensor([10.0, 40.0]), 640.0)
    assert mask.shape == (2, 1, 17, 17)
    assert mask[0, 0, 1:, 1:].float().mean() > mask[1, 0, 1:, 1:].float().mean()
    # at 40 m a patch spans 640 m: only the patch itself and its 4 direct neighbours
    assert mask[1, 0, 1 + 5].sum() == 1 + 5
