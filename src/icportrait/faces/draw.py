"""Annotated pictures of what the face toolkit found (for `faces inspect` and the demo)."""

from __future__ import annotations

import cv2
import numpy as np

from icportrait.faces.analyze import Face
from icportrait.faces.pose import pose_to_matrix

_BOX = (40, 220, 90)
_MESH = (90, 200, 255)
_FIVE = (255, 60, 60)
_INDEX = (255, 230, 40)
_AXES = ((230, 40, 40), (40, 200, 40), (40, 90, 255))  # x red, y green, z blue


def annotate(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of ``image`` with each face's index (its place in ``faces``, which
    analyze_faces orders left to right), box, score, mesh, 5 points and pose axes."""
    out = image.copy()
    scale = max(1.0, max(image.shape[:2]) / 512)
    thick = max(1, round(2 * scale))
    for i, face in enumerate(faces):
        b = face.box
        cv2.rectangle(out, (int(b.x0), int(b.y0)), (int(b.x1), int(b.y1)), _BOX, thick)
        cv2.putText(out, str(i), (int(b.x0) + thick, int(b.y1) - 3 * thick),
                    cv2.FONT_HERSHEY_SIMPLEX, max(0.6, b.height / 80), _INDEX, 2 * thick,
                    cv2.LINE_AA)
        label = f"{b.score:.2f}"
        if face.pose is not None:
            p = face.pose
            label += f" y{p.yaw:+.0f} p{p.pitch:+.0f} r{p.roll:+.0f}"
        cv2.putText(out, label, (int(b.x0), max(12, int(b.y0) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * scale, _BOX, thick, cv2.LINE_AA)
        if face.mesh is None:
            continue
        for x, y in face.mesh[:468, :2]:
            cv2.circle(out, (round(x), round(y)), max(1, thick // 2), _MESH, -1)
        for x, y in face.five:
            cv2.circle(out, (round(x), round(y)), 2 * thick, _FIVE, -1)
        if face.pose is not None:
            # Head axes from the nose tip; x and y lie in the face, z points out of it.
            rot = pose_to_matrix(face.pose)
            origin = face.mesh[1, :2]
            length = 0.5 * b.width
            for axis, colour in zip(np.eye(3) * [1, -1, -1], _AXES, strict=True):
                tip = origin + length * (rot @ axis)[:2]
                cv2.arrowedLine(out, tuple(np.round(origin).astype(int)),
                                tuple(np.round(tip).astype(int)), colour, thick, cv2.LINE_AA,
                                tipLength=0.15)
    return out


def overlay_mask(image: np.ndarray, mask: np.ndarray, colour=(255, 80, 80), alpha=0.4):
    """Tint the masked region of ``image`` (for showing face masks)."""
    m = (mask.astype(np.float32) * alpha)[..., None]
    out = image.astype(np.float32) * (1 - m) + np.float32(colour) * m
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
