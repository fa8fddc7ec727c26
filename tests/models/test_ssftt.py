"""SSFTT (Sun et al., TGRS 2022): the published architecture's shapes and size, the
tokeniser's weighted means, the window-classifier interface the pixel protocol uses, and
bad input."""

from __future__ import annotations

import pytest
import torch

from geofm.models import SSFTT, create_model
from geofm.models.ssftt import FeatureTokenizer


def test_published_architecture_and_size():
    model = create_model("ssftt", bands=200, num_classes=16)
    # the public code's Indian Pines model: conv3d 8 x 3^3, conv2d 224 -> 64 x 3^2,
    # 4 tokens, one layer of width 64 with an MLP of 8: 153,224 parameters
    assert sum(p.numel() for p in model.parameters()) == 153_224
    assert model.patch == 13 and model.reduction.components == 30 and model.reduction.whiten
    model.fit_reduction(torch.randn(500, 200))
    scores = model.reduction(torch.randn(2, 200, 13, 13))
    assert scores.shape == (2, 30, 13, 13)
    x = model.conv2d(model.conv3d(scores[:, None]).flatten(1, 2))
    assert x.shape == (2, 64, 9, 9)  # 81 positions summarised into 4 tokens
    assert model.forward_reduced(scores).shape == (2, 64)
    assert model(torch.randn(2, 200, 13, 13)).shape == (2, 16)


def test_tokens_are_weighted_means_of_projected_features():
    tok = FeatureTokenizer(dim=6, tokens=3)
    x = torch.randn(2, 10, 6)
    out = tok(x)
    weights = (x @ tok.weight_a).softmax(dim=1)
    assert torch.allclose(weights.sum(1), torch.ones(2, 3))
    expected = torch.einsum("bnl,bnd->bld", weights, x @ tok.weight_v)
    torch.testing.assert_close(out, expected)
    # features equal at every position: every token is that feature, projected
    same = torch.randn(1, 1, 6).expand(1, 10, 6)
    torch.testing.assert_close(tok(same), (same[:, :1] @ tok.weight_v).expand(1, 3, 6))


def test_other_sizes_and_the_classifier_reset():
    model = SSFTT(bands=48, num_classes=5, patch=9, components=12, conv2d_channels=32, heads=4)
    model.fit_reduction(torch.rand(100, 48))
    logits = model(torch.rand(3, 48, 9, 9), torch.ones(3, 9, 9, dtype=torch.bool))
    assert logits.shape == (3, 5)
    model.reset_classifier(7)
    assert model(torch.rand(1, 48, 9, 9)).shape == (1, 7)


def test_bad_input():
    with pytest.raises(ValueError, match="odd"):
        SSFTT(bands=30, num_classes=3, patch=12)
    with pytest.raises(ValueError, match=r"do not fit a 30 x 3 x 3 input"):
        SSFTT(bands=30, num_classes=3, patch=3)
    with pytest.raises(ValueError, match="divisible by 5 heads"):
        SSFTT(bands=30, num_classes=3, heads=5)
    model = SSFTT(bands=30, num_classes=3)
    with pytest.raises(RuntimeError, match="not fitted"):
        model(torch.rand(1, 30, 13, 13))
    model.fit_reduction(torch.rand(50, 30))
    with pytest.raises(ValueError, match=r"expects \(batch, 30, 13, 13\) windows"):
        model(torch.rand(1, 30, 11, 11))
    with pytest.raises(ValueError, match=r"expected \(30, 13, 13\) reduced windows"):
        model.forward_reduced(torch.rand(1, 29, 13, 13))
