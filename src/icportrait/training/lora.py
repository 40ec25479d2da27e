"""Optional LoRA adapters (peft) on the frozen base UNet, trained with the appearance net and
merged into the UNet on export, so a pipeline folder stays plain diffusers."""

from __future__ import annotations

import copy

from torch import nn

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def add_lora(unet, rank: int) -> nn.ModuleList:
    """Add peft LoRA adapters (rank ``rank``) to the attention projections of ``unet``
    in place; returns their A/B layers, the only trainable parameters, as one module (so
    checkpoints hold the adapters, not the whole base)."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=LORA_TARGETS))
    layers = [m for _, m in unet.named_modules() if isinstance(m, LoraLayer)]
    return nn.ModuleList([part for m in layers for part in (m.lora_A, m.lora_B)])


def merged_unet(unet):
    """A copy of ``unet`` with its LoRA adapters merged into the weights and removed."""
    merged = copy.deepcopy(unet)
    merged.fuse_lora()
    merged.unload_lora()
    return merged
