"""Every registered encoder: the shared interface, LESS ViT's behaviour, and bad input."""

import pytest
import torch

from geofm.models import (
    BandCountError,
    InputError,
    LESSViT,
    MixedBandSetError,
    UnknownModelError,
    create_model,
    list_models,
)

S2 = torch.tensor(
    [442.7, 492.4, 559.8, 664.6, 704.1, 740.5, 782.8, 832.8, 864.7, 945.1, 1373.5, 1613.7, 2202.4]
)
SMALL = dict(depth=2)


def _model(name, **kw):
    torch.manual_seed(0)
    return create_model(name, **{**SMALL, **kw})


def _image(c=13, size=32, batch=2, seed=1):
    torch.manual_seed(seed)
    return torch.randn(batch, c, size, size)


# ------------------------------------------------------------------ the registry
def test_registry_lists_every_family_in_three_sizes():
    for family in ("less_vit", "joint_vit", "grouped_vit", "stacked_vit"):
        assert list_models(f"{family}_*") == [f"{family}_base", f"{family}_small", f"{family}_tiny"]


def test_unknown_model_names_the_registered_ones():
    with pytest.raises(UnknownModelError, match="less_vit_huge.*less_vit_base"):
        create_model("less_vit_huge")


def test_overrides_reach_the_architecture():
    model = create_model("less_vit_tiny", depth=3, rank=5, perception_radius_m=None, num_classes=7)
    assert len(model.blocks) == 3
    assert model.blocks[0].attn.rank == 5
    assert model.perception_radius_m is None
    assert model(_image(), S2, 10.0).shape == (2, 7)


def test_an_override_the_model_does_not_take_is_named():
    with pytest.raises(TypeError, match="bands_per_group"):
        create_model("less_vit_tiny", bands_per_group=3)


def test_less_vit_base_has_the_papers_83_2_million_parameters():
    with torch.device("meta"):
        model = create_model("less_vit_base")
    assert round(model.num_params / 1e6, 1) == 83.2
    assert model.blocks[0].attn.channel_branch.head_dim == 2  # a
    assert model.blocks[0].attn.spatial_branch.head_dim == 32  # b


# ------------------------------------------------------------------ every model
@pytest.mark.parametrize("name", list_models("*_tiny"))
def test_every_model_runs_forward_and_backward_without_nan(name):
    model = _model(name, num_classes=4)
    image = _image()
    logits = model(image, S2, torch.tensor([10.0, 20.0]))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_models("*_tiny"))
def test_every_model_gives_intermediate_maps_and_the_final_grid(name):
    model = _model(name).eval()
    image = _image(size=48)
    grid = model.forward_features(image, S2, 10.0)
    rows = {"stacked_vit_tiny": 1, "grouped_vit_tiny": 5}.get(name, 14)
    assert grid.shape == (2, rows, 10, 192)
    final, maps = model.forward_intermediates(image, S2, 10.0, indices=[0, -1], norm=True)
    torch.testing.assert_close(final, grid)
    assert [m.shape for m in maps] == [(2, 192, 3, 3)] * 2
    expected = grid[:, 0, 1:].transpose(1, 2).reshape(2, 192, 3, 3)
    torch.testing.assert_close(maps[1], expected)
    only = model.forward_intermediates(image, S2, 10.0, indices=1, intermediates_only=True)
    assert len(only) == 1
    with pytest.raises(InputError, match="out of range for 2 blocks"):
        model.forward_intermediates(image, S2, 10.0, indices=[2])


