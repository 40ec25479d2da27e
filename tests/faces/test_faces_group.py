"""Faces in group photos: the extra detection passes, choosing a face, and the refusals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from icportrait.errors import (
    FaceCutOffError,
    FaceIndexError,
    FaceTooSmallError,
    FaceTurnedError,
    MultipleFacesError,
)
from icportrait.evaluation.face_composites import Portrait, composite, score_detections
from icportrait.faces import FaceBox, analyze_faces, detect_faces, prepare_face, select_face
from icportrait.faces.analyze import Face, check_usable
from icportrait.faces.detect import ROTATED_PASS, _rotated
from icportrait.faces.pose import HeadPose


@pytest.fixture(scope="module")
def portraits(astronaut, grace_hopper):
    return [Portrait.of("astronaut", astronaut), Portrait.of("grace_hopper", grace_hopper)]


def test_group_photo_every_face_of_90_px_is_listed(portraits):
    from skimage import data

    background = cv2.resize(data.coffee(), (1280, 886))
    image, faces = composite(background, portraits, np.random.default_rng(3), 6,
                             sizes=(90, 130), rolls=(-30, 30), yaws=(-40, 40))
    assert len(faces) == 6
    # mediapipe on the whole image alone misses most of them ...
    found_whole, _ = score_detections(faces, detect_faces(image, "mediapipe"))
    assert sum(found_whole) < 6
    # ... the combined detector finds every one, and nothing else
    found, false_pos = score_detections(faces, detect_faces(image))
    assert all(found) and false_pos == 0


def test_strongly_tilted_face_is_found_by_the_turned_pass(astronaut):
    canvas = cv2.copyMakeBorder(astronaut, 200, 200, 200, 200, cv2.BORDER_REFLECT_101)
    m = cv2.getRotationMatrix2D((456, 330), 70, 1.0)  # her face, turned 70 degrees
    tilted = cv2.warpAffine(canvas, m, canvas.shape[1::-1], borderMode=cv2.BORDER_REFLECT_101)
    assert not [b for b in detect_faces(tilted, "mediapipe") if b.x0 < 456 < b.x1]
    boxes = [b for b in detect_faces(tilted) if b.x0 < 456 < b.x1 and b.y0 < 330 < b.y1]
    assert len(boxes) == 1
    # the pass over the image turned back by 50 degrees finds it on its own
    turned = [b for b in _rotated(tilted, -ROTATED_PASS) if b.x0 < 456 < b.x1]
    assert turned and turned[0].angle == -ROTATED_PASS


def test_faces_are_chosen_by_index_left_to_right(astronaut, grace_hopper):
    group = np.hstack([grace_hopper[:512], astronaut])   # Hopper left, astronaut right
    faces = analyze_faces(group)
    assert len(faces) == 2 and faces[0].box.center[0] < 512 < faces[1].box.center[0]
    right = prepare_face(group, size=128, face=1)
    assert (right.index, right.count) == (1, 2) and right.face.box == faces[1].box
    assert right.to_dict()["index"] == 1 and right.to_dict()["of"] == 2
    assert prepare_face(group, size=128).index == 0     # default: the largest (Hopper's)
    with pytest.raises(FaceIndexError, match=r"face 2 was asked for but 2 face\(s\)"):
        prepare_face(group, face=2)


def test_similar_faces_make_a_clear_choice_ambiguous():
    a = FaceBox(0, 0, 100, 100, 0.9, "x")
    b = FaceBox(200, 0, 290, 90, 0.9, "x")
    c = FaceBox(400, 0, 430, 30, 0.9, "x")
    assert select_face([a, b, c]) == a                   # largest: no question asked
    with pytest.raises(MultipleFacesError, match=r"2 faces of similar size \(100, 90 px\) "
                                                 r"in a photo of 3 faces"):
        select_face([a, b, c], "clear")
    assert select_face([a, c], "clear") == a
    assert select_face([c, b, a], index=0) == a          # indices count left to right
    with pytest.raises(FaceTooSmallError, match=r"chosen face \(of 3\) is 30 px across, "
                                                r"smaller than the 48 px minimum"):
        select_face([a, b, c], index=2)


def test_face_cut_off_by_the_border_is_refused(astronaut):
    face = detect_faces(astronaut)[0]
    cut = np.ascontiguousarray(astronaut[:, int(face.x0 + 0.35 * face.width):])
    with pytest.raises(FaceCutOffError, match=r"cut off at the image border \(\d+% of it"):
        prepare_face(cut)


def test_face_turned_too_far_is_refused():
    mesh = np.zeros((478, 3))
    mesh[:, :2] = 50
    face = Face(FaceBox(0, 0, 100, 100, 0.9, "x"), mesh, HeadPose(80.0, 0.0, 0.0))
    with pytest.raises(FaceTurnedError, match="turned 80° from the camera"):
        check_usable(face, (100, 100, 3))
    check_usable(Face(face.box, mesh, HeadPose(30.0, 0.0, 0.0)), (100, 100, 3))
