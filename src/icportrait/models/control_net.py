"""The ControlNet-like branch used twice by IC-Portrait: as matching net and appearance net.

It is a copy of the base UNet's encoder (conv_in, time embedding, down blocks, mid block)
whose input convolution takes the control input ``noisy ⊕ condition ⊕ mask`` (see
:mod:`icportrait.conditioning`). The channels beyond the base UNet's are zero-initialised, as
SD-inpainting and IC-Light do, so a fresh branch computes exactly the base encoder's features.
Unlike diffusers' ``ControlNetModel`` it has no image-space condition encoder and it returns
its multi-level features *before* the zero convolutions, because IC-Portrait correlates and
warps them before they become residuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d_blocks import (
    UNetMidBlock2D,
    UNetMidBlock2DCrossAttn,
    get_down_block,
)
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn

from icportrait.models.descriptor import HypercolumnHead

# UNet config keys that change the encoder's behaviour in ways this branch does not mirror
# (SDXL-style added embeddings, class conditioning, ...). A base with any of them is refused.
_UNSUPPORTED = ("class_embed_type", "num_class_embeds", "addition_embed_type",
                "encoder_hid_dim", "encoder_hid_dim_type", "time_cond_proj_dim")


def _zero_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def _placed_like(net: nn.Module, model) -> nn.Module:
    """``net`` on ``model``'s device and in its dtype."""
    net.to(device=model.device)
    return net if net.dtype == model.dtype else net.to(dtype=model.dtype)


