"""Image-quality and lighting metrics: known answers, a cross-check against scikit-image, and
synthetic Lambertian spheres whose light direction is known exactly."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest

from icportrait.errors import MissingDependencyError
from icportrait.evaluation import image_metrics as im


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    c = np.clip(linear, 0.0, 1.0)
    srgb = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
    return np.rint(srgb * 255).astype(np.uint8)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _sphere(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Normals of a unit sphere filling the frame, in OpenCV camera axes (x right, y down,
    z away: the visible side faces -z), NaN outside the disc; and the disc mask."""
    t = (np.arange(size) + 0.5) / (size / 2) - 1.0
    x, y = np.meshgrid(t, t)
    r2 = x * x + y * y
    disc = r2 < 1.0
    z = -np.sqrt(np.clip(1.0 - r2, 0.0, None))
    normals = np.stack([x, y, z], axis=-1)
    normals[~disc] = np.nan
    return normals, disc


def _shade(normals, light, albedo=(0.7, 0.7, 0.7), ambient=0.2, exposure=1.0, clamp=True):
    """sRGB uint8 render of a Lambertian surface: albedo · (ambient + max(n · L, 0)), or
    without the clamp albedo · (ambient + n · L) (exact first-order SH everywhere)."""
    cos = np.nan_to_num(normals) @ _unit(light)
    if clamp:
        cos = np.maximum(cos, 0.0)
    linear = exposure * (ambient + cos)[..., None] * np.asarray(albedo)
    return _srgb_encode(linear)


# --- PSNR ------------------------------------------------------------------------------------


def test_psnr_identical_is_inf(astronaut):
    assert im.psnr(astronaut, astronaut.copy()) == math.inf


def test_psnr_constant_offset_known_value():
    grey = np.full((32, 48, 3), 128, np.uint8)
    assert im.psnr(grey, grey + 10) == pytest.approx(10 * math.log10(255**2 / 100), rel=1e-12)
    assert im.psnr(grey + 10, grey) == pytest.approx(28.130803608679106, rel=1e-12)


def test_psnr_mask_restricts_the_pixels():
    a = np.full((20, 20, 3), 100, np.uint8)
    b = a.copy()
    b[:, 10:] = 0  # differs only on the right half
    left = np.zeros((20, 20), bool)
    left[:, :10] = True
    assert im.psnr(a, b, mask=left) == math.inf
    # right half: every value off by 100
    assert im.psnr(a, b, mask=~left) == pytest.approx(10 * math.log10(255**2 / 100**2))
    # whole image: half of the values off by 100
    assert im.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100**2 / 2)))


# --- SSIM --------------------------------------------------------------------------------------


def test_ssim_identical_is_one(astronaut):
    assert im.ssim(astronaut, astronaut.copy()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("sigma", [5.0, 20.0, 60.0])
def test_ssim_matches_skimage(astronaut, sigma):
    from skimage.metrics import structural_similarity

    a = astronaut[100:356, 120:376]
    b = _noisy(a, sigma, seed=int(sigma))
    ours = im.ssim(a, b)
    reference = structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )
    assert abs(ours - reference) < 1e-3
    assert ours < 1.0


# --- MS-SSIM -----------------------------------------------------------------------------------


def test_ms_ssim_identical_is_one(astronaut):
    a = astronaut[:200, :190]
    assert im.ms_ssim(a, a.copy()) == pytest.approx(1.0, abs=1e-12)


def test_ms_ssim_none_below_176_pixels(astronaut):
    small = astronaut[:175, :300]
    assert im.ms_ssim(small, _noisy(small, 10)) is None
    fits = astronaut[:176, :176]
    score = im.ms_ssim(fits, _noisy(fits, 10))
    assert score is not None and 0.0 < score < 1.0


def test_ms_ssim_falls_as_blur_grows(astronaut):
    a = astronaut[64:320, 128:384]
    scores = [
        im.ms_ssim(a, cv2.GaussianBlur(a, (0, 0), sigma)) for sigma in (0.5, 1.0, 2.0, 4.0, 8.0)
    ]
    assert all(s is not None for s in scores)
    assert all(hi > lo for hi, lo in itertools.pairwise(scores)), scores
    assert scores[0] < 1.0


# --- BRISQUE -----------------------------------------------------------------------------------


def test_brisque_prefers_the_clean_portrait(astronaut):
    try:
        im.brisque_model_files()
    except MissingDependencyError:
        pytest.skip("BRISQUE model files missing: install the Debian package opencv-data")
    clean = im.brisque(astronaut)
    degraded = _noisy(cv2.GaussianBlur(astronaut, (0, 0), 3.0), 25.0)
    assert clean < im.brisque(degraded)
    assert clean < im.brisque(_noisy(astronaut, 25.0))
    assert clean < im.brisque(cv2.GaussianBlur(astronaut, (0, 0), 4.0))


