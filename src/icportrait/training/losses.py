"""Training losses beyond plain denoising."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from icportrait.conditioning import split
from icportrait.models.control_net import ControlFeatures


def flow_at_level(flow: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-resolution flow ``(B, 2, S, S)`` -> source *cell* indices on an ``(h, w)`` grid
    ``(B, h, w)`` (long, flattened ``y * w + x``) and validity, sampled at cell centres."""
    s_h, s_w = flow.shape[-2:]
    h, w = size
    ys = ((torch.arange(h, device=flow.device) + 0.5) * s_h / h - 0.5).round().long()
    xs = ((torch.arange(w, device=flow.device) + 0.5) * s_w / w - 0.5).round().long()
    f = flow[:, :, ys][:, :, :, xs]
    ok = valid[:, ys][:, :, xs]
    cx = ((f[:, 0] + 0.5) * w / s_w - 0.5).round().long().clamp(0, w - 1)
    cy = ((f[:, 1] + 0.5) * h / s_h - 0.5).round().long().clamp(0, h - 1)
    return cy * w + cx, ok


def correspondence_loss(features: ControlFeatures, flow: torch.Tensor, valid: torch.Tensor,
                        temperature: float = 0.07) -> torch.Tensor:
    """Cross-entropy of the cosine cost volume against ground-truth matches.

    At each resolution of the matching features (deepest map per resolution, as matching
    uses), every valid target cell's softmax over all profile cells should peak at its true
    source cell. Averaged over resolutions with at least one valid cell.
    """
    by_size: dict[tuple[int, int], torch.Tensor] = {}
    for f in features.all():
        by_size[(f.shape[-2], f.shape[-1] // 2)] = f
    losses = []
    for size, feat in by_size.items():
        target_idx, ok = flow_at_level(flow, valid, size)
        if not ok.any():
            continue
        src, tgt = split(feat.float())
        b, c = src.shape[:2]
        s = F.normalize(src.reshape(b, c, -1), dim=1)
        t = F.normalize(tgt.reshape(b, c, -1), dim=1)
        logits = torch.einsum("bct,bcs->bts", t, s) / temperature
        losses.append(F.cross_entropy(logits[ok.reshape(b, -1)],
                                      target_idx.reshape(b, -1)[ok.reshape(b, -1)]))
    if not losses:
        return flow.new_zeros(())
    return torch.stack(losses).mean()
