"""Test helper: write a diffusers UNet + VAE as one original-layout (LDM) checkpoint file.

This is the inverse of the key renaming diffusers' ``from_single_file`` performs, for the
SD 1.x layout (layers_per_block=2 in the UNet, 4 blocks), so the single-file loading path
can be tested offline with tiny random models.
"""

from __future__ import annotations

import torch
from safetensors.torch import save_file

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"),
           ("time_emb_proj", "emb_layers.1"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def _resnet(key: str) -> str:
    for a, b in _RESNET:
        key = key.replace(f".{a}.", f".{b}.")
    return key


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    cfg = unet.config
    assert cfg.layers_per_block == 2 and len(cfg.block_out_channels) == 4
    out = {}
    for key, value in unet.state_dict().items():
        k = key
        for a, b in [("time_embedding.linear_1", "time_embed.0"),
                     ("time_embedding.linear_2", "time_embed.2"),
                     ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"),
                     ("conv_out", "out.2")]:
            if k.startswith(a + "."):
                k = b + k[len(a):]
        parts = k.split(".")
        if parts[0] == "down_blocks":
            i = int(parts[1])
            if parts[2] == "resnets":
                k = _resnet(f"input_blocks.{3 * i + int(parts[3]) + 1}.0." + ".".join(parts[4:]))
            elif parts[2] == "attentions":
                k = f"input_blocks.{3 * i + int(parts[3]) + 1}.1." + ".".join(parts[4:])
            else:  # downsamplers.0.conv
                k = f"input_blocks.{3 * (i + 1)}.0.op." + ".".join(parts[5:])
        elif parts[0] == "up_blocks":
            i = int(parts[1])
            has_attn = "CrossAttn" in cfg.up_block_types[i]
            if parts[2] == "resnets":
                k = _resnet(f"output_blocks.{3 * i + int(parts[3])}.0." + ".".join(parts[4:]))
            elif parts[2] == "attentions":
                k = f"output_blocks.{3 * i + int(parts[3])}.1." + ".".join(parts[4:])
            else:  # upsamplers.0.conv
                k = f"output_blocks.{3 * i + 2}.{2 if has_attn else 1}.conv." + ".".join(parts[5:])
        elif parts[0] == "mid_block":
            if parts[1] == "resnets":
                k = _resnet(f"middle_block.{0 if parts[2] == '0' else 2}." + ".".join(parts[3:]))
            else:
                k = "middle_block.1." + ".".join(parts[3:])
        out["model.diffusion_model." + k] = value
    return out


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    n = len(vae.config.block_out_channels)
    out = {}
    for key, value in vae.state_dict().items():
        k = key.replace("conv_norm_out", "norm_out")
        parts = k.split(".")
        if parts[1] in ("down_blocks", "up_blocks"):
            i = int(parts[2])
            name = "down" if parts[1] == "down_blocks" else "up"
            idx = i if name == "down" else n - 1 - i
            if parts[3] == "resnets":
                rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                k = f"{parts[0]}.{name}.{idx}.block.{parts[4]}.{rest}"
            else:
                sampler = "downsample" if name == "down" else "upsample"
                k = f"{parts[0]}.{name}.{idx}.{sampler}.conv." + ".".join(parts[6:])
        elif parts[1] == "mid_block":
            if parts[2] == "resnets":
                rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
                k = f"{parts[0]}.mid.block_{int(parts[3]) + 1}.{rest}"
            else:
                rest = ".".join(parts[4:])
                for a, b in [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"),
                             ("to_v", "v"), ("to_out.0", "proj_out")]:
                    if rest.startswith(a + "."):
                        rest = b + rest[len(a):]
                k = f"{parts[0]}.mid.attn_1.{rest}"
                if value.ndim == 2:  # LDM's attention uses 1x1 convolutions
                    value = value[:, :, None, None]
        out["first_stage_model." + k] = value
    return out


def save_ldm_checkpoint(unet, vae, path) -> None:
    tensors = {k: v.contiguous() for k, v in {**unet_to_ldm(unet), **vae_to_ldm(vae)}.items()}
    save_file(tensors, str(path))
