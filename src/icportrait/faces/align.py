"""Similarity-transform alignment to a canonical square face frame, and pasting back.

The canonical frame is FFHQ-like: with ``margin=1`` the eyes are 1/4 of the crop width apart
and the eye-to-mouth centre sits around the middle, leaving room for hair, ears and chin as in
FFHQ. A larger ``margin`` zooms out (more context), a smaller one zooms in.

Matrices are 2 x 3 affine maps on pixel coordinates (OpenCV's ``warpAffine`` convention):
``matrix`` maps image pixels to crop pixels, ``inverse`` maps crop pixels back.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# The 5 canonical points (image-left eye, image-right eye, nose tip, mouth corners) in units
# of the crop side, for margin 1. Eye distance 0.25 and eye-to-mouth 0.29 follow FFHQ's
# alignment rule; nose and mouth-corner ratios follow the widely used 5-point face template.
CANONICAL_FIVE = np.array(
    [[0.375, 0.471], [0.625, 0.471], [0.500, 0.614], [0.3965, 0.760], [0.6035, 0.760]]
)


def canonical_points(size: int, margin: float = 1.0) -> np.ndarray:
    """The 5 canonical points in pixels of a ``size`` x ``size`` crop."""
    if size < 8:
        raise ValueError(f"crop size must be at least 8 px, got {size}")
    if not 0.25 <= margin <= 4.0:
        raise ValueError(f"margin must be in [0.25, 4], got {margin}")
    return (0.5 + (CANONICAL_FIVE - 0.5) / margin) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst.

    Umeyama's closed form; returns a 2 x 3 matrix. Reflections are excluded.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching N x 2 point sets (N >= 2), got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    var = (s**2).sum() / len(src)
    if var <= 0:
        raise ValueError("the source points coincide; cannot fit a similarity transform")
    scale = (sig * np.diag(sign)).sum() / var
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(m, dtype=np.float64))


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 matrix to N x 2 (or N x 3, the extra columns kept) points."""
    pts = np.asarray(points, dtype=np.float64)
    out = pts.copy()
    out[:, :2] = pts[:, :2] @ m[:, :2].T + m[:, 2]
    if pts.shape[1] > 2:  # depth scales with the in-plane scale
        out[:, 2:] = pts[:, 2:] * np.sqrt(abs(np.linalg.det(m[:, :2])))
    return out


@dataclass(frozen=True)
class AlignedFace:
    """A canonical crop and the transforms that relate it to its source photo."""

    image: np.ndarray       # size x size x 3 uint8
    matrix: np.ndarray      # 2 x 3, source pixels -> crop pixels
    inverse: np.ndarray     # 2 x 3, crop pixels -> source pixels
    source_shape: tuple[int, int]

    @property
    def size(self) -> int:
        return self.image.shape[0]

    @property
    def scale(self) -> float:
        """Crop pixels per source pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))


def align_face(
    image: np.ndarray, five: np.ndarray, size: int = 256, margin: float = 1.0
) -> AlignedFace:
    """Crop ``image`` to the canonical frame given its 5 landmarks (see ``five_points``).

    Pixels outside the photo are filled by reflection, which keeps the crop free of hard black
    borders that a diffusion model would otherwise learn to copy.
    """
    m = similarity_transform(five, canonical_points(size, margin))
    return _crop(image, m, size)


def resize_aligned(aligned: AlignedFace, image: np.ndarray, size: int) -> AlignedFace:
    """The same canonical crop of ``image`` (the photo ``aligned`` was cut from) at another
    ``size``: the crop ``cv2.resize`` would give, cut from the photo itself (its own detail)."""
    rescale = crop_rescale(size / aligned.size)
    m = rescale[:, :2] @ aligned.matrix   # the photo -> the old crop -> the new one
    m[:, 2] += rescale[:, 2]
    return _crop(image, m, size)


def crop_rescale(f: float) -> np.ndarray:
    """The 2 x 3 map from a crop's pixels to the same crop's resized ``f`` times (pixel
    centres at integers, as ``cv2.resize`` places them)."""
    return np.array([[f, 0.0, 0.5 * (f - 1)], [0.0, f, 0.5 * (f - 1)]])


def _crop(image: np.ndarray, m: np.ndarray, size: int) -> AlignedFace:
    # Shrinking a lot through warpAffine aliases; pre-blur in proportion to the scale.
    scale = np.sqrt(abs(np.linalg.det(m[:, :2])))
    src = image
    if scale < 0.5:
        sigma = 0.5 / scale * 0.5
        src = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
    crop = cv2.warpAffine(
        src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    return AlignedFace(crop, m, invert_affine(m), (image.shape[0], image.shape[1]))


def paste_back(
    aligned: AlignedFace,
    crop: np.ndarray,
    background: np.ndarray,
    mask: np.ndarray | None = None,
    feather: float = 0.04,
) -> np.ndarray:
    """Paste a (possibly edited) canonical ``crop`` back into the source photo.

    ``mask`` (size x size, values in [0, 1]) limits what is pasted, e.g. the face mask; by
    default the whole crop is pasted. Its edge is feathered by ``feather`` x crop size so no
    seam shows. ``crop`` may have any size; it is resized to the aligned size first.
    """
    h, w = aligned.source_shape
    if background.shape[:2] != (h, w):
        raise ValueError(
            f"background is {background.shape[1]}x{background.shape[0]}, the face was aligned "
            f"in a {w}x{h} image"
        )
    size = aligned.size
    if crop.shape[:2] != (size, size):
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    alpha = np.ones((size, size), np.float32) if mask is None else mask.astype(np.float32)
    # Fade to zero at the crop border too, then feather.
    border = max(1, round(feather * size))
    alpha[:border], alpha[-border:], alpha[:, :border], alpha[:, -border:] = 0, 0, 0, 0
    if feather > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=feather * size / 2)
    warped = cv2.warpAffine(crop, aligned.inverse, (w, h), flags=cv2.INTER_LINEAR)
    a = cv2.warpAffine(alpha, aligned.inverse, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    out = background.astype(np.float32) * (1 - a) + warped.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
