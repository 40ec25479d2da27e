"""Face toolkit for real photos: detection, landmarks, alignment, pose, masks, identity.

Everything runs offline on models that ship in packages: mediapipe (Apache-2.0) for detection
and the 478-point mesh, dlib's public-domain models for the fallback detector, 5-point shapes
and the identity embedding.

>>> from icportrait.faces import prepare_face
>>> from icportrait.io import load_image
>>> face = prepare_face(load_image("me.jpg"), size=256)   # doctest: +SKIP
>>> face.image.shape, face.face.pose                         # doctest: +SKIP
"""

from icportrait.faces.align import (
    AlignedFace,
    align_face,
    apply_affine,
    canonical_points,
    paste_back,
    similarity_transform,
)
from icportrait.faces.analyze import Face, PreparedFace, analyze_faces, describe_face, prepare_face
from icportrait.faces.detect import MIN_FACE_SIZE, FaceBox, detect_faces, select_face
from icportrait.faces.identity import (
    SAME_PERSON_THRESHOLD,
    face_embedding,
    identity_distance,
    same_person,
)
from icportrait.faces.landmarks import NUM_MESH_POINTS, dlib_five_points, face_mesh, five_points
from icportrait.faces.mask import face_mask
from icportrait.faces.pose import HeadPose, head_pose, matrix_to_pose, pose_to_matrix

__all__ = [
        "MIN_FACE_SIZE",
    "NUM_MESH_POINTS",
    "SAME_PERSON_THRESHOLD",
    "AlignedFace",
    "Face",
    "FaceBox",
    "HeadPose",
    "PreparedFace",
    "align_face",
    "analyze_faces",
    "apply_affine",
    "canonical_points",
    "describe_face",
    "detect_faces",
    "dlib_five_points",
    "face_embedding",
    "face_mask",
    "face_mesh",
    "five_points",
    "head_pose",
    "identity_distance",
    "matrix_to_pose",
    "paste_back",
    "pose_to_matrix",
    "prepare_face",
    "same_person",
    "select_face",
    "similarity_transform",
]