def test_brisque_missing_files_name_the_package(astronaut, monkeypatch, tmp_path):
    monkeypatch.setattr(im, "BRISQUE_DIRS", (tmp_path,))
    with pytest.raises(MissingDependencyError, match="opencv-data"):
        im.brisque(astronaut)


# --- lighting ----------------------------------------------------------------------------------


def _angle(u, v) -> float:
    return math.degrees(math.acos(float(np.clip(np.dot(_unit(u), _unit(v)), -1.0, 1.0))))


# x right, y down, z away: right, a little up, toward the camera
LIGHT = (0.5, -0.3, -0.8)


def test_shading_direction_recovers_the_light_clamped():
    normals, disc = _sphere()
    image = _shade(normals, LIGHT, clamp=True)
    lit = disc & (np.nan_to_num(normals) @ _unit(LIGHT) > 0)  # no attached shadow
    assert _angle(im.shading_direction(image, normals, lit), LIGHT) < 2.0


def test_shading_direction_recovers_the_light_unclamped_skin_albedo():
    normals, disc = _sphere()
    # albedo · (1 + n · L) spans [0, 2 · albedo] ⊂ [0, 1]: first-order SH over the whole disc
    image = _shade(normals, LIGHT, albedo=(0.4, 0.3, 0.25), ambient=1.0, clamp=False)
    direction = im.shading_direction(image, normals, disc)
    assert direction.shape == (3,)
    assert np.linalg.norm(direction) == pytest.approx(1.0)
    assert _angle(direction, LIGHT) < 2.0


def test_shading_direction_ignores_zero_normals_and_rejects_flat_patches():
    normals, disc = _sphere(64)
    normals[~disc] = 0.0  # the renderer's other background convention
    image = _shade(normals, LIGHT, albedo=(0.45, 0.45, 0.45), ambient=1.0, clamp=False)
    everything = np.ones(disc.shape, bool)
    assert _angle(im.shading_direction(image, normals, everything), LIGHT) < 2.0
    flat = np.zeros_like(normals)
    flat[..., 2] = -1.0
    with pytest.raises(ValueError, match="do not span"):
        im.shading_direction(image, flat, everything)
    grey = np.full_like(image, 128)
    with pytest.raises(ValueError, match="does not vary"):
        im.shading_direction(grey, normals, disc)


def test_light_direction_error_left_versus_right():
    normals, disc = _sphere()
    left, right = (-0.6, -0.3, -0.74), (0.6, -0.3, -0.74)
    cos = np.nan_to_num(normals)
    both_lit = disc & (cos @ _unit(left) > 0) & (cos @ _unit(right) > 0)
    a, b = _shade(normals, left), _shade(normals, right)
    truth = _angle(left, right)
    assert abs(im.light_direction_error(a, b, normals, both_lit) - truth) < 2.0
    assert im.light_direction_error(a, a.copy(), normals, both_lit) == pytest.approx(0, abs=1e-9)


def test_shading_error_ignores_exposure_but_sees_the_light():
    normals, disc = _sphere()
    reference = _shade(normals, LIGHT)
    assert im.shading_error(reference, reference.copy(), disc) == 0.0
    darker = _shade(normals, LIGHT, exposure=0.5)
    brighter = _shade(normals, LIGHT, exposure=1.15)
    # only uint8 rounding is left
    assert im.shading_error(darker, reference, disc) < 0.01
    assert im.shading_error(brighter, reference, disc) < 0.01
    other = _shade(normals, (-0.5, -0.3, -0.8))
    assert im.shading_error(other, reference, disc) > 0.1


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", [im.psnr, im.ssim, im.ms_ssim])
def test_full_reference_metrics_reject_mismatched_shapes(metric):
    a = np.zeros((200, 200, 3), np.uint8)
    with pytest.raises(ValueError, match=r"same shape, got \(200, 200, 3\) and \(200, 180, 3\)"):
        metric(a, np.zeros((200, 180, 3), np.uint8))


def test_bad_inputs_say_what_is_wrong():
    normals, disc = _sphere(32)
    image = _shade(normals, LIGHT)
    with pytest.raises(ValueError, match="same shape"):
        im.shading_error(image, image[:, :16], disc)
    with pytest.raises(ValueError, match="same shape"):
        im.light_direction_error(image, image[:16], normals, disc)
    with pytest.raises(ValueError, match="uint8 RGB"):
        im.psnr(image.astype(np.float32), image.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        im.brisque(image[..., 0])
    with pytest.raises(ValueError, match="normals must be"):
        im.shading_direction(image, normals[:16], disc)
    with pytest.raises(ValueError, match="mask must be"):
        im.shading_direction(image, normals, disc.astype(np.uint8))
    with pytest.raises(ValueError, match="mask must be"):
        im.psnr(image, image, mask=disc[:16])
    with pytest.raises(ValueError, match="selects no pixels"):
        im.shading_error(image, image, np.zeros_like(disc))
    with pytest.raises(ValueError, match="at least 11"):
        im.ssim(image[:10], image[:10])
