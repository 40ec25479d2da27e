"""Procedural heads: render throughput and how real they look to dlib.

    .venv/bin/python benchmarks/synth_realism.py --identities 40 --views 4 \
        --grid synth_grid.png [--json OUT.json] [--seed 0]

Measures, printing one JSON object:

* ``build_s_per_head``: building one identity (mesh + painted 1024² texture);
* ``throughput``: rendered views per second at 128 and 256 px, one process, heads already
  built. Each view includes uploading uniforms, drawing, reading back and post-processing
  every output (rgb, alpha, depth, normals, surface_xyz, region) with a random rotation and
  random lighting; a head's first upload is excluded (done once per identity);
* ``detection``: fraction of 256 px views (|yaw| <= max-yaw) where dlib's HOG detector
  (``detect_faces(img, "dlib")``) and the toolkit's default (``"auto"``: mediapipe, then
  dlib) find a face; ``dlib_by_yaw`` splits dlib's rate into 10-degree yaw bins;
* ``identity``: dlib 128-d descriptors on the detected views; ``separability`` is the
  fraction of random triplets (A view i, A view j, B view k) with d(Ai, Aj) < d(Ai, Bk), and
  the median same- and different-identity distances (dlib's same-person threshold is 0.6).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from icportrait.faces import (
    HeadPose,
    detect_faces,
    face_embedding,
    identity_distance,
    pose_to_matrix,
)
from icportrait.synth.head import build_head, sample_head_params
from icportrait.synth.raster import Renderer, random_lighting
from report import emit


def random_pose(rng: np.random.Generator, max_yaw: float) -> HeadPose:
    return HeadPose(float(rng.uniform(-max_yaw, max_yaw)), float(rng.uniform(-10, 10)),
                    float(rng.uniform(-6, 6)))


def throughput(renderer: Renderer, heads: list, size: int, n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    jobs = [(heads[i % len(heads)], pose_to_matrix(random_pose(rng, 45)), random_lighting(rng))
            for i in range(n)]
    for h in heads:  # upload once per identity, outside the timing
        renderer.render(h, np.eye(3), size)
    t = time.perf_counter()
    for head, rot, light in jobs:
        renderer.render(head, rot, size, lighting=light)
    return n / (time.perf_counter() - t)


def dlib_default_detects(img: np.ndarray) -> bool:
    """dlib's own judgement: its HOG detector at its default operating point (threshold 0,
    one upsampling), as `dlib.get_frontal_face_detector()(img, 1)` runs it."""
    from icportrait.faces import _backends

    return len(_backends.dlib_hog_detector()(img, 1)) > 0


def best_box(img: np.ndarray) -> tuple[object | None, bool, bool, bool]:
    """The face box to embed (dlib's if it fires, else the default detector's), and whether
    dlib (toolkit threshold), dlib (its default threshold) and mediapipe found a face."""
    dl = detect_faces(img, "dlib")
    auto = detect_faces(img, "auto")
    box = max(dl, key=lambda b: b.area) if dl else (max(auto, key=lambda b: b.area)
                                                    if auto else None)
    return box, bool(dl), dlib_default_detects(img), bool(auto)


def separability(emb: dict[tuple[int, int], np.ndarray], n_triplets: int,
                 rng: np.random.Generator) -> dict[str, float]:
    by_id: dict[int, list[np.ndarray]] = {}
    for (i, _), e in emb.items():
        by_id.setdefault(i, []).append(e)
    ids = [i for i, es in by_id.items() if len(es) >= 2]
    same = [identity_distance(a, b) for i in ids for k, a in enumerate(by_id[i])
            for b in by_id[i][k + 1:]]
    keys = list(by_id)
    diff = [identity_distance(by_id[a][0], by_id[b][0]) for k, a in enumerate(keys)
            for b in keys[k + 1:]]
    wins = 0
    for _ in range(n_triplets):
        a, b = rng.choice(ids), rng.choice(keys)
        while b == a:
            b = rng.choice(keys)
        i, j = rng.choice(len(by_id[a]), 2, replace=False)
        k = rng.integers(len(by_id[b]))
        wins += identity_distance(by_id[a][i], by_id[a][j]) \
            < identity_distance(by_id[a][i], by_id[b][k])
    return {
        "separability": wins / max(n_triplets, 1),
        "median_same": float(np.median(same)) if same else float("nan"),
        "median_different": float(np.median(diff)) if diff else float("nan"),
        "same_below_0.6": float(np.mean(np.asarray(same) < 0.6)) if same else float("nan"),
        "different_below_0.6": float(np.mean(np.asarray(diff) < 0.6)) if diff else float("nan"),
        "identities_used": len(ids),
    }


def save_grid(path: str, images: list[list[np.ndarray]]) -> None:
    from PIL import Image

    rows = [np.concatenate(r, axis=1) for r in images]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=40)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--max-yaw", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--throughput-views", type=int, default=400)
    ap.add_argument("--triplets", type=int, default=4000)
    ap.add_argument("--grid", default=None, help="write a preview grid PNG here")
    ap.add_argument("--grid-rows", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    params = [sample_head_params(rng) for _ in range(args.identities)]
    t = time.perf_counter()
    heads = [build_head(p) for p in params]
    build_s = (time.perf_counter() - t) / len(heads)
    renderer = Renderer()

    tp = {str(s): round(throughput(renderer, heads[:8], s, args.throughput_views, args.seed), 1)
          for s in (128, 256)}

    found_dlib = found_default = found_auto = total = 0
    yaw_bins: dict[str, list[int]] = {}
    bin_width = 10.0
    emb: dict[tuple[int, int], np.ndarray] = {}
    grid: list[list[np.ndarray]] = []
    t = time.perf_counter()
    for i, head in enumerate(heads):
        row = []
        for v in range(args.views):
            pose = random_pose(rng, args.max_yaw)
            img = renderer.render(head, pose_to_matrix(pose), args.size,
                                  lighting=random_lighting(rng), geometry=False)["rgb"]
            box, dl, dl_default, auto = best_box(img)
            total += 1
            found_default += dl_default
            lo = bin_width * np.floor(pose.yaw / bin_width)
            yaw_bins.setdefault(f"[{lo:+.0f},{lo + bin_width:+.0f})", []).append(int(dl))
            found_dlib += dl
            found_auto += auto
            if box is not None:
                emb[(i, v)] = face_embedding(img, box)
            row.append(img)
        if i < args.grid_rows:
            grid.append(row)
    eval_s = time.perf_counter() - t
    if args.grid:
        save_grid(args.grid, grid)
    sep = separability(emb, args.triplets, np.random.default_rng(args.seed + 1))
    hair = {s: sum(p.hair_style == s for p in params) for s in {p.hair_style for p in params}}
    result = {
        "command": "benchmarks/synth_realism.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "machine": platform.platform(),
        "gl_renderer": renderer.ctx.info["GL_RENDERER"],
        "build_s_per_head": round(build_s, 3),
        "throughput_views_per_s": tp,
        "views": total,
        # dlib_default: dlib's own operating point (the bar); dlib_toolkit: the face
        # toolkit's stricter threshold (0.3) that real-photo detection uses.
        "detection_rate": {"dlib_default": round(found_default / total, 3),
                           "dlib_toolkit": round(found_dlib / total, 3),
                           "auto": round(found_auto / total, 3)},
        "dlib_by_yaw": {k: f"{sum(v)}/{len(v)} = {sum(v) / len(v):.2f}"
                        for k, v in sorted(yaw_bins.items(), key=lambda kv: float(
                            kv[0][1:].split(",")[0]))},
        "identity": {k: round(v, 3) if isinstance(v, float) else v for k, v in sep.items()},
        "eval_s": round(eval_s, 1),
        "hair_styles": hair,
        "glasses": sum(p.glasses for p in params),
        "facial_hair": sum(p.facial_hair != "none" for p in params),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
