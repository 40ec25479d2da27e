"""Tiny random components of the same architecture as the real ones (diffusers-style dummy
models), for fast tests on CPU."""

from __future__ import annotations

import torch

from icportrait.pipelines import ICPortraitPipeline
from icportrait.specs import ModelSpec, build_pipeline

DUMMY = ModelSpec(
    name="dummy", resolution=32,
    vae=dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
             down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
             block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4),
    unet=dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
              block_out_channels=(16, 32),
              down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
              up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
              cross_attention_dim=16, attention_head_dim=8, norm_num_groups=8),
    null_seq_len=2,
)


def dummy_pipeline(seed: int = 0) -> ICPortraitPipeline:
    pipe = build_pipeline(DUMMY, seed=seed)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def trained_like(pipe: ICPortraitPipeline, seed: int = 0) -> ICPortraitPipeline:
    """Give the zero-initialised parts random values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in (pipe.matching_net, pipe.appearance_net):
            for name, p in net.named_parameters():
                if "zero" in name or "conv_in" in name:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return pipe
