"""Autoencoder fidelity on real faces: what the model's VAE keeps of a person.

    .venv/bin/python benchmarks/autoencoder_fidelity.py --images DIR [--model DIR]
        [--synthetic DATA --synthetic-count 64] [--json OUT.json]

For every photo under ``DIR`` (any layout, one face each; the largest is used) the face is
aligned by the face toolkit at the model's resolution, encoded and decoded by the model's
VAE (posterior mean, as the pipeline does), and compared with the aligned crop:

* ``psnr`` and ``ssim`` (icportrait.evaluation.image_metrics, 8-bit RGB);
* ``id_shift``: dlib descriptor distance between the crop and its reconstruction (faces
  upscaled to 256 px to be read, as in evaluation); dlib's same-person threshold is 0.6.

``--synthetic`` adds the first views of a synthetic dataset (``data synth``), which are
already framed like aligned crops. Encode and decode times are per image, on this machine's
threads. Nothing here is tuned to the images given: any folder works.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from icportrait.conditioning import vae_decode, vae_encode
from icportrait.errors import FaceError
from icportrait.evaluation import image_metrics as im
from icportrait.evaluation.scoring import read_face
from icportrait.faces import identity_distance, prepare_face
from icportrait.io import PHOTO_SUFFIXES, load_image
from icportrait.store import default_model_path, load_pipeline


@torch.no_grad()
def reconstruct(vae, crop: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``crop`` through the VAE; returns the reconstruction and encode/decode seconds."""
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1
    t0 = time.perf_counter()
    z = vae_encode(vae, x.to(vae.device))
    t1 = time.perf_counter()
    rec = vae_decode(vae, z)
    t2 = time.perf_counter()
    out = (rec[0].permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return out, t1 - t0, t2 - t1


def score(vae, crop: np.ndarray) -> dict:
    rec, t_enc, t_dec = reconstruct(vae, crop)
    a, b = read_face(crop), read_face(rec)
    shift = None if a is None or b is None else round(
        identity_distance(a.embedding, b.embedding), 4)
    return {"psnr": round(im.psnr(crop, rec), 3), "ssim": round(im.ssim(crop, rec), 4),
            "id_shift": shift, "encode_ms": round(t_enc * 1000, 2),
            "decode_ms": round(t_dec * 1000, 2)}, rec


def summarize(rows: list[dict]) -> dict:
    out = {"n": len(rows)}
    for key in ("psnr", "ssim", "id_shift", "encode_ms", "decode_ms"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        out[key] = round(statistics.fmean(vals), 4) if vals else None
        if key == "id_shift":
            out["id_read"] = len(vals)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True, help="folder of photos, any layout")
    ap.add_argument("--model", type=Path, default=None, help="pipeline folder (default: embedded)")
    ap.add_argument("--synthetic", type=Path, default=None, help="a `data synth` folder")
    ap.add_argument("--synthetic-count", type=int, default=64)
    ap.add_argument("--save", type=Path, default=None, help="write crop|reconstruction PNGs")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    pipe = load_pipeline(args.model)
    vae, size = pipe.vae, pipe.resolution
    # warm-up: the first pass pays one-off allocation costs
    reconstruct(vae, np.zeros((size, size, 3), np.uint8))
    rows = []
    for path in sorted(p for p in args.images.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES):
        try:
            crop = prepare_face(load_image(path), size=size).image
        except FaceError as exc:
            rows.append({"image": str(path.relative_to(args.images)), "error": str(exc)})
            continue
        row, rec = score(vae, crop)
        rows.append({"image": str(path.relative_to(args.images)), **row})
        if args.save:
            from icportrait.io import save_image

            save_image(np.concatenate([crop, rec], axis=1),
                       args.save / f"{path.stem}.png")
    scored = [r for r in rows if "error" not in r]
    result = {"model": str(args.model or default_model_path()), "resolution": size,
              "latent_channels": vae.config.latent_channels, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(),
              "photos": rows, "photos_mean": summarize(scored)}
    if args.synthetic is not None:
        from icportrait.data.images import ViewImages

        views = ViewImages(args.synthetic)
        n = min(args.synthetic_count, len(views))
        step = max(1, len(views) // n)
        synth = []
        for k in range(0, step * n, step):
            img = (views[k]["image"].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            synth.append(score(vae, img)[0])
        result["synthetic_mean"] = summarize(synth)
    for r in rows:
        if "error" in r:
            print(f"{r['image']}: {r['error']}")
        else:
            print(f"{r['image']}: PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, "
                  f"id shift {r['id_shift']}, decode {r['decode_ms']:.1f} ms")
    print("photos:", json.dumps(result["photos_mean"]))
    if "synthetic_mean" in result:
        print("synthetic:", json.dumps(result["synthetic_mean"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
