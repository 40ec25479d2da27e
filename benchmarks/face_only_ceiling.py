"""What a face-only warp can reach on a synthetic suite: the ground-truth warp over parts of
the head.

    .venv/bin/python benchmarks/face_only_ceiling.py [--suite synth-small] [--json OUT.json]

For every sample, the first profile photo is pulled along the exact ground-truth flow onto the
truth's pixels (the ``gt-warp`` baseline, no relighting), kept only over one part of the head
(the template elsewhere), and read with dlib's descriptor as the evaluation reads faces. The
mean distance to the truth, per part:

* ``whole head``: the ``gt-warp`` baseline;
* ``skin``: the truth's skin region, i.e. the face a face swap replaces;
* ``not skin``: hair, ears, neck, glasses;
* ``nothing``: the template unchanged.

A method that only replaces the face cannot beat the ``skin`` figure with a perfect flow.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def part_warp(sample, keep: np.ndarray) -> np.ndarray:
    from icportrait.synth.correspondence import bilinear

    warped, ok = bilinear(sample.profile[0].astype(np.float32), sample.flow)
    ok &= sample.valid & keep
    out = sample.template.astype(np.float32)
    out[ok] = warped[ok]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def main() -> None:
    from icportrait.evaluation.scoring import read_face
    from icportrait.evaluation.suites import SYNTH_SUITES, load_suite

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="synth-small", choices=sorted(SYNTH_SUITES))
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    distances: dict[str, list[float]] = {"whole head": [], "skin": [], "not skin": [],
                                         "nothing": []}
    for sample in load_suite(args.suite):
        truth = read_face(sample.truth)
        if truth is None:
            continue
        skin = sample.face_region
        parts = {"whole head": np.ones_like(skin), "skin": skin, "not skin": ~skin,
                 "nothing": np.zeros_like(skin)}
        for name, keep in parts.items():
            reading = read_face(part_warp(sample, keep))
            if reading is not None:
                distances[name].append(float(np.linalg.norm(reading.embedding
                                                             - truth.embedding)))
    report = {name: {"id_to_truth": round(float(np.mean(d)), 4), "faces_read": len(d)}
              for name, d in distances.items() if d}
    for name, r in report.items():
        print(f"{name:>10}: ID -> truth {r['id_to_truth']:.3f} ({r['faces_read']} faces read)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": args.suite, "parts": report}, f, indent=2)


if __name__ == "__main__":
    main()
