from __future__ import annotations

import numpy as np
import pytest
import torch

from icportrait.models.matching import (
    argmax_flow,
    cost_volume,
    displacement_prior,
    flow_to_color,
    identity_flow,
    mutual_nearest_mask,
    resize_flow,
    warp,
)


def _features(b=1, c=16, h=8, w=8, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_identity_flow_gives_identity_warp():
    src = _features(2)
    flow = identity_flow(2, 8, 8)
    assert torch.equal(warp(src, flow), src)
    assert torch.allclose(warp(src, flow, mode="bilinear"), src, atol=1e-6)
    match = argmax_flow(src, src)
    assert torch.equal(match.flow, flow)
    assert torch.allclose(match.score, torch.ones(2, 8, 8))


def test_known_shift_is_recovered_exactly():
    src = _features(c=32, h=10, w=12)
    dy, dx = 2, -3
    tgt = torch.roll(src, shifts=(dy, dx), dims=(2, 3))  # tgt[y, x] = src[y - dy, x - dx]
    match = argmax_flow(src, tgt)
    ident = identity_flow(1, 10, 12)
    expected_x = (ident[:, 0] - dx) % 12
    expected_y = (ident[:, 1] - dy) % 10
    assert torch.equal(match.flow[:, 0], expected_x)
    assert torch.equal(match.flow[:, 1], expected_y)
    assert torch.equal(warp(src, match.flow), tgt)


def test_multi_reference_picks_the_right_reference():
    a, b = _features(seed=1), _features(seed=2)
    tgt = a.clone()
    tgt[..., 4:] = b[..., 4:]  # right half of the target comes from reference 1
    refs = torch.stack([a, b], dim=1)  # (B, K, C, H, W)
    match = argmax_flow(refs, tgt)
    assert torch.all(match.ref[..., :4] == 0) and torch.all(match.ref[..., 4:] == 1)
    assert torch.equal(match.flow, identity_flow(1, 8, 8))
    assert torch.equal(warp(refs, match.flow, match.ref), tgt)
    with pytest.raises(ValueError, match="need `ref`"):
        warp(refs, match.flow)


def test_chunking_equals_the_full_cost_volume():
    src, tgt = _features(2, 8, 12, 12, seed=3), _features(2, 8, 12, 12, seed=4)
    full = cost_volume(src, tgt)  # (B, HW, HW)
    score, idx = full.max(dim=2)
    for max_bytes in (64, 1024, 10**9):
        m = argmax_flow(src, tgt, max_chunk_bytes=max_bytes)
        assert torch.equal(m.flow[:, 0].reshape(2, -1), (idx % 12).float())
        assert torch.equal(m.flow[:, 1].reshape(2, -1), (idx // 12).float())
        assert torch.allclose(m.score.reshape(2, -1), score, atol=1e-6)


def test_mutual_nearest_mask():
    src = _features(c=32)
    tgt = torch.roll(src, shifts=(1, 1), dims=(2, 3))  # a permutation: all mutual
    m = argmax_flow(src, tgt)
    assert mutual_nearest_mask(src, tgt, m).all()
    dup = src.clone()
    dup[..., 0, 1] = dup[..., 0, 0]  # two target pixels now match source (0, 0)
    m = argmax_flow(src, dup)
    mutual = mutual_nearest_mask(src, dup, m)
    assert mutual.sum() == 63 and not (mutual[0, 0, 0] and mutual[0, 0, 1])


def test_resize_flow_keeps_identity_and_scales_shifts():
    assert torch.equal(resize_flow(identity_flow(1, 4, 4), (8, 8)), identity_flow(1, 8, 8))
    assert torch.equal(resize_flow(identity_flow(2, 8, 8), (4, 4)), identity_flow(2, 4, 4))
    shifted = identity_flow(1, 8, 8) + torch.tensor([2.0, -1.0]).view(1, 2, 1, 1)
    down = resize_flow(shifted, (4, 4)) - identity_flow(1, 4, 4)
    assert torch.allclose(down, torch.tensor([1.0, -0.5]).view(1, 2, 1, 1).expand(1, 2, 4, 4))
    up = resize_flow(shifted, (16, 16)) - identity_flow(1, 16, 16)
    assert torch.allclose(up, torch.tensor([4.0, -2.0]).view(1, 2, 1, 1).expand(1, 2, 16, 16))


def test_bilinear_warp_interpolates():
    src = torch.arange(16.0).view(1, 1, 4, 4)
    flow = identity_flow(1, 4, 4)
    flow[:, 0] += 0.5
    out = warp(src, flow, mode="bilinear")
    assert torch.allclose(out[0, 0, :, :3], src[0, 0, :, :3] + 0.5)


def test_flow_to_color():
    flow = identity_flow(2, 8, 8)
    rgb = flow_to_color(flow)
    assert rgb.shape == (2, 3, 8, 8) and rgb.min() >= 0 and rgb.max() <= 1
    # A shifted flow paints the target with the source's colours, moved.
    src_colors = flow_to_color(identity_flow(1, 8, 8))
    shifted = torch.roll(identity_flow(1, 8, 8), shifts=1, dims=3)
    assert torch.allclose(flow_to_color(shifted), torch.roll(src_colors, 1, dims=3))
    valid = torch.zeros(2, 8, 8, dtype=torch.bool)
    assert flow_to_color(flow, valid).sum() == 0


def test_flow_picture():
    from icportrait.generation.pictures import flow_picture

    flow = identity_flow(1, 8, 8)[0]
    pic = flow_picture(flow, size=64)
    assert pic.size == (128, 64)
    arr = np.asarray(pic)
    # An identity flow paints the target exactly like the profile's coordinate map.
    assert np.array_equal(arr[:, :64], arr[:, 64:])
    with pytest.raises(ValueError, match=r"\(2, h, w\)"):
        flow_picture(torch.zeros(3, 8, 8))


def test_softmax_confidence_and_locality_prior():
    src = _features(c=32, h=10, w=12, seed=5)
    tgt = torch.roll(src, shifts=(0, 3), dims=(2, 3))
    sharp = argmax_flow(src, tgt, temperature=0.05)
    # The same argmax without a prior, refined by less than half a cell.
    assert torch.equal(sharp.flow.round(), argmax_flow(src, tgt).flow)
    assert (sharp.flow - sharp.flow.round()).abs().max() < 0.5
    assert ((sharp.score > 0) & (sharp.score <= 1)).all() and sharp.score.mean() > 0.9
    assert argmax_flow(src, tgt, temperature=1.0).score.mean() < sharp.score.mean()
    # Uninformative features: the prior alone decides, and it says "no motion".
    flat = torch.ones(1, 4, 6, 6)
    m = argmax_flow(flat, flat, temperature=0.07, locality=2.0)
    assert torch.equal(m.flow.round(), identity_flow(1, 6, 6))
    # A strong match three cells away survives a wide prior but not a very narrow one.
    wide = argmax_flow(src, tgt, temperature=0.05, locality=6.0).flow
    assert torch.equal(wide.round(), sharp.flow.round())
    narrow = argmax_flow(src, tgt, temperature=0.05, locality=0.3).flow
    assert (narrow - identity_flow(1, 10, 12)).abs().max() < 3


def test_subcell_refinement_lands_between_cells():
    src = torch.nn.functional.normalize(_features(c=64, h=6, w=8, seed=6), dim=1)
    # Target cell (2, 3) looks like the mean of source cells (2, 4) and (2, 5).
    tgt = src.clone()
    tgt[..., 2, 3] = (src[..., 2, 4] + src[..., 2, 5]) / 2
    m = argmax_flow(src, tgt, temperature=0.1)
    assert 4.3 < float(m.flow[0, 0, 2, 3]) < 4.7 and abs(float(m.flow[0, 1, 2, 3]) - 2) < 0.1


def test_displacement_prior_rows_and_scale():
    full = displacement_prior((4, 4), (8, 8), sigma=1.0)
    assert full.shape == (16, 64)
    assert torch.equal(full[5:9], displacement_prior((4, 4), (8, 8), 1.0, rows=slice(5, 9)))
    # Target cell (0, 0) of a 4 x 4 grid sits at (0.5, 0.5) of the 8 x 8 source grid.
    assert torch.allclose(full[0].reshape(8, 8)[:2, :2], torch.full((2, 2), -0.25))


def test_resize_flow_bilinear_interpolates_the_displacement():
    # a flow whose displacement grows left to right: nearest repeats it in blocks of one
    # cell, bilinear moves smoothly between the cells' values
    flow = identity_flow(1, 4, 4)
    flow[:, 0] += torch.arange(4.0).view(1, 1, 4)
    near = resize_flow(flow, (8, 8)) - identity_flow(1, 8, 8)
    smooth = resize_flow(flow, (8, 8), mode="bilinear") - identity_flow(1, 8, 8)
    assert torch.equal(near[0, 0, 0], torch.tensor([0.0, 0, 2, 2, 4, 4, 6, 6]))
    assert torch.allclose(smooth[0, 0, 0], torch.tensor([0.0, 0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6]))
    assert torch.equal(smooth[0, 1], torch.zeros(8, 8))
    assert torch.equal(resize_flow(identity_flow(1, 4, 4), (8, 8), mode="bilinear"),
                       identity_flow(1, 8, 8))
