"""Pictures of what the model did: matching flows as colour images, and result sheets."""

from __future__ import annotations

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from icportrait.errors import ICPortraitError
from icportrait.models.matching import flow_to_color, identity_flow


def flow_picture(flow: torch.Tensor, size: int = 256, valid: torch.Tensor | None = None,
                 confidence: torch.Tensor | None = None) -> PIL.Image.Image:
    """``[profile coordinates | target flow (| confidence)]`` side by side, like the paper's
    Figure 3.

    Left: each profile location in its own colour. Middle: each target pixel painted with the
    colour of the profile location it was matched to; a correct flow shows the profile's
    colour layout rearranged into the target's pose. ``flow`` is ``(2, h, w)``. Right, when
    ``confidence`` ``(h, w)`` in [0, 1] is given: the match's confidence, white = sure.
    """
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"expected a (2, h, w) flow, got {tuple(flow.shape)}")
    flow = flow.detach().float().cpu()
    valid = None if valid is None else valid.detach().cpu()
    h, w = flow.shape[-2:]
    left = flow_to_color(identity_flow(1, h, w))
    right = flow_to_color(flow[None].float(), None if valid is None else valid[None])
    panels = [left, right]
    if confidence is not None:
        c = confidence.detach().float().cpu().clamp(0, 1)
        if c.shape != (h, w):
            raise ValueError(f"confidence {tuple(c.shape)} does not match the flow's {(h, w)}")
        panels.append(c.expand(1, 3, h, w))
    both = torch.cat(panels, dim=-1)
    both = F.interpolate(both, size=(size, len(panels) * size), mode="nearest")[0]
    arr = (both.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return PIL.Image.fromarray(arr)


def grid(images: list[np.ndarray], cols: int | None = None, size: int | None = None,
         pad: int = 4) -> np.ndarray:
    """Images side by side (``cols`` per row), each resized to ``size`` x ``size`` (default:
    the first image's height), on a white background."""
    import cv2

    if not images:
        raise ICPortraitError("nothing to lay out")
    size = size or images[0].shape[0]
    cols = cols or len(images)
    rows = -(-len(images) // cols)
    out = np.full((rows * (size + pad) + pad, cols * (size + pad) + pad, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        tile = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA
                          if im.shape[0] > size else cv2.INTER_CUBIC)
        y, x = pad + r * (size + pad), pad + c * (size + pad)
        out[y:y + size, x:x + size] = tile
    return out


def sweep_sheet(results: list, size: int) -> np.ndarray:
    """A sweep's sheet: the templates used in the top row, their portraits below."""
    return grid([r.template for r in results] + [r.image for r in results], cols=len(results),
                size=size)
