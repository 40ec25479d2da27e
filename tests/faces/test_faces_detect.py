from __future__ import annotations

import cv2
import numpy as np
import pytest

from icportrait.errors import (
    FaceTooSmallError,
    ImageError,
    MultipleFacesError,
    NoFaceError,
)
from icportrait.faces import FaceBox, detect_faces, prepare_face, select_face
from icportrait.faces.detect import MIN_FACE_SIZE


def _iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    return ix * iy / (a.area + b.area - ix * iy)


def test_detects_the_astronaut(astronaut):
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    box = faces[0]
    assert box.detector == "mediapipe" and box.score > 0.8
    # Her face is around (225, 130) in the 512 x 512 picture.
    assert box.x0 < 225 < box.x1 and box.y0 < 130 < box.y1
    assert 60 < box.width < 160


def test_dlib_fallback_agrees_with_mediapipe(astronaut, grace_hopper):
    for image in (astronaut, grace_hopper):
        mp_box = detect_faces(image, "mediapipe")[0]
        dlib_boxes = detect_faces(image, "dlib")
        assert len(dlib_boxes) == 1 and dlib_boxes[0].detector == "dlib-hog"
        assert _iou(mp_box, dlib_boxes[0]) > 0.4


def test_no_face():
    rng = np.random.default_rng(0)
    blank = np.full((256, 256, 3), 200, np.uint8)
    noise = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    for image in (blank, noise):
        assert detect_faces(image) == []
        with pytest.raises(NoFaceError, match="no face found"):
            prepare_face(image)


def test_several_faces(astronaut, grace_hopper):
    group = np.hstack([astronaut[:, :, :], grace_hopper[:512, :, :]])
    faces = detect_faces(group)
    assert len(faces) == 2
    with pytest.raises(MultipleFacesError, match="2 faces found"):
        select_face(faces, policy="single")
    largest = select_face(faces, policy="largest")
    assert largest.center[0] > 512  # Grace Hopper's face is the larger one
    assert prepare_face(group).face.box == largest


def test_face_too_small(astronaut):
    small = cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)  # face ~30 px
    canvas = np.full((400, 400, 3), 230, np.uint8)
    canvas[120:280, 120:280] = small
    faces = detect_faces(canvas)
    assert faces and faces[0].size < MIN_FACE_SIZE
    with pytest.raises(FaceTooSmallError, match=r"smaller than the 48 px minimum"):
        prepare_face(canvas)


def test_select_face_policies_on_boxes():
    a = FaceBox(0, 0, 100, 100, 0.9, "x")
    b = FaceBox(200, 0, 260, 60, 0.99, "x")
    assert select_face([b, a]) == a
    with pytest.raises(MultipleFacesError, match="2 faces"):
        select_face([a, b], policy="single")
    with pytest.raises(NoFaceError):
        select_face([])
    with pytest.raises(FaceTooSmallError):
        select_face([FaceBox(0, 0, 20, 20, 0.9, "x")])
    with pytest.raises(ValueError, match="unknown face policy"):
        select_face([a], policy="smallest")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), np.uint8),
        np.zeros((64, 64, 4), np.uint8),
        np.zeros((64, 64, 3), np.float32),
        "not an array",
    ],
)
def test_wrong_array_is_a_clear_error(bad):
    with pytest.raises(ImageError, match="expected an RGB uint8 array"):
        detect_faces(bad)
