"""The Triton kernels compiled for a CUDA device, against their references (skipped without
one, and when Triton runs in its interpreter: run with ``TRITON_INTERPRET=0``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from geofm import kernels
from geofm.kernels._common import interpreted
from geofm.kernels.block_sparse_attention import block_sparse_attention_triton
from geofm.kernels.fused_lora import lora_linear_triton
from geofm.kernels.kron_proj import kron_combine_proj_triton
from geofm.kernels.reference import kron_combine_proj_reference, lora_linear_reference
from geofm.models import create_model
from geofm.models.less_vit import perception_field_mask

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or interpreted(), reason="needs a CUDA device and compiled Triton"
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: 2e-4, torch.float16: 2e-2, torch.bfloat16: 8e-2}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("rank", [1, 4])
def test_fused_combine_on_cuda(dtype, rank):
    g = torch.Generator(device="cuda").manual_seed(rank)
    y_c = torch.randn(4, 12, rank, 14, 2, device="cuda", generator=g).to(dtype)
    y_s = torch.randn(4, 12, rank, 257, 32, device="cuda", generator=g).to(dtype)
    w = (torch.randn(768, 768, device="cuda", generator=g) / 768**0.5).to(dtype)
    bias = torch.randn(768, device="cuda", generator=g).to(dtype)
    exact = kron_combine_proj_reference(y_c.double(), y_s.double(), w.double(), bias.double())
    ours = kron_combine_proj_triton(y_c, y_s, w, bias)
    scale = exact.abs().max().item()
    assert (ours.double() - exact).abs().max().item() <= TOL[dtype] * scale


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("grid", [(16, 16), (32, 32), (7, 9)], ids=str)
def test_block_sparse_attention_on_cuda(dtype, grid):
    L = grid[0] * grid[1] + 1
    mask = perception_field_mask(grid, 16, torch.tensor([10.0], device="cuda"), 640.0)
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = [
        torch.randn(2, 12, L, 32, device="cuda", generator=g).to(dtype).requires_grad_()
        for _ in range(3)
    ]
    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
    grad = torch.randn(2, 12, L, 32, device="cuda", generator=g).to(dtype)
    out = block_sparse_attention_triton(q, k, v, mask)
    out.backward(grad)
    ref = F.scaled_dot_product_attention(*exact, attn_mask=mask)
    ref.backward(grad.double())
    assert (out.double() - ref).abs().max().item() <= TOL[dtype] * 5
    for ours, theirs in zip((q, k, v), exact, strict=True):
        err = (ours.grad.double() - theirs.grad).abs().max().item()
        assert err <= TOL[dtype] * 5 * max(1.0, theirs.grad.abs().max().item())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_lora_linear_on_cuda(dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(8, 3598, 768, device="cuda", generator=g).to(dtype)
    w = (torch.randn(2304, 768, device="cuda", generator=g) / 768**0.5).to(dtype)
    b = torch.randn(2304, device="cuda", generator=g).to(dtype)
    a = (torch.randn(8, 768, device="cuda", generator=g) / 768**0.5).to(dtype)
    bb = torch.randn(2304, 8, device="cuda", generator=g).to(dtype)
    exact = lora_linear_reference(*(t.double() for t in (x, w, b, a, bb)), 2.0)
    ours = lora_linear_triton(x, w, b, a, bb, 2.0)
    assert (ours.double() - exact).abs().max().item() <= TOL[dtype] * exact.abs().max().item()


def test_less_vit_small_step_on_cuda_matches_between_backends():
    torch.manual_seed(0)
    model = create_model("less_vit_small", depth=2).cuda()
    image = torch.randn(2, 13, 128, 128, device="cuda")
    wl = torch.linspace(443.0, 2190.0, 13, device="cuda")
    gsd = torch.full((2,), 10.0, device="cuda")
    results = {}
    for backend in ("reference", "triton"):
        model.zero_grad()
        with kernels.use_backend(backend):
            out = model.forward_features(image, wl, gsd)
        out.square().mean().backward()
        results[backend] = (
            out.detach(),
            [p.grad.clone() for p in model.parameters() if p.grad is not None],
        )
    (o_r, g_r), (o_t, g_t) = results["reference"], results["triton"]
    torch.testing.assert_close(o_t, o_r, rtol=1e-3, atol=1e-3)
    for a, b in zip(g_t, g_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-4)
