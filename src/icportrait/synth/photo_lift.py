"""Photo-lifted faces: a real portrait turned into a textured 3D face mesh.

mediapipe's face mesh gives 468 surface points with depth; with the mesh's triangles and the
photo as texture, the face can be re-rendered under a new head rotation. Limits: only the
face region (forehead to chin, no hair, ears or neck) exists, and texture stretches on the
side turned away as yaw grows (the photo never saw it).

The renderer here is a simple CPU painter's algorithm (triangles drawn far to near with
OpenCV's affine warps), orthographic like mediapipe's depth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """Triangles (T x 3 vertex indices) of mediapipe's 468-point face mesh, from its edges."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    adj: dict[int, set[int]] = defaultdict(set)
    for a, b in FACEMESH_TESSELATION:
        adj[a].add(b)
        adj[b].add(a)
    tris = {tuple(sorted((a, b, c))) for a in adj for b in adj[a] for c in adj[a] & adj[b]}
    return np.array(sorted(tris), dtype=np.int64)


@dataclass(frozen=True)
class LiftedFace:
    texture: np.ndarray   # the photo (H x W x 3 uint8)
    vertices: np.ndarray  # 468 x 3, photo pixels (x, y) and depth z, same scale
    triangles: np.ndarray  # T x 3

    @property
    def center(self) -> np.ndarray:
        return self.vertices.mean(0)


def lift_face(image: np.ndarray, mesh: np.ndarray) -> LiftedFace:
    """Lift a photo's face to a textured mesh, given its face mesh (478 or 468 x 3)."""
    return LiftedFace(image, np.asarray(mesh[:468], dtype=np.float64), mesh_triangles())


def render_lifted(
    face: LiftedFace,
    rotation: np.ndarray,
    size: tuple[int, int] | None = None,
    background: tuple[int, int, int] = (128, 128, 128),
) -> np.ndarray:
    """Render ``face`` rotated by ``rotation`` (3 x 3, camera axes) about its centre.

    The output has the photo's size unless ``size`` (height, width) is given; the face centre
    stays where it was in the photo.
    """
    h, w = size or face.texture.shape[:2]
    c = face.center
    verts = (face.vertices - c) @ np.asarray(rotation).T + c
    out = np.empty((h, w, 3), np.uint8)
    out[:] = background
    tex = face.texture
    tris = face.triangles
    # Draw far triangles first so nearer ones cover them.
    order = np.argsort(-verts[tris, 2].mean(1))
    for t in tris[order]:
        dst = verts[t, :2].astype(np.float32)
        # Back-face culling: the triangle's winding flips when it turns away.
        src = face.vertices[t, :2].astype(np.float32)
        area_src = np.cross(src[1] - src[0], src[2] - src[0])
        area_dst = np.cross(dst[1] - dst[0], dst[2] - dst[0])
        if area_src * area_dst <= 0 or abs(area_dst) < 1e-3:
            continue
        x0, y0 = np.floor(dst.min(0)).astype(int)
        x1, y1 = np.ceil(dst.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        m = cv2.getAffineTransform(src, dst - np.float32([x0, y0]))
        patch = cv2.warpAffine(tex, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        # Dilate each triangle by a pixel so neighbouring triangles leave no cracks.
        poly = np.round((dst - [x0, y0]) * 16).astype(np.int32)
        cv2.fillConvexPoly(mask, poly, 1, lineType=cv2.LINE_8, shift=4)
        cv2.polylines(mask, [poly], True, 1, thickness=1, lineType=cv2.LINE_8, shift=4)
        region = out[y0:y1, x0:x1]
        region[mask > 0] = patch[mask > 0]
    return out
