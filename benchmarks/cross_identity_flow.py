"""Matching across two synthetic identities: PCK of a model's flow, template -> profile.

Pairs of two different identities of a rendered dataset (``data synth``; held-out identities,
e.g. the validation set), the template in another view within ``--max-yaw-gap`` of the
profile's yaw. The ground truth is the same point of the face on both heads
(``SynthDataset.cross_flow``). PCK at 5% and 10% of the face width, beside "no motion";
optionally with another locality prior.

    python benchmarks/cross_identity_flow.py --data VAL [--model DIR] [--pairs 48]
        [--locality 0.02 0.05] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from icportrait.io import atomic_write_text
from icportrait.store import load_pipeline
from icportrait.synth.dataset import SynthDataset
from icportrait.training.validation import matching_pck


def pairs(ds: SynthDataset, n: int, max_gap: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)

    def img(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255

    items = []
    while len(items) < n:
        i, j = (int(x) for x in rng.choice(ds.num_identities, 2, replace=False))
        a, b = (int(x) for x in rng.choice(ds.num_views, 2, replace=False))
        if abs(float(ds.pose(i, a)[0] - ds.pose(j, b)[0])) > max_gap:
            continue
        flow, valid = ds.cross_flow(j, b, i, a)
        # matching_pck reads the template as "target" and its flow to the profile
        items.append({"profile": img(ds.image(i, a, 0)), "target": img(ds.image(j, b, 0)),
                      "flow": torch.from_numpy(flow), "valid": torch.from_numpy(valid)})
    return items


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--max-yaw-gap", type=float, default=45.0)
    ap.add_argument("--locality", type=float, nargs="*", default=[])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    pipe = load_pipeline(args.model)
    items = pairs(SynthDataset(args.data), args.pairs, args.max_yaw_gap, args.seed)
    out = []
    for loc in args.locality or [pipe.matching_net.config.match_locality]:
        pipe.matching_net.register_to_config(match_locality=loc)
        at5 = matching_pck(pipe, pipe.matching_net, items)
        at10 = matching_pck(pipe, pipe.matching_net, items, threshold=0.10)
        out.append({"locality": loc, "pairs": len(items), "pck5": at5["pck"],
                    "pck10": at10["pck"], "pck5_no_motion": at5["no_motion_pck"],
                    "pck10_no_motion": at10["no_motion_pck"]})
    print(json.dumps(out, indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
