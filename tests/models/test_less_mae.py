"""The masked autoencoder's pieces: masking, the encoder on kept tokens, losses, decoder."""

import pytest
import torch

from geofm.models import create_model
from geofm.models.less_mae import LESSMAE, masked_losses, patchify, random_keep, unpatchify
from geofm.models.less_vit import perception_field_mask

S2 = torch.tensor(
    [442.7, 492.4, 559.8, 664.6, 704.1, 740.5, 782.8, 832.8, 864.7, 945.1, 1373.5, 1613.7, 2202.4]
)


def _mae(**kw):
    torch.manual_seed(0)
    encoder = create_model("less_vit_tiny", depth=2)
    return LESSMAE(encoder, decoder_dim=64, decoder_depth=1, decoder_heads=2, **kw)


def test_random_keep_keeps_the_ratio_sorted_and_complementary():
    kept, removed = random_keep(4, 16, 0.75, generator=torch.Generator().manual_seed(0))
    assert kept.shape == (4, 4)
    assert torch.equal(kept, kept.sort(dim=1).values)
    assert removed.sum(dim=1).tolist() == [12] * 4
    assert not removed.gather(1, kept).any()


def test_at_least_two_bands_are_kept():
    kept, removed = random_keep(3, 3, 0.5, min_keep=2)  # int(1.5) = 1 -> 2
    assert kept.shape == (3, 2) and removed.sum(dim=1).tolist() == [1, 1, 1]
    kept, _ = random_keep(2, 13, 0.5, min_keep=2)
    assert kept.shape == (2, 6)


@pytest.mark.parametrize("ratio", [1.0, -0.1])
def test_a_mask_ratio_outside_0_1_is_refused(ratio):
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        random_keep(1, 4, ratio)


def test_a_decoder_radius_given_as_another_word_is_refused():
    with pytest.raises(ValueError, match="decoder_radius_m must be .* got 'encoders'"):
        _mae(decoder_radius_m="encoders")


def test_patchify_and_unpatchify_are_inverse():
    image = torch.randn(2, 3, 32, 48)
    patches = patchify(image, 16)
    assert patches.shape == (2, 3, 6, 256)
    assert torch.equal(patches[0, 1, 4], image[0, 1, 16:32, 16:32].flatten())
    assert torch.equal(unpatchify(patches, (2, 3)), image)


def test_losses_ignore_kept_tokens_and_invalid_pixels():
    torch.manual_seed(0)
    B, C, N, P = 2, 4, 6, 9
    pred, target = torch.randn(B, C, N, P), torch.randn(B, C, N, P)
    removed_pos = torch.zeros(B, N, dtype=torch.bool)
    removed_pos[:, :2] = True
    removed_band = torch.zeros(B, C, dtype=torch.bool)
    removed_band[:, 3] = True
    valid = torch.ones(B, N, P, dtype=torch.bool)
    valid[:, 0, :4] = False
    base = masked_losses(pred, target, removed_pos, removed_band, valid)

    kept = pred.clone()
    kept[:, :3, 2:] += 5.0  # kept band, kept position: in neither loss
    invalid = pred.clone()
    invalid[:, :, 0, :4] += 5.0  # nodata pixels
    for changed in (kept, invalid):
        for a, b in zip(
            masked_losses(changed, target, removed_pos, removed_band, valid), base, strict=True
        ):
            torch.testing.assert_close(a, b)

    moved = pred.clone()
    moved[:, 0, 1] += 1.0  # a removed position of a kept band: position loss only
    position, band = masked_losses(moved, target, removed_pos, removed_band, valid)
    assert position != base[0] and band == base[1]

    # by hand: the position loss is the mean squared error over the counted pixels
    err = (pred - target).square()
    sel = valid[:, None, :2].expand(B, C, 2, P)
    torch.testing.assert_close(base[0], err[:, :, :2][sel].mean())


def test_encoder_on_every_token_equals_the_full_forward():
    model = create_model("less_vit_tiny", depth=2).eval()
    image = torch.randn(2, 5, 64, 64)
    wl = S2[:5]
    all_bands = torch.arange(5).expand(2, 5)
    all_patches = torch.arange(16).expand(2, 16)
    torch.testing.assert_close(
        model.forward_masked(image, wl, 10.0, all_bands, all_patches),
        model.forward_features(image, wl, 10.0),
    )


def test_encoder_on_kept_tokens_equals_the_full_forward_of_the_kept_image():
    """Without a perception field, keeping bands is the same as dropping them from the input."""
    model = create_model("less_vit_tiny", depth=2, perception_radius_m=None).eval()
    image = torch.randn(1, 5, 32, 32)
    kept = torch.tensor([[0, 2, 4]])
    torch.testing.assert_close(
        model.forward_masked(image, S2[:5], 10.0, kept, torch.arange(4)[None]),
        model.forward_features(image[:, [0, 2, 4]], S2[[0, 2, 4]], 10.0),
    )


