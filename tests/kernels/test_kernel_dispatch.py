"""Dispatch between the Triton kernels and their references, and LESS ViT on either path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from fresh_imports import imported_by

import geofm.kernels as kernels
import geofm.kernels.block_sparse_attention as bsa
import geofm.kernels.kron_proj as kp
from geofm.kernels._common import failures
from geofm.models.less_vit import LESSAttention, LESSViT, perception_field_mask
from geofm.models.lora import inject_lora


def _spy(monkeypatch, module, name, calls=None):
    """Record the calls of ``module.name`` in ``calls`` (a new list unless given)."""
    calls = [] if calls is None else calls
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_auto_runs_the_reference_on_cpu_tensors(monkeypatch):
    calls = _spy(monkeypatch, kp, "kron_combine_proj_triton")
    _spy(monkeypatch, bsa, "block_sparse_attention_triton", calls)
    assert kernels.get_backend() == "auto"
    attn = LESSAttention(48, 2, rank=1)
    x = torch.randn(1, 4, 10, 48)
    attn(x, perception_field_mask((3, 3), 16, torch.tensor([10.0]), 300.0))
    assert calls == []
    assert not kernels.triton_selected(x)


def test_a_setting_forces_either_backend(monkeypatch):
    calls = _spy(monkeypatch, kp, "kron_combine_proj_triton")
    _spy(monkeypatch, bsa, "block_sparse_attention_triton", calls)
    attn = LESSAttention(48, 2, rank=2)
    x = torch.randn(1, 4, 10, 48)
    mask = perception_field_mask((3, 3), 16, torch.tensor([10.0]), 300.0)
    with kernels.use_backend("triton"):
        assert kernels.get_backend() == "triton"
        attn(x, mask)
        with kernels.use_backend("reference"):
            attn(x, mask)
    assert kernels.get_backend() == "auto"
    # forced, both branches run the attention kernel (the channel one without a mask),
    # then the fused combine; the inner reference block adds no call
    assert calls == ["block_sparse_attention_triton"] * 2 + ["kron_combine_proj_triton"]


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="one of"):
        kernels.set_backend("cuda")
    env = {**os.environ, "GEOFM_KERNELS": "fast"}
    done = subprocess.run(
        [sys.executable, "-c", "import geofm.kernels"], env=env, capture_output=True, text=True
    )
    assert done.returncode != 0 and "kernel backend must be one of" in done.stderr


def test_environment_variable_sets_the_default():
    env = {**os.environ, "GEOFM_KERNELS": "reference"}
    done = subprocess.run(
        [sys.executable, "-c", "import geofm.kernels as k; print(k.get_backend())"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "reference"


def test_forced_triton_on_cpu_without_the_interpreter_says_how():
    code = (
        "import torch, geofm.kernels as k; k.set_backend('triton'); "
        "q = torch.randn(1, 1, 4, 16); k.masked_attention(q, q, q)"
    )
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "TRITON_INTERPRET=1" in done.stderr


def test_forced_triton_refuses_attention_dropout():
    q = torch.randn(1, 1, 8, 16)
    with kernels.use_backend("triton"), pytest.raises(NotImplementedError, match="dropout"):
        kernels.masked_attention(q, q, q, None, dropout_p=0.1)


def test_kernels_import_only_torch_and_triton():
    prefixes = ["geofm.", "lightning", "rasterio", "timm", "xarray"]
    assert imported_by("geofm.kernels", prefixes, allowed=["geofm.kernels"]) == []


@pytest.mark.parametrize("rank", [1, 3])
def test_less_attention_on_the_kernels_equals_the_kronecker_sum_map(rank):
    """The identity of DESIGN.md, in float64: the Triton path against attention over all
    (C+1)(N+1) tokens with the map sum_k A_c^k kron A_s^k on values V_c kron V_s."""
    torch.manual_seed(rank)
    heads, a, b, C, grid = 2, 2, 3, 3, (3, 4)
    N = grid[0] * grid[1]
    attn = LESSAttention(heads * a * b, heads, dims_per_head=a, rank=rank).double().eval()
    x = torch.randn(2, C + 1, N + 1, heads * a * b, dtype=torch.float64)
    mask = perception_field_mask(grid, 16, torch.tensor([10.0, 10.0]), 200.0)
    with kernels.use_backend("triton"):
        ours = attn(x, mask)
    x_c, x_s = attn.pool(x)
    qc, kc, vc = attn.channel_branch.qkv(attn.channel_norm(x_c))
    qs, ks, vs = attn.spatial_branch.qkv(attn.spatial_norm(x_s))
    big = torch.zeros(2, heads, (C + 1) * (N + 1), a * b, dtype=torch.float64)
    for bi in range(2):
        for hd in range(heads):
            total = 0
            for k in range(rank):
                a_c = (qc[bi, hd, k] @ kc[bi, hd, k].T / a**0.5).softmax(-1)
                logits = qs[bi, hd, k] @ ks[bi, hd, k].T / b**0.5
                a_s = logits.masked_fill(~mask[0, 0], float("-inf")).softmax(-1)
                total = total + torch.kron(a_c, a_s)
            values = torch.kron(vc[bi, hd, 0], vs[bi, hd, 0])  # ((C+1)(N+1), a*b)
            big[bi, hd] = total @ values
    combined = big.reshape(2, heads, C + 1, N + 1, a * b).permute(0, 2, 3, 1, 4)
    expected = attn.proj(combined.reshape(2, C + 1, N + 1, heads * a * b))
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-10)


def _tiny_vit(**kw):
    return LESSViT(
        patch_size=8, embed_dim=96, depth=2, num_heads=3, rank=2, perception_radius_m=250.0, **kw
    )


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_less_vit_trains_the_same_on_both_backends(lora):
    torch.manual_seed(0)
    model = _tiny_vit(num_classes=4)
    if lora:
        inject_lora(model, rank=4)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name or name.startswith("head"))
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
    image = torch.randn(2, 5, 48, 40)
    wl = torch.tensor([490.0, 560.0, 665.0, 842.0, 1610.0])
    gsd = torch.tensor([10.0, 10.0])
    grads = {}
    for backend in ("reference", "triton"):
        model.zero_grad()
        with kernels.use_backend(backend):
            out = model(image, wl, gsd)
            out.square().sum().backward()
        grads[backend] = (
            out.detach(),
            {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
        )
    (out_r, g_r), (out_t, g_t) = grads["reference"], grads["triton"]
    torch.testing.assert_close(out_t, out_r, rtol=1e-4, atol=1e-5)
    assert g_r.keys() == g_t.keys() and len(g_r) > 20
    assert all("lora_" in n or n.startswith("head") for n in g_r) == lora
    for name in g_r:
        torch.testing.assert_close(g_t[name], g_r[name], rtol=1e-3, atol=1e-5, msg=name)


def test_a_lora_or_hooked_projection_is_called_as_a_module(monkeypatch):
    """LoRA on proj runs its own (fused) LoRA layer; a hook on proj (pruning, sharding,
    observers) sees its call; only a bare Linear goes into the fused combine."""
    torch.manual_seed(1)
    attn = LESSAttention(48, 2, rank=1)
    x = torch.randn(1, 4, 10, 48)
    calls = _spy(monkeypatch, kp, "kron_combine_proj_triton")
    with kernels.use_backend("triton"):
        plain = attn(x)
    assert calls == ["kron_combine_proj_triton"]
    for register in (
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
    ):
        seen = []
        handle = getattr(attn.proj, register)(lambda *args, seen=seen: seen.append(1))
        for backend in ("reference", "triton"):
            with kernels.use_backend(backend):
                hooked = attn(x)
            hooked.sum().backward()
            torch.testing.assert_close(hooked, plain, rtol=1e-5, atol=1e-5)
        handle.remove()
        assert seen == [1, 1], register
    assert calls == ["kron_combine_proj_triton"]
    inject_lora(attn, targets=["proj"], rank=4)
    with torch.no_grad():
        attn.proj.lora_B.normal_()
    reference = attn(x)
    with kernels.use_backend("triton"):
        lora = attn(x)
    assert calls == ["kron_combine_proj_triton"]
    torch.testing.assert_close(lora, reference, rtol=1e-5, atol=1e-5)


def test_the_backend_holds_in_other_threads():
    """Autograd runs backward passes on threads of its own (on CUDA)."""
    import threading

    seen = []
    with kernels.use_backend("reference"):
        worker = threading.Thread(target=lambda: seen.append(kernels.get_backend()))
        worker.start()
        worker.join()
    assert seen == ["reference"]


def test_checkpointed_blocks_recompute_on_the_forward_backend(monkeypatch):
    """The usual loop runs the forward in a use_backend block and the backward after it:
    the recomputation of checkpointed blocks must take the forward's path, not the default."""
    calls = _spy(monkeypatch, kp, "kron_combine_proj_triton")
    torch.manual_seed(0)
    model = _tiny_vit()
    image = torch.randn(1, 3, 32, 32)
    wl, gsd = torch.tensor([490.0, 560.0, 665.0]), torch.tensor([10.0])
    model.set_grad_checkpointing(True)
    with kernels.use_backend("triton"):
        out = model.forward_features(image, wl, gsd)
    n_forward = len(calls)
    out.square().mean().backward()  # outside the block: the default is auto
    assert n_forward == 2 and len(calls) == 4  # each block recomputed on the kernels
    checkpointed = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(False)
    with kernels.use_backend("triton"):
        model.forward_features(image, wl, gsd).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(checkpointed[n], p.grad, rtol=1e-5, atol=1e-6, msg=n)


