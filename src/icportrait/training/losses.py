"""Training losses beyond plain denoising."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from icportrait.conditioning import split
from icportrait.models.control_net import ControlFeatures
from icportrait.models.matching import displacement_prior


def flow_in_cells(flow: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image-resolution flow ``(B, 2, S, S)`` sampled at the centres of an ``(h, w)`` grid's
    cells: source positions ``x, y`` ``(B, h, w)`` in (fractional) source cells, and
    validity."""
    s_h, s_w = flow.shape[-2:]
    h, w = size
    ys = ((torch.arange(h, device=flow.device) + 0.5) * s_h / h - 0.5).round().long()
    xs = ((torch.arange(w, device=flow.device) + 0.5) * s_w / w - 0.5).round().long()
    f = flow[:, :, ys][:, :, :, xs]
    return ((f[:, 0] + 0.5) * w / s_w - 0.5, (f[:, 1] + 0.5) * h / s_h - 0.5,
            valid[:, ys][:, :, xs])


def flow_at_level(flow: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-resolution flow ``(B, 2, S, S)`` -> source *cell* indices on an ``(h, w)`` grid
    ``(B, h, w)`` (long, flattened ``y * w + x``) and validity, sampled at cell centres."""
    h, w = size
    x, y, ok = flow_in_cells(flow, valid, size)
    cx = x.round().long().clamp(0, w - 1)
    cy = y.round().long().clamp(0, h - 1)
    return cy * w + cx, ok


def correspondence_loss(features: ControlFeatures, flow: torch.Tensor, valid: torch.Tensor,
                        temperature: float = 0.07) -> torch.Tensor:
    """Cross-entropy of the cosine cost volume against ground-truth matches.

    At each resolution of the matching features (deepest map per resolution, as matching
    uses), every valid target cell's softmax over all profile cells should peak at its true
    source cell. Averaged over resolutions with at least one valid cell.
    """
    losses = []
    for size, feat in features.deepest_by_size().items():
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


def descriptor_loss(descriptors: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor,
                    temperature: float, locality: float, target_sigma: float = 0.5
                    ) -> torch.Tensor:
    """Symmetric (dual-softmax) InfoNCE of a descriptor net against ground-truth matches.

    ``descriptors`` ``(B, D, h, 2w)`` are unit vectors on the canvas; ``flow`` ``(B, 2, S, S)``
    target -> profile in image pixels with ``valid`` ``(B, S, S)`` (the target point is seen
    in the profile). Logits are ``cos / temperature`` plus the inference-time locality prior
    (``locality``: its standard deviation as a fraction of the half's width). Every valid
    target cell's true source is a point between cell centres, so its target distribution is
    a Gaussian of ``target_sigma`` cells around it; the loss is the cross-entropy of that
    distribution under the softmax over profile cells (target -> profile) and under the
    softmax over target cells (profile -> target), averaged.
    """
    src, tgt = split(descriptors.float())
    b, d, h, w = src.shape
    true_x, true_y, ok = flow_in_cells(flow, valid, (h, w))      # at target cell centres
    true_x, true_y, ok = true_x.reshape(b, -1), true_y.reshape(b, -1), ok.reshape(b, -1)
    if not ok.any():
        return descriptors.new_zeros(())
    cy, cx = torch.meshgrid(torch.arange(h, device=flow.device, dtype=torch.float32),
                            torch.arange(w, device=flow.device, dtype=torch.float32),
                            indexing="ij")
    d2 = (cx.reshape(1, 1, -1) - true_x[..., None]) ** 2 + \
         (cy.reshape(1, 1, -1) - true_y[..., None]) ** 2          # (B, T, S)
    soft = torch.softmax(-d2 / (2 * target_sigma**2), dim=2)
    logits = torch.einsum("bdt,bds->bts", tgt.reshape(b, d, -1), src.reshape(b, d, -1))
    logits = logits / temperature + displacement_prior((h, w), (h, w), locality * w,
                                                       flow.device)
    rows = -(soft * torch.log_softmax(logits, dim=2)).sum(2)      # target -> profile
    cols = -(soft * torch.log_softmax(logits, dim=1)).sum(2)      # profile -> target
    return 0.5 * (rows[ok].mean() + cols[ok].mean())
