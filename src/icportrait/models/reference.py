"""Matching flows and reference features F_ref, the two halves of IC-Portrait's Figure 3.

* :func:`compute_flows` is the one chain from a condition canvas to flows, used by the
  pipeline, every training stage and validation: the canvas (:func:`matching_condition`)
  noised to a timestep (:func:`matching_input`) -> matching net -> its descriptors'
  :func:`descriptor_flow`, or, for the paper's variant, :func:`match_features`.
* :func:`match_features` turns the matching net's canvas features into one argmax flow per
  spatial resolution (layer-wise correlation of the profile half D_s and the target half D_t).
* :func:`reference_features` warps the appearance net's profile-half features with the flow
  of their resolution, adds its target-half (lighting) features as a residual, and stitches
  the result back into a canvas next to the profile's own identity features: F_ref.

Features of K references for B targets arrive reference-major within each target:
``(B * K, C, H, 2W)`` canvases, item ``b * K + k`` being target ``b`` with reference ``k``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from icportrait.conditioning import Condition, noised, prepare_condition, split
from icportrait.errors import ICPortraitError
from icportrait.models.control_net import ControlFeatures
from icportrait.models.matching import (
    DEFAULT_MAX_CHUNK_BYTES,
    Match,
    argmax_flow,
    resize_flow,
    warp,
)

Flows = dict[tuple[int, int], Match]  # keyed by the (H, W) of one canvas half


def _halves(feature: torch.Tensor, num_refs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B*K, C, H, 2W) -> profile halves (B, K, C, H, W) and target halves (B, K, C, H, W)."""
    src, tgt = split(feature)
    bk, c, h, w = src.shape
    if bk % num_refs:
        raise ValueError(f"batch {bk} is not a multiple of {num_refs} references")
    shape = (bk // num_refs, num_refs, c, h, w)
    return src.reshape(shape), tgt.reshape(shape)


def match_features(
    features: ControlFeatures,
    num_refs: int = 1,
    levels: list[tuple[int, int]] | None = None,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> Flows:
    """Argmax flows target -> profile, one per half-resolution in ``levels`` (default: all).

    At each resolution the deepest feature map (the last one the encoder produced at that
    size) is correlated; with K references the best score over all references wins per
    target pixel. The target-half features are averaged over the K canvases (they differ only
    through the context each reference gives).
    """
    by_size = features.deepest_by_size()
    wanted = list(by_size) if levels is None else levels
    flows: Flows = {}
    for size in wanted:
        if size not in by_size:
            raise ValueError(f"no matching features at {size}; have {sorted(by_size)}")
        src, tgt = _halves(by_size[size], num_refs)
        flows[size] = argmax_flow(src, tgt.mean(1), max_chunk_bytes)
    return flows


def finest(flows: Flows) -> Match:
    """The flow of the finest matched level."""
    return flows[max(flows, key=lambda s: s[0] * s[1])]


def matching_input(condition: Condition, alphas_cumprod: torch.Tensor, timestep: int,
                   noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The matching net's control input and timesteps: the condition canvas noised to the
    training ``timestep`` with the variance-preserving schedule ``alphas_cumprod`` (so any
    timestep works whatever sampler runs at inference)."""
    n = len(alphas_cumprod)
    if not 0 <= timestep < n:
        raise ICPortraitError(f"match_timestep must be in [0, {n}), got {timestep}")
    noisy = noised(condition.latents, alphas_cumprod, timestep, noise)
    t = torch.full((noisy.shape[0],), timestep, device=noisy.device)
    return condition.control_input(noisy), t


def matching_condition(matching_net, profile: torch.Tensor, template: torch.Tensor,
                       mask: torch.Tensor) -> Condition:
    """What the matching net reads: a descriptor net the template whole (the flow only
    selects profile features, so no template identity can leak through it); the paper's
    variant the masked canvas it was trained on."""
    if matching_net.has_descriptor:
        mask = torch.zeros_like(mask)
    return prepare_condition(profile, template, mask)


def descriptor_flow(matching_net, features: ControlFeatures, num_refs: int = 1,
                    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> Match:
    """The flow of a descriptor net: softmax argmax with its locality prior, and the
    softmax peak as confidence."""
    src, tgt = _halves(matching_net.descriptors(features), num_refs)
    cfg = matching_net.config
    return argmax_flow(src, tgt.mean(1), max_chunk_bytes, temperature=cfg.match_temperature,
                       locality=cfg.match_locality * src.shape[-1])


def flows_from_features(matching_net, features: ControlFeatures, num_refs: int = 1,
                        levels: list[tuple[int, int]] | None = None) -> Flows:
    """Flows from the matching net's features: one from its descriptors (when it has a
    head), else one per level (:func:`match_features`)."""
    if not matching_net.has_descriptor:
        return match_features(features, num_refs, levels)
    m = descriptor_flow(matching_net, features, num_refs)
    if levels is not None and list(map(tuple, levels)) != [m.size]:
        raise ICPortraitError(f"this matching net matches once, at {m.size}; match_levels "
                              "choose levels of matching nets without a descriptor head")
    return {m.size: m}


def compute_flows(matching_net, condition: Condition, text: torch.Tensor,
                  alphas_cumprod: torch.Tensor, timestep: int, noise: torch.Tensor,
                  num_refs: int = 1, levels: list[tuple[int, int]] | None = None) -> Flows:
    """Matching flows target -> profile from ``condition`` (see :func:`matching_condition`)
    noised to ``timestep``."""
    control, t = matching_input(condition, alphas_cumprod, timestep, noise)
    return flows_from_features(matching_net, matching_net(control, t, text), num_refs, levels)


def flow_for(flows: Flows, size: tuple[int, int]) -> Match:
    """The flow of ``size``, or the nearest computed one resampled to it."""
    if size in flows:
        return flows[size]
    from icportrait.models.matching import resize_flow

    nearest = min(flows, key=lambda s: abs(s[0] - size[0]) + abs(s[1] - size[1]))
    m = flows[nearest]
    flow = resize_flow(m.flow, size).round()
    ref = torch.nn.functional.interpolate(m.ref[:, None].float(), size=size, mode="nearest")
    score = torch.nn.functional.interpolate(m.score[:, None], size=size, mode="nearest")
    return Match(flow, score[:, 0], ref[:, 0].long())


def smooth_flow_at(flows: Flows, size: tuple[int, int]) -> Match:
    """The finest flow resampled to ``size`` with its displacement interpolated (bilinear),
    so that a finer grid than the flow's (an image warped by a latent-grid flow) moves
    smoothly rather than in blocks of one cell."""
    m = finest(flows)
    ref = F.interpolate(m.ref[:, None].float(), size=size, mode="nearest")[:, 0].long()
    score = F.interpolate(m.score[:, None].float(), size=size, mode="bilinear",
                          align_corners=False)[:, 0]
    return Match(resize_flow(m.flow, size, mode="bilinear"), score.to(m.score), ref)


def reference_features(
    features: ControlFeatures, flows: Flows, num_refs: int = 1, profile_index: int = 0,
    warp_profile: bool = True, confidence_gate: bool = False,
) -> ControlFeatures:
    """F_ref: per level, ``[D_s of the profile | warp(D_s, flow) + D_t]`` as canvases (B, ...).

    ``warp_profile=False`` drops the warped term (the "no matching" ablation): the target half
    is then the lighting features alone. ``confidence_gate``: the warped term is weighted by
    the match's confidence (clamped to [0, 1]), so that cells the profile does not show are
    left to the lighting features.
    """
    out = []
    for f in features.all():
        src, tgt = _halves(f, num_refs)
        target = tgt.mean(1)
        if warp_profile:
            m = flow_for(flows, (f.shape[-2], f.shape[-1] // 2))
            warped = warp(src, m.flow, m.ref)
            if confidence_gate:
                warped = warped * m.score.clamp(0, 1)[:, None].to(warped)
            target = target + warped
        out.append(torch.cat([src[:, profile_index], target], dim=-1))
    return ControlFeatures.from_list(out)


# Std of the blur that separates a latent's light and skin tone (low frequencies) from its
# identity detail, as a fraction of the half's width.
LIGHT_SIGMA = 0.1


def blur(latents: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` latents (``sigma`` in cells, edges
    replicated)."""
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=latents.device, dtype=latents.dtype)
    g = torch.exp(-x**2 / (2 * sigma**2))
    g = g / g.sum()
    c = latents.shape[1]
    out = F.pad(latents, (radius,) * 4, mode="replicate")
    out = F.conv2d(out, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def warp_init(profile: torch.Tensor, template: torch.Tensor, flows: Flows | None,
              num_refs: int = 1, region: torch.Tensor | None = None,
              light_sigma: float = LIGHT_SIGMA, use_confidence: bool = False,
              profile_tone: bool = False, fill: Flows | None = None) -> torch.Tensor:
    """Where warp-initialised sampling starts the portrait: the profile ``(B * K, C, h, w)``
    (latents, or pixels: a grid finer than the flow's gets it resampled smoothly) pulled
    along the flow (bilinear, so sub-cell matches keep their position), with its low
    frequencies (light, skin tone) replaced by the template's ``(B, C, h, w)``; outside
    ``region`` ``(B, 1, h, w)`` in [0, 1] (the template's face) the template itself, and
    inside it both blurs taken over the region only. ``use_confidence``: the flow's score,
    in [0, 1], is how far the profile shows each point (mesh flows, ground truth); where it
    does not, the template stays. ``profile_tone`` (pixels in [-1, 1] only, with a
    ``region``): the face keeps the profile's mean colour (its skin tone) under the
    template's light, i.e. the template's low frequencies scaled per channel by the ratio
    of the two faces' mean colours. ``fill`` (with ``use_confidence``): flows to stand-in
    points (e.g. the mirror image across the profile's face), scored the same way; what the
    flow's own points lack of being shown, up to the stand-in's score, is taken from there,
    blended, so that the switch is as smooth as the scores. Without flows (the no-matching
    ablation), the template."""
    if flows is None:
        return template
    h, w = template.shape[-2:]

    def at_size(f: Flows):
        return f[(h, w)] if (h, w) in f else smooth_flow_at(f, (h, w))

    m = at_size(flows)
    src = profile.reshape(template.shape[0], num_refs, *profile.shape[1:])
    warped = warp(src, m.flow, m.ref, mode="bilinear")
    sigma = light_sigma * w
    if region is None and not use_confidence:
        return warped - blur(warped, sigma) + blur(template, sigma)
    face_known = region is not None  # the skin tone is measured on the face only
    if region is None:  # e.g. ground-truth flows on an unaligned render: the confidence alone
        region = torch.ones_like(template[:, :1])
    shown = region * m.score[:, None].clamp(0, 1).to(region) if use_confidence else region
    # Light and tone from the face only: a blur normalised over the region, so that the
    # background and hair around either face do not tint the other.
    light = masked_blur(template, region, sigma)
    if profile_tone and face_known:
        light = (light + 1) * face_colour(warped, shown) / face_colour(template, region) - 1
    relit = warped - masked_blur(warped, shown, sigma) + light
    out = shown * relit + (1 - shown) * template
    if fill is None or not use_confidence:
        return out
    f = at_size(fill)
    stand_in = warp(src, f.flow, f.ref, mode="bilinear")
    share = (region - shown).clamp_min(0) * f.score[:, None].clamp(0, 1).to(region)
    relit = stand_in - masked_blur(stand_in, share, sigma) + light
    return out + share * (relit - template)


def face_colour(pixels: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The mean colour ``(B, C, 1, 1)`` of ``pixels`` in [-1, 1] weighted by ``weight``
    ``(B, 1, h, w)``, in [0, 1] (floored so that a ratio of two stays finite)."""
    total = (weight.sum((-2, -1), keepdim=True)).clamp_min(1e-6)
    return (((pixels + 1) / 2 * weight).sum((-2, -1), keepdim=True) / total).clamp_min(0.02)


def masked_blur(x: torch.Tensor, weight: torch.Tensor, sigma: float) -> torch.Tensor:
    """:func:`blur` of ``x`` weighted by ``weight`` ``(B, 1, h, w)`` (normalised convolution)."""
    return blur(x * weight, sigma) / blur(weight, sigma).clamp_min(1e-3)
