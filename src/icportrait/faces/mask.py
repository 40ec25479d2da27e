"""Face region masks from the face mesh."""

from __future__ import annotations

import cv2
import numpy as np

from icportrait.faces.landmarks import FACE_OVAL


def face_mask(mesh: np.ndarray, shape: tuple[int, int], soft: float = 0.0) -> np.ndarray:
    """A float32 mask in [0, 1] of the face region (inside the mesh's face oval).

    ``mesh`` must be in the coordinates of the image the mask is for (for an aligned crop,
    map it with ``apply_affine(aligned.matrix, mesh)``). The oval runs from the hairline to
    the chin: it covers skin, eyes, brows, nose and mouth, not hair, ears or neck. ``soft``
    feathers the edge with a Gaussian of that many pixels.
    """
    h, w = shape
    polygon = np.round(mesh[list(FACE_OVAL), :2] * 16).astype(np.int32)  # 4 fractional bits
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [polygon], 255, lineType=cv2.LINE_AA, shift=4)
    out = mask.astype(np.float32) / 255.0
    if soft > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=soft)
    return out
