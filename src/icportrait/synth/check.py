"""`icportrait data check` and `data preview`: is a synthetic dataset complete and exact?"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from icportrait.synth.correspondence import bilinear, compose_flows, reprojection_error
from icportrait.synth.dataset import SynthDataset


def check_dataset(root: str | Path, pairs: int = 64, seed: int = 0) -> dict:
    """Counts, and the accuracy of the ground-truth flow on ``pairs`` random view pairs.

    * ``reprojection_px``: warp the source view's surface coordinates into the target with
      the GT flow and project them with the target camera: distance to the target pixel.
    * ``photometric_mae``: warp the source image (same light) into the target with the GT
      flow: mean absolute difference to the target on valid pixels (0-255), next to the
      difference without warping (identity flow) for scale.
    * ``round_trip_px``: follow target -> source -> target; distance to the start.
    """
    ds = SynthDataset(root)
    cfg = ds.manifest["config"]
    rng = np.random.default_rng(seed)
    reproj, round_trip, photo, photo_unwarped, valid_frac = [], [], [], [], []
    n_pairs = 0
    if ds.num_views >= 2:
        for _ in range(pairs):
            i = int(rng.integers(ds.num_identities))
            vt, vs = (int(x) for x in rng.choice(ds.num_views, 2, replace=False))
            d = ds.identity(i)
            flow, valid = ds.flow(i, vt, vs)
            back, back_valid = ds.flow(i, vs, vt)
            tgt_cam = ds.camera(i, vt)
            reproj.append(reprojection_error(flow, valid, d["surface_xyz"][vs].astype(np.float32),
                                             tgt_cam))
            land, ok = compose_flows(flow, valid, back, back_valid)
            ys, xs = np.nonzero(ok)
            round_trip.append(np.hypot(land[0][ok] - xs, land[1][ok] - ys))
            src_rgb, tgt_rgb = d["rgb"][vs, 0].astype(np.float64), d["rgb"][vt, 0]
            warped, wok = bilinear(src_rgb, flow)
            m = valid & wok
            if m.any():
                photo.append(np.abs(warped[m] - tgt_rgb[m]).mean())
                photo_unwarped.append(np.abs(src_rgb[m] - tgt_rgb[m]).mean())
            valid_frac.append(valid.mean())
            n_pairs += 1

    def stats(chunks: list[np.ndarray]) -> dict:
        a = np.concatenate(chunks) if chunks else np.zeros(0)
        if not a.size:
            return {"n": 0}
        return {"n": int(a.size), "median": round(float(np.median(a)), 4),
                "mean": round(float(a.mean()), 4), "p95": round(float(np.percentile(a, 95)), 4)}

    return {
        "root": str(ds.root),
        "identities": ds.num_identities,
        "identities_expected": cfg["identities"],
        "shards_complete": len(ds.shards),
        "shards_expected": len(ds.manifest["shards"]),
        "views": ds.num_views, "lights": ds.num_lights, "size": ds.size,
        "pairs_checked": n_pairs,
        "valid_fraction_mean": round(float(np.mean(valid_frac)), 4) if valid_frac else None,
        "reprojection_px": stats(reproj),
        "round_trip_px": stats(round_trip),
        "photometric_mae": round(float(np.mean(photo)), 3) if photo else None,
        "photometric_mae_unwarped": round(float(np.mean(photo_unwarped)), 3)
        if photo_unwarped else None,
    }


def preview_grid(root: str | Path, identities: int = 6, columns: int = 8) -> np.ndarray:
    """A grid image: one row per identity, columns running over views and lights."""
    ds = SynthDataset(root)
    rows = []
    for i in range(min(identities, ds.num_identities)):
        rgb = ds.identity(i)["rgb"]  # V, L, S, S, 3
        tiles = [rgb[v, li] for v in range(rgb.shape[0]) for li in range(rgb.shape[1])]
        tiles = tiles[:columns]
        tiles += [np.zeros_like(tiles[0])] * (columns - len(tiles))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)
