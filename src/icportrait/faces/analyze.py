"""One call per photo: detect, landmark, estimate pose, and align the chosen face."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from icportrait.errors import FaceCutOffError, FaceError, FaceTurnedError, NoFaceError
from icportrait.faces.align import AlignedFace, align_face, apply_affine
from icportrait.faces.detect import (
    MIN_FACE_SIZE,
    Detector,
    FaceBox,
    Policy,
    detect_faces,
    left_to_right,
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
    """Every face in the image, left to right (the order face indices count), with
    landmarks and pose."""
    return [describe_face(image, b) for b in left_to_right(detect_faces(image, detector))]


# Faces turned further than this (yaw, degrees) are refused: the 5-point alignment and the
# model's matching have nothing to go on when one eye is hidden.
MAX_YAW = 65.0
# Faces with more than this share of their mesh landmarks outside the photo are refused.
MAX_CUT_OFF = 0.15


@dataclass(frozen=True)
class PreparedFace:
    """The chosen face of a photo in the canonical frame: what profiles and templates use.
    ``index`` is its place among the ``count`` faces ``detector`` found, left to right."""

    face: Face
    aligned: AlignedFace
    mesh: np.ndarray = field(repr=False)  # 478 x 3 in crop pixels
    mask: np.ndarray = field(repr=False)  # size x size float32 face-region mask
    index: int = 0
    count: int = 1
    detector: str = "auto"  # whose face list ``index`` and ``count`` refer to

    @property
    def image(self) -> np.ndarray:
        return self.aligned.image

    def to_dict(self) -> dict:
        """What a sidecar records of the face used."""
        return {"index": self.index, "of": self.count, "found_by": self.detector,
                **self.face.to_dict()}


def prepare_face(
    image: np.ndarray,
    size: int = 256,
    margin: float = 1.0,
    policy: Policy = "largest",
    detector: Detector | None = None,
    min_size: float = MIN_FACE_SIZE,
    face: int | None = None,
) -> PreparedFace:
    """Detect, choose (``face``: that index, left to right; else by ``policy``, see
    :func:`select_face`), landmark and align one face.

    ``detector`` defaults to ``all`` when ``face`` is given (indices count the faces
    ``icportrait faces inspect`` lists, every pass included), else ``auto`` (a portrait's
    face is found by the first pass, and the largest face is the same either way).

    Raises NoFaceError, FaceIndexError, MultipleFacesError (policies ``single`` and
    ``clear``), FaceTooSmallError, FaceTurnedError or FaceCutOffError, each with a one-line
    message.
    """
    detector = detector or ("auto" if face is None else "all")
    boxes = left_to_right(detect_faces(image, detector))
    box = select_face(boxes, policy, min_size, index=face)
    chosen = describe_face(image, box)
    if chosen.mesh is None:
        raise NoFaceError("a face was detected but its landmarks could not be placed")
    check_usable(chosen, image.shape)
    aligned = align_face(image, five_points(chosen.mesh), size, margin)
    mesh = apply_affine(aligned.matrix, chosen.mesh)
    return PreparedFace(chosen, aligned, mesh, face_mask(mesh, (size, size)),
                        boxes.index(box), len(boxes), detector)


def check_usable(face: Face, shape: tuple[int, ...]) -> None:
    """Refuse a face turned too far (MAX_YAW) or cut off by the border (MAX_CUT_OFF)."""
    if face.pose is not None and abs(face.pose.yaw) > MAX_YAW:
        raise FaceTurnedError(f"the face is turned {abs(face.pose.yaw):.0f}° from the camera "
                              f"(yaw); at most {MAX_YAW:g}° can be used")
    h, w = shape[:2]
    xy = face.mesh[:, :2]
    outside = float(np.mean((xy[:, 0] < 0) | (xy[:, 0] > w - 1) | (xy[:, 1] < 0)
                            | (xy[:, 1] > h - 1)))
    if outside > MAX_CUT_OFF:
        raise FaceCutOffError(f"the face is cut off at the image border ({outside:.0%} of it "
                              f"lies outside the photo; at most {MAX_CUT_OFF:.0%} can)")