@pytest.mark.parametrize("name", list_models("*_tiny"))
def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(name):
    image = _image()
    results = []
    for checkpointing in (False, True):
        model = _model(name)
        model.set_grad_checkpointing(checkpointing)
        out = model.forward_features(image, S2, 10.0)
        out.square().mean().backward()
        results.append(
            (out.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        )
    (out_a, grads_a), (out_b, grads_b) = results
    torch.testing.assert_close(out_a, out_b)
    assert grads_a.keys() == grads_b.keys()
    for n in grads_a:
        torch.testing.assert_close(grads_a[n], grads_b[n], msg=n)


@pytest.mark.parametrize("name", list_models("*_tiny"))
def test_every_model_runs_under_bf16_autocast(name):
    model = _model(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_features(_image(), S2, 10.0)
    # products in bf16, the residual stream in float32 (as timm's ViT keeps it)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out.float().mean().backward()


@pytest.mark.parametrize("name", list_models("*_tiny"))
def test_cls_tokens_are_kept_from_weight_decay(name):
    names = _model(name).no_weight_decay()
    assert names and all(n.endswith("cls_token") for n in names)


def test_reset_classifier_changes_the_head():
    model = _model("less_vit_tiny")
    assert model(_image(), S2, 10.0).shape == (2, 192)
    model.reset_classifier(3)
    assert model(_image(), S2, 10.0).shape == (2, 3)
    assert model.forward_head(
        model.forward_features(_image(), S2, 10.0), pre_logits=True
    ).shape == (2, 192)


# ------------------------------------------------------------------ LESS ViT
@pytest.mark.parametrize("bands", [3, 13, 202])
@pytest.mark.parametrize("gsd", [10.0, 30.0])
def test_less_vit_takes_any_band_count_and_gsd(bands, gsd):
    model = _model("less_vit_tiny").eval()
    wavelengths = torch.linspace(400.0, 2500.0, bands)
    grid = model.forward_features(_image(c=bands), wavelengths, gsd)
    assert grid.shape == (2, bands + 1, 5, 192)
    assert torch.isfinite(grid).all()


@pytest.mark.parametrize("name", ["less_vit_tiny", "joint_vit_tiny"])
def test_permuting_bands_with_wavelengths_permutes_channel_tokens(name):
    model = _model(name).double().eval()
    image = _image().double()
    perm = torch.randperm(13, generator=torch.Generator().manual_seed(3))
    grid = model.forward_features(image, S2, 10.0)
    permuted = model.forward_features(image[:, perm], S2[perm], 10.0)
    torch.testing.assert_close(permuted[:, 1:], grid[:, 1 + perm])
    torch.testing.assert_close(permuted[:, 0], grid[:, 0])  # CLS row unchanged


def test_grouped_vit_groups_by_wavelength_whatever_the_band_order():
    model = _model("grouped_vit_tiny").double().eval()
    image = _image().double()
    perm = torch.randperm(13, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(
        model.forward_features(image[:, perm], S2[perm], 10.0),
        model.forward_features(image, S2, 10.0),
    )


def test_wavelengths_matter_to_less_vit():
    model = _model("less_vit_tiny").eval()
    image = _image()
    assert not torch.allclose(model(image, S2, 10.0), model(image, S2 + 50.0, 10.0))
    assert not torch.allclose(model(image, S2, 10.0), model(image, S2, 20.0))


def test_perception_radius_changes_the_output_only_when_it_cuts_patches():
    image = _image(size=128)  # 8 x 8 patches of 160 m
    outputs = {}
    for radius in (None, 640.0, 1e6):
        torch.manual_seed(0)
        model = LESSViT(
            patch_size=16, embed_dim=24, depth=2, num_heads=2, perception_radius_m=radius
        ).eval()
        outputs[radius] = model.forward_features(image, S2, 10.0)
    torch.testing.assert_close(outputs[None], outputs[1e6])
    assert not torch.allclose(outputs[None], outputs[640.0])


def test_radar_bands_go_through_the_radar_embedding():
    model = _model("less_vit_tiny")
    wavelengths = torch.cat([S2[:4], torch.tensor([5500.0, 5700.0])])
    model(_image(c=6), wavelengths, 10.0).sum().backward()
    tok = model.tokenizer
    assert tok.patch_embed.fc1.weight.grad.abs().sum() > 0
    assert tok.radar_patch_embed.fc1.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model(_image(c=4), S2[:4], 10.0).sum().backward()
    # optical input: the radar embedding runs on no bands, so it is in the graph (as DDP
    # needs) but learns nothing
    assert torch.equal(
        tok.radar_patch_embed.fc1.weight.grad, torch.zeros_like(tok.radar_patch_embed.fc1.weight)
    )


# ------------------------------------------------------------------ bad input
def test_wavelength_count_mismatch_names_both_counts():
    with pytest.raises(BandCountError, match="image has 13 bands but 12 wavelengths"):
        _model("less_vit_tiny")(_image(), S2[:12], 10.0)


def test_mixed_band_sets_in_one_batch_are_refused():
    wavelengths = torch.stack([S2, S2.flip(0)])
    with pytest.raises(MixedBandSetError, match="sample 0 .* sample 1"):
        _model("less_vit_tiny")(_image(), wavelengths, 10.0)


def test_per_sample_wavelength_rows_that_agree_are_accepted():
    out = _model("less_vit_tiny")(_image(), S2.expand(2, 13), 10.0)
    assert out.shape == (2, 192)


def test_image_size_not_divisible_by_the_patch_names_both():
    with pytest.raises(InputError, match="40 x 32 is not divisible by the patch size 16"):
        _model("less_vit_tiny")(torch.zeros(1, 13, 40, 32), S2, 10.0)


def test_nan_in_the_image_is_counted_by_band():
    image = _image()
    image[0, 3, :2, :2] = float("nan")
    image[1, 7, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"5 NaN values in band\(s\) \[3, 7\]"):
        _model("less_vit_tiny")(image, S2, 10.0)


@pytest.mark.parametrize("gsd", [0.0, -10.0, float("nan"), [10.0, 10.0, 10.0]])
def test_bad_gsd_is_refused(gsd):
    with pytest.raises(InputError, match="gsd"):
        _model("less_vit_tiny")(_image(), S2, gsd)


def test_three_dimensional_image_is_refused():
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        _model("less_vit_tiny")(torch.zeros(13, 32, 32), S2, 10.0)


def test_stacked_vit_names_the_band_count_it_was_built_for():
    with pytest.raises(BandCountError, match="built for 13 bands but the image has 4"):
        _model("stacked_vit_tiny")(_image(c=4), S2[:4], 10.0)
    assert _model("stacked_vit_tiny", in_chans=4)(_image(c=4), S2[:4], 10.0).shape == (2, 192)
