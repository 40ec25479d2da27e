"""Ground-truth dense correspondence between two rendered views of one head.

Every render stores, per pixel, the visible surface point in the head's rest frame
(``surface_xyz``) and its camera depth. Projecting a target view's surface points with the
source view's camera gives, per target pixel, where that point lies in the source image: the
ground-truth flow target -> source, in :mod:`icportrait.models.matching`'s convention
(``(2, H, W)``, source ``(x, y)`` with pixel centres at integers). It is *valid* where the
point is inside the source image and not hidden there (its depth matches the source's depth
map), i.e. visible in both views.

The camera is the renderer's: ``p_cam = R @ (p - pivot) + t``, pinhole with focal
``focal_per_side * size`` and principal point ``(size / 2, size / 2)`` (see
:mod:`icportrait.synth.raster`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Depth agreement (head-frame units; the head is ~1 tall and ~1.8 from the camera) for a point
# to count as visible in the source: a few pixels' worth of surface at 128 px.
DEPTH_TOLERANCE = 0.03


@dataclass(frozen=True)
class ViewCamera:
    rotation: np.ndarray      # 3 x 3, head -> camera
    translation: np.ndarray   # (3,), camera position of the pivot
    pivot: np.ndarray         # (3,), head-frame point the head turns about
    focal_per_side: float
    size: int

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Head-frame points (... x 3) -> pixel coordinates (... x 2) and camera depth (...)."""
        pc = (points - self.pivot) @ np.asarray(self.rotation).T + self.translation
        f = self.focal_per_side * self.size
        with np.errstate(invalid="ignore", divide="ignore"):
            uv = pc[..., :2] / pc[..., 2:3] * f + self.size / 2
        return uv, pc[..., 2]


