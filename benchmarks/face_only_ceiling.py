"""What a face-only warp can reach on a synthetic suite: the ground-truth warp over parts of
the head.

    .venv/bin/python benchmarks/face_only_ceiling.py [--suite synth-small] [--json OUT.json]

For every sample, the first profile photo is pulled along the exact ground-truth flow onto the
truth's pixels (the ``gt-warp`` baseline, no relighting), kept only over one part of the head
(the template elsewhere; the parts are the truth's region labels), and read with dlib's
descriptor as the evaluation reads faces. Per part, as ``eval`` scores a method: the mean
distance to the truth, rank-1 (is the nearest of the suite's identities, by their mean profile
descriptors, the profile's own?) and PSNR to the truth (the whole image):

* ``whole head``: the ``gt-warp`` baseline;
* ``face``: skin, eyes, brows, lips, nostrils and beard, i.e. what a face swap replaces;
* ``face + glasses``, ``face + hair``: what a wider transfer would add;
* ``not face``: hair, ears, neck, glasses, clothing;
* ``nothing``: the template unchanged;
* ``the truth``: the ground-truth render itself, the best any method can score.

A method that only replaces the face cannot beat the ``face`` figures with a perfect flow.
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
    from icportrait.evaluation.image_metrics import psnr
    from icportrait.evaluation.scoring import mean_embedding, read_face
    from icportrait.evaluation.suites import SYNTH_SUITES, cache_dir, load_suite, synth_dataset
    from icportrait.synth.head import REGIONS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="synth-small", choices=sorted(SYNTH_SUITES))
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    data = synth_dataset(SYNTH_SUITES[args.suite], cache_dir())
    features = [REGIONS[k] for k in ("skin", "eye", "brow", "lips", "nostril", "beard")]
    samples = load_suite(args.suite)
    gallery = {}
    for sample in samples:
        if sample.identity not in gallery:
            mean = mean_embedding([read_face(p) for p in sample.profile])
            if mean is not None:
                gallery[sample.identity] = mean
    names = list(gallery)
    bank = np.stack([gallery[n] for n in names])
    scores: dict[str, dict[str, list[float]]] = {}
    for sample in samples:
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
        images = {name: part_warp(sample, keep) for name, keep in parts.items()}
        images["the truth"] = sample.truth
        for name, image in images.items():
            s = scores.setdefault(name, {"distance": [], "rank1": [], "psnr": []})
            if image is not sample.truth:  # the truth's own PSNR is infinite
                s["psnr"].append(psnr(image, sample.truth))
            reading = read_face(image)
            if reading is None:  # no face read: not identified, as in eval
                s["rank1"].append(0.0)
                continue
            s["distance"].append(float(np.linalg.norm(reading.embedding - truth.embedding)))
            nearest = names[int(np.argmin(np.linalg.norm(bank - reading.embedding, axis=1)))]
            s["rank1"].append(float(nearest == sample.identity))
    report = {name: {"id_to_truth": round(float(np.mean(s["distance"])), 4)
                     if s["distance"] else None,
                     "rank1": round(float(np.mean(s["rank1"])), 4),
                     "psnr": round(float(np.mean(s["psnr"])), 2) if s["psnr"] else None,
                     "faces_read": len(s["distance"]), "samples": len(s["rank1"])}
              for name, s in scores.items()}
    for name, r in report.items():
        dist = "-" if r["id_to_truth"] is None else f"{r['id_to_truth']:.3f}"
        quality = "-" if r["psnr"] is None else f"{r['psnr']:.1f} dB"
        print(f"{name:>14}: ID -> truth {dist}, rank-1 {r['rank1']:.2f}, PSNR {quality} "
              f"({r['faces_read']}/{r['samples']} faces read)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"suite": args.suite, "parts": report}, f, indent=2)


if __name__ == "__main__":
    main()
