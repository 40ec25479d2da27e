"""Head pose (yaw, pitch, roll in degrees) from face-mesh landmarks with ``cv2.solvePnP``.

Sign convention, as seen in the image by the viewer:

* **yaw** > 0: the nose turns toward the image's right (the person turns to *their* left);
* **pitch** > 0: the nose turns up (the person looks up);
* **roll** > 0: the head turns counter-clockwise in the image (rotating a photo
  counter-clockwise by 10° adds 10° of roll).

Axes are OpenCV's camera axes (x right, y down, z away from the camera). The rotation that
takes the head's frame to the camera is ``R = Rz(-roll) @ Ry(-yaw) @ Rx(-pitch)``.

The 3D template (``data/head_template.json``) is a mean, mirror-symmetrised mediapipe mesh
whose zero pitch is calibrated on frontal photos; see :mod:`icportrait.faces.head_template`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np

from icportrait.errors import MissingDependencyError

# Focal length of the assumed pinhole camera, in units of the image's longer side: about a
# 50 mm lens on a full-frame sensor, typical for portraits. Yaw and roll barely depend on it.
FOCAL_PER_SIDE = 1.4


@dataclass(frozen=True)
class HeadPose:
    yaw: float
    pitch: float
    roll: float

    def as_dict(self, ndigits: int = 2) -> dict[str, float]:
        return {k: round(v, ndigits) for k, v in asdict(self).items()}


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def pose_to_matrix(pose: HeadPose) -> np.ndarray:
    """3 x 3 rotation from the head's frame to the camera's."""
    y, p, r = np.radians([pose.yaw, pose.pitch, pose.roll])
    return _rz(-r) @ _ry(-y) @ _rx(-p)


def matrix_to_pose(rot: np.ndarray) -> HeadPose:
    """Inverse of :func:`pose_to_matrix` (yaw in [-90, 90], pitch and roll in [-180, 180])."""
    rot = np.asarray(rot, dtype=np.float64)
    b = -np.arcsin(np.clip(rot[2, 0], -1.0, 1.0))
    a = np.arctan2(rot[1, 0], rot[0, 0])
    c = np.arctan2(rot[2, 1], rot[2, 2])
    yaw, pitch, roll = -np.degrees(b), -np.degrees(c), -np.degrees(a)
    return HeadPose(float(yaw), float(pitch), float(roll))


@dataclass(frozen=True)
class HeadTemplate:
    indices: np.ndarray  # which mesh landmarks the template has
    points: np.ndarray   # N x 3, head frame, unit RMS radius

    @classmethod
    def from_dict(cls, d: dict) -> HeadTemplate:
        return cls(np.asarray(d["indices"], dtype=np.int64), np.asarray(d["points"], float))


@lru_cache(maxsize=1)
def default_template() -> HeadTemplate:
    try:
        text = resources.files("icportrait.faces").joinpath("data/head_template.json").read_text()
    except FileNotFoundError as exc:  # pragma: no cover - a broken install
        raise MissingDependencyError(
            "the head-pose template icportrait/faces/data/head_template.json is missing; "
            "rebuild it with `python -m icportrait.faces.head_template`"
        ) from exc
    return HeadTemplate.from_dict(json.loads(text))


def camera_matrix(image_shape: tuple[int, ...]) -> np.ndarray:
    h, w = image_shape[:2]
    f = FOCAL_PER_SIDE * max(h, w)
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=np.float64)


def solve_rotation(
    mesh: np.ndarray, image_shape: tuple[int, ...], template: HeadTemplate | None = None
) -> np.ndarray:
    """Rotation (head frame -> camera) fitting the template to the mesh's 2D landmarks."""
    template = template or default_template()
    obj = template.points.astype(np.float64)
    img = np.ascontiguousarray(mesh[template.indices, :2], dtype=np.float64)
    k = camera_matrix(image_shape)
    # SQPnP finds the global optimum without an initial guess; a Levenberg-Marquardt pass
    # then refines it on the reprojection error.
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:  # pragma: no cover - SQPnP fails only on degenerate input
        raise ValueError("head pose: solvePnP found no solution")
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, k, None, rvec, tvec)
    return cv2.Rodrigues(rvec)[0]


def head_pose(
    mesh: np.ndarray, image_shape: tuple[int, ...], template: HeadTemplate | None = None
) -> HeadPose:
    """Yaw, pitch and roll in degrees of the face whose mesh is given (pixels of the image)."""
    return matrix_to_pose(solve_rotation(mesh, image_shape, template))
