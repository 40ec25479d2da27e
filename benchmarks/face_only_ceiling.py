"""What a face-only warp can reach on a synthetic suite: the ground-truth warp over parts of
the head.

    .venv/bin/python benchmarks/face_only_ceiling.py [--suite synth-small] [--json OUT.json]

For every sample, the first profile photo is pulled along the exact ground-truth flow onto the
truth's pixels (the ``gt-warp`` baseline, no relighting), kept only over one part of the head
(the template elsewhere; the parts are the truth's region labels), and read with dlib's
descriptor as the evaluation reads faces. The mean distance to the truth, per part:

* ``whole head``: the ``gt-warp`` baseline;
* ``face``: skin, eyes, brows, lips, nostrils and beard, i.e. what a face swap replaces;
* ``face + glasses``, ``face + hair``: what a wider transfer would add;
* ``not face``: hair, ears, neck, glasses, clothing;
* ``nothing``: the template unchanged.

A method that only replaces the face cannot beat the ``face`` figure with a perfect flow.
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
    from icportrait.evaluation.suites import SYNTH_SUITES, cache_dir, load_suite, synth_dataset
    from icportrait.synth.head import REGIONS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="synth-small", choices=sorted(SYNTH_SUITES))
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    data = synth_dataset(SYNTH_SUITES[args.suite], cache_dir())
    features = [REGIONS[k] for k in ("skin", "eye", "brow", "lips", "nostril", "beard")]
    distances: dict[str, list[float]] = {}
    for sample in load_suite(args.suite):
        truth = read_face(sample.truth)
        if truth is None:
            continue
        region = data.identity(int(sample.identity.split("-")[1]))["region"][
            sample.meta["template_view"]]
        face = np.isin(region, features)
        parts = {"whole head": np.ones_like(face), "face": face,
                 "face + glasses": face | (region == REGIONS["glasses"]),
                 "face + hair": face | (region == REGIONS["hair"]), "not face": ~face,
                 "nothing": np.zeros_like(face)}
        for name, keep in parts.items():
            reading = read_face(part_warp(sample, keep))
            if reading is not None:
                distances.setdefault(name, []).append(
                    float(np.linalg.norm(reading.embedding - truth.embedding)))
    report = {name: {"id_to_truth": round(float(np.mean(d)), 4), "faces_read": len(d)}
              for name, d in distances.items() if d}
    for name, r in report.items():
        print(f"{name:>14}: ID -> truth {r['id_to_truth']:.3f} ({r['faces_read']} faces read)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": args.suite, "parts": report}, f, indent=2)


if __name__ == "__main__":
    main()
