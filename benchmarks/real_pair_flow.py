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

from icportrait.evaluation.scoring import landmark_flow_scores
from icportrait.evaluation.suites import Sample
from icportrait.faces import prepare_face
from icportrait.io import PHOTO_SUFFIXES, atomic_write_text, load_image
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
    images = {p: load_image(p) for _, p in photos}
    faces = {p: prepare_face(im, size=size) for p, im in images.items()}
    scores, seconds = [], []
    for (who_p, p), (who_t, t) in itertools.permutations(photos, 2):
        if who_p == who_t:
            continue
        lat = [pipe.encode_images(torch.from_numpy(faces[x].image).permute(2, 0, 1)[None].float()
                                  / 127.5 - 1) for x in (p, t)]
        t0 = time.perf_counter()
        cond = matching_condition(pipe.matching_net, lat[0], lat[1],
                                  torch.zeros_like(lat[1][:, :1]))
        noise = torch.randn(cond.latents.shape, generator=torch.Generator().manual_seed(0))
        flow = finest(compute_flows(pipe.matching_net, cond, pipe.encode_prompt(None, 1),
                                    pipe.scheduler.alphas_cumprod, 200, noise)).flow[0]
        seconds.append(time.perf_counter() - t0)
        # the evaluation's own metric: the model's flow, no motion and the mesh flow
        sample = Sample(id=f"{who_p}-as-{who_t}", profile=[images[p]], template=images[t],
                        identity=who_p, template_identity=who_t)
        scores.append(landmark_flow_scores(flow.cpu(), sample, size))
    if not seconds:
        raise SystemExit(f"{args.photos}: needs photos of at least two people")
    out = {"pairs": len(seconds), "matching_seconds": round(float(np.mean(seconds)), 4),
           **{k: round(float(np.mean([s[k] for s in scores])), 4) for k in scores[0]}}
    print(json.dumps(out, indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
