"""Does a base UNet generate? Per-channel denoising error by timestep, and samples.

    .venv/bin/python benchmarks/base_diagnostics.py --model RUN/base/unet/pipeline \\
        --val-data DATA/val --out runs/base-diagnostics

On ``--pairs`` held-out canvases (profile half kept known, as in the pipeline):

- the regression loss of the target half per latent channel at fixed timesteps, and the
  factor sqrt((1 - a) / a) by which an epsilon-model's error enters its clean estimate;
- DDIM samples (``--steps``) from pure noise and from the truth noised to t = 700, 500 and
  300, plus the clean estimates along the pure-noise trajectory (``samples.png``: one row
  per start; the trajectory row shows the first sample's estimates at 4 steps);
- the final latents' per-channel standard deviation beside the data's.

Writes ``results.json`` and ``samples.png``. A loss alone does not say whether a model
generates: look at the picture.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler

from icportrait.conditioning import split, stitch
from icportrait.data.pairs import collate, pair_dataset
from icportrait.io import save_image
from icportrait.pipelines import ICPortraitPipeline

TIMESTEPS = (50, 200, 500, 800, 950)
STARTS = (999, 700, 500, 300)


def _row(images: torch.Tensor) -> np.ndarray:
    return (torch.cat(list(images.clamp(0, 1)), dim=-1).permute(1, 2, 0).numpy() * 255
            + 0.5).astype(np.uint8)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="pipeline folder")
    ap.add_argument("--val-data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = ICPortraitPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    ds = pair_dataset([args.val_data], size=pipe.resolution, with_flow=False)
    batch = collate([ds[i * max(1, len(ds) // args.pairs)] for i in range(args.pairs)])
    p, t = pipe.encode_images(batch["profile"] * 2 - 1), pipe.encode_images(batch["target"] * 2 - 1)
    n = p.shape[0]
    text = pipe.null_embedding(n)
    kind = pipe.scheduler.config.prediction_type
    train = DDPMScheduler.from_config(pipe.scheduler.config)
    g = torch.Generator().manual_seed(0)
    results: dict = {"model": args.model, "prediction_type": kind,
                     "data_std_per_channel": t.std(dim=(0, 2, 3)).round(decimals=3).tolist(),
                     "loss_per_channel": {}}
    x0 = stitch(p, t)
    for step in TIMESTEPS:
        noise = torch.randn(x0.shape, generator=g)
        ts = torch.full((n,), step)
        target = train.get_velocity(x0, noise, ts) if kind == "v_prediction" else noise
        pred = pipe.unet(train.add_noise(x0, noise, ts), ts, encoder_hidden_states=text).sample
        loss = ((split(pred)[1] - split(target)[1]) ** 2).mean(dim=(0, 2, 3))
        a = float(train.alphas_cumprod[step])
        results["loss_per_channel"][step] = {
            "loss": loss.round(decimals=4).tolist(),
            "epsilon_error_gain_into_x0": round(((1 - a) / a) ** 0.5, 2)}
    sched = pipe.scheduler
    rows = []
    for start in STARTS:
        sched.set_timesteps(args.steps)
        steps = [s for s in sched.timesteps if s <= start]
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(t.shape, generator=g)
        x = noise if start >= 999 else sched.add_noise(t, noise, torch.tensor([steps[0]]))
        estimates = []
        for s in steps:
            known = sched.add_noise(p, torch.randn(p.shape, generator=g), torch.tensor([s]))
            canvas = stitch(known, x)
            pred = pipe.unet(sched.scale_model_input(canvas, s), s,
                             encoder_hidden_states=text).sample
            r = sched.step(pred, s, canvas)
            x = split(r.prev_sample)[1]
            estimates.append(split(r.pred_original_sample)[1][:1])
        rows.append(_row(pipe.decode_latents(x)))
        if start >= 999:
            results["sample_std_per_channel"] = x.std(dim=(0, 2, 3)).round(decimals=3).tolist()
            picks = [estimates[int(k * (len(estimates) - 1) / 3)] for k in range(4)]
            rows.append(_row(pipe.decode_latents(torch.cat(picks))))
    rows.append(_row(batch["target"]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in rows]
    save_image(np.concatenate(rows, 0), out / "samples.png")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