def test_perception_mask_of_kept_patches_is_the_full_mask_restricted_to_them():
    grid, gsd = (6, 6), torch.tensor([10.0, 20.0])
    kept = torch.tensor([[0, 5, 7, 20, 35], [1, 2, 3, 4, 30]])
    part = perception_field_mask(grid, 16, gsd, 640.0, patches=kept)
    assert part.shape == (2, 1, 6, 6)
    for b in range(2):
        full = perception_field_mask(grid, 16, gsd[b : b + 1], 640.0)[0, 0]
        idx = torch.cat([torch.zeros(1, dtype=torch.long), kept[b] + 1])
        assert torch.equal(part[b, 0], full[idx][:, idx])


def test_mae_reconstructs_every_band_and_patch_and_trains():
    mae = _mae()
    image = torch.randn(2, 13, 64, 64)
    out = mae(image, S2, 10.0, generator=torch.Generator().manual_seed(1))
    assert out.pred.shape == out.target.shape == (2, 13, 16, 256)
    assert out.removed_positions.sum(dim=1).tolist() == [12, 12]
    assert out.removed_bands.sum(dim=1).tolist() == [7, 7]
    assert torch.isfinite(out.loss) and out.loss == out.position_loss + out.band_loss
    out.loss.backward()
    assert mae.encoder.tokenizer.patch_embed.fc1.weight.grad.abs().sum() > 0
    assert mae.mask_token.grad.abs().sum() > 0
    assert mae.channel_mask_token.grad.abs().sum() > 0
    assert mae.spatial_mask_token.grad.abs().sum() > 0


def test_mae_masks_differ_between_samples():
    mae = _mae()
    out = mae(torch.randn(4, 13, 64, 64), S2, 10.0, generator=torch.Generator().manual_seed(2))
    assert len({tuple(r.tolist()) for r in out.removed_positions}) > 1


def test_nodata_pixels_do_not_reach_the_loss():
    mae = _mae()
    image = torch.randn(1, 13, 32, 32)
    valid = torch.ones(1, 32, 32, dtype=torch.bool)
    valid[:, :16] = False  # the top half is nodata
    out = mae(image, S2, 10.0, valid=valid, generator=torch.Generator().manual_seed(3))
    err = (out.pred - out.target).square()  # (1, C, N, P)
    px = patchify(valid[:, None].float(), 16)[:, 0].bool()  # (1, N, P)
    by_position = out.removed_positions[:, None, :, None] & px[:, None]
    torch.testing.assert_close(out.position_loss, err[by_position.expand_as(err)].mean())
    by_band = out.removed_bands[:, :, None, None] & px[:, None]
    torch.testing.assert_close(out.band_loss, err[by_band.expand_as(err)].mean())


def test_norm_pix_targets_have_zero_mean_per_patch():
    mae = _mae(norm_pix_loss=True)
    target = mae.target(torch.rand(1, 2, 32, 32) * 100)
    torch.testing.assert_close(target.mean(dim=-1), torch.zeros(1, 2, 4), atol=1e-5, rtol=0)


def test_mae_needs_a_less_vit_and_sane_ratios():
    with pytest.raises(TypeError, match="LESSViT"):
        LESSMAE(create_model("joint_vit_tiny", depth=1))
    with pytest.raises(ValueError, match="band_mask_ratio"):
        LESSMAE(create_model("less_vit_tiny", depth=1), band_mask_ratio=1.0)


def test_an_image_with_fewer_bands_than_must_be_kept_is_refused():
    with pytest.raises(ValueError, match="at least 2 bands; this image has 1"):
        _mae()(torch.randn(1, 1, 32, 32), S2[:1], 10.0)


def test_norm_pix_targets_ignore_nodata_pixels():
    mae = _mae(norm_pix_loss=True)
    patches = torch.rand(1, 2, 1, 256)  # one 16 x 16 patch, two bands
    valid = torch.ones(1, 1, 256, dtype=torch.bool)
    valid[..., :100] = False
    spoiled = patches.clone()
    spoiled[..., :100] = 1e4  # wild values where the data are missing
    a = mae.target(unpatchify(patches, (1, 1)), valid)
    b = mae.target(unpatchify(spoiled, (1, 1)), valid)
    torch.testing.assert_close(a[..., 100:], b[..., 100:])  # valid targets unaffected
    torch.testing.assert_close(a[..., 100:].mean(dim=-1), torch.zeros(1, 2, 1), atol=1e-5, rtol=0)
    nothing_valid = torch.zeros(1, 1, 256, dtype=torch.bool)
    assert torch.isfinite(mae.target(unpatchify(patches, (1, 1)), nothing_valid)).all()
