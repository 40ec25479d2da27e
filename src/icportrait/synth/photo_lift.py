"""Photo-lifted faces: a real portrait turned into a textured 3D face mesh.

mediapipe's face mesh gives 468 surface points with depth; with the mesh's triangles and the
photo as texture, the face can be re-rendered under a new head rotation. Limits: only the
face region (forehead to chin, no hair, ears or neck) exists, and texture stretches on the
side turned away as yaw grows (the photo never saw it).

The renderer here is a simple CPU painter's algorithm (triangles drawn far to near with
OpenCV's affine warps), orthographic like mediapipe's depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from icportrait.faces.topology import fill_holes, mesh_triangles


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


# Where a procedural head (default parameters) has its eyes, in the head frame: the lifted
# face is placed and scaled to match, so the renderer's framing and pivot suit it too.
_EYE_CENTER = np.array([0.0, 0.0, -0.357])
_EYE_DISTANCE = 0.261
_SPECULAR = 30  # texture alpha: weak, the photo already has its highlights


def lifted_head_mesh(image: np.ndarray, mesh: np.ndarray):
    """A photo's face as a :class:`~icportrait.synth.head.HeadMesh` for the OpenGL renderer.

    The face-mesh points (pixels, with mediapipe's depth) are turned to the frontal rest pose
    (undoing the head pose estimated from them), scaled and placed like a procedural head's
    face; the photo is the texture. Only the face region exists (no hair, ears or neck), and
    the photo's own lighting stays baked into the texture.
    """
    from icportrait.faces.pose import solve_rotation
    from icportrait.synth.head import HeadMesh

    h, w = image.shape[:2]
    pts = np.asarray(mesh[:468], np.float64)
    rot = solve_rotation(mesh, image.shape)
    eye_l = (pts[33] + pts[133]) / 2  # image-left eye (corners' midpoint)
    eye_r = (pts[263] + pts[362]) / 2
    center = (eye_l + eye_r) / 2
    rest = (pts - center) @ rot  # rows times R = R^T applied to each point: frontal pose
    scale = _EYE_DISTANCE / np.linalg.norm((eye_r - eye_l) @ rot)
    verts = rest * scale + _EYE_CENTER
    tris = fill_holes(mesh_triangles())
    # Wind triangles as the renderer's front faces: positive cross product in the head
    # frame's (x right, y down) coordinates, seen from the front (measured: the other
    # winding renders only the back faces).
    a, b, c = (verts[tris[:, k], :2] for k in range(3))
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    tris[cross < 0] = tris[cross < 0][:, [0, 2, 1]]
    normals = np.zeros_like(verts)
    face_n = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    for k in range(3):
        np.add.at(normals, tris[:, k], face_n)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    if normals[:, 2].mean() > 0:  # outward is toward the camera (-z) for a face
        normals = -normals
    uv = np.stack([pts[:, 0] / w, pts[:, 1] / h], 1)
    texture = np.dstack([image, np.full((h, w), _SPECULAR, np.uint8)])
    n = len(verts)
    landmarks = {"eye_left": verts[[33, 133]].mean(0), "eye_right": verts[[263, 362]].mean(0),
                 "nose_tip": verts[1], "mouth_left": verts[61], "mouth_right": verts[291],
                 "chin": verts[152]}
    return HeadMesh(
        vertices=verts.astype(np.float32), normals=normals.astype(np.float32),
        uv=uv.astype(np.float32), triangles=tris.astype(np.int32),
        colors=np.ones((n, 3), np.float32), ao=np.ones(n, np.float32),
        regions=np.zeros(n, np.uint8), texture=np.ascontiguousarray(texture),
        texture_regions=np.zeros((h, w), np.uint8), landmarks=landmarks, params=None,
    )
