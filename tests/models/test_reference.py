"""F_ref assembly and layer-wise matching on hand-made control features (exact)."""

from __future__ import annotations

import torch

from icportrait.conditioning import split, stitch
from icportrait.models.control_net import ControlFeatures
from icportrait.models.matching import Match, identity_flow
from icportrait.models.reference import (
    blur,
    flow_for,
    masked_blur,
    match_features,
    reference_features,
    smooth_flow_at,
    warp_init,
)


def _feat(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _canvases(profiles: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """K canvases [profile_k | target] for one template, reference-major."""
    return torch.cat([stitch(p, target) for p in profiles])


def test_match_features_picks_reference_and_place_per_level():
    p0, p1 = _feat(1, 8, 8, 8, seed=1), _feat(1, 8, 8, 8, seed=2)
    target = p0.clone()
    target[..., 4:, :] = p1[..., 4:, :]  # bottom half of the target shows reference 1
    q0, q1 = _feat(1, 8, 4, 4, seed=3), _feat(1, 8, 4, 4, seed=4)
    feats = ControlFeatures([_canvases([p0, p1], target)], _canvases([q0, q1], q1))
    flows = match_features(feats, num_refs=2)
    assert set(flows) == {(8, 8), (4, 4)}
    fine = flows[(8, 8)]
    assert torch.all(fine.ref[:, :4] == 0) and torch.all(fine.ref[:, 4:] == 1)
    assert torch.equal(fine.flow, identity_flow(1, 8, 8))
    assert torch.all(flows[(4, 4)].ref == 1)


def test_deepest_map_of_a_resolution_is_matched():
    shallow = _canvases([_feat(1, 4, 8, 8, seed=5)], _feat(1, 4, 8, 8, seed=6))
    p = _feat(1, 4, 8, 8, seed=7)
    deep = _canvases([p], torch.roll(p, 2, dims=3))
    flows = match_features(ControlFeatures([shallow, deep], _canvases([p[..., :4, :4]],
                                                                       p[..., :4, :4])))
    expected = (identity_flow(1, 8, 8)[:, 0] - 2) % 8
    assert torch.equal(flows[(8, 8)].flow[:, 0], expected)


def test_reference_features_warp_plus_lighting_residual():
    p = _feat(1, 6, 8, 8, seed=8)
    light = _feat(1, 6, 8, 8, seed=9)
    shifted_target = torch.roll(p, 1, dims=2)
    small = p[..., :4, :4]
    match_feats = ControlFeatures([_canvases([p], shifted_target)], _canvases([small], small))
    flows = match_features(match_feats)
    app = ControlFeatures([_canvases([p], light)], _canvases([small], small))
    fref = reference_features(app, flows)
    prof_half, tgt_half = split(fref.down[0])
    assert torch.equal(prof_half, p)
    assert torch.allclose(tgt_half, torch.roll(p, 1, dims=2) + light)
    no_warp = reference_features(app, flows, warp_profile=False)
    assert torch.equal(split(no_warp.down[0])[1], light)


def test_missing_level_is_resampled_from_the_nearest():
    p = _feat(1, 4, 8, 8, seed=10)
    flows = match_features(ControlFeatures([_canvases([p], p)], _canvases([p], p)),
                           levels=[(8, 8)])
    coarse = flow_for(flows, (4, 4))
    assert coarse.flow.shape == (1, 2, 4, 4)
    assert torch.allclose(coarse.flow, identity_flow(1, 4, 4), atol=0.5)


def test_warp_init_moves_the_profile_and_takes_the_templates_light():
    profile, template = _feat(1, 4, 16, 16, seed=1), _feat(1, 4, 16, 16, seed=2) + 3.0
    shift = identity_flow(1, 16, 16)
    shift[:, 0] = (shift[:, 0] + 2).clamp(max=15)   # each cell comes from 2 to its right
    flows = {(16, 16): Match(shift, torch.ones(1, 16, 16), torch.zeros(1, 16, 16).long())}
    start = warp_init(profile, template, flows)
    moved = profile[..., (torch.arange(16) + 2).clamp(max=15)]
    # the profile's detail moved along the flow, on the template's light (blur of 0.1 x 16)
    assert torch.allclose(start, moved - blur(moved, 1.6) + blur(template, 1.6), atol=1e-5)
    assert abs(start.mean() - template.mean()) < 0.2 < abs(start.mean() - profile.mean())
    # outside the region, the template; without flows (no matching), the template
    region = torch.zeros(1, 1, 16, 16)
    region[..., 4:12, 4:12] = 1
    masked = warp_init(profile, template, flows, region=region)
    assert torch.equal(masked[..., 0, 0], template[..., 0, 0])
    relit = moved - masked_blur(moved, region, 1.6) + masked_blur(template, region, 1.6)
    assert torch.allclose(masked[..., 8, 8], relit[..., 8, 8], atol=1e-5)
    assert warp_init(profile, template, None) is template


def test_smooth_flow_at_moves_a_finer_grid_smoothly():
    shift = identity_flow(1, 8, 8)
    shift[:, 0] += 1.0                       # one cell to the right everywhere
    score = torch.zeros(1, 8, 8)
    score[..., 4:] = 1
    flows = {(8, 8): Match(shift, score, torch.ones(1, 8, 8).long())}
    m = smooth_flow_at(flows, (32, 32))
    # one cell of 8 is 4 pixels of 32; the reference index is kept, the score interpolated
    assert torch.allclose(m.flow - identity_flow(1, 32, 32),
                          torch.tensor([4.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 32, 32))
    assert torch.equal(m.ref, torch.ones(1, 32, 32).long())
    assert m.score[0, 0, 0] == 0 and m.score[0, 0, -1] == 1 and 0 < m.score[0, 0, 16] < 1


def test_masked_blur_ignores_what_lies_outside_the_region():
    x = torch.full((1, 3, 16, 16), 0.2)
    x[..., :, 8:] = 5.0                      # a bright background right of the face
    region = torch.zeros(1, 1, 16, 16)
    region[..., :, :8] = 1
    inside = masked_blur(x, region, 3.0)[..., :, :8]
    assert torch.allclose(inside, torch.full_like(inside, 0.2), atol=1e-5)
    assert blur(x, 3.0)[..., :, 7].mean() > 1.0   # a plain blur bleeds it in


def test_warp_init_with_a_region_takes_light_from_the_faces_only():
    # profile face dark on a green background, template face bright on a grey one: the face
    # gets the template face's tone, not an average with either background
    profile = torch.zeros(1, 3, 16, 16)
    profile[:, 1] = 1.0
    profile[..., 4:12, 4:12] = -0.5
    template = torch.zeros(1, 3, 16, 16)
    template[..., 4:12, 4:12] = 0.6
    region = torch.zeros(1, 1, 16, 16)
    region[..., 4:12, 4:12] = 1
    flows = {(16, 16): Match(identity_flow(1, 16, 16), torch.ones(1, 16, 16),
                             torch.zeros(1, 16, 16).long())}
    out = warp_init(profile, template, flows, region=region)
    assert torch.allclose(out[..., 4:12, 4:12], torch.full((1, 3, 8, 8), 0.6), atol=1e-4)
    assert torch.equal(out[..., 0, 0], template[..., 0, 0])


def test_warp_init_keeps_the_template_where_the_profile_does_not_show_the_face():
    # the profile's right half turned away (confidence 0 there): with use_confidence the
    # template stays there, and the profile's tone is taken from its shown half only
    profile = torch.zeros(1, 3, 16, 16)
    profile[..., 4:12, 4:8] = -0.5
    profile[..., 4:12, 8:12] = 1.0          # e.g. background seen past the silhouette
    template = torch.zeros(1, 3, 16, 16)
    template[..., 4:12, 4:12] = 0.6
    region = torch.zeros(1, 1, 16, 16)
    region[..., 4:12, 4:12] = 1
    score = torch.ones(1, 16, 16)
    score[..., 8:] = 0
    flows = {(16, 16): Match(identity_flow(1, 16, 16), score, torch.zeros(1, 16, 16).long())}
    kept = warp_init(profile, template, flows, region=region, use_confidence=True)
    assert torch.equal(kept[..., 4:12, 8:12], template[..., 4:12, 8:12])
    assert torch.allclose(kept[..., 4:12, 4:8], torch.full((1, 3, 8, 4), 0.6), atol=1e-4)
    ignored = warp_init(profile, template, flows, region=region)
    assert (ignored[..., 4:12, 8:12] - template[..., 4:12, 8:12]).abs().max() > 0.5


def test_warp_init_can_keep_the_profiles_skin_tone_under_the_templates_light():
    # A flat profile face of one colour; a template face of another, lit from the left.
    colour = torch.tensor([0.30, 0.20, 0.15]).view(1, 3, 1, 1)    # in [0, 1]
    profile = (colour * 2 - 1).expand(1, 3, 32, 32).clone()
    shading = torch.linspace(1.2, 0.6, 32).view(1, 1, 1, 32)
    template = (torch.tensor([0.8, 0.6, 0.5]).view(1, 3, 1, 1) * shading) * 2 - 1
    region = torch.zeros(1, 1, 32, 32)
    region[..., 8:24, 8:24] = 1
    flows = {(32, 32): Match(identity_flow(1, 32, 32), torch.ones(1, 32, 32),
                             torch.zeros(1, 32, 32).long())}
    toned = (warp_init(profile, template, flows, region=region, profile_tone=True) + 1) / 2
    plain = (warp_init(profile, template, flows, region=region) + 1) / 2
    face = toned[..., 8:24, 8:24]
    # The face's mean colour is the profile's; the template's gradient of light stays.
    assert torch.allclose(face.mean((-2, -1)), colour.view(1, 3), atol=0.01)
    def left_over_right(x):
        return x[..., :, :4].mean() / x[..., :, -4:].mean()

    assert left_over_right(face) > 1.15
    assert torch.isclose(left_over_right(face), left_over_right(plain[..., 8:24, 8:24]),
                         rtol=0.02)
    # Without it, the template's skin tone.
    assert (plain[..., 8:24, 8:24].mean((-2, -1)) - colour.view(1, 3)).abs().min() > 0.2
    assert torch.equal(toned[..., 0, 0], (template[..., 0, 0] + 1) / 2)  # outside the face


def test_warp_init_fills_what_the_profile_hides_from_stand_in_points_blended():
    # Detail only in the profile's left half; the flow points at the right half, which
    # shows less and less from left to right; the stand-in (fill) flow points at the left.
    profile = torch.zeros(1, 1, 16, 16)
    profile[..., 0:16:2, 0:8] = 1.0                       # stripes: the left half's detail
    template = torch.zeros(1, 1, 16, 16)
    region = torch.ones(1, 1, 16, 16)
    to_right = identity_flow(1, 16, 16)
    to_right[:, 0] = to_right[:, 0] % 8 + 8
    to_left = identity_flow(1, 16, 16)
    to_left[:, 0] = to_left[:, 0] % 8
    fade = torch.linspace(1, 0, 16).view(1, 1, 16).expand(1, 16, 16)
    refs = torch.zeros(1, 16, 16).long()
    flows = {(16, 16): Match(to_right, fade, refs)}
    fill = {(16, 16): Match(to_left, torch.ones(1, 16, 16), refs)}
    alone = warp_init(profile, template, flows, region=region, use_confidence=True)
    filled = warp_init(profile, template, flows, region=region, use_confidence=True, fill=fill)
    assert alone.abs().max() < 1e-5               # the right half has no detail
    stripes = filled[0, 0, 0] - filled[0, 0, 1]   # row 0 striped, row 1 not
    # The stand-in's detail comes in as the flow's own points show less: a ramp, no switch.
    assert stripes[-1] > 0.8 and stripes[0] < 0.05
    assert (stripes[1:] - stripes[:-1] > -1e-4).all()
    # without the confidence there is nothing to fill: the flow alone
    assert torch.equal(warp_init(profile, template, flows, region=region, fill=fill),
                       warp_init(profile, template, flows, region=region))
