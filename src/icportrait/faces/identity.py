"""Identity embeddings for evaluation: dlib's 128-d face descriptor.

dlib's ResNet maps a face to a 128-d vector; the Euclidean distance between two vectors is
below :data:`SAME_PERSON_THRESHOLD` (0.6) for the same person (dlib reports 99.38% accuracy
on LFW at that threshold). Its weights are public domain and ship in `face_recognition_models`.
The model is used only to *measure* identity, never to train, so that evaluation stays
independent of the training signal.
"""

from __future__ import annotations

import numpy as np

from icportrait.faces import _backends
from icportrait.faces.boxes import FaceBox, check_rgb

SAME_PERSON_THRESHOLD = 0.6
EMBEDDING_DIM = 128


def face_embedding(
    image: np.ndarray, box: FaceBox, num_jitters: int = 0, padding: float = 0.25
) -> np.ndarray:
    """dlib's 128-d descriptor (float32) of the face in ``box``.

    dlib aligns its own 150 px chip from its 5-point shape predictor run inside ``box``.
    ``num_jitters`` > 0 averages over that many random jitters (slower, slightly more stable).
    """
    import dlib

    check_rgb(image)
    rect = dlib.rectangle(int(box.x0), int(box.y0), int(box.x1) - 1, int(box.y1) - 1)
    shape = _backends.dlib_shape_predictor_5()(image, rect)
    vec = _backends.dlib_face_recognizer().compute_face_descriptor(
        image, shape, num_jitters, padding
    )
    return np.asarray(vec, dtype=np.float32)


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two dlib descriptors; < 0.6 means "same person"."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != (EMBEDDING_DIM,) or b.shape != (EMBEDDING_DIM,):
        raise ValueError(f"expected two {EMBEDDING_DIM}-d descriptors, got {a.shape}, {b.shape}")
    return float(np.linalg.norm(a - b))


def same_person(a: np.ndarray, b: np.ndarray, threshold: float = SAME_PERSON_THRESHOLD) -> bool:
    return identity_distance(a, b) < threshold
