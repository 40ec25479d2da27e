"""Package a trained pipeline for shipping: fp16 safetensors, checked against the fp32 one.

``icportrait train release --pipeline RUN/pipeline --out weights/tiny`` writes a
``save_pretrained`` folder whose weights are stored in fp16 (half the size) and loaded back
in the caller's dtype. The check generates the same portraits with both copies (fp32
compute) and reports the PSNR between them: storage in fp16 must lose nothing visible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from icportrait.defaults import (
    FLOW_SOURCES,
    VALIDATION_STEPS,
    WARP_SPACES,
    check_choice,
    check_strength,
)
from icportrait.errors import ICPortraitError
from icportrait.evaluation.image_metrics import psnr
from icportrait.io import atomic_write_text

MIN_PSNR_DB = 40.0  # outputs of the fp16-stored copy vs the fp32 original
IDENTICAL_PSNR_DB = 100.0  # reported when the 8-bit outputs are identical


def folder_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20, 2)


@torch.no_grad()
def compare_outputs(a, b, n: int = 3, steps: int = VALIDATION_STEPS) -> float:
    """The lowest PSNR (dB) between the two pipelines' portraits over ``n`` bundled
    profile/template pairs (same seeds)."""
    from icportrait.faces.samples import SAMPLE_NAMES, load_sample

    photos = [load_sample(name) for name in SAMPLE_NAMES]
    worst = float("inf")
    for k in range(n):
        profile, template = photos[k % 2], photos[(k + 1) % 2]
        outs = [p(profile, template, num_inference_steps=steps, align_faces=True,
                  output_type="np", generator=torch.Generator().manual_seed(k)).images[0]
                for p in (a, b)]
        worst = min(worst, psnr(*[(np.asarray(o) * 255 + 0.5).astype(np.uint8) for o in outs]))
    # Identical 8-bit outputs have infinite PSNR; JSON has no infinity.
    return round(min(worst, IDENTICAL_PSNR_DB), 2)


def release(src: Path, dst: Path, fp16: bool = True, check: bool = True,
            strength: float | None = None, match_locality: float | None = None,
            flow_source: str | None = None, warp_space: str | None = None) -> dict:
    """Save ``src`` (a pipeline folder) to ``dst`` with fp16 weights; returns a summary.

    ``strength``, ``match_locality``, ``flow_source`` and ``warp_space``, when given, set the
    shipped model's sampling defaults (its ``default_strength``, its descriptor matching
    prior, where its flows come from and where it warps), chosen by measurement after
    training; the summary records them."""
    from icportrait.pipelines import ICPortraitPipeline
    from icportrait.store import save_pipeline

    if strength is not None:
        check_strength(strength, "--strength")
    if flow_source is not None:
        check_choice(flow_source, FLOW_SOURCES, "--flow-source")
    if warp_space is not None:
        check_choice(warp_space, WARP_SPACES, "--warp-space")
    if match_locality is not None and match_locality <= 0:
        raise ICPortraitError(f"--match-locality must be > 0, got {match_locality}")
    original = ICPortraitPipeline.from_pretrained(src)
    original.set_progress_bar_config(disable=True)
    stored = ICPortraitPipeline.from_pretrained(
        src, dtype=torch.float16 if fp16 else torch.float32)
    for pipe in (original, stored):
        if strength is not None:
            pipe.register_to_config(default_strength=strength)
        if flow_source is not None:
            pipe.register_to_config(flow_source=flow_source)
        if warp_space is not None:
            pipe.register_to_config(warp_space=warp_space)
        if match_locality is not None:
            if not pipe.matching_net.has_descriptor:
                raise ICPortraitError("--match-locality sets a descriptor matching net's "
                                      "prior; this model's matching net has none")
            pipe.matching_net.register_to_config(match_locality=match_locality)
    dst = Path(dst)
    notes = {f.name: f.read_bytes() for f in dst.glob("*.md")}  # RECIPE.md survives
    save_pipeline(stored, dst)
    for name, data in notes.items():
        (dst / name).write_bytes(data)
    summary = {"source": str(src), "dtype": "fp16" if fp16 else "fp32",
               "size_mb": folder_mb(dst), "source_size_mb": folder_mb(src),
               "default_strength": stored.config.get("default_strength"),
               "flow_source": stored.config.get("flow_source"),
               "warp_space": stored.config.get("warp_space"),
               "match_locality": stored.matching_net.config.get("match_locality")
               if stored.matching_net.has_descriptor else None}
    if check:
        reloaded = ICPortraitPipeline.from_pretrained(dst)  # fp32 compute
        reloaded.set_progress_bar_config(disable=True)
        summary["psnr_vs_fp32_db"] = compare_outputs(original, reloaded)
        if summary["psnr_vs_fp32_db"] < MIN_PSNR_DB:
            raise ICPortraitError(
                f"fp16 storage changes the outputs (PSNR {summary['psnr_vs_fp32_db']} dB < "
                f"{MIN_PSNR_DB}); release in fp32 (--no-fp16)")
    atomic_write_text(Path(dst) / "release.json", json.dumps(summary, indent=2) + "\n")
    return summary
