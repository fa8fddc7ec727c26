"""The fused Kronecker combine + projection kernel against its reference (Triton's CPU
interpreter, ``TRITON_INTERPRET=1`` from tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from geofm.kernels.kron_proj import kron_combine_proj_triton
from geofm.kernels.reference import kron_combine_proj_reference, kronecker_combine


def _inputs(B, h, r, C1, a, N1, b, n_out, dtype, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    y_c = torch.randn(B, h, r, C1, a, generator=g)
    y_s = torch.randn(B, h, r, N1, b, generator=g)
    w = torch.randn(n_out, h * a * b, generator=g) / (h * a * b) ** 0.5
    bb = torch.randn(n_out, generator=g) if bias else None
    return [t.to(dtype) if t is not None else None for t in (y_c, y_s, w, bb)]


# (B, h, r, C+1, a, N+1, b, O): N+1, O and b off the 64-wide blocks and powers of two;
# r <= a takes the loop over ranks, r > a the loop over the a spectral widths
SHAPES = [
    (2, 3, 1, 5, 2, 70, 8, 48),
    (1, 2, 3, 4, 2, 33, 32, 130),
    (2, 2, 2, 14, 2, 65, 20, 80),
    (1, 1, 4, 3, 1, 17, 16, 16),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "B{}h{}r{}C{}a{}N{}b{}O{}".format(*s))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_forward_matches_the_reference_to_its_own_rounding(shape, dtype, bias):
    inputs = _inputs(*shape, dtype=dtype, bias=bias)
    exact = kron_combine_proj_reference(*[t.double() if t is not None else None for t in inputs])
    ours = kron_combine_proj_triton(*inputs)
    theirs = kron_combine_proj_reference(*inputs)
    assert ours.shape == exact.shape and ours.dtype == dtype
    err = (ours.double() - exact).abs().max().item()
    ref_err = (theirs.double() - exact).abs().max().item()
    # as accurate as the reference in the same dtype (both accumulate in float32)
    assert err <= 3 * ref_err + (1e-5 if dtype == torch.float32 else 2e-3), (err, ref_err)


def test_forward_is_exact_in_float64_and_reads_strided_inputs():
    y_c, y_s, w, b = _inputs(2, 3, 2, 6, 2, 40, 12, 72, torch.float64)
    # non-contiguous views: the kernel takes strides, not layouts
    y_s_t = y_s.transpose(-1, -2).contiguous().transpose(-1, -2)
    w_t = w.t().contiguous().t()
    out = kron_combine_proj_triton(y_c, y_s_t, w_t, b)
    torch.testing.assert_close(
        out, kron_combine_proj_reference(y_c, y_s, w, b), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("rank", [1, 3])
def test_gradients_match_the_reference(rank):
    inputs = _inputs(2, 2, rank, 5, 2, 37, 16, 48, torch.float32, seed=rank)
    ours = [t.clone().requires_grad_() for t in inputs]
    theirs = [t.clone().requires_grad_() for t in inputs]
    g = torch.randn(2, 5, 37, 48, generator=torch.Generator().manual_seed(3))
    torch.autograd.backward(kron_combine_proj_triton(*ours), g)
    torch.autograd.backward(kron_combine_proj_reference(*theirs), g)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


def test_gradcheck_in_float64():
    inputs = [t.requires_grad_() for t in _inputs(1, 2, 2, 3, 2, 5, 3, 7, torch.float64)]
    assert torch.autograd.gradcheck(kron_combine_proj_triton, inputs, fast_mode=True)


def test_only_the_inputs_that_need_it_get_gradients():
    y_c, y_s, w, b = _inputs(1, 2, 1, 3, 2, 9, 8, 16, torch.float32)
    y_s.requires_grad_()
    kron_combine_proj_triton(y_c, y_s, w, b).sum().backward()
    assert y_s.grad is not None and y_c.grad is None and w.grad is None and b.grad is None


def _saved_numels(fn, *inputs):
    """Sizes of every tensor autograd keeps for the backward while ``fn`` runs."""
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return sizes


def test_forward_keeps_only_its_inputs_for_the_backward():
    """The pre-projection activation (B, C+1, N+1, D) is never kept, as the reference keeps it."""
    inputs = [t.requires_grad_() for t in _inputs(2, 3, 1, 14, 2, 65, 32, 192, torch.float32)]
    pre_projection = kronecker_combine(inputs[0], inputs[1]).numel()
    ours = _saved_numels(kron_combine_proj_triton, *inputs)
    assert sorted(ours) == sorted(t.numel() for t in inputs)
    assert pre_projection in _saved_numels(kron_combine_proj_reference, *inputs)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda yc, ys, w, b: (yc, ys[:, :1], w, b), "disagree"),
        (lambda yc, ys, w, b: (yc, ys, w[:, :-1], b), "weight must be"),
        (lambda yc, ys, w, b: (yc, ys, w, b[:-1]), "bias must be"),
        (lambda yc, ys, w, b: (yc[0], ys, w, b), "must be \\(B, h, r"),
    ],
)
def test_bad_shapes_are_refused_with_a_message(change, message):
    args = change(*_inputs(1, 2, 1, 3, 2, 5, 4, 16, torch.float32))
    with pytest.raises(ValueError, match=message):
        kron_combine_proj_triton(*args)


def test_mixed_dtypes_are_refused():
    y_c, y_s, w, b = _inputs(1, 2, 1, 3, 2, 5, 4, 16, torch.float32)
    with pytest.raises(TypeError, match="share one dtype"):
        kron_combine_proj_triton(y_c, y_s.half(), w, b)
