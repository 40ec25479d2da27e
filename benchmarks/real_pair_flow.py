"""Matching on real photos of different people: landmark PCK of a model's flow.

For every ordered pair of photos of two different people in ``--photos`` (one sub-folder per
person, or one photo per person), both faces aligned by the face toolkit, the model's matching
flow (template -> profile) is read at the template's 478 mesh points and compared with the
profile's same points (docs/evaluation.md, ``landmark_pck5`` / ``landmark_pck10``), beside the
"no motion" and mesh-flow baselines. Optionally overrides the descriptor's locality prior.

    python benchmarks/real_pair_flow.py --photos PEOPLE [--model DIR] [--locality 0.02] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from icportrait.evaluation.scoring import landmark_errors
from icportrait.faces import prepare_face
from icportrait.faces.correspondence import mesh_flow
from icportrait.io import PHOTO_SUFFIXES, atomic_write_text, load_image
from icportrait.models.matching import identity_flow
from icportrait.models.reference import compute_flows, finest, matching_condition
from icportrait.store import load_pipeline


def people(folder: Path) -> list[tuple[str, Path]]:
    photos = [p for p in sorted(folder.rglob("*")) if p.suffix.lower() in PHOTO_SUFFIXES]
    return [(p.parent.name if p.parent != folder else p.stem, p) for p in photos]


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--locality", type=float, default=None,
                    help="descriptor prior (fraction of the width) instead of the model's")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    pipe = load_pipeline(args.model)
    if args.locality is not None:
        pipe.matching_net.register_to_config(match_locality=args.locality)
    size = pipe.resolution
    photos = people(args.photos)
    faces = {p: prepare_face(load_image(p), size=size) for _, p in photos}
    scores: dict[str, list[tuple[float, float]]] = {"model": [], "no_motion": [], "mesh": []}
    seconds = []
    for (who_p, p), (who_t, t) in itertools.permutations(photos, 2):
        if who_p == who_t:
            continue
        prof, tmpl = faces[p], faces[t]
        lat = [pipe.encode_images(torch.from_numpy(f.image).permute(2, 0, 1)[None].float()
                                  / 127.5 - 1) for f in (prof, tmpl)]
        t0 = time.perf_counter()
        cond = matching_condition(pipe.matching_net, lat[0], lat[1],
                                  torch.zeros_like(lat[1][:, :1]))
        noise = torch.randn(cond.latents.shape, generator=torch.Generator().manual_seed(0))
        flow = finest(compute_flows(pipe.matching_net, cond, pipe.encode_prompt(None, 1),
                                    pipe.scheduler.alphas_cumprod, 200, noise)).flow[0]
        seconds.append(time.perf_counter() - t0)
        grid = tuple(flow.shape[-2:])
        tm, pm = tmpl.mesh[:, :2], prof.mesh[:, :2]
        width = float(np.ptp(pm[:, 0]))
        for name, f in (("model", flow.float().numpy()),
                        ("no_motion", identity_flow(1, *grid)[0].numpy()),
                        ("mesh", mesh_flow(tm, pm, grid, size))):
            e = landmark_errors(f, tm, pm, size) / width
            scores[name].append((float(np.mean(e <= 0.05)), float(np.mean(e <= 0.10))))
    if not seconds:
        raise SystemExit(f"{args.photos}: needs photos of at least two people")
    out = {"pairs": len(seconds), "matching_seconds": round(float(np.mean(seconds)), 4),
           **{f"landmark_pck{k}_{name}": round(float(np.mean([s[i] for s in v])), 4)
              for name, v in scores.items() for i, k in enumerate((5, 10))}}
    print(json.dumps(out, indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