@dataclass
class ControlFeatures:
    """Multi-level features of a control branch, before the zero convolutions."""

    down: list[torch.Tensor]  # one per base-UNet skip connection, (B, C_i, H_i, W_i)
    mid: torch.Tensor         # (B, C, H, W)

    def all(self) -> list[torch.Tensor]:
        return [*self.down, self.mid]

    def deepest_by_size(self) -> dict[tuple[int, int], torch.Tensor]:
        """The last (deepest) map at each resolution, keyed by the ``(h, w)`` of one canvas
        half, finest first: what matching correlates and descriptors are built from."""
        by_size: dict[tuple[int, int], torch.Tensor] = {}
        for f in self.all():
            by_size[(f.shape[-2], f.shape[-1] // 2)] = f  # later (deeper) maps overwrite
        return dict(sorted(by_size.items(), key=lambda kv: -kv[0][0] * kv[0][1]))

    @classmethod
    def from_list(cls, tensors: list[torch.Tensor]) -> ControlFeatures:
        return cls(list(tensors[:-1]), tensors[-1])


class ICControlNet(ModelMixin, ConfigMixin):
    """Encoder copy of an SD 1.x-family UNet with a wider, zero-initialised input conv."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 9,
        base_in_channels: int = 4,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D",
        ),
        mid_block_type: str | None = "UNetMidBlock2DCrossAttn",
        only_cross_attention: bool | tuple[bool, ...] = False,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1.0,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 768,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        attention_head_dim: int | tuple[int, ...] = 8,
        num_attention_heads: int | tuple[int, ...] | None = None,
        use_linear_projection: bool = False,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        descriptor_dim: int = 0,
        match_temperature: float = 0.07,
        match_locality: float = 0.25,
        reference_timestep: int | None = None,
        confidence_gate: bool = False,
    ):
        super().__init__()
        if len(block_out_channels) != len(down_block_types):
            raise ValueError("block_out_channels and down_block_types differ in length")
        n = len(down_block_types)
        # diffusers' historic naming: `attention_head_dim` is the number of heads in SD 1.x.
        heads = num_attention_heads or attention_head_dim
        heads = (heads,) * n if isinstance(heads, int) else tuple(heads)
        head_dims = (attention_head_dim,) * n if isinstance(attention_head_dim, int) \
            else tuple(attention_head_dim)
        cross_only = (only_cross_attention,) * n if isinstance(only_cross_attention, bool) \
            else tuple(only_cross_attention)
        layers_t = tuple(transformer_layers_per_block) \
            if isinstance(transformer_layers_per_block, (list, tuple)) \
            else (transformer_layers_per_block,) * n

        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        time_dim = block_out_channels[0] * 4
        self.time_proj = Timesteps(block_out_channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_dim, act_fn=act_fn)

        self.down_blocks = nn.ModuleList()
        self.zero_convs = nn.ModuleList([_zero_conv(block_out_channels[0])])
        out_ch = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            in_ch, out_ch = out_ch, block_out_channels[i]
            final = i == n - 1
            self.down_blocks.append(get_down_block(
                block_type, num_layers=layers_per_block,
                transformer_layers_per_block=layers_t[i], in_channels=in_ch,
                out_channels=out_ch, temb_channels=time_dim, add_downsample=not final,
                resnet_eps=norm_eps, resnet_act_fn=act_fn, resnet_groups=norm_num_groups,
                cross_attention_dim=cross_attention_dim, num_attention_heads=heads[i],
                attention_head_dim=head_dims[i] if head_dims[i] is not None else out_ch,
                downsample_padding=downsample_padding, use_linear_projection=use_linear_projection,
                only_cross_attention=cross_only[i], upcast_attention=upcast_attention,
                resnet_time_scale_shift=resnet_time_scale_shift,
            ))
            for _ in range(layers_per_block + (0 if final else 1)):
                self.zero_convs.append(_zero_conv(out_ch))

        mid_ch = block_out_channels[-1]
        if mid_block_type == "UNetMidBlock2DCrossAttn":
            self.mid_block = UNetMidBlock2DCrossAttn(
                transformer_layers_per_block=layers_t[-1], in_channels=mid_ch,
                temb_channels=time_dim, resnet_eps=norm_eps, resnet_act_fn=act_fn,
                output_scale_factor=mid_block_scale_factor,
                resnet_time_scale_shift=resnet_time_scale_shift,
                cross_attention_dim=cross_attention_dim, num_attention_heads=heads[-1],
                resnet_groups=norm_num_groups, use_linear_projection=use_linear_projection,
                upcast_attention=upcast_attention,
            )
        elif mid_block_type == "UNetMidBlock2D":
            self.mid_block = UNetMidBlock2D(
                in_channels=mid_ch, temb_channels=time_dim, num_layers=0, resnet_eps=norm_eps,
                resnet_act_fn=act_fn, output_scale_factor=mid_block_scale_factor,
                resnet_groups=norm_num_groups, resnet_time_scale_shift=resnet_time_scale_shift,
                add_attention=False,
            )
        else:
            raise ValueError(f"unsupported mid_block_type {mid_block_type!r}")
        self.zero_mid = _zero_conv(mid_ch)
        self.gradient_checkpointing = False
        # A matching net may carry a descriptor head (models/descriptor.py): its flow is then
        # the argmax of cos / match_temperature plus a Gaussian prior on displacement of
        # match_locality x the half's width (aligned faces barely move); 0 = the paper's
        # per-level argmax of raw features.
        self.descriptor_head = HypercolumnHead(tuple(block_out_channels), descriptor_dim) \
            if descriptor_dim else None

    @property
    def has_descriptor(self) -> bool:
        return self.descriptor_head is not None

    def descriptors(self, features: ControlFeatures) -> torch.Tensor:
        """Unit matching descriptors ``(B, D, H, 2W)`` at the finest level."""
        if self.descriptor_head is None:
            raise ValueError("this control net has no descriptor head")
        return self.descriptor_head(list(features.deepest_by_size().values()))

    def with_descriptor_head(self, dim: int) -> ICControlNet:
        """A copy of this branch with a fresh descriptor head of ``dim`` (0: none)."""
        net = type(self).from_config(self.config, descriptor_dim=dim)
        encoder = {k: v for k, v in self.state_dict().items()
                   if not k.startswith("descriptor_head.")}
        net.load_state_dict(encoder, strict=False)
        return _placed_like(net, self)

    def attention_free(self) -> ICControlNet:
        """A copy of this branch without its attention layers: the same convolutions and
        features at every level (so the same residuals fit the base UNet), about a third of
        the compute on the tiny spec. Its weights are this branch's, less the attention."""
        n = len(self.config.down_block_types)
        net = type(self).from_config(self.config, down_block_types=("DownBlock2D",) * n,
                                     mid_block_type="UNetMidBlock2D")
        missing, _ = net.load_state_dict(self.state_dict(), strict=False)
        if missing:  # every conv of the copy exists in the original
            raise ValueError(f"attention-free copy lacks weights for {missing[:3]}")
        return _placed_like(net, self)

    @property
    def has_attention(self) -> bool:
        return any(getattr(b, "has_cross_attention", False) for b in self.down_blocks) or \
            isinstance(self.mid_block, UNetMidBlock2DCrossAttn)

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, condition_channels: int | None = None,
                  load_weights: bool = True) -> ICControlNet:
        """A branch initialised from ``unet``'s encoder.

        The input conv takes ``base + condition_channels`` channels (default: the latent
        channels again plus one mask channel); the extra ones start at zero.
        """
        cfg = unet.config
        for key in _UNSUPPORTED:
            if cfg.get(key) is not None:
                raise ValueError(
                    f"base UNet uses {key}={cfg.get(key)!r}, which the IC-Portrait control net "
                    "does not support (SD 1.x-family UNets only)"
                )
        if cfg.get("conv_in_kernel", 3) != 3:
            raise ValueError(f"base UNet uses conv_in_kernel={cfg.conv_in_kernel}; the "
                             "IC-Portrait control net copies a 3x3 input convolution")
        base_in = cfg.in_channels
        extra = base_in + 1 if condition_channels is None else condition_channels
        net = cls(
            in_channels=base_in + extra, base_in_channels=base_in,
            flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift,
            down_block_types=tuple(cfg.down_block_types), mid_block_type=cfg.mid_block_type,
            only_cross_attention=cfg.only_cross_attention,
            block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
            downsample_padding=cfg.downsample_padding,
            mid_block_scale_factor=cfg.mid_block_scale_factor, act_fn=cfg.act_fn,
            norm_num_groups=cfg.norm_num_groups, norm_eps=cfg.norm_eps,
            cross_attention_dim=cfg.cross_attention_dim,
            transformer_layers_per_block=cfg.transformer_layers_per_block,
            attention_head_dim=cfg.attention_head_dim,
            num_attention_heads=cfg.num_attention_heads,
            use_linear_projection=cfg.use_linear_projection,
            upcast_attention=cfg.upcast_attention,
            resnet_time_scale_shift=cfg.resnet_time_scale_shift,
        )
        if isinstance(cfg.layers_per_block, (list, tuple)):
            raise ValueError("per-block layers_per_block is not supported")
        if load_weights:
            net.load_encoder_from(unet)
        return _placed_like(net, unet)

    @torch.no_grad()
    def load_encoder_from(self, unet: UNet2DConditionModel) -> None:
        """Copy the base encoder's weights; the extra input channels are set to zero."""
        base_in = self.config.base_in_channels
        self.conv_in.weight.zero_()
        self.conv_in.weight[:, :base_in].copy_(unet.conv_in.weight)
        self.conv_in.bias.copy_(unet.conv_in.bias)
        self.time_proj.load_state_dict(unet.time_proj.state_dict())
        self.time_embedding.load_state_dict(unet.time_embedding.state_dict())
        self.down_blocks.load_state_dict(unet.down_blocks.state_dict())
        self.mid_block.load_state_dict(unet.mid_block.state_dict())

    def forward(
        self,
        control_input: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
    ) -> ControlFeatures:
        """Multi-level features of ``control_input`` ``(B, in_channels, H, W)``."""
        if control_input.ndim != 4 or control_input.shape[1] != self.config.in_channels:
            raise ValueError(
                f"control input must be (B, {self.config.in_channels}, H, W), got "
                f"{tuple(control_input.shape)}"
            )
        b = control_input.shape[0]
        t = torch.as_tensor(timestep, device=control_input.device)
        t = t.reshape(-1).expand(b) if t.numel() == 1 else t.reshape(b)
        emb = self.time_embedding(self.time_proj(t).to(control_input.dtype))

        h = self.conv_in(control_input)
        down = [h]
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb,
                               encoder_hidden_states=encoder_hidden_states)
            else:
                h, res = block(hidden_states=h, temb=emb)
            down.extend(res)
        if isinstance(self.mid_block, UNetMidBlock2DCrossAttn):
            h = self.mid_block(h, emb, encoder_hidden_states=encoder_hidden_states)
        else:
            h = self.mid_block(h, emb)
        return ControlFeatures(down, h)

    def residuals(self, features: ControlFeatures, scale: float = 1.0
                  ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """ControlNet residuals for the base UNet: zero convs times ``scale``."""
        if len(features.down) != len(self.zero_convs):
            raise ValueError(f"expected {len(self.zero_convs)} down features, got "
                             f"{len(features.down)}")
        down = [conv(f) * scale for conv, f in zip(self.zero_convs, features.down, strict=True)]
        return down, self.zero_mid(features.mid) * scale
