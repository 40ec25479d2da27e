"""Periodic validation of a training stage on held-out data (``--val-data``, and the held-out
split of photo corpora for the autoencoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from icportrait.conditioning import default_patch_size, patch_mask, vae_encode
from icportrait.data.pairs import collate
from icportrait.defaults import MASK_RATIO, MATCH_TIMESTEP, VALIDATION_STEPS
from icportrait.evaluation.image_metrics import psnr
from icportrait.io import save_image
from icportrait.models.matching import identity_flow
from icportrait.models.reference import compute_flows, finest, matching_condition

# PCK threshold: 5% of the face width. Synthetic renders frame the face like the canonical
# crop, where the face (cheek to cheek) spans about half the image width.
FACE_WIDTH_OF_IMAGE = 0.5


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8, as the images would be saved."""
    arr = images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (arr * 255 + 0.5).astype(np.uint8)


def mean_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.mean([psnr(x, y) for x, y in zip(to_uint8(a), to_uint8(b), strict=True)]))


@torch.no_grad()
def matching_pck(pipe, matching_net, items: list[dict], match_timestep: int = MATCH_TIMESTEP,
                 threshold: float = 0.05, mask_ratio: float = MASK_RATIO, seed: int = 0,
                 source: str = "condition") -> dict:
    """Flow accuracy against ground truth on visible pixels, at the finest matched level.

    ``source`` says what the matching net's noisy channels hold: ``condition`` (as the
    pipeline's cached flows: the condition canvas noised to ``match_timestep``) or
    ``first_step`` (as ``per_step`` flows at the first denoising step: pure noise at the last
    training timestep, so only the condition channels carry information). Each target cell's
    predicted source position, mapped to image pixels, is correct if within ``threshold`` x
    face width of the ground truth.
    """
    if source not in ("condition", "first_step"):
        raise ValueError(f"source must be 'condition' or 'first_step', got {source!r}")
    errors, still = [], []
    g = torch.Generator().manual_seed(seed)
    alphas = pipe.scheduler.alphas_cumprod
    t_match = match_timestep if source == "condition" else len(alphas) - 1
    for it in items:
        prof = it["profile"][None].to(pipe.device) * 2 - 1
        tgt = it["target"][None].to(pipe.device) * 2 - 1
        p, t = vae_encode(pipe.vae, prof), vae_encode(pipe.vae, tgt)
        h, w = t.shape[-2:]
        mask = patch_mask(1, h, w, mask_ratio, default_patch_size(h), g, t.device)
        cond = matching_condition(matching_net, p, t, mask)
        noise = torch.randn(cond.latents.shape, generator=g)
        m = finest(compute_flows(matching_net, cond, pipe.encode_prompt(None, 1), alphas,
                                 t_match, noise))
        size = it["flow"].shape[-1]
        lh, lw = m.size
        scale = size / lw
        ys = ((torch.arange(lh) + 0.5) * scale - 0.5).round().long()
        xs = ((torch.arange(lw) + 0.5) * scale - 0.5).round().long()
        gt = it["flow"][:, ys][:, :, xs]
        ok = it["valid"][ys][:, xs]
        pred = (m.flow[0].cpu() + 0.5) * scale - 0.5
        errors.append(torch.linalg.vector_norm(pred - gt, dim=0)[ok])
        # "No motion": every target cell taken from the same place in the profile.
        here = (identity_flow(1, lh, lw)[0] + 0.5) * scale - 0.5
        still.append(torch.linalg.vector_norm(here - gt, dim=0)[ok])
    err = torch.cat(errors) if errors else torch.zeros(0)
    err0 = torch.cat(still) if still else torch.zeros(0)
    px = threshold * FACE_WIDTH_OF_IMAGE * size if items else 1.0

    def pck(e, factor=1.0):
        return round(float((e <= factor * px).float().mean()), 4) if len(e) else 0.0

    return {"pck": pck(err), "pck10": pck(err, 2.0), "cells": len(err),
            "median_error_px": round(float(err.median()), 3) if len(err) else None,
            "no_motion_pck": pck(err0), "no_motion_pck10": pck(err0, 2.0)}


def validate_stage(stage, module, folder: Path, step: int, n: int = 8) -> dict:
    if stage.val is None:
        return {}
    folder = Path(folder)
    kind = stage.cfg.stage
    if kind == "vae":
        return _validate_vae(stage.val, module, folder, step, n)
    pipe = module.pipe
    items = [stage.val[i] for i in range(min(n, len(stage.val)))]
    if kind == "matching":
        return matching_pck(pipe, module.net, items, stage.cfg.match_timestep,
                            mask_ratio=stage.cfg.mask_ratio)
    if kind == "base":
        return {"val_loss": round(_val_loss(module, items), 5)}
    # appearance: generate each target from its profile and compare with the ground truth
    app, pipe.appearance_net = pipe.appearance_net, module.net
    try:
        pipe.set_progress_bar_config(disable=True)
        # sampled as the exported model will sample (warp-initialised after --max-timestep)
        outs = [pipe(it["profile"], it["target"], num_inference_steps=VALIDATION_STEPS,
                     strength=module.default_strength, output_type="pt",
                     generator=torch.Generator().manual_seed(i),
                     mask_ratio=stage.cfg.mask_ratio).images[0].cpu()
                for i, it in enumerate(items)]
    finally:
        pipe.appearance_net = app
    gen = torch.stack(outs)
    gt = torch.stack([it["target"] for it in items])
    save_image(_grid([torch.stack([it["profile"] for it in items]), gt, gen]),
               folder / f"step-{step:06d}.png")
    out = {"psnr": round(mean_psnr(gen, gt), 3)}
    if stage.cfg.distill:  # how near the teacher's F_ref the student's is, held out
        out["val_distill"] = round(_val_loss(module, items), 5)
    return out


@torch.no_grad()
def _validate_vae(sets: dict, module, folder: Path, step: int, n: int) -> dict:
    """Reconstruction PSNR per held-out set (photo faces, photo scenes, synthetic views)."""
    from icportrait.conditioning import vae_decode

    metrics, rows = {}, []
    for name, ds in sets.items():
        x = torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))])
        x = x.to(module.vae.device)
        rec = vae_decode(module.vae, vae_encode(module.vae, x * 2 - 1))
        metrics[f"psnr_{name}"] = round(mean_psnr(rec, x), 3)
        rows += [x, rec]
    save_image(_grid(rows), folder / f"step-{step:06d}.png")
    return metrics


def _val_loss(module, items: list[dict]) -> float:
    """The stage's loss on held-out canvases at fixed timesteps and noise."""
    g = torch.Generator().manual_seed(0)
    return float(module(collate(items), g)[0])


def _grid(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of (N, 3, S, S) images in [0, 1] -> one uint8 image."""
    lines = [torch.cat(list(r.cpu().float().clamp(0, 1)), dim=-1) for r in rows]
    img = torch.cat(lines, dim=-2).permute(1, 2, 0).numpy()
    return (img * 255 + 0.5).astype(np.uint8)
