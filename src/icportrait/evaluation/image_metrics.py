"""Image-quality and lighting metrics for portraits (pure numpy / OpenCV, no model, no state).

Conventions, checked at the borders (a violation raises :class:`ValueError`):

* an **image** is an ``H x W x 3`` uint8 RGB array (sRGB-encoded, 0..255);
* a **mask** is an ``H x W`` bool array; True marks the pixels a metric looks at;
* **normals** are an ``H x W x 3`` float array of unit vectors in the camera axes of the
  renderer (OpenCV's: x right, y down, z away from the camera), NaN (or 0) on background.

Full-reference metrics: :func:`psnr`, :func:`ssim`, :func:`ms_ssim` (higher is better).
No-reference metric: :func:`brisque` (lower is better). Lighting metrics for synthetic suites,
where the geometry is known: :func:`shading_direction`, :func:`light_direction_error`,
:func:`shading_error`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from icportrait.colour import srgb_to_linear
from icportrait.errors import MissingDependencyError

# SSIM constants of Wang et al. 2004: an 11 x 11 Gaussian window of sigma 1.5, K1 = 0.01,
# K2 = 0.03, dynamic range L = 255 (uint8).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_L = 255.0
_C1 = (0.01 * _L) ** 2
_C2 = (0.03 * _L) ** 2

# MS-SSIM weights of Wang et al. 2003, finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# The window must fit at the coarsest scale, after four halvings: 11 · 2⁴ = 176.
MS_SSIM_MIN_SIZE = SSIM_WINDOW * 2 ** (len(MS_SSIM_WEIGHTS) - 1)

# Where Debian's opencv-data puts the BRISQUE model trained on the LIVE database.
BRISQUE_DIRS = (
    Path("/usr/share/opencv4/quality"),
    Path("/usr/local/share/opencv4/quality"),
    Path("/usr/share/opencv/quality"),
)
BRISQUE_MODEL = "brisque_model_live.yml"
BRISQUE_RANGE = "brisque_range_live.yml"

# sRGB decoding (IEC 61966-2-1) as a lookup table: uint8 code -> linear value in [0, 1].
_SRGB_TO_LINEAR = srgb_to_linear(np.arange(256, dtype=np.float64))
_REC601 = np.array([0.299, 0.587, 0.114])


# --- input checks --------------------------------------------------------------------------


def _describe(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"a {x.dtype} array of shape {x.shape}"
    return type(x).__name__


def _check_image(name: str, x: object) -> None:
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] == 3):
        raise ValueError(f"{name} must be an H x W x 3 uint8 RGB image, got {_describe(x)}")


def _check_pair(a: np.ndarray, b: np.ndarray, names: tuple[str, str] = ("a", "b")) -> None:
    _check_image(names[0], a)
    _check_image(names[1], b)
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {a.shape} and {b.shape}"
        )


def _check_mask(mask: object, shape: tuple[int, ...]) -> None:
    if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_ and mask.shape == shape[:2]):
        raise ValueError(
            f"mask must be an H x W bool array of shape {shape[:2]}, got {_describe(mask)}"
        )
    if not mask.any():
        raise ValueError("mask selects no pixels")


# --- full-reference metrics ----------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 · log10(255² / MSE)``.

    ``MSE`` is the mean of ``(a - b)²`` over all pixels and all three channels or, with
    ``mask``, over the three channels of the pixels where ``mask`` is True. Identical images
    (``MSE = 0``) give ``float('inf')``. Higher is better.
    """
    _check_pair(a, b)
    # float64 first: uint8 subtraction would wrap around
    diff = a.astype(np.float64) - b.astype(np.float64)
    if mask is not None:
        _check_mask(mask, a.shape)
        diff = diff[mask]
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(_L * _L / mse))


def _check_window_fits(a: np.ndarray) -> None:
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {a.shape}"
        )


