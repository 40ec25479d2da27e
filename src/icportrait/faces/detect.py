"""Face detection: every installed detector, merged into one list.

``auto`` first runs mediapipe's two models on the whole image. A portrait (one face filling
the frame) stops there, so the common case stays fast. Otherwise it adds what finds the faces
of group photos: mediapipe's full-range model on overlapping tiles (a 1280 px photo shrunk to
the model's 192 px input leaves a 90 px face 13 px wide), the whole image turned by
+-ROTATED_PASS degrees (strongly tilted faces), and dlib's HOG detector. Boxes are merged
by overlap (non-maximum suppression), and every face must then be found again up close (a
crop around it, where texture that looks like a face from afar rarely does).

Boxes are in pixel coordinates of the (upright, RGB) image: ``x0, y0`` top-left inclusive,
``x1, y1`` bottom-right exclusive, clipped to the image.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from icportrait.errors import FaceIndexError, FaceTooSmallError, MultipleFacesError, NoFaceError
from icportrait.faces import _backends
from icportrait.faces.boxes import FaceBox, check_rgb, clip_box

# A face whose box is narrower than this is rejected: the canonical crops are 256-512 px, so
# a smaller face would be upscaled more than ~5x, and dlib's identity chips are 150 px.
MIN_FACE_SIZE = 48

# Detectors and the landmark models miss faces in small images (a 128 px model crop, a
# synthetic render): such an image is enlarged to this smaller side before they read it.
SMALL_IMAGE_SIDE = 256

Detector = Literal["auto", "all", "mediapipe", "dlib", "dlib-cnn"]
DETECTORS: tuple[str, ...] = get_args(Detector)
Policy = Literal["largest", "clear", "single"]


def enlarge_small(image: np.ndarray, min_side: int = SMALL_IMAGE_SIDE
                  ) -> tuple[np.ndarray, float]:
    """``image`` enlarged (bicubic) so that its smaller side is at least ``min_side``, and the
    factor (1.0: returned unchanged)."""
    import cv2

    f = min_side / min(image.shape[:2])
    if f <= 1:
        return image, 1.0
    return cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC), f


def _iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    return inter / (a.area + b.area - inter + 1e-9)


def _same_face(a: FaceBox, b: FaceBox, iou: float) -> bool:
    """Two boxes of one face: they overlap, or (detectors frame faces differently, and a
    tile may see part of a face) one's centre lies in the other and their sizes agree within
    a factor of three. Faces in photos do not nest."""
    if _iou(a, b) >= iou:
        return True
    (ax, ay), (bx, by) = a.center, b.center
    inside = (b.x0 <= ax <= b.x1 and b.y0 <= ay <= b.y1) or \
        (a.x0 <= bx <= a.x1 and a.y0 <= by <= a.y1)
    return inside and 1 / 3 <= a.size / max(b.size, 1e-9) <= 3.0


def _merge(boxes: list[FaceBox], iou: float = 0.3) -> list[FaceBox]:
    """Greedy non-maximum suppression: the best-scoring box of each face."""
    kept: list[FaceBox] = []
    for box in sorted(boxes, key=lambda b: -b.score):
        if not any(_same_face(box, k, iou) for k in kept):
            kept.append(box)
    return kept


def _mediapipe_pass(image: np.ndarray, models=(0, 1), offset=(0.0, 0.0)) -> list[FaceBox]:
    h, w = image.shape[:2]
    ox, oy = offset
    image = np.ascontiguousarray(image)
    boxes = []
    for model in models:
        result = _backends.mediapipe_detector(model).process(image)
        for det in result.detections or []:
            rel = det.location_data.relative_bounding_box
            boxes.append(FaceBox(rel.xmin * w + ox, rel.ymin * h + oy,
                                 (rel.xmin + rel.width) * w + ox,
                                 (rel.ymin + rel.height) * h + oy, det.score[0], "mediapipe"))
    return boxes


def _clipped(boxes: list[FaceBox], w: int, h: int) -> list[FaceBox]:
    out = [clip_box(b.x0, b.y0, b.x1, b.y1, w, h, b.score, b.detector, b.angle)
           for b in boxes]
    return [b for b in out if b is not None]


def detect_mediapipe(image: np.ndarray) -> list[FaceBox]:
    """mediapipe's short-range model (close-up portraits) and full-range model (smaller
    faces), on the whole image, merged."""
    h, w = image.shape[:2]
    return _merge(_clipped(_mediapipe_pass(image), w, h))


# Tiles for the full-range model: a face of MIN_FACE_SIZE px is about a fifth of a 256 px
# tile, which the model finds at its 192 px input; 512 px tiles catch faces too large for
# the small tiles and too small for the whole image. Tiles overlap by half.
TILE_SIDES = (256, 512)


def _tiles(image: np.ndarray, side: int) -> list[FaceBox]:
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return []
    step = side // 2
    ys = sorted({*range(0, max(h - side, 0) + 1, step), max(h - side, 0)})
    xs = sorted({*range(0, max(w - side, 0) + 1, step), max(w - side, 0)})
    boxes = []
    for y in ys:
        for x in xs:
            boxes += _mediapipe_pass(image[y:y + side, x:x + side], (1,), (x, y))
    return boxes


# The whole image is also searched turned by this angle each way: mediapipe finds faces
# rolled up to about 45 degrees, so the turned passes cover rolls of 45-90 degrees.
ROTATED_PASS = 50.0


def _rotated(image: np.ndarray, angle: float) -> list[FaceBox]:
    """Faces found in ``image`` turned by ``angle`` degrees, boxed in the upright image."""
    import cv2

    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * sin + w * cos), int(h * cos + w * sin)
    m[:, 2] += np.array([nw / 2 - w / 2, nh / 2 - h / 2])
    turned = cv2.warpAffine(image, m, (nw, nh))
    inv = cv2.invertAffineTransform(m)
    boxes = []
    for b in _mediapipe_pass(turned):
        cx, cy = inv[:, :2] @ np.array(b.center) + inv[:, 2]
        half = max(b.width, b.height) / 2
        boxes.append(FaceBox(cx - half, cy - half, cx + half, cy + half, b.score, b.detector,
                             angle))
    return boxes


# Candidates smaller than this are dropped unchecked: too few pixels to confirm a face.
_MIN_CANDIDATE = 20

# A face from a pass over the whole image or a tile must be found again, by mediapipe's
# short-range model, in a crop around it where it fills about half the frame, with at least
# this score (texture that looks like a face from afar rarely does up close).
CONFIRM_SCORE = 0.7
_CONFIRM_CROP = 2.2   # crop side / box side
_CONFIRM_SIDE = 192   # crop resized to this side


def _confirmed(image: np.ndarray, boxes: list[FaceBox]) -> list[FaceBox]:
    """The boxes whose face is found again up close (CONFIRM_SCORE), upright or turned by
    the angle of the pass that found it."""
    import cv2

    kept = []
    for b in boxes:
        if b.size < _MIN_CANDIDATE:
            continue
        side = max(b.width, b.height) * _CONFIRM_CROP
        scale = _CONFIRM_SIDE / side
        m = cv2.getRotationMatrix2D(b.center, b.angle, scale)
        m[:, 2] += _CONFIRM_SIDE / 2 - np.array(b.center)
        crop = cv2.warpAffine(image, m, (_CONFIRM_SIDE, _CONFIRM_SIDE),
                              flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        c = _CONFIRM_SIDE / 2
        again = [f for f in _mediapipe_pass(crop, (0,)) if f.score >= CONFIRM_SCORE
                 and f.x0 <= c <= f.x1 and f.y0 <= c <= f.y1]
        if again:
            kept.append(b)
    return kept


# The bundled and test portraits' faces span 0.15-0.5 of the shorter side.
PORTRAIT_FACE = 0.15


def _is_portrait(boxes: list[FaceBox], image: np.ndarray) -> bool:
    """One face whose box spans at least PORTRAIT_FACE of the image's shorter side."""
    return len(boxes) == 1 and boxes[0].size >= PORTRAIT_FACE * min(image.shape[:2])


