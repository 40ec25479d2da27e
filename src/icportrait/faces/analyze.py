"""One call per photo: detect, landmark, estimate pose, and align the chosen face."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from icportrait.errors import FaceError, NoFaceError
from icportrait.faces.align import AlignedFace, align_face, apply_affine
from icportrait.faces.detect import (
    MIN_FACE_SIZE,
    Detector,
    FaceBox,
    Policy,
    detect_faces,
    select_face,
)
from icportrait.faces.landmarks import face_mesh, five_points
from icportrait.faces.mask import face_mask
from icportrait.faces.pose import HeadPose, head_pose


@dataclass(frozen=True)
class Face:
    """A detected face with its landmarks and pose (mesh and pose are None if the mesh
    model could not place landmarks on this face)."""

    box: FaceBox
    mesh: np.ndarray | None = field(repr=False)
    pose: HeadPose | None

    @property
    def five(self) -> np.ndarray | None:
        return None if self.mesh is None else five_points(self.mesh)

    def to_dict(self) -> dict:
        return {
            "box": self.box.as_list(),
            "score": round(self.box.score, 4),
            "detector": self.box.detector,
            "size_px": round(self.box.size, 1),
            "pose": None if self.pose is None else self.pose.as_dict(),
            "landmarks": 0 if self.mesh is None else len(self.mesh),
        }


def describe_face(image: np.ndarray, box: FaceBox) -> Face:
    """Landmarks and pose for one detected face."""
    try:
        mesh = face_mesh(image, box)
    except FaceError:
        return Face(box, None, None)
    return Face(box, mesh, head_pose(mesh, image.shape))


def analyze_faces(image: np.ndarray, detector: Detector = "auto") -> list[Face]:
    """Every face in the image, largest first, with landmarks and pose."""
    boxes = sorted(detect_faces(image, detector), key=lambda b: -b.area)
    return [describe_face(image, b) for b in boxes]


@dataclass(frozen=True)
class PreparedFace:
    """The chosen face of a photo in the canonical frame: what profiles and templates use."""

    face: Face
    aligned: AlignedFace
    mesh: np.ndarray = field(repr=False)  # 478 x 3 in crop pixels
    mask: np.ndarray = field(repr=False)  # size x size float32 face-region mask

    @property
    def image(self) -> np.ndarray:
        return self.aligned.image


def prepare_face(
    image: np.ndarray,
    size: int = 256,
    margin: float = 1.0,
    policy: Policy = "largest",
    detector: Detector = "auto",
    min_size: float = MIN_FACE_SIZE,
) -> PreparedFace:
    """Detect, choose (see :func:`select_face`), landmark and align one face.

    Raises NoFaceError, MultipleFacesError (policy ``single``) or FaceTooSmallError.
    """
    box = select_face(detect_faces(image, detector), policy, min_size)
    face = describe_face(image, box)
    if face.mesh is None:
        raise NoFaceError("a face was detected but its landmarks could not be placed")
    aligned = align_face(image, five_points(face.mesh), size, margin)
    mesh = apply_affine(aligned.matrix, face.mesh)
    return PreparedFace(face, aligned, mesh, face_mask(mesh, (size, size)))
