"""Face detection: mediapipe first, dlib's HOG detector as fallback.

Boxes are in pixel coordinates of the (upright, RGB) image: ``x0, y0`` top-left inclusive,
``x1, y1`` bottom-right exclusive, clipped to the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from icportrait.errors import FaceTooSmallError, ImageError, MultipleFacesError, NoFaceError
from icportrait.faces import _backends

# A face whose box is narrower than this is rejected: the canonical crops are 256-512 px, so
# a smaller face would be upscaled more than ~5x, and dlib's identity chips are 150 px.
MIN_FACE_SIZE = 48

Detector = Literal["auto", "mediapipe", "dlib"]
Policy = Literal["largest", "single"]


@dataclass(frozen=True)
class FaceBox:
    """One detected face."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    detector: str

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def size(self) -> float:
        """The box's shorter side in pixels (what MIN_FACE_SIZE is compared with)."""
        return min(self.width, self.height)

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)

    def as_list(self) -> list[float]:
        return [round(v, 2) for v in (self.x0, self.y0, self.x1, self.y1)]


def _clip_box(x0, y0, x1, y1, w, h, score, detector) -> FaceBox | None:
    x0, x1 = float(np.clip(x0, 0, w)), float(np.clip(x1, 0, w))
    y0, y1 = float(np.clip(y0, 0, h)), float(np.clip(y1, 0, h))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return FaceBox(x0, y0, x1, y1, float(score), detector)


def _iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    return inter / (a.area + b.area - inter + 1e-9)


def _merge(boxes: list[FaceBox], iou: float = 0.4) -> list[FaceBox]:
    """Greedy non-maximum suppression across the two mediapipe models."""
    kept: list[FaceBox] = []
    for box in sorted(boxes, key=lambda b: -b.score):
        if all(_iou(box, k) < iou for k in kept):
            kept.append(box)
    return kept


def detect_mediapipe(image: np.ndarray) -> list[FaceBox]:
    h, w = image.shape[:2]
    boxes = []
    # The short-range model is better on close-up portraits, the full-range one finds small
    # faces in group photos; run both and merge.
    for model in (0, 1):
        result = _backends.mediapipe_detector(model).process(image)
        for det in result.detections or []:
            rel = det.location_data.relative_bounding_box
            box = _clip_box(
                rel.xmin * w, rel.ymin * h, (rel.xmin + rel.width) * w,
                (rel.ymin + rel.height) * h, w, h, det.score[0], "mediapipe",
            )
            if box is not None:
                boxes.append(box)
    return _merge(boxes)


# dlib's HOG margin threshold. dlib's default (0) lets texture through: on the astronaut photo
# it fires on the space suit at margin 0.12 while true faces score about 1.
DLIB_THRESHOLD = 0.3


def detect_dlib(image: np.ndarray, upsample: int = 1) -> list[FaceBox]:
    h, w = image.shape[:2]
    rects, scores, _ = _backends.dlib_hog_detector().run(image, upsample, DLIB_THRESHOLD)
    boxes = []
    for r, s in zip(rects, scores, strict=True):
        # HOG scores are SVM margins (about 0..3); squash them into (0, 1) like mediapipe's.
        box = _clip_box(r.left(), r.top(), r.right() + 1, r.bottom() + 1, w, h,
                        1.0 / (1.0 + np.exp(-2.0 * s)), "dlib-hog")
        if box is not None:
            boxes.append(box)
    return boxes


def detect_faces(image: np.ndarray, detector: Detector = "auto") -> list[FaceBox]:
    """All faces in an RGB uint8 image, best score first.

    ``auto`` uses mediapipe and falls back to dlib's HOG detector when mediapipe finds none
    (HOG is slower but catches some frontal faces mediapipe misses in unusual crops).
    """
    check_rgb(image)
    if detector == "mediapipe":
        return detect_mediapipe(image)
    if detector == "dlib":
        return detect_dlib(image)
    if detector != "auto":
        raise ValueError(f"unknown detector {detector!r}: use 'auto', 'mediapipe' or 'dlib'")
    return detect_mediapipe(image) or detect_dlib(image)


def select_face(
    faces: list[FaceBox], policy: Policy = "largest", min_size: float = MIN_FACE_SIZE
) -> FaceBox:
    """Choose the face to work on, or raise a specific error.

    ``largest`` takes the face with the largest box; ``single`` requires exactly one face and
    says how many were found otherwise.
    """
    if not faces:
        raise NoFaceError("no face found")
    if policy == "single" and len(faces) > 1:
        raise MultipleFacesError(
            f"{len(faces)} faces found, exactly one is required (use policy 'largest' to take "
            "the largest)"
        )
    if policy not in ("largest", "single"):
        raise ValueError(f"unknown face policy {policy!r}: use 'largest' or 'single'")
    face = max(faces, key=lambda f: f.area)
    if face.size < min_size:
        raise FaceTooSmallError(
            f"the face is {face.size:.1f} px across, smaller than the {min_size:g} px minimum"
        )
    return face


def check_rgb(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ImageError(
            f"expected an RGB uint8 array of shape (H, W, 3), got {dtype} {shape}; load files "
            "with icportrait.io.load_image"
        )
