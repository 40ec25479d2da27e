"""Alignment, paste-back, masks, and the pose's rotation convention (exact, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from icportrait.faces import (
    HeadPose,
    apply_affine,
    canonical_points,
    matrix_to_pose,
    pose_to_matrix,
    similarity_transform,
)
from icportrait.faces.align import CANONICAL_FIVE


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 500, (5, 2))
    angle, scale, shift = np.radians(23.0), 0.7, np.array([12.0, -40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-7)


def test_similarity_transform_never_reflects():
    src = np.array([[0.0, 0], [1, 0], [0, 1]])
    mirrored = src * [-1, 1]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_similarity_transform_bad_points():
    with pytest.raises(ValueError, match="matching N x 2"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))


def test_canonical_points_and_margin():
    pts = canonical_points(512)
    np.testing.assert_allclose(pts, CANONICAL_FIVE * 512)
    eye_dist = pts[1, 0] - pts[0, 0]
    assert eye_dist == pytest.approx(128.0)  # FFHQ-like: eyes a quarter of the width apart
    wide = canonical_points(512, margin=2.0)
    assert wide[1, 0] - wide[0, 0] == pytest.approx(64.0)
    np.testing.assert_allclose(wide.mean(0), (pts - 256).mean(0) / 2 + 256)
    with pytest.raises(ValueError, match="margin"):
        canonical_points(256, margin=0.0)
    with pytest.raises(ValueError, match="at least 8"):
        canonical_points(4)


def test_apply_affine_scales_depth():
    m = np.array([[2.0, 0, 5], [0, 2.0, -1]])
    out = apply_affine(m, np.array([[1.0, 1.0, 3.0]]))
    np.testing.assert_allclose(out, [[7.0, 1.0, 6.0]])


@pytest.mark.parametrize("angles", [(0, 0, 0), (30, 0, 0), (0, -20, 0), (0, 0, 45),
                                    (-35, 15, -10), (60, -40, 170)])
def test_pose_matrix_round_trip(angles):
    pose = HeadPose(*map(float, angles))
    rot = pose_to_matrix(pose)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    back = matrix_to_pose(rot)
    np.testing.assert_allclose([back.yaw, back.pitch, back.roll], angles, atol=1e-9)


def test_pose_sign_convention():
    nose = np.array([0.0, 0.0, -1.0])  # the nose points at the camera (-z)
    up = np.array([0.0, -1.0, 0.0])    # the top of the head is image-up (-y)
    turned = pose_to_matrix(HeadPose(30, 0, 0)) @ nose
    assert turned[0] > 0.4  # yaw > 0: the nose moves to the image's right
    looking_up = pose_to_matrix(HeadPose(0, 20, 0)) @ nose
    assert looking_up[1] < -0.3  # pitch > 0: the nose moves up in the image
    tilted = pose_to_matrix(HeadPose(0, 0, 30)) @ up
    assert tilted[0] < -0.4  # roll > 0: the head top moves left, i.e. counter-clockwise


def test_resize_aligned_is_the_same_crop_at_another_size():
    import cv2

    from icportrait.faces.align import align_face, resize_aligned

    # A smooth photo, so that resampling differences stay small.
    yy, xx = np.mgrid[0:300, 0:400].astype(np.float64)
    photo = np.stack([128 + 100 * np.sin(xx / 23), 128 + 100 * np.cos(yy / 17),
                      128 + 60 * np.sin((xx + yy) / 31)], -1).astype(np.uint8)
    five = np.array([[170, 140], [230, 140], [200, 170], [178, 200], [222, 200]], float)
    small = align_face(photo, five, size=64)
    big = resize_aligned(small, photo, 160)
    assert big.size == 160 and big.source_shape == small.source_shape
    assert abs(big.scale - small.scale * 2.5) < 1e-9
    # The big crop, resized down, is the small one; its pixel centres are cv2.resize's.
    down = cv2.resize(big.image, (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(down - small.image).mean() < 2.0
    shifted = resize_aligned(small, photo, 160)
    shifted.matrix[:, 2] += 1.0  # one big-crop pixel off: measurably worse
    off = cv2.warpAffine(photo, shifted.matrix, (160, 160), flags=cv2.INTER_LINEAR)
    off = cv2.resize(off, (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(off - small.image).mean() > np.abs(down - small.image).mean()
