import pytest
import torch
import torch.nn as nn

from geofm.models.embeddings import (
    BandPatchEmbed,
    GroupPatchEmbed,
    grid_sincos_2d,
    positional_channel_embedding,
    radar_bands,
    sincos_1d,
)


def test_sincos_code_of_zero_is_zeros_then_ones():
    code = sincos_1d(torch.tensor([0.0]), 8)
    assert torch.equal(code, torch.tensor([[0.0] * 4 + [1.0] * 4], dtype=torch.float64))


def test_sincos_needs_an_even_width():
    with pytest.raises(ValueError, match="even width, got 7"):
        sincos_1d(torch.tensor([1.0]), 7)


def test_ground_code_depends_on_metres_not_on_grid_index():
    at_10m = grid_sincos_2d((4, 4), torch.tensor([10.0]), 16)[0].reshape(4, 4, 16)
    at_20m = grid_sincos_2d((2, 2), torch.tensor([20.0]), 16)[0].reshape(2, 2, 16)
    torch.testing.assert_close(at_10m[2, 2], at_20m[1, 1])  # both 40 m from the origin
    torch.testing.assert_close(at_10m[0, 2], at_20m[0, 1])
    assert not torch.allclose(at_10m[0, 2], at_10m[2, 0])  # rows and columns differ


def test_ground_code_first_half_encodes_columns():
    code = grid_sincos_2d((2, 3), torch.tensor([10.0]), 8)[0]  # row-major: (0,0),(0,1),...
    torch.testing.assert_close(code[1, :4], sincos_1d(torch.tensor([10.0]), 4)[0])
    torch.testing.assert_close(code[1, 4:], sincos_1d(torch.tensor([0.0]), 4)[0])


def test_positional_channel_embedding_zeros_cls_and_halves_each_code():
    wl = torch.tensor([490.0, 560.0, 665.0])
    emb = positional_channel_embedding(wl, (2, 2), torch.tensor([10.0, 20.0]), 8)
    assert emb.shape == (2, 4, 5, 8)
    pos = grid_sincos_2d((2, 2), torch.tensor([10.0, 20.0]), 8)
    chan = sincos_1d(wl, 8)
    assert torch.equal(emb[:, 0, 0], torch.zeros(2, 8, dtype=torch.float64))
    torch.testing.assert_close(emb[:, 0, 1:], pos / 2)  # channel-CLS row: position only
    torch.testing.assert_close(emb[0, 1:, 0], chan / 2)  # spatial-CLS column: band only
    torch.testing.assert_close(emb[1, 2, 3], (chan[1] + pos[1, 2]) / 2)


def test_band_patch_embed_is_the_papers_conv3d():
    torch.manual_seed(0)
    p, D = 4, 6
    embed = BandPatchEmbed(p, D)
    conv = nn.Sequential(
        nn.Conv3d(1, 2 * D, (1, p, p), (1, p, p)), nn.ReLU(), nn.Conv3d(2 * D, D, 1)
    )
    with torch.no_grad():
        conv[0].weight.copy_(embed.fc1.weight.reshape(2 * D, 1, 1, p, p))
        conv[0].bias.copy_(embed.fc1.bias)
        conv[2].weight.copy_(embed.fc2.weight.reshape(D, 2 * D, 1, 1, 1))
        conv[2].bias.copy_(embed.fc2.bias)
    image = torch.randn(2, 3, 8, 12)
    expected = conv(image[:, None])  # (B, D, C, h, w)
    expected = expected.permute(0, 2, 3, 4, 1).reshape(2, 3, 6, D)
    torch.testing.assert_close(embed(image), expected, rtol=1e-5, atol=1e-5)


def test_group_patch_embed_sees_each_group_separately():
    torch.manual_seed(0)
    embed = GroupPatchEmbed(patch_size=2, embed_dim=5, bands_per_group=2)
    groups = torch.randn(1, 3, 2, 4, 4)
    out = embed(groups)
    assert out.shape == (1, 3, 4, 5)
    changed = groups.clone()
    changed[:, 1] += 1.0
    diff = (embed(changed) - out).abs().sum(dim=(0, 2, 3))
    assert diff[0] == 0 and diff[2] == 0 and diff[1] > 0


def test_radar_bands_are_found_by_pseudo_wavelength():
    wl = torch.tensor([442.7, 5500.0, 832.8, 5700.0])
    assert radar_bands(wl).tolist() == [False, True, False, True]
