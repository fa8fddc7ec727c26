"""LoRA: identity at start, exact merge/unmerge, gradients only where they belong, every model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from geofm.models import create_model, list_models
from geofm.models.lora import (
    LoRALinear,
    effective_weight,
    freeze_except_lora,
    inject_lora,
    lora_layers,
    merge_lora,
    parameter_counts,
    remove_lora,
    set_lora_multiplier,
    unmerge_lora,
)


def _inputs(model, bands=4, size=16, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    if getattr(model, "config", {}).get("in_chans"):
        bands = model.config["in_chans"]
    image = torch.randn(batch, bands, size, size, generator=g)
    return image, torch.linspace(450.0, 2200.0, bands), torch.full((batch,), 10.0)


def _randomise_lora(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.05)


def test_lora_linear_formula():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    layer = LoRALinear.from_linear(base, rank=3, alpha=6.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(5, 12)
    expected = x @ base.weight.T + base.bias + (6.0 / 3) * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), expected)
    layer.set_multiplier(0.25)
    expected = x @ base.weight.T + base.bias + 0.25 * 2.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(
        effective_weight(layer), base.weight + 0.5 * layer.lora_B @ layer.lora_A
    )
    assert layer.weight is base.weight  # shared, not copied


def test_bad_rank_and_dropout():
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(4, 4, rank=0)
    with pytest.raises(ValueError, match="exceeds"):
        LoRALinear(4, 16, rank=5)
    with pytest.raises(ValueError, match="dropout"):
        LoRALinear(8, 8, rank=2, dropout=1.0)


@pytest.mark.parametrize("name", [*list_models("*_tiny"), "lola_specvit"])
def test_identity_merge_unmerge_and_gradients_on_every_model(name):
    torch.manual_seed(0)
    if name == "lola_specvit":
        model = create_model(
            name,
            bands=20,
            num_classes=5,
            patch=9,
            components=8,
            conv_kernels=((3, 3, 3), (3, 3, 3), (3, 3, 3)),
            window=2,
        )
        model.fit_reduction(torch.randn(50, 20))
        args = (torch.randn(2, 20, 9, 9),)
    else:
        model = create_model(name, depth=2, num_classes=5)
        args = _inputs(model)
    model.eval()
    with torch.no_grad():
        before = model(*args)
    names = inject_lora(model, rank=2, alpha=4.0)
    assert names and all(isinstance(model.get_submodule(n), LoRALinear) for n in names)
    with torch.no_grad():
        torch.testing.assert_close(model(*args), before, rtol=0, atol=0)  # B = 0: identity

    _randomise_lora(model)
    with torch.no_grad():
        adapted = model(*args)
    assert not torch.allclose(adapted, before)
    weights = {n: model.get_submodule(n).weight.detach().clone() for n in names}
    merge_lora(model)
    with torch.no_grad():
        torch.testing.assert_close(model(*args), adapted, rtol=1e-5, atol=1e-5)
    unmerge_lora(model)
    eps = torch.finfo(torch.float32).eps
    for n in names:  # back within one float32 rounding step of the merged value
        layer = model.get_submodule(n)
        w, w0 = layer.weight.detach(), weights[n]
        bound = eps * (w0.abs() + layer.delta_weight().detach().abs())
        assert ((w - w0).abs() <= bound).all(), n
    with torch.no_grad():
        torch.testing.assert_close(model(*args), adapted, rtol=1e-5, atol=1e-5)

    # lora mode: only LoRA factors, norms and the head get gradients
    freeze_except_lora(model, train=("norm", "head"))
    model.train()
    model(*args).square().sum().backward()
    for pname, p in model.named_parameters():
        owner = pname.rsplit(".", 1)[0] if "." in pname else ""
        allowed = (
            "lora_" in pname
            or pname.startswith("head.")
            or isinstance(
                model.get_submodule(owner), (nn.LayerNorm, nn.modules.batchnorm._NormBase)
            )
        )
        if allowed:
            assert p.requires_grad, pname
        else:
            assert not p.requires_grad and p.grad is None, pname
    lora_grads = [layer.lora_A.grad for _, layer in lora_layers(model)]
    assert any(g is not None and g.abs().sum() > 0 for g in lora_grads)
    counts = parameter_counts(model)
    assert 0 < counts.trainable < counts.total


def test_lora_reaches_weights_used_algebraically():
    """LESS attention pooling reads kv.weight directly; the LoRA update must apply there."""
    torch.manual_seed(0)
    model = create_model("less_vit_tiny", depth=1).eval()
    args = _inputs(model)
    inject_lora(model, ["kv"], rank=2)
    pools = [m for n, m in lora_layers(model) if "pool" in n]
    assert pools
    with torch.no_grad():
        before = model(*args)
        pools[0].lora_B.fill_(0.05)
        assert not torch.allclose(model(*args), before)
    model(*args).sum().backward()
    assert pools[0].lora_B.grad is not None and pools[0].lora_B.grad.abs().sum() > 0


def test_injection_errors_and_patterns():
    model = create_model("joint_vit_tiny", depth=2)
    with pytest.raises(ValueError, match="no linear layer matches"):
        inject_lora(model, ["nothing_here"])
    with pytest.raises(ValueError, match="not nn.Linear"):
        inject_lora(model, ["attn"])
    names = inject_lora(model, ["blocks.0.*.qkv"], rank=2)
    assert names == ["blocks.0.attn.qkv"]
    with pytest.raises(ValueError, match="already has LoRA"):
        inject_lora(model, ["qkv"])
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(create_model("joint_vit_tiny", depth=1))
    assert set_lora_multiplier(model, 0.5) == 1


def test_excluded_and_state_dict_keys():
    model = create_model("joint_vit_tiny", depth=1)
    base_keys = set(model.state_dict())
    names = inject_lora(model, ["qkv", "proj", "fc1"], exclude=["fc1"])
    assert not any(n.endswith("fc1") for n in names)
    keys = set(model.state_dict())
    assert base_keys <= keys  # a base state dict loads unchanged
    assert {k for k in keys - base_keys} == {f"{n}.lora_{x}" for n in names for x in "AB"}


def test_remove_lora_merged_and_dropped():
    torch.manual_seed(0)
    model = create_model("joint_vit_tiny", depth=1).eval()
    args = _inputs(model)
    with torch.no_grad():
        base = model(*args)
    inject_lora(model, rank=2)
    _randomise_lora(model)
    with torch.no_grad():
        adapted = model(*args)
    twin = create_model("joint_vit_tiny", depth=1).eval()
    twin.load_state_dict(model.state_dict(), strict=False)
    inject_lora(twin, rank=2)
    twin.load_state_dict(model.state_dict())
    remove_lora(model, merge=True)
    assert not lora_layers(model)
    with torch.no_grad():
        torch.testing.assert_close(model(*args), adapted, rtol=1e-5, atol=1e-5)
    remove_lora(twin, merge=False)
    with torch.no_grad():
        torch.testing.assert_close(twin(*args), base, rtol=1e-6, atol=1e-6)


def test_multiplier_refused_when_merged():
    layer = LoRALinear(8, 8, rank=2)
    layer.merge()
    with pytest.raises(RuntimeError, match="unmerge first"):
        layer.set_multiplier(0.5)
    layer.unmerge()
    layer.set_multiplier(0.5)
    assert math.isclose(layer.scaling, 0.5 * 16 / 2)


def test_skip_narrow_leaves_layers_where_the_rank_is_not_low():
    model = create_model("less_vit_tiny", depth=1)
    with pytest.raises(ValueError, match="exceeds min"):  # the 6-wide spectral branch
        inject_lora(create_model("less_vit_tiny", depth=1), rank=8)
    names = inject_lora(model, rank=8, skip_narrow=True)
    assert "blocks.0.attn.proj" in names and "blocks.0.attn.channel_branch.v" not in names
    assert all(
        min(model.get_submodule(n).in_features, model.get_submodule(n).out_features) > 8
        for n in names
    )
