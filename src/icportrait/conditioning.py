"""Pure data preparation for IC-Portrait's in-context canvas (no model, no state).

Layouts (stated once, checked at the borders):

* latents and feature maps: ``(B, C, H, W)``;
* a **canvas** stitches the profile (left) and the target (right) side by side along width:
  ``(B, C, H, 2W)``, the profile half is ``[..., :W]``, the target half ``[..., W:]``;
* a **patch mask** is ``(B, 1, H, W)`` with 1 where a template patch is *hidden* and 0 where it
  is visible; on a canvas the profile half of the mask is 0 (everything visible);
* the **control input** is ``noisy canvas ⊕ condition canvas ⊕ mask canvas`` along channels:
  ``(B, 2C + 1, H, 2W)``, the SD-inpainting / IC-Light layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from icportrait.defaults import MASK_RATIO, check_mask_ratio


def check_layout(name: str, x: torch.Tensor, channels: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got {shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels, got {x.shape[1]}")


def vae_encode(vae, images: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` images in [-1, 1] -> scaled latents (the posterior mean, so that
    conditioning is deterministic)."""
    check_layout("images", images, 3)
    latents = vae.encode(images.to(vae.dtype)).latent_dist.mode()
    shift = vae.config.get("shift_factor") or 0.0
    return (latents - shift) * vae.config.scaling_factor


def vae_decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> ``(N, 3, H, W)`` images in [0, 1]."""
    shift = vae.config.get("shift_factor") or 0.0
    images = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor + shift).sample
    return (images.float() / 2 + 0.5).clamp(0, 1)


def default_patch_size(latent_side: int) -> int:
    """Mask patch side in latent cells: 16 x 16 patches per half at any scale."""
    return max(1, latent_side // 16)


def noised(latents: torch.Tensor, alphas_cumprod: torch.Tensor, timestep: int,
           noise: torch.Tensor) -> torch.Tensor:
    """The variance-preserving forward process at a training timestep:
    ``sqrt(a) x + sqrt(1 - a) noise``, which is what an epsilon-UNet takes as input whatever
    sampler is used at inference (cached matching flows are computed on such an input)."""
    a = alphas_cumprod[timestep].to(latents)
    return a.sqrt() * latents + (1 - a).sqrt() * noise.to(latents)


def patch_mask(
    batch: int,
    height: int,
    width: int,
    ratio: float = MASK_RATIO,
    patch_size: int = 2,
    generator: torch.Generator | list[torch.Generator] | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A random patch mask ``(B, 1, H, W)``: exactly ``round(ratio * n_patches)`` patches of
    ``patch_size`` x ``patch_size`` latent cells are hidden (1), the rest visible (0).

    A list of generators gives each batch item its own, so a batch equals its single items.
    """
    check_mask_ratio(ratio)
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ValueError(
            f"patch size {patch_size} must divide the latent size {height}x{width}"
        )
    gens = _per_item(generator, batch)
    ph, pw = height // patch_size, width // patch_size
    n_hidden = round(ratio * ph * pw)
    masks = []
    for g in gens:
        # randperm draws on its generator's device (a CUDA generator is allowed).
        order = torch.randperm(ph * pw, generator=g, device=g.device if g else "cpu").cpu()
        m = torch.zeros(ph * pw)
        m[order[:n_hidden]] = 1.0
        masks.append(m.view(1, ph, pw))
    mask = torch.stack(masks).repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    return mask.to(device)


def _per_item(generator, batch: int) -> list[torch.Generator | None]:
    if isinstance(generator, list):
        if len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for a batch of {batch}")
        return generator
    return [generator] * batch


def stitch(profile: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Side-by-side canvas ``[profile | target]`` along width."""
    check_layout("profile", profile)
    check_layout("target", target)
    if profile.shape != target.shape:
        raise ValueError(
            f"profile {tuple(profile.shape)} and target {tuple(target.shape)} must match to stitch"
        )
    return torch.cat([profile, target], dim=-1)


def split(canvas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`stitch`: ``(profile half, target half)``."""
    check_layout("canvas", canvas)
    w = canvas.shape[-1]
    if w % 2:
        raise ValueError(f"a canvas has an even width, got {w}")
    return canvas[..., : w // 2], canvas[..., w // 2 :]


@dataclass(frozen=True)
class Condition:
    """What the control nets see besides the noisy latent."""

    latents: torch.Tensor  # (B, C, H, 2W) canvas of [profile | masked template]
    mask: torch.Tensor     # (B, 1, H, 2W) canvas mask, 1 = hidden template patch

    def control_input(self, noisy_canvas: torch.Tensor) -> torch.Tensor:
        """``noisy ⊕ condition ⊕ mask`` along channels: ``(B, 2C + 1, H, 2W)``."""
        check_layout("noisy canvas", noisy_canvas, self.latents.shape[1])
        if noisy_canvas.shape[-2:] != self.latents.shape[-2:]:
            raise ValueError(
                f"noisy canvas {tuple(noisy_canvas.shape)} does not match the condition "
                f"{tuple(self.latents.shape)}"
            )
        return torch.cat([noisy_canvas, self.latents, self.mask], dim=1)


def prepare_condition(
    profile_latents: torch.Tensor, template_latents: torch.Tensor, template_mask: torch.Tensor
) -> Condition:
    """Lighting-aware stitching: ``[profile | template with hidden patches zeroed]``."""
    check_layout("template mask", template_mask, 1)
    if template_mask.shape[-2:] != template_latents.shape[-2:]:
        raise ValueError("the template mask and the template latents differ in size")
    template_mask = template_mask.to(template_latents)
    masked = template_latents * (1.0 - template_mask)
    canvas = stitch(profile_latents, masked)
    mask = stitch(torch.zeros_like(template_mask), template_mask)
    return Condition(canvas, mask)