# dlib's HOG margin threshold. dlib's default (0) lets texture through: on the astronaut photo
# it fires on the space suit at margin 0.12 while true faces score about 1.
DLIB_THRESHOLD = 0.3


def detect_dlib(image: np.ndarray, upsample: int = 1) -> list[FaceBox]:
    h, w = image.shape[:2]
    rects, scores, _ = _backends.dlib_hog_detector().run(image, upsample, DLIB_THRESHOLD)
    return _dlib_boxes(rects, scores, w, h, "dlib-hog")


def detect_dlib_cnn(image: np.ndarray, upsample: int = 0) -> list[FaceBox]:
    """dlib's CNN (MMOD) detector: finds turned faces HOG misses; slow on CPU (seconds per
    megapixel), so only on request."""
    h, w = image.shape[:2]
    found = _backends.dlib_cnn_detector()(image, upsample)
    return _dlib_boxes([d.rect for d in found], [d.confidence for d in found], w, h,
                       "dlib-cnn")


def _dlib_boxes(rects, margins, w: int, h: int, name: str) -> list[FaceBox]:
    """dlib rectangles as clipped boxes; their scores are margins (about 0..3), squashed into
    (0, 1) like mediapipe's."""
    boxes = [clip_box(r.left(), r.top(), r.right() + 1, r.bottom() + 1, w, h,
                      1.0 / (1.0 + np.exp(-2.0 * m)), name) for r, m in zip(rects, margins,
                                                                             strict=True)]
    return [b for b in boxes if b is not None]


