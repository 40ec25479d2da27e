"""Dense (478-point mediapipe face mesh) and 5-point landmarks.

Coordinates are pixels of the full image: ``x`` right, ``y`` down, and for the mesh a third
column ``z``, mediapipe's relative depth in the same pixel scale as ``x`` (smaller is closer
to the camera), so the mesh is a 3D point cloud in OpenCV's camera axes.
"""

from __future__ import annotations

import cv2
import numpy as np

from icportrait.errors import NoFaceError
from icportrait.faces import _backends
from icportrait.faces.boxes import FaceBox, check_rgb

NUM_MESH_POINTS = 478

# Mesh indices used to derive the 5 points; left/right are *image* left/right.
IRIS_LEFT, IRIS_RIGHT = 468, 473  # iris centres (refined landmarks)
NOSE_TIP = 1
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
# The face oval as a closed polygon, in order (mediapipe's FACEMESH_FACE_OVAL as a path).
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)

# How far around the detection box the mesh model looks: the face mesh wants the whole head.
_CROP_SCALE = 2.2
_CROP_MAX = 640


def face_mesh(image: np.ndarray, box: FaceBox | None = None) -> np.ndarray:
    """478 x 3 mesh landmarks (x, y, z in pixels) of the face in ``box`` (or the main face).

    The mesh model runs on a square crop around the box, so that in a photo with several
    faces it describes the chosen one, and small faces are enlarged for it.
    """
    check_rgb(image)
    h, w = image.shape[:2]
    if box is None:
        crop, offset, scale = image, np.zeros(2), 1.0
    else:
        cx, cy = box.center
        side = max(box.width, box.height) * _CROP_SCALE
        x0, y0 = round(cx - side / 2), round(cy - side / 2)
        side = round(side)
        # Pad with edge pixels rather than clip so the face stays centred in the crop.
        pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad \
            else image
        crop = padded[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
        scale = min(1.0, _CROP_MAX / side)
        if scale < 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        offset = np.array([x0, y0], dtype=np.float64)
    crop = np.ascontiguousarray(crop)
    result = _backends.mediapipe_face_mesh().process(crop)
    if not result.multi_face_landmarks:
        raise NoFaceError("the face mesh model found no face landmarks")
    ch, cw = crop.shape[:2]
    pts = np.array(
        [(p.x * cw, p.y * ch, p.z * cw) for p in result.multi_face_landmarks[0].landmark],
        dtype=np.float64,
    )
    pts /= scale
    pts[:, :2] += offset
    return pts


def five_points(mesh: np.ndarray) -> np.ndarray:
    """The 5 alignment points from a mesh: image-left eye, image-right eye, nose tip,
    image-left mouth corner, image-right mouth corner (5 x 2, pixels)."""
    idx = [IRIS_LEFT, IRIS_RIGHT, NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT]
    return mesh[idx, :2].copy()


def dlib_five_points(image: np.ndarray, box: FaceBox) -> np.ndarray:
    """dlib's own 5-point shape (2 corners per eye, base of the nose), 5 x 2 pixels.

    Used for dlib's identity chips, which expect dlib's landmark layout.
    """
    import dlib

    rect = dlib.rectangle(int(box.x0), int(box.y0), int(box.x1) - 1, int(box.y1) - 1)
    shape = _backends.dlib_shape_predictor_5()(image, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
