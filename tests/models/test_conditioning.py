from __future__ import annotations

import pytest
import torch

from icportrait.conditioning import patch_mask, prepare_condition, split, stitch


def test_patch_mask_hides_the_exact_share_in_whole_patches():
    g = torch.Generator().manual_seed(0)
    mask = patch_mask(3, 16, 16, ratio=0.8, patch_size=2, generator=g)
    assert mask.shape == (3, 1, 16, 16)
    patches = mask.view(3, 8, 2, 8, 2)
    # Constant inside each 2x2 patch, and round(0.8 * 64) = 51 patches hidden per item.
    assert torch.equal(patches.amin(dim=(2, 4)), patches.amax(dim=(2, 4)))
    assert patches[:, :, 0, :, 0].sum(dim=(1, 2)).tolist() == [51.0, 51.0, 51.0]
    assert not torch.equal(mask[0], mask[1])  # each item draws its own layout


def test_patch_mask_is_seeded_and_batch_equals_singles():
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    batch = patch_mask(2, 8, 8, 0.5, 2, gens)
    singles = [patch_mask(1, 8, 8, 0.5, 2, torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert torch.equal(batch, torch.cat(singles))
    again = patch_mask(1, 8, 8, 0.5, 2, torch.Generator().manual_seed(1))
    assert torch.equal(again, singles[0])


def test_patch_mask_edges():
    assert patch_mask(1, 4, 4, 0.0).sum() == 0
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        patch_mask(1, 4, 4, 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        patch_mask(1, 4, 4, -0.1)
    with pytest.raises(ValueError, match="must divide"):
        patch_mask(1, 6, 6, 0.5, patch_size=4)
    with pytest.raises(ValueError, match="3 generators"):
        patch_mask(2, 4, 4, 0.5, 2, [torch.Generator()] * 3)


def test_stitch_split_round_trip():
    a, b = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    canvas = stitch(a, b)
    assert canvas.shape == (2, 4, 8, 16)
    pa, pb = split(canvas)
    assert torch.equal(pa, a) and torch.equal(pb, b)
    assert torch.equal(stitch(*split(canvas)), canvas)
    with pytest.raises(ValueError, match="must match"):
        stitch(a, b[:, :, :, :4])
    with pytest.raises(ValueError, match="even width"):
        split(torch.zeros(1, 4, 8, 7))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        split(torch.zeros(4, 8, 8))


def test_prepare_condition_layout():
    profile, template = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    mask = patch_mask(1, 8, 8, 0.75, 2, torch.Generator().manual_seed(3))
    cond = prepare_condition(profile, template, mask)
    prof_half, tmpl_half = split(cond.latents)
    assert torch.equal(prof_half, profile)
    hidden = mask.bool().expand_as(template)
    assert torch.all(tmpl_half[hidden] == 0)
    assert torch.equal(tmpl_half[~hidden], template[~hidden])
    m_prof, m_tmpl = split(cond.mask)
    assert m_prof.sum() == 0 and torch.equal(m_tmpl, mask)
    noisy = torch.randn(1, 4, 8, 16)
    x = cond.control_input(noisy)
    assert x.shape == (1, 9, 8, 16)
    assert torch.equal(x[:, :4], noisy) and torch.equal(x[:, 8:], cond.mask)
    with pytest.raises(ValueError, match="4 channels"):
        cond.control_input(torch.randn(1, 3, 8, 16))


def test_vae_encode_decode_layout():
    from diffusers import AutoencoderKL

    from icportrait.conditioning import vae_decode, vae_encode

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
                        scaling_factor=0.5)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    lat = vae_encode(vae, x)
    assert lat.shape == (2, 4, 8, 8)
    mean = vae.encode(x).latent_dist.mean
    assert torch.allclose(lat, mean * 0.5)  # deterministic: the posterior mean, scaled
    img = vae_decode(vae, lat)
    assert img.shape == (2, 3, 16, 16) and img.min() >= 0 and img.max() <= 1
    with pytest.raises(ValueError, match="3 channels"):
        vae_encode(vae, torch.rand(1, 4, 16, 16))