def detect_faces(image: np.ndarray, detector: Detector = "auto") -> list[FaceBox]:
    """All faces in an RGB uint8 image, best score first.

    ``auto``: mediapipe on the whole image; unless that found a portrait, also the tiled,
    turned and dlib HOG passes (module docstring). ``all``: every pass, always.
    ``mediapipe``, ``dlib`` (HOG) and ``dlib-cnn``: that detector alone.
    """
    check_rgb(image)
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}: use {', '.join(DETECTORS)}")
    if detector == "mediapipe":
        return detect_mediapipe(image)
    if detector == "dlib":
        return detect_dlib(image)
    if detector == "dlib-cnn":
        return detect_dlib_cnn(image)
    h, w = image.shape[:2]
    first = detect_mediapipe(image)
    if detector == "auto" and _is_portrait(first, image):
        return first
    extra = [b for side in TILE_SIDES for b in _tiles(image, side)]
    extra += [b for angle in (-ROTATED_PASS, ROTATED_PASS) for b in _rotated(image, angle)]
    extra += detect_dlib(image, upsample=0)
    # The whole-image faces first, then what only the extra passes found; each confirmed.
    new = [b for b in _merge(_clipped(extra, w, h)) if not any(_same_face(b, f, 0.3)
                                                               for f in first)]
    return _merge(_confirmed(image, first + new))


# With policy "clear", another face at least this fraction of the largest one's size makes
# the choice ambiguous (a profile photo must say whose identity it is).
SIMILAR_FACE = 0.8


def left_to_right(faces: list[FaceBox]) -> list[FaceBox]:
    """Faces in the order their indices count them: by the box centre, left to right."""
    return sorted(faces, key=lambda f: (f.center[0], f.center[1]))


def select_face(
    faces: list[FaceBox], policy: Policy = "largest", min_size: float = MIN_FACE_SIZE,
    index: int | None = None,
) -> FaceBox:
    """Choose the face to work on, or raise a specific error.

    ``index`` takes that face, counted left to right (as ``icportrait faces inspect`` lists
    them). Otherwise ``largest`` takes the face with the largest box; ``clear`` the same
    unless another is nearly as large (SIMILAR_FACE); ``single`` requires exactly one face
    and says how many were found otherwise.
    """
    if policy not in ("largest", "clear", "single"):
        raise ValueError(f"unknown face policy {policy!r}: use 'largest', 'clear' or 'single'")
    if not faces:
        raise NoFaceError("no face found")
    n = len(faces)
    if index is not None:
        if not 0 <= index < n:
            raise FaceIndexError(
                f"face {index} was asked for but {n} face(s) were found (indices 0-{n - 1}, "
                "left to right, as `icportrait faces inspect` lists them)")
        face = left_to_right(faces)[index]
    else:
        if policy == "single" and n > 1:
            raise MultipleFacesError(
                f"{n} faces found, exactly one is required (use policy 'largest' to take "
                "the largest)"
            )
        by_size = sorted(faces, key=lambda f: -f.area)
        face = by_size[0]
        similar = [f for f in by_size if f.size >= SIMILAR_FACE * face.size]
        if policy == "clear" and len(similar) > 1:
            sizes = ", ".join(f"{f.size:.0f}" for f in left_to_right(similar))
            raise MultipleFacesError(
                f"{len(similar)} faces of similar size ({sizes} px) in a photo of {n} faces: "
                "say which one by its index (left to right, as `icportrait faces inspect` "
                "lists them)")
    if face.size < min_size:
        which = "the face" if n == 1 else f"the chosen face (of {n})"
        raise FaceTooSmallError(
            f"{which} is {face.size:.0f} px across, smaller than the {min_size:g} px minimum; "
            "use a photo in which it is larger"
        )
    return face
