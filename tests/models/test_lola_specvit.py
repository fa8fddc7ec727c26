"""LoLA-SpecViT: shifted windows and masks against brute force, PCA, shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geofm.models import create_model
from geofm.models.lola_specvit import (
    LoLASpecViT,
    SpectralReduction,
    WindowBlock,
    shifted_window_mask,
)
from geofm.models.lora import parameter_counts


def _brute_force_attention(block: WindowBlock, x: torch.Tensor, shift: int) -> torch.Tensor:
    """Token by token: a query at (i, j) attends to keys (i2, j2) of the map that share its
    window, windows being cut at rows/cols shift + k * window (no wrap-around), with the
    learned bias of the offset (i - i2, j - j2)."""
    attn = block.attn
    B, H, W, D = x.shape
    h, ws = attn.num_heads, block.window
    e = D // h
    q, k, v = attn.qkv(x).reshape(B, H, W, 3, h, e).unbind(3)
    table = attn.relative_bias.reshape(2 * ws - 1, 2 * ws - 1, h)
    out = torch.zeros(B, H, W, h, e, dtype=x.dtype)
    for i in range(H):
        for j in range(W):
            keys = [
                (i2, j2)
                for i2 in range(H)
                for j2 in range(W)
                if (i - shift) // ws == (i2 - shift) // ws
                and (j - shift) // ws == (j2 - shift) // ws
            ]
            kk = torch.stack([k[:, a, b] for a, b in keys], dim=2)  # (B, h, n, e)
            vv = torch.stack([v[:, a, b] for a, b in keys], dim=2)
            bias = torch.stack([table[i - a + ws - 1, j - b + ws - 1] for a, b in keys], 1)
            logits = torch.einsum("bhe,bhne->bhn", q[:, i, j], kk) * e**-0.5 + bias
            out[:, i, j] = torch.einsum("bhn,bhne->bhe", logits.softmax(-1), vv)
    return attn.proj(out.reshape(B, H, W, D))


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize(("H", "W", "window"), [(7, 5, 3), (6, 6, 3), (9, 9, 4), (5, 8, 4)])
def test_window_attention_matches_brute_force(shifted, H, W, window):
    torch.manual_seed(0)
    block = WindowBlock(dim=8, num_heads=2, window=window, shift=shifted).double().eval()
    with torch.no_grad():
        block.attn.relative_bias.normal_()  # a bias that matters
        x = torch.randn(2, H, W, 8, dtype=torch.float64)
        shift = block.shift_for(H, W)
        assert shift == (window // 2 if shifted else 0)
        torch.testing.assert_close(
            block.attend(x), _brute_force_attention(block, x, shift), rtol=1e-10, atol=1e-12
        )


def test_padding_is_masked_and_shift_regions_stay_apart():
    m = shifted_window_mask(5, 5, 4, 0)  # padded to 8 x 8: 4 windows of 16
    assert m.shape == (4, 16, 16)
    # window 0 holds rows 0-3 x cols 0-3: all real, all may attend to each other
    assert m[0].all()
    # window 3 holds rows 4-7 x cols 4-7: only (4, 4) is real; padded keys are closed
    assert m[3][:, 0].all() and not m[3][0, 1:].any()
    shifted = shifted_window_mask(8, 8, 4, 2)
    # in the last window, tokens wrapped from the top-left stay apart from the others
    last = shifted[-1]
    assert not last.all() and last.diagonal().all()
    assert (last == last.T).all()


def test_spectral_reduction_is_pca():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    pixels = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + 5.0
    x = torch.from_numpy(pixels).float().T.reshape(1, 12, 300, 1)
    pca = PCA(4).fit(pixels)
    ref = pca.transform(pixels)
    for whiten in (False, True):
        red = SpectralReduction(12, 4, whiten=whiten).fit(torch.from_numpy(pixels))
        scores = red(x)[0, :, :, 0].T.double().numpy()
        for c in range(4):  # the same components, up to the sign of each
            assert abs(abs(np.corrcoef(scores[:, c], ref[:, c])[0, 1]) - 1.0) < 1e-5
        sd = scores.std(0, ddof=1)
        if whiten:  # every score at unit variance
            np.testing.assert_allclose(sd, 1.0, rtol=1e-4)
        else:  # the first at unit variance, the others in proportion
            np.testing.assert_allclose(
                sd, np.sqrt(pca.explained_variance_ / pca.explained_variance_[0]), rtol=1e-4
            )
    np.testing.assert_allclose(red.explained.numpy(), pca.explained_variance_ratio_, rtol=1e-5)
    valid = torch.ones(1, 300, 1, dtype=torch.bool)
    valid[0, :10] = False
    masked = red(torch.from_numpy(pixels).float().T.reshape(1, 12, 300, 1), valid)
    assert (masked[0, :, :10] == 0).all()


def test_reduction_errors():
    red = SpectralReduction(6, 3)
    with pytest.raises(RuntimeError, match="not fitted"):
        red(torch.zeros(1, 6, 2, 2))
    with pytest.raises(ValueError, match="components"):
        SpectralReduction(6, 7)
    with pytest.raises(ValueError, match="NaN"):
        red.fit(torch.tensor([[float("nan")] * 6, [0.0] * 6]))
    red.fit(torch.randn(20, 6))
    with pytest.raises(ValueError, match="fitted on 6 bands"):
        red(torch.zeros(1, 5, 2, 2))


@pytest.mark.parametrize("pool", ["mean", "center", "both"])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_forward_shapes_raw_and_reduced(pool, padding):
    torch.manual_seed(0)
    model = LoLASpecViT(
        30,
        4,
        patch=9,
        components=15,
        conv_padding=padding,
        pool=pool,
        window=3 if padding == "valid" else 4,
        depths=(1, 1),
    )
    model.fit_reduction(torch.randn(100, 30))
    x = torch.randn(3, 30, 9, 9)
    model.eval()  # batch norm and drop path fixed for the comparison
    logits = model(x)
    assert logits.shape == (3, 4)
    scores = model.reduction(x)
    torch.testing.assert_close(model.head(model.forward_reduced(scores)), logits)
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_model_errors():
    with pytest.raises(ValueError, match="odd"):
        LoLASpecViT(30, 4, patch=8)
    with pytest.raises(ValueError, match="larger than the map"):
        LoLASpecViT(30, 4, patch=9, components=15, window=[5, 2])  # 9 -> 3 x 3 map
    with pytest.raises(ValueError, match="does not fit"):
        LoLASpecViT(30, 4, patch=9, components=5)
    model = LoLASpecViT(30, 4, patch=9, components=15, window=3)
    model.fit_reduction(torch.randn(40, 30))
    with pytest.raises(ValueError, match=r"expects \(batch, 30, 9, 9\)"):
        model(torch.randn(2, 30, 11, 11))


def test_lora_mode_counts():
    model = create_model("lola_specvit", bands=204, num_classes=6)
    full = parameter_counts(model)
    assert full.trainable == full.total
    names = model.to_lora(rank=4)
    assert {n.rsplit(".", 1)[-1] for n in names} == {"qkv", "proj", "w12", "w3"}
    lora = parameter_counts(model)
    assert lora.total > full.total and lora.trainable < 0.15 * lora.total


def test_square_symmetries_are_the_eight_and_keep_the_centre():
    from geofm.models.lola_specvit import square_symmetry

    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    views = [square_symmetry(x, k) for k in range(8)]
    assert torch.equal(views[0], x)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert all(v[0, 0, 2, 2] == 12 for v in views)
    with pytest.raises(ValueError, match="8 symmetries"):
        square_symmetry(x, 8)
    with pytest.raises(ValueError, match="square windows only, got 5 x 4"):
        square_symmetry(x[..., :4], 1)


def test_tta_averages_the_logits_of_the_eight_symmetries():
    from geofm.models.lola_specvit import square_symmetry

    torch.manual_seed(0)
    kwargs = dict(patch=7, components=15, conv_padding="same", depths=(1, 1), drop_path_rate=0.0)
    model = LoLASpecViT(30, 4, tta=True, **kwargs)
    model.fit_reduction(torch.randn(100, 30))
    x = torch.randn(3, 30, 7, 7)
    scores = model.reduction(x)
    model.eval()
    plain = [model.head(model.forward_reduced(square_symmetry(scores, k))) for k in range(8)]
    logits = model(x)
    torch.testing.assert_close(logits, torch.stack(plain).mean(0))
    # the average over the group does not change when a window is turned or flipped; one
    # view alone does
    torch.testing.assert_close(model(square_symmetry(x, 1)), logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(square_symmetry(x, 5)), logits, atol=1e-5, rtol=1e-5)
    assert (plain[1] - plain[0]).abs().max() > 1e-3
    # training sees one view per window: the plain logits
    model.train()
    torch.testing.assert_close(model(x), model.head(model.forward_reduced(scores)))
    assert not LoLASpecViT(30, 4, **kwargs).tta


def test_a_dilated_window_is_the_plain_model_on_every_second_pixel():
    torch.manual_seed(0)
    kwargs = dict(components=15, conv_padding="same", depths=(1, 1))
    plain = LoLASpecViT(30, 4, patch=7, **kwargs)
    wide = LoLASpecViT(30, 4, patch=13, dilation=2, **kwargs)
    wide.load_state_dict(plain.state_dict())  # the same weights: dilation adds none
    plain.eval(), wide.eval()
    scores = torch.randn(3, 15, 13, 13)
    torch.testing.assert_close(
        wide.forward_reduced(scores), plain.forward_reduced(scores[:, :, ::2, ::2])
    )
    assert wide.forward_reduced(scores).shape == (3, 128 * 1)
    for patch, dilation in [(13, 4), (11, 2)]:
        with pytest.raises(ValueError, match=rf"patch - 1 = {patch - 1} must be a multiple"):
            LoLASpecViT(30, 4, patch=patch, dilation=dilation, **kwargs)
    for dilation in (0, 1.5, True):
        with pytest.raises(ValueError, match="dilation must be a positive integer"):
            LoLASpecViT(30, 4, patch=7, dilation=dilation, **kwargs)
    with pytest.raises(TypeError, match="tta must be True or False"):
        LoLASpecViT(30, 4, patch=7, tta="false", **kwargs)


def test_the_center_spectrum_branch_sees_the_centre_pixel_alone():
    torch.manual_seed(0)
    kwargs = dict(patch=7, components=15, conv_padding="same", depths=(1, 1), pool="both")
    plain = LoLASpecViT(30, 4, **kwargs)
    model = LoLASpecViT(30, 4, center_spectrum=True, **kwargs)
    assert model.head.in_features == 3 * 128 and plain.head.in_features == 2 * 128
    # the window branch is the plain model's, weight for weight
    window_keys = {k for k in model.state_dict() if not k.startswith(("spectral.", "head."))}
    assert window_keys == {k for k in plain.state_dict() if not k.startswith("head.")}
    plain.load_state_dict(
        {**model.state_dict(), **plain.head.state_dict(prefix="head.")}, strict=False
    )
    model.eval(), plain.eval()
    scores = torch.randn(5, 15, 7, 7)
    features = model.forward_reduced(scores)
    assert features.shape == (5, 3 * 128)
    torch.testing.assert_close(features[:, :256], plain.forward_reduced(scores))
    # the spectral part changes with the centre pixel only
    moved = scores.clone()
    moved[:, :, 0, 0] += 5.0
    torch.testing.assert_close(model.forward_reduced(moved)[:, 256:], features[:, 256:])
    centre = scores.clone()
    centre[:, :, 3, 3] += 5.0
    assert (model.forward_reduced(centre)[:, 256:] - features[:, 256:]).abs().max() > 1e-2
    # in lora mode the branch trains in full: it reads the components a new scene refits
    model.to_lora(rank=4)
    assert all(p.requires_grad for p in model.spectral.parameters())
    assert not model.frontend[0].weight.requires_grad
    with pytest.raises(TypeError, match="center_spectrum must be True or False"):
        LoLASpecViT(30, 4, center_spectrum=1, **kwargs)