def test_auto_falls_back_once_with_a_warning_when_triton_cannot_build_a_kernel(
    monkeypatch, no_kernel_failures
):
    """On a GPU where a kernel does not compile, auto warns once and keeps the reference."""
    from triton.runtime.errors import OutOfResources

    from geofm.kernels import dispatch

    calls = []

    def broken(*args):
        calls.append(1)
        raise OutOfResources(300000, 232448, "shared memory")

    monkeypatch.setattr(kp, "kron_combine_proj_triton", broken)
    # pretend these CPU tensors sit on a device where auto picks Triton
    monkeypatch.setattr(dispatch, "interpreted", lambda: False)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    y_c, y_s = torch.randn(1, 2, 1, 3, 2), torch.randn(1, 2, 1, 5, 4)
    w = torch.randn(16, 16)
    with pytest.warns(RuntimeWarning, match="runs its PyTorch reference from now on"):
        out = kernels.kron_combine_proj(y_c, y_s, w)
    torch.testing.assert_close(out, kernels.kron_combine_proj_reference(y_c, y_s, w))
    assert set(failures()) == {("kron_combine_proj", torch.float32)}
    kernels.kron_combine_proj(y_c, y_s, w)  # no second attempt, no second warning
    assert calls == [1]
    with kernels.use_backend("triton"), pytest.raises(OutOfResources):
        kernels.kron_combine_proj(y_c, y_s, w)


