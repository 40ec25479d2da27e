"""The face toolkit on the public-domain portraits and transformations of them."""

from __future__ import annotations

import io
import itertools
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from icportrait.faces import (
    NUM_MESH_POINTS,
    SAME_PERSON_THRESHOLD,
    analyze_faces,
    detect_faces,
    face_embedding,
    face_mesh,
    five_points,
    head_pose,
    identity_distance,
    paste_back,
    pose_to_matrix,
    prepare_face,
    select_face,
)
from icportrait.faces.head_template import TEMPLATE_PATH, build
from icportrait.faces.pose import HeadPose
from icportrait.faces.samples import load_sample
from icportrait.io import load_image
from icportrait.synth.photo_lift import lift_face, render_lifted


def _pose(image: np.ndarray) -> HeadPose:
    faces = analyze_faces(image)
    assert faces, "no face found"
    return faces[0].pose


def _embedding(image: np.ndarray) -> np.ndarray:
    return face_embedding(image, select_face(detect_faces(image), min_size=0))


def test_mesh_and_five_points(astronaut):
    mesh = face_mesh(astronaut, detect_faces(astronaut)[0])
    assert mesh.shape == (NUM_MESH_POINTS, 3)
    le, re, nose, ml, mr = five_points(mesh)
    assert le[0] < nose[0] < re[0] and ml[0] < mr[0]
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])
    assert 35 < re[0] - le[0] < 55  # her eyes are ~43 px apart


def test_prepare_face_aligns_to_the_canonical_frame(grace_hopper):
    prepared = prepare_face(grace_hopper, size=256)
    assert prepared.image.shape == (256, 256, 3)
    # Landmarks found again on the crop sit where the canonical frame puts them.
    crop_mesh = face_mesh(prepared.image)
    eyes = five_points(crop_mesh)[:2]
    np.testing.assert_allclose(eyes, [[96, 120.6], [160, 120.6]], atol=8)
    # The mask covers the nose and not the corners.
    nose = np.round(prepared.mesh[1, :2]).astype(int)
    assert prepared.mask[nose[1], nose[0]] == 1.0
    assert prepared.mask[:8, :8].max() == 0 and prepared.mask[-8:, -8:].max() == 0
    assert 0.15 < prepared.mask.mean() < 0.6


def test_paste_back_inverts_the_alignment(grace_hopper):
    prepared = prepare_face(grace_hopper, size=256)
    pasted = paste_back(prepared.aligned, prepared.image, grace_hopper, mask=prepared.mask)
    region = prepared.face.box
    y0, y1, x0, x1 = int(region.y0), int(region.y1), int(region.x0), int(region.x1)
    diff = np.abs(pasted[y0:y1, x0:x1].astype(int) - grace_hopper[y0:y1, x0:x1])
    assert diff.mean() < 4.0  # only resampling blur
    # A black crop pasted back darkens the face, and only the face.
    dark = paste_back(prepared.aligned, np.zeros_like(prepared.image), grace_hopper,
                      mask=prepared.mask)
    assert dark[y0:y1, x0:x1].mean() < grace_hopper[y0:y1, x0:x1].mean() - 40
    np.testing.assert_array_equal(dark[:20, :20], grace_hopper[:20, :20])
    with pytest.raises(ValueError, match="aligned in a 512x600 image"):
        paste_back(prepared.aligned, prepared.image, grace_hopper[:100])