def ground_truth_flow(
    target_xyz: np.ndarray, source_depth: np.ndarray, source: ViewCamera,
    depth_tolerance: float = DEPTH_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Flow target -> source ``(2, H, W)`` float32 and validity ``(H, W)`` bool.

    ``target_xyz``: the target view's surface map (H x W x 3, NaN on background);
    ``source_depth``: the source view's depth map (H' x W', NaN on background).
    """
    uv, z = source.project(target_xyz.astype(np.float64))
    h, w = source_depth.shape
    finite = np.isfinite(uv).all(-1) & np.isfinite(z)
    u, v = np.nan_to_num(uv[..., 0]), np.nan_to_num(uv[..., 1])
    inside = finite & (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)
    ui = np.clip(np.rint(u), 0, w - 1).astype(np.int64)
    vi = np.clip(np.rint(v), 0, h - 1).astype(np.int64)
    seen = source_depth[vi, ui]
    visible = inside & np.isfinite(seen) & (np.abs(np.nan_to_num(seen) - z) < depth_tolerance)
    flow = np.stack([u, v]).astype(np.float32)
    flow[:, ~visible] = 0.0
    return flow, visible


def bilinear(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``image`` (H x W x C) at flow positions; NaN-aware: a sample is valid only if
    its four neighbours are finite. Returns (values H' x W' x C, valid H' x W')."""
    h, w = image.shape[:2]
    x, y = flow[0], flow[1]
    x0 = np.clip(np.floor(x).astype(np.int64), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(np.int64), 0, h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    img = image.reshape(h, w, -1).astype(np.float64)
    a, b = img[y0, x0], img[y0, x0 + 1]
    c, d = img[y0 + 1, x0], img[y0 + 1, x0 + 1]
    out = a * (1 - fx) * (1 - fy) + b * fx * (1 - fy) + c * (1 - fx) * fy + d * fx * fy
    valid = np.isfinite(out).all(-1)
    return out, valid


def reprojection_error(
    flow: np.ndarray, valid: np.ndarray, source_xyz: np.ndarray, target: ViewCamera,
    max_spread: float = 0.02,
) -> np.ndarray:
    """Per valid target pixel, how far (pixels) the source surface point that the flow points
    at lands from that target pixel when projected into the target view.

    The source point is interpolated bilinearly from the source's surface map; pixels whose
    four neighbours straddle a depth edge (3D spread over ``max_spread``) are skipped, since
    interpolating across an occlusion boundary measures the edge, not the flow.
    """
    pts, ok = bilinear(source_xyz, flow)
    h, w = source_xyz.shape[:2]
    x0 = np.clip(np.floor(flow[0]).astype(np.int64), 0, w - 2)
    y0 = np.clip(np.floor(flow[1]).astype(np.int64), 0, h - 2)
    corners = np.stack([source_xyz[y0, x0], source_xyz[y0, x0 + 1],
                        source_xyz[y0 + 1, x0], source_xyz[y0 + 1, x0 + 1]])
    # NaN corners (background) make the spread NaN, which fails the test below: skipped.
    spread = np.linalg.norm(corners - corners.mean(0), axis=-1).max(axis=0)
    use = valid & ok & (spread < max_spread)
    uv, _ = target.project(pts[use])
    ys, xs = np.nonzero(use)
    return np.hypot(uv[:, 0] - xs, uv[:, 1] - ys)


def compose_flows(flow_ab: np.ndarray, valid_ab: np.ndarray, flow_ba: np.ndarray,
                  valid_ba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round trip: for each pixel of A, follow A -> B then B -> A. Returns the landing
    positions (2, H, W) and where both legs are valid."""
    back, ok = bilinear(np.where(valid_ba[..., None], flow_ba.transpose(1, 2, 0), np.nan),
                        flow_ab)
    return back.transpose(2, 0, 1), valid_ab & ok


# Cross-identity correspondence. Every head (procedural or photo-lifted) is star-shaped about
# the vertical axis x = 0, z = AXIS_Z of its rest frame (the procedural grid's rays start
# there), so a surface point is named by its arc around that axis and its height. Two heads'
# names are put in register by a thin-plate spline through their shared landmarks, so the
# eyes of one land on the eyes of the other: "the same point of the face".
AXIS_Z = 0.05
AXIS_RADIUS = 0.44             # the face's distance from the axis: the arc's unit
ANCHORS = ("eye_left", "eye_right", "nose_tip", "mouth_left", "mouth_right", "chin")
# A match counts when the nearest point of the source lies within this many of the source's
# pixel spacings (in surface coordinates), and when the source pixel's own nearest target
# pixel is within CYCLE_TOLERANCE px of where it started; otherwise the point is hidden in the
# source (its nearest visible neighbour belongs to another part of the target).
MATCH_TOLERANCE = 1.5
CYCLE_TOLERANCE = 2.0


def surface_coordinates(points: np.ndarray) -> np.ndarray:
    """Rest-frame points (... x 3) -> (arc, height) (... x 2) about the head's axis."""
    arc = AXIS_RADIUS * np.arctan2(points[..., 0], AXIS_Z - points[..., 2])
    return np.stack([arc, points[..., 1]], -1)


def cross_identity_flow(
    target_xyz: np.ndarray, target_landmarks: dict, source_xyz: np.ndarray,
    source_landmarks: dict, tolerance: float = MATCH_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray]:
    """Flow from a render of one head to a render of another (or the same) head ``(2, H, W)``
    float32 and validity ``(H, W)``: per target pixel, where the same point of the face lies
    in the source image, valid where the source shows it.

    ``*_xyz``: each render's surface map (H x W x 3 rest-frame points, NaN on background);
    ``*_landmarks``: each head's rest-frame landmarks (:data:`ANCHORS`, from the dataset's
    metadata). The source pixel is the inverse-distance mean of the 4 source pixels nearest
    in registered surface coordinates; a match must survive the round trip back.
    """
    from scipy.interpolate import RBFInterpolator
    from scipy.spatial import cKDTree

    h, w = target_xyz.shape[:2]
    flow = np.zeros((2, h, w), np.float32)
    valid = np.zeros((h, w), bool)
    tgt_ok = np.isfinite(target_xyz).all(-1)
    src_ok = np.isfinite(source_xyz).all(-1)
    if tgt_ok.sum() == 0 or src_ok.sum() < 4:
        return flow, valid
    a_t = surface_coordinates(np.array([target_landmarks[k] for k in ANCHORS], np.float64))
    a_s = surface_coordinates(np.array([source_landmarks[k] for k in ANCHORS], np.float64))
    register = RBFInterpolator(a_t, a_s - a_t, kernel="thin_plate_spline", degree=1)
    tgt = surface_coordinates(target_xyz[tgt_ok].astype(np.float64))
    tgt = tgt + register(tgt)
    src = surface_coordinates(source_xyz[src_ok].astype(np.float64))
    sy, sx = np.nonzero(src_ok)
    tree = cKDTree(src)
    spacing = float(np.median(tree.query(src, k=2)[0][:, 1]))
    dist, idx = tree.query(tgt, k=4)
    weight = 1.0 / np.maximum(dist, 1e-3 * spacing)
    weight /= weight.sum(1, keepdims=True)
    ty, tx = np.nonzero(tgt_ok)
    back = cKDTree(tgt).query(src)[1][idx[:, 0]]
    cycle = np.hypot(tx[back] - tx, ty[back] - ty)
    ok = (dist[:, 0] <= tolerance * spacing) & (cycle <= CYCLE_TOLERANCE)
    flow[0, ty, tx] = (weight * sx[idx]).sum(1)
    flow[1, ty, tx] = (weight * sy[idx]).sum(1)
    valid[ty[ok], tx[ok]] = True
    flow[:, ~valid] = 0.0
    return flow, valid
