"""The classical (warp + blend) face swap baseline on the bundled public-domain portraits."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import pytest

from icportrait.errors import NoFaceError
from icportrait.evaluation.classical_swap import classical_swap
from icportrait.faces import (
    SAME_PERSON_THRESHOLD,
    detect_faces,
    face_embedding,
    face_mask,
    face_mesh,
    identity_distance,
    select_face,
)
from icportrait.faces.samples import load_sample

PAIRS = [("astronaut", "grace_hopper"), ("grace_hopper", "astronaut")]  # (profile, template)
BLENDS = ["poisson", "alpha"]


@cache
def _image(name: str) -> np.ndarray:
    image = load_sample(name)
    image.flags.writeable = False  # the swap must not modify its inputs
    return image


@cache
def _swap(profile: str, template: str, blend: str) -> np.ndarray:
    return classical_swap(_image(profile), _image(template), blend=blend)


@cache
def _embedding(name_or_swap: str | tuple[str, str, str]) -> np.ndarray:
    image = _image(name_or_swap) if isinstance(name_or_swap, str) else _swap(*name_or_swap)
    return face_embedding(image, select_face(detect_faces(image)))


def _oval(name: str) -> np.ndarray:
    image = _image(name)
    mesh = face_mesh(image, select_face(detect_faces(image)))
    return face_mask(mesh, image.shape[:2]) > 0.5


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize(("profile", "template"), PAIRS)
def test_only_the_template_face_changes(profile, template, blend):
    out = _swap(profile, template, blend)
    ref = _image(template)
    assert out.shape == ref.shape and out.dtype == np.uint8  # sizes differ: 512x512 vs 600x512
    diff = np.abs(out.astype(int) - ref).max(axis=-1)
    oval = _oval(template)
    # 15 px beyond the face oval nothing moves; Poisson cloning may round by a level.
    far = cv2.dilate(oval.astype(np.uint8), np.ones((31, 31), np.uint8)) == 0
    assert diff[far].max() <= (0 if blend == "alpha" else 2)
    # Inside the face the other person's features replace the template's.
    assert diff[oval].mean() > 20


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize(("profile", "template"), PAIRS)
def test_identity_moves_to_the_profile_person(profile, template, blend):
    out = _embedding((profile, template, blend))
    to_profile = identity_distance(out, _embedding(profile))
    to_template = identity_distance(out, _embedding(template))
    before = identity_distance(_embedding(template), _embedding(profile))
    # Measured: to_profile 0.36-0.42, to_template 0.65-0.69, before 0.68.
    assert to_profile < before
    assert to_profile < to_template
    assert to_profile < SAME_PERSON_THRESHOLD  # dlib calls the result the profile person
    assert to_template > 0.5


@pytest.mark.parametrize("blend", BLENDS)
@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_swapping_a_face_with_itself_returns_the_template(name, blend):
    image = _image(name)
    diff = np.abs(classical_swap(image, image, blend=blend).astype(int) - image)
    assert diff.mean() < 0.25 and diff.max() <= 2


@pytest.mark.parametrize("blend", BLENDS)
def test_a_face_cut_by_the_image_edge_is_swapped(blend):
    # Her face spans x 179-271: cropping at x 200 puts the oval on the left edge, where
    # seamlessClone would fail without padding.
    template = np.ascontiguousarray(_image("astronaut")[:, 200:])
    out = classical_swap(_image("grace_hopper"), template, blend=blend)
    assert out.shape == template.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - template).max(axis=-1)
    assert diff[70:170, :60].mean() > 20  # the part of the face left in the crop changed
    assert diff[300:].max() == 0  # the suit below the face did not


def test_faceless_images_raise_the_toolkit_error():
    blank = np.full((256, 256, 3), 128, np.uint8)
    with pytest.raises(NoFaceError):
        classical_swap(_image("astronaut"), blank)
    with pytest.raises(NoFaceError):
        classical_swap(blank, _image("astronaut"))


def test_unknown_blend_is_rejected():
    with pytest.raises(ValueError, match="unknown blend 'median'"):
        classical_swap(_image("astronaut"), _image("grace_hopper"), blend="median")