def test_in_plane_rotation_moves_roll(astronaut):
    h, w = astronaut.shape[:2]
    base = _pose(astronaut)
    for angle in (-25.0, 20.0):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)  # counter-clockwise
        rotated = cv2.warpAffine(astronaut, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
        pose = _pose(rotated)
        assert pose.roll - base.roll == pytest.approx(angle, abs=5.0)
        assert pose.yaw == pytest.approx(base.yaw, abs=4.0)


@pytest.fixture(scope="module")
def turned_heads(astronaut) -> dict[float, np.ndarray]:
    """The astronaut's face lifted to 3D and turned to known yaws."""
    mesh = face_mesh(astronaut, detect_faces(astronaut)[0])
    face = lift_face(astronaut, mesh)
    return {yaw: render_lifted(face, pose_to_matrix(HeadPose(yaw, 0, 0)))
            for yaw in (-30.0, -15.0, 0.0, 15.0, 30.0)}


def test_yaw_follows_head_turns(turned_heads):
    yaws = [_pose(img).yaw for _, img in sorted(turned_heads.items())]
    assert all(b > a + 5 for a, b in itertools.pairwise(yaws))
    assert yaws[0] < -15 and yaws[-1] > 15


def test_mirroring_flips_yaw_and_roll(turned_heads):
    for yaw in (-30.0, 30.0):
        image = turned_heads[yaw]
        pose, flipped = _pose(image), _pose(np.ascontiguousarray(image[:, ::-1]))
        assert np.sign(pose.yaw) == np.sign(yaw) == -np.sign(flipped.yaw)
        assert flipped.yaw == pytest.approx(-pose.yaw, abs=4.0)
        assert flipped.roll == pytest.approx(-pose.roll, abs=4.0)
        assert flipped.pitch == pytest.approx(pose.pitch, abs=4.0)


def test_exif_rotated_photo_gives_the_upright_pose(astronaut, tmp_path):
    upright = tmp_path / "upright.jpg"
    Image.fromarray(astronaut).save(upright, quality=95)
    # Store the pixels rotated 90° clockwise, with orientation 8 ("rotate 90° CCW to view").
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, k=-1)))
    exif = Image.Exif()
    exif[0x0112] = 8
    rotated = tmp_path / "rotated.jpg"
    stored.save(rotated, quality=95, exif=exif)
    a, b = load_image(upright), load_image(rotated)
    assert a.shape == b.shape == astronaut.shape
    pa, pb = _pose(a), _pose(b)
    np.testing.assert_allclose([pb.yaw, pb.pitch, pb.roll], [pa.yaw, pa.pitch, pa.roll], atol=1.5)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA"])
def test_any_mode_photo_still_has_its_face(astronaut, mode):
    buf = io.BytesIO()
    img = Image.fromarray(astronaut).convert(mode)
    img.save(buf, format="JPEG" if mode == "CMYK" else "PNG")
    image = load_image(buf.getvalue())
    faces = analyze_faces(image)
    assert len(faces) == 1 and faces[0].mesh is not None


def test_identity_same_person_under_edits(astronaut):
    ref = _embedding(astronaut)
    h, w = astronaut.shape[:2]
    edits = {
        "mirror": np.ascontiguousarray(astronaut[:, ::-1]),
        "half size": cv2.resize(astronaut, (w // 2, h // 2), interpolation=cv2.INTER_AREA),
        "crop": np.ascontiguousarray(astronaut[40:360, 100:380]),
        "blur": cv2.GaussianBlur(astronaut, (0, 0), 1.5),
    }
    for name, image in edits.items():
        d = identity_distance(ref, _embedding(image))
        assert d < SAME_PERSON_THRESHOLD, name


def test_identity_different_people(astronaut, grace_hopper):
    d = identity_distance(_embedding(astronaut), _embedding(grace_hopper))
    assert d > SAME_PERSON_THRESHOLD
    with pytest.raises(ValueError, match="128-d"):
        identity_distance(np.zeros(128), np.zeros(64))


def test_head_template_rebuilds_to_the_shipped_file():
    shipped = json.loads(TEMPLATE_PATH.read_text())
    rebuilt = build([load_sample("astronaut"), load_sample("grace_hopper")])
    assert rebuilt["indices"] == shipped["indices"]
    np.testing.assert_allclose(rebuilt["points"], shipped["points"], atol=1e-4)
    # After calibration, the frontal portraits have pitch near zero.
    for name in ("astronaut", "grace_hopper"):
        image = load_sample(name)
        assert abs(head_pose(face_mesh(image, detect_faces(image)[0]), image.shape).pitch) < 4
