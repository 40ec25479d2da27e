"""Face toolkit benchmark: detection rate and timing, head-pose accuracy, identity distances.

    .venv/bin/python benchmarks/faces_benchmark.py [--json OUT.json]

Inputs are the two public-domain portraits that ship in packages and transformations of them.

Pose accuracy needs images of known pose. Each portrait's face is lifted to a textured 3D mesh
(mediapipe's 468 points with depth) and rendered turned by known rotations R; the expected pose
of a render is R composed with the pose estimated on the unturned render, so this measures
*relative* accuracy (absolute pitch is a convention calibrated on frontal photos, see
icportrait.faces.head_template). Two numbers per axis: end to end (landmarks found again on the
render) and the solver alone (PnP on the exact projected mesh vertices).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import cv2
import numpy as np

from icportrait.faces import (
    HeadPose,
    analyze_faces,
    detect_faces,
    face_embedding,
    face_mesh,
    head_pose,
    identity_distance,
    matrix_to_pose,
    pose_to_matrix,
    prepare_face,
    select_face,
)
from icportrait.faces.pose import solve_rotation
from icportrait.faces.samples import SAMPLE_NAMES, load_sample
from icportrait.synth.photo_lift import lift_face, render_lifted
from report import emit


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    out = {"original": image, "mirrored": np.ascontiguousarray(image[:, ::-1])}
    for angle in (-30, -15, 15, 30):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        out[f"rotated {angle:+d}"] = cv2.warpAffine(image, m, (w, h),
                                                    borderMode=cv2.BORDER_REFLECT_101)
    for s in (0.5, 2.0):
        out[f"scaled x{s}"] = cv2.resize(image, (int(w * s), int(h * s)),
                                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    out["grayscale"] = np.repeat(gray[..., None], 3, axis=2)
    _, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 20])
    out["jpeg q20"] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    out["blur 2px"] = cv2.GaussianBlur(image, (0, 0), 2.0)
    out["dark x0.4"] = (image * 0.4).astype(np.uint8)
    out["bright +60"] = np.clip(image.astype(int) + 60, 0, 255).astype(np.uint8)
    return out


def timed(fn, repeats: int = 5):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, statistics.median(times)


def bench_detection() -> dict:
    rows, timings = [], {"detect": [], "mesh": [], "pose": [], "prepare": [], "embedding": []}
    for name in SAMPLE_NAMES:
        base = load_sample(name)
        for label, image in variants(base).items():
            faces = analyze_faces(image)
            found = bool(faces) and faces[0].mesh is not None
            rows.append({"image": f"{name} / {label}", "found": found, "faces": len(faces)})
        boxes, t = timed(lambda b=base: detect_faces(b))
        timings["detect"].append(t)
        mesh, t = timed(lambda b=base, bx=boxes[0]: face_mesh(b, bx))
        timings["mesh"].append(t)
        _, t = timed(lambda b=base, m=mesh: head_pose(m, b.shape))
        timings["pose"].append(t)
        _, t = timed(lambda b=base: prepare_face(b, size=256))
        timings["prepare"].append(t)
        _, t = timed(lambda b=base, bx=boxes[0]: face_embedding(b, bx))
        timings["embedding"].append(t)
    rate = sum(r["found"] for r in rows) / len(rows)
    return {
        "detection_rate": rate,
        "n_images": len(rows),
        "misses": [r["image"] for r in rows if not r["found"]],
        "median_seconds": {k: round(statistics.median(v), 4) for k, v in timings.items()},
    }


def bench_pose() -> dict:
    grid = [(y, p) for y in (-45, -30, -15, 0, 15, 30, 45) for p in (-20, -10, 0, 10, 20)]
    errs = {"end_to_end": [], "solver_only": []}
    misses = 0
    for name in SAMPLE_NAMES:
        image = load_sample(name)
        lifted = lift_face(image, face_mesh(image, detect_faces(image)[0]))
        c = lifted.center

        def exact_rotation(turn, lifted=lifted, c=c, shape=image.shape):
            verts = (lifted.vertices - c) @ turn.T + c
            return solve_rotation(np.vstack([verts, np.zeros((10, 3))]), shape)

        # Each kind is compared with its own estimate on the unturned face.
        ref_render = render_lifted(lifted, np.eye(3))
        r0 = solve_rotation(face_mesh(ref_render, select_face(detect_faces(ref_render))),
                            image.shape)
        r0_exact = exact_rotation(np.eye(3))
        for yaw, pitch in grid:
            turn = pose_to_matrix(HeadPose(yaw, pitch, 0.0))
            errs["solver_only"].append(_errors(exact_rotation(turn), turn @ r0_exact))
            render = render_lifted(lifted, turn)
            faces = detect_faces(render)
            if not faces:
                misses += 1
                continue
            est = solve_rotation(face_mesh(render, faces[0]), image.shape)
            errs["end_to_end"].append(_errors(est, turn @ r0))
    out = {"grid": "yaw -45..45 step 15 x pitch -20..20 step 10, 2 portraits",
           "renders_without_face": misses}
    for kind, e in errs.items():
        arr = np.abs(np.array(e))
        out[kind] = {
            axis: {"mean_abs": round(float(arr[:, i].mean()), 2),
                   "median_abs": round(float(np.median(arr[:, i])), 2),
                   "max_abs": round(float(arr[:, i].max()), 2)}
            for i, axis in enumerate(("yaw", "pitch", "roll", "angle"))
        }
        out[kind]["n"] = len(e)
    return out


def _errors(est_rot: np.ndarray, true_rot: np.ndarray) -> list[float]:
    """Per-angle errors and the geodesic angle between the two rotations, in degrees."""
    est, truth = matrix_to_pose(est_rot), matrix_to_pose(true_rot)

    def wrap(a: float) -> float:
        return (a + 180.0) % 360.0 - 180.0

    cos = np.clip((np.trace(est_rot.T @ true_rot) - 1) / 2, -1.0, 1.0)
    return [wrap(est.yaw - truth.yaw), wrap(est.pitch - truth.pitch),
            wrap(est.roll - truth.roll), float(np.degrees(np.arccos(cos)))]


def bench_identity() -> dict:
    emb = {}
    for name in SAMPLE_NAMES:
        for label, image in variants(load_sample(name)).items():
            faces = detect_faces(image)
            if faces:
                emb[(name, label)] = face_embedding(image, select_face(faces, min_size=0))
    same, diff = [], []
    keys = list(emb)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            (same if a[0] == b[0] else diff).append(identity_distance(emb[a], emb[b]))
    return {
        "same_person": {"n": len(same), "median": round(statistics.median(same), 3),
                        "max": round(max(same), 3)},
        "different_person": {"n": len(diff), "median": round(statistics.median(diff), 3),
                             "min": round(min(diff), 3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "detection": bench_detection(),
        "pose": bench_pose(),
        "identity": bench_identity(),
    }
    emit(results, args.json)


if __name__ == "__main__":
    main()