def _ssim_cs(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term of two float64 single-channel images.

    Local statistics are Gaussian-weighted (population, not sample, variances); the maps are
    averaged over the pixels whose whole window lies inside the image, i.e. a 'valid'
    convolution, so the border mode of the blur never matters.
    """

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, sigmaY=SSIM_SIGMA)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    cs = (2.0 * cxy + _C2) / (vx + vy + _C2)
    luminance = (2.0 * mx * my + _C1) / (mx * mx + my * my + _C1)
    r = SSIM_WINDOW // 2
    inner = (slice(r, x.shape[0] - r), slice(r, x.shape[1] - r))
    return float(np.mean((luminance * cs)[inner])), float(np.mean(cs[inner]))


def _channels(a: np.ndarray, b: np.ndarray):
    for c in range(a.shape[2]):
        yield a[..., c].astype(np.float64), b[..., c].astype(np.float64)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004), in [-1, 1], 1 if equal.

    Per RGB channel, with Gaussian-weighted local means ``μ``, variances ``σ²`` and covariance
    ``σ_ab`` (an 11 x 11 window of sigma 1.5, population statistics)::

        SSIM(p) = (2 μa μb + C1) (2 σab + C2) / ((μa² + μb² + C1) (σa² + σb² + C2))

    with ``C1 = (0.01 · 255)²`` and ``C2 = (0.03 · 255)²``, averaged over the pixels whose
    window lies entirely inside the image; the result is the mean over the three channels.
    This equals ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)``. Images must be
    at least 11 x 11.
    """
    _check_pair(a, b)
    _check_window_fits(a)
    return float(np.mean([_ssim_cs(x, y)[0] for x, y in _channels(a, b)]))


def _halve(z: np.ndarray) -> np.ndarray:
    """2 x 2 average pooling; an odd last row or column is dropped."""
    h, w = z.shape[0] // 2, z.shape[1] // 2
    return z[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003), 5 scales, 1 if equal; or None.

    Per RGB channel, with ``cs_j`` the mean contrast-structure term (the SSIM formula without
    its luminance factor, same window and constants as :func:`ssim`) at scale ``j`` and
    ``SSIM_5`` the full mean SSIM at the coarsest scale::

        MS-SSIM = Π_{j=1..4} max(cs_j, 0)^w_j · max(SSIM_5, 0)^w_5
        w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

    Scale 1 is the image itself; each next scale is the previous one 2 x 2 average-pooled
    (an odd last row or column dropped). The result is the mean over the three channels.
    Negative terms are clipped to 0 before the power because a negative base to a
    fractional power is NaN (such images are anti-correlated, so 0 is the honest score).

    Returns None when ``min(H, W) < 176``: the 11-pixel window must still fit at the coarsest
    scale, after four halvings (``11 · 2⁴ = 176``).
    """
    _check_pair(a, b)
    if min(a.shape[:2]) < MS_SSIM_MIN_SIZE:
        return None
    last = len(MS_SSIM_WEIGHTS) - 1
    scores = []
    for x, y in _channels(a, b):
        score = 1.0
        for j, weight in enumerate(MS_SSIM_WEIGHTS):
            full, cs = _ssim_cs(x, y)
            score *= max(full if j == last else cs, 0.0) ** weight
            if j < last:
                x, y = _halve(x), _halve(y)
        scores.append(score)
    return float(np.mean(scores))


# --- no-reference metric -------------------------------------------------------------------


def brisque_model_files() -> tuple[Path, Path]:
    """The BRISQUE model and range files of Debian's ``opencv-data``, from :data:`BRISQUE_DIRS`.

    Raises :class:`~icportrait.errors.MissingDependencyError` when no folder has both.
    """
    for folder in BRISQUE_DIRS:
        model, ranges = folder / BRISQUE_MODEL, folder / BRISQUE_RANGE
        if model.is_file() and ranges.is_file():
            return model, ranges
    looked = ", ".join(str(d) for d in BRISQUE_DIRS)
    raise MissingDependencyError(
        f"BRISQUE needs {BRISQUE_MODEL} and {BRISQUE_RANGE} from the Debian package "
        f"opencv-data (`apt install opencv-data`); looked in {looked}"
    )


def brisque(image: np.ndarray) -> float:
    """No-reference quality score BRISQUE (Mittal, Moorthy & Bovik 2012); lower is better.

    OpenCV-contrib's ``cv2.quality.QualityBRISQUE_compute`` with the SVR model trained on the
    LIVE database (Debian package ``opencv-data``), applied to the image's grey levels
    (``cv2.COLOR_RGB2GRAY``). The score is roughly 0 (pristine) to 100 (badly distorted); it
    can stray slightly outside that range. Raises
    :class:`~icportrait.errors.MissingDependencyError` when the model files or OpenCV's
    contrib modules are missing.
    """
    _check_image("image", image)
    if not hasattr(cv2, "quality"):
        raise MissingDependencyError(
            "BRISQUE needs OpenCV's contrib modules (`pip install opencv-contrib-python-headless`)"
        )
    model, ranges = brisque_model_files()
    # BRISQUE works on one channel; OpenCV would read a 3-channel array as BGR, so convert
    # here, where the channel order is known.
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(cv2.quality.QualityBRISQUE_compute(gray, str(model), str(ranges))[0])


# --- lighting metrics ----------------------------------------------------------------------


def linear_luminance(image: np.ndarray) -> np.ndarray:
    """``H x W`` float64 luminance in [0, 1] of an sRGB uint8 image.

    Each channel is decoded to linear light with the sRGB transfer function
    (``c / 12.92`` if ``c <= 0.04045`` else ``((c + 0.055) / 1.055)^2.4``, ``c = code / 255``),
    then ``Y = 0.299 R + 0.587 G + 0.114 B`` (Rec.601 weights). Linear light, because shading
    is additive there; the gamma-encoded values are not proportional to irradiance.
    """
    _check_image("image", image)
    return _SRGB_TO_LINEAR[image] @ _REC601


def shading_direction(image: np.ndarray, normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Dominant light direction (unit 3-vector, camera axes, pointing toward the light).

    Over the pixels where ``mask`` is True and the normal is finite and non-zero, fits the
    first-order spherical-harmonics model ``Y ≈ c0 + c · n`` by ordinary least squares, where
    ``Y`` is :func:`linear_luminance` and ``n`` the normal, and returns ``c / |c|``.

    Assumptions: a Lambertian surface of constant albedo over the mask (e.g. the face skin)
    lit by distant light, without cast shadows, specular highlights or, ideally, attached
    shadows (pixels with ``n · L < 0``, where the cosine is clamped, bend the fit). Then
    ``Y = ρ (ambient + s n · L)`` holds exactly and ``c / |c| = L``; under several lights it
    is the direction of their irradiance-weighted sum. The axes are those of ``normals``.

    Raises ValueError when the inputs disagree in shape, when the usable normals do not span
    three directions (e.g. a flat patch) or when the luminance does not vary with them.
    """
    _check_image("image", image)
    normals = np.asarray(normals)
    if normals.shape != image.shape or not np.issubdtype(normals.dtype, np.number):
        raise ValueError(
            f"normals must be an H x W x 3 float array of shape {image.shape}, "
            f"got {_describe(normals)}"
        )
    _check_mask(mask, image.shape)
    # the renderer marks background with NaN or with zero vectors
    valid = mask & np.isfinite(normals).all(axis=-1) & (np.abs(normals).sum(axis=-1) > 0)
    n = normals[valid].astype(np.float64)
    y = linear_luminance(image)[valid]
    design = np.column_stack([np.ones(len(n)), n])
    coef, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    if rank < 4:
        raise ValueError(
            f"the normals of the {len(n)} usable mask pixels do not span three directions; "
            "the light direction is undetermined"
        )
    c = coef[1:]
    norm = float(np.linalg.norm(c))
    # luminance lies in [0, 1]; a real shading gradient is orders of magnitude above this
    if norm < 1e-9:
        raise ValueError("luminance does not vary with the normals over the mask; no direction")
    return c / norm


def light_direction_error(
    image_a: np.ndarray, image_b: np.ndarray, normals: np.ndarray, mask: np.ndarray
) -> float:
    """Angle in degrees (0..180) between the :func:`shading_direction` of two images.

    Both images must show the same geometry (one ``normals`` map, one ``mask``).
    """
    _check_pair(image_a, image_b, ("image_a", "image_b"))
    da = shading_direction(image_a, normals, mask)
    db = shading_direction(image_b, normals, mask)
    # atan2(|a x b|, a · b) stays accurate near 0° and 180°, where acos loses digits
    return float(np.degrees(np.arctan2(np.linalg.norm(np.cross(da, db)), np.dot(da, db))))


def shading_error(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Difference of shading patterns, blind to global exposure: 0 for the same pattern.

    With ``Y`` and ``R`` the :func:`linear_luminance` of ``image`` and ``reference``, and
    ``mean_M`` the mean over the pixels where ``mask`` is True::

        shading_error = mean_M | Y / mean_M(Y) - R / mean_M(R) |

    Dividing each image by its own mean masked luminance removes a global exposure factor and
    a uniform albedo scale (not spatially varying albedo), so what is left is the relative
    shading pattern. Dimensionless and symmetric. Raises ValueError when an image is black
    over the mask.
    """
    _check_pair(image, reference, ("image", "reference"))
    _check_mask(mask, image.shape)
    y = linear_luminance(image)[mask]
    r = linear_luminance(reference)[mask]
    my, mr = float(y.mean()), float(r.mean())
    if my <= 0.0 or mr <= 0.0:
        raise ValueError("an image is black over the mask; its shading pattern is undefined")
    return float(np.mean(np.abs(y / my - r / mr)))
