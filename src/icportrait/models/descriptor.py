"""Dense matching descriptors: a hypercolumn over a control branch's levels.

The matching net's features at one level are either local (the full-resolution level sees
about 11 latent cells) or coarse. A hypercolumn gives every cell of the finest level the
deepest map of every resolution (upsampled per canvas half, so the profile and the target
never mix at the seam), and a small 1 x 1 head projects it to an L2-normalised descriptor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from icportrait.conditioning import split, stitch


class HypercolumnHead(nn.Module):
    """``[deepest map per resolution, upsampled]`` -> 1 x 1 MLP -> unit descriptors."""

    def __init__(self, level_channels: tuple[int, ...], dim: int, hidden: int = 128):
        super().__init__()
        self.level_channels = tuple(level_channels)
        self.mlp = nn.Sequential(nn.Conv2d(sum(level_channels), hidden, 1), nn.SiLU(),
                                 nn.Conv2d(hidden, dim, 1))

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        """One canvas map per resolution, finest first (``ControlFeatures.deepest_by_size``)
        -> ``(B, dim, H, 2W)`` at the finest size."""
        if tuple(f.shape[1] for f in levels) != self.level_channels:
            raise ValueError(f"the descriptor head expects levels of {self.level_channels} "
                             f"channels, got {tuple(f.shape[1] for f in levels)}")
        size = levels[0].shape[-2], levels[0].shape[-1] // 2
        halves = [[], []]
        for f in levels:
            for side, half in enumerate(split(f)):
                halves[side].append(half if half.shape[-2:] == size else
                                    F.interpolate(half, size=size, mode="bilinear",
                                                  align_corners=False))
        column = stitch(torch.cat(halves[0], 1), torch.cat(halves[1], 1))
        return F.normalize(self.mlp(column), dim=1)