def test_auto_keeps_float64_attention_on_the_reference(monkeypatch):
    """float64 tl.dot with a large inner dimension does not lower on sm_80/sm_90."""
    from geofm.kernels import dispatch

    calls = _spy(monkeypatch, bsa, "block_sparse_attention_triton")
    monkeypatch.setattr(dispatch, "interpreted", lambda: False)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    mask = perception_field_mask((3, 3), 16, torch.tensor([10.0]), 300.0)
    q = torch.randn(1, 2, 10, 16, dtype=torch.float64)
    kernels.masked_attention(q, q, q, mask)
    assert calls == []
    kernels.masked_attention(q.float(), q.float(), q.float(), mask)
    assert calls == ["block_sparse_attention_triton"]


def test_triton_failures_are_told_from_other_errors():
    from triton.runtime.errors import OutOfResources

    from geofm.kernels._common import is_triton_failure

    assert is_triton_failure(OutOfResources(1, 0, "shared memory"))
    assert is_triton_failure(RuntimeError("PassManager::run failed"))
    assert not is_triton_failure(RuntimeError("CUDA error: an illegal memory access"))
    assert not is_triton_failure(ValueError("PassManager"))


def test_a_failure_under_autocast_is_remembered_for_the_dtype_the_kernel_ran_in(
    monkeypatch, no_kernel_failures
):
    """A float32 input under bfloat16 autocast runs the kernel in bfloat16; the fall-back is
    keyed by that, so the next call does not rebuild the kernel."""
    from triton.runtime.errors import OutOfResources

    import geofm.kernels.fused_lora as fl
    from geofm.kernels import dispatch

    attempts = []

    def broken(*args):
        attempts.append(args[0].dtype)
        raise OutOfResources(300000, 232448, "shared memory")

    monkeypatch.setattr(fl, "lora_linear_triton", broken)
    monkeypatch.setattr(dispatch, "interpreted", lambda: False)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    x, w, a, b = torch.randn(4, 16), torch.randn(8, 16), torch.randn(2, 16), torch.randn(8, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.warns(RuntimeWarning, match="bfloat16"):
            first = kernels.lora_linear(x, w, None, a, b, 2.0)
        for _ in range(2):
            kernels.lora_linear(x, w, None, a, b, 2.0)
    assert attempts == [torch.bfloat16] and first.dtype == torch.bfloat16
    assert set(failures()) == {("lora_linear", torch.bfloat16)}


def test_matmul_precision_follows_either_torch_api():
    code = (
        "import torch\n"
        "from geofm.kernels._common import dot_precision\n"
        "assert dot_precision(torch.float32) == 'ieee'\n"
        "torch.backends.cuda.matmul.allow_tf32 = True\n"
        "assert dot_precision(torch.float32) == 'tf32'\n"
        "assert dot_precision(torch.float16) == 'ieee'\n"
        "torch.backends.cuda.matmul.fp32_precision = 'ieee'\n"  # the newer API
        "assert dot_precision(torch.float32) == 'ieee'\n"
        "torch.backends.cuda.matmul.fp32_precision = 'tf32'\n"
        "assert dot_precision(torch.float32) == 'tf32'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
