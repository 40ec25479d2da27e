"""Face detection benchmark: recall and false positives on composites with known faces.

    .venv/bin/python benchmarks/face_detection.py [--photos DIR] [--images 40]
        [--detector all] [--json OUT.json] [--save DIR]

Each composite is a real background (1280 x 886) with up to six faces pasted where they do
not overlap (icportrait.evaluation.face_composites): real portraits' heads turned in the
image plane, and the same faces lifted to textured meshes and rendered at a yaw. Sizes are
drawn log-uniformly in 32-256 px, rolls in +-90 degrees, yaws in +-60 degrees. Portraits
and backgrounds: the bundled public-domain portraits and scikit-image's scenes, plus every
single-face colour photo and every face-free photo of a `data photos` corpus given with --photos.
Reports recall by face size, roll and yaw bin, false positives per image and time per
megapixel.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from icportrait.evaluation.face_composites import Portrait, composite, score_detections
from icportrait.faces import detect_faces
from icportrait.faces.detect import DETECTORS
from icportrait.faces.samples import SAMPLE_NAMES, load_sample
from icportrait.io import atomic_write_text, load_image, save_image

SIZE_BINS = (32, 48, 64, 96, 128, 256)
ROLL_BINS = (0, 15, 30, 45, 60, 90)
YAW_BINS = (0, 15, 30, 45, 60)
CANVAS = (886, 1280)  # height, width: the group photo


def _sources(photos: Path | None) -> tuple[list[Portrait], list[np.ndarray]]:
    from skimage import data

    portraits = [Portrait.of(n, load_sample(n)) for n in SAMPLE_NAMES]
    backgrounds = [getattr(data, n)() for n in ("coffee", "chelsea", "rocket", "brick",
                                                "grass", "hubble_deep_field")]
    if photos is not None:
        from icportrait.data.photos import read_manifest

        for p in read_manifest(photos)["photos"]:
            image = load_image(photos / p["file"])
            name = Path(p["file"]).stem
            colour = np.ptp(image.astype(np.int16), axis=2).mean() > 2
            if len(p["faces"]) == 1 and colour and not any(name.endswith(s)
                                                           for s in SAMPLE_NAMES):
                portraits.append(Portrait.of(name, image))
            elif not p["faces"]:
                backgrounds.append(image)
    rgb = [b if b.ndim == 3 else np.repeat(b[..., None], 3, 2) for b in backgrounds]
    return portraits, [np.ascontiguousarray(b[..., :3]) for b in rgb]


def _bin(value: float, edges: tuple) -> str:
    for lo, hi in itertools.pairwise(edges):
        if lo <= value < hi or (hi == edges[-1] and value == hi):
            return f"{lo}-{hi}"
    return f">={edges[-1]}"


def _recall(rows: list[dict], key: str, edges: tuple, where=lambda r: True) -> dict:
    bins: dict[str, list[bool]] = {}
    for r in rows:
        if where(r):
            bins.setdefault(_bin(abs(r[key]), edges), []).append(r["found"])
    return {k: {"recall": round(float(np.mean(v)), 3), "faces": len(v)}
            for k, v in sorted(bins.items(), key=lambda kv: float(kv[0].split("-")[0]
                                                                  .lstrip(">=")))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, help="A `data photos` corpus (more faces and "
                                                "backgrounds).")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--faces-per-image", type=int, default=6)
    ap.add_argument("--detector", default="all", choices=DETECTORS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--save", type=Path, help="Write the composites here (PNG).")
    args = ap.parse_args()

    portraits, backgrounds = _sources(args.photos)
    rng = np.random.default_rng(args.seed)
    rows, false_pos, seconds, megapixels = [], [], 0.0, 0.0
    for k in range(args.images):
        bg = backgrounds[k % len(backgrounds)]
        bg = cv2.resize(bg, CANVAS[::-1], interpolation=cv2.INTER_AREA)
        image, faces = composite(bg, portraits, rng, args.faces_per_image, sizes=(32, 256),
                                 rolls=(-90, 90), yaws=(-60, 60))
        t0 = time.perf_counter()
        boxes = detect_faces(image, args.detector)
        seconds += time.perf_counter() - t0
        megapixels += image.shape[0] * image.shape[1] / 1e6
        found, fp = score_detections(faces, boxes)
        false_pos.append(fp)
        rows += [{"size": f.size, "roll": f.roll, "yaw": f.yaw, "source": f.source,
                  "found": ok} for f, ok in zip(faces, found, strict=True)]
        if args.save:
            save_image(image, args.save / f"composite_{k:03d}.png")
    target = lambda r: r["size"] >= 48 and abs(r["roll"]) <= 45  # noqa: E731
    report = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "detector": args.detector, "images": args.images, "faces": len(rows),
        "portraits": [p.name for p in portraits], "backgrounds": len(backgrounds),
        "recall_target_faces": round(float(np.mean([r["found"] for r in rows if target(r)])),
                                     3),
        "recall_by_size": _recall(rows, "size", SIZE_BINS),
        "recall_by_size_roll_le_45": _recall(rows, "size", SIZE_BINS,
                                             lambda r: abs(r["roll"]) <= 45),
        "recall_by_roll_size_ge_48": _recall(rows, "roll", ROLL_BINS,
                                             lambda r: r["size"] >= 48),
        "recall_by_yaw_target_faces": _recall(rows, "yaw", YAW_BINS, target),
        "false_positives_per_image": round(float(np.mean(false_pos)), 3),
        "seconds_per_megapixel": round(seconds / megapixels, 3),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
