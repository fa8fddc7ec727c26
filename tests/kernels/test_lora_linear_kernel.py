"""The fused LoRA linear kernel against its reference, and LoRALinear on either backend
(Triton's CPU interpreter, ``TRITON_INTERPRET=1`` from tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

import geofm.kernels as kernels
import geofm.kernels.fused_lora as ll
from geofm.kernels.fused_lora import lora_linear_triton
from geofm.kernels.reference import lora_linear_reference
from geofm.models.lora import LoRALinear


def _inputs(M, K, N, R, dtype, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, M, K, generator=g)
    w = torch.randn(N, K, generator=g) / K**0.5
    b = torch.randn(N, generator=g) if bias else None
    a = torch.randn(R, K, generator=g) / K**0.5
    bb = torch.randn(N, R, generator=g)
    return [t.to(dtype) if t is not None else None for t in (x, w, b, a, bb)]


# (rows M per sample, in K, out N, rank r): none a multiple of the 64-wide blocks, ranks
# below, at and above tl.dot's minimum width of 16
SHAPES = [(70, 48, 80, 8), (5, 33, 17, 1), (40, 130, 96, 20)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "M{}K{}N{}r{}".format(*s))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_forward_matches_the_reference_to_its_own_rounding(shape, dtype, bias):
    inputs = _inputs(*shape, dtype, bias)
    exact = lora_linear_reference(*[t.double() if t is not None else None for t in inputs], 2.0)
    ours = lora_linear_triton(*inputs, 2.0)
    theirs = lora_linear_reference(*inputs, 2.0)
    assert ours.shape == exact.shape and ours.dtype == dtype
    err = (ours.double() - exact).abs().max().item()
    ref_err = (theirs.double() - exact).abs().max().item()
    assert err <= 3 * ref_err + (1e-5 if dtype == torch.float32 else 2e-3), (err, ref_err)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_gradients_of_every_input_match_the_reference(bias):
    inputs = _inputs(37, 48, 40, 8, torch.float32, bias, seed=1)
    ours = [t.clone().requires_grad_() if t is not None else None for t in inputs]
    theirs = [t.clone().requires_grad_() if t is not None else None for t in inputs]
    g = torch.randn(2, 37, 40, generator=torch.Generator().manual_seed(2))
    lora_linear_triton(*ours, 0.5).backward(g)
    lora_linear_reference(*theirs, 0.5).backward(g)
    for a, b in zip(ours, theirs, strict=True):
        if a is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_a_frozen_base_gets_no_gradient():
    x, w, b, a, bb = _inputs(9, 16, 24, 4, torch.float32)
    a.requires_grad_()
    bb.requires_grad_()
    lora_linear_triton(x, w, b, a, bb, 1.0).sum().backward()
    assert a.grad is not None and bb.grad is not None
    assert w.grad is None and b.grad is None and x.grad is None


def test_gradcheck_in_float64():
    inputs = [t.requires_grad_() for t in _inputs(3, 5, 6, 2, torch.float64)]
    assert torch.autograd.gradcheck(lambda *t: lora_linear_triton(*t, 1.5), inputs, fast_mode=True)


def test_bad_input_is_refused_with_a_message():
    x, w, b, a, bb = _inputs(3, 8, 6, 2, torch.float32)
    with pytest.raises(ValueError, match="do not compose"):
        lora_linear_triton(x, w, b, a[:, :-1], bb, 1.0)
    with pytest.raises(ValueError, match="bias must be"):
        lora_linear_triton(x, w, b[:-1], a, bb, 1.0)
    with pytest.raises(TypeError, match="share one dtype"):
        lora_linear_triton(x, w, b, a.double(), bb, 1.0)


def _layer(dropout=0.0):
    torch.manual_seed(0)
    layer = LoRALinear(48, 40, rank=4, alpha=8.0, dropout=dropout)
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer


def test_lora_layer_runs_the_fused_kernel_on_the_triton_backend(monkeypatch):
    calls = []
    real = ll.lora_linear_triton
    monkeypatch.setattr(ll, "lora_linear_triton", lambda *a: calls.append(1) or real(*a))
    layer = _layer()
    x = torch.randn(3, 7, 48)
    reference = layer(x)
    with kernels.use_backend("triton"):
        fused = layer(x)
    assert calls == [1]
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-5)
    # merged, the layer is a plain linear layer
    layer.merge()
    with kernels.use_backend("triton"):
        torch.testing.assert_close(layer(x), reference, rtol=1e-5, atol=1e-5)
    assert calls == [1]


def test_lora_dropout_in_training_keeps_the_unfused_path(monkeypatch):
    calls = []
    monkeypatch.setattr(ll, "lora_linear_triton", lambda *a: calls.append(1))
    layer = _layer(dropout=0.5).train()
    with kernels.use_backend("triton"):
        layer(torch.randn(2, 48))
    assert calls == []
    layer.eval()  # dropout is off in evaluation: fused again
    with kernels.use_backend("triton"):
        layer(torch.randn(2, 48))
    assert calls == [1]
