"""Classical face swap baseline: landmark warping plus blending, no neural network.

This is what face-swap tools do without a neural swapper: the profile person's face is cut
out along the 478-point face mesh, warped triangle by triangle onto the template's mesh (so
the template's pose and framing stay), colour-matched to the template's skin in Lab space,
and blended in with Poisson (gradient-domain) cloning or a feathered alpha mask. Only the
face oval is replaced: hair, ears, neck and background stay the template's.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from icportrait.faces import detect_faces, face_mask, face_mesh, select_face

BLENDS = ("poisson", "alpha")


def _landmarks(image: np.ndarray) -> np.ndarray:
    """The (478, 2) mesh points in pixels; NoFaceError and friends propagate."""
    return face_mesh(image, select_face(detect_faces(image)))[:, :2]


def _warp_face(profile: np.ndarray, src: np.ndarray, dst: np.ndarray,
               region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-affine warp of ``profile`` from mesh ``src`` onto mesh ``dst``.

    Returns the warped image (template size) and a bool mask of the pixels it covers.
    """
    h, w = region.shape
    warped = np.zeros((h, w, 3), np.uint8)
    covered = np.zeros((h, w), bool)
    tris = Delaunay(dst).simplices
    # Keep the face: drop hull triangles whose centre lies outside the face oval.
    cx, cy = np.clip(dst[tris].mean(axis=1).round().astype(int), 0, [w - 1, h - 1]).T
    for tri in tris[region[cy, cx]]:
        t = dst[tri].astype(np.float32)
        x, y, bw, bh = cv2.boundingRect(t)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
        local = t - np.float32([x0, y0])
        (ax, ay), (bx, by) = local[1] - local[0], local[2] - local[0]
        if x1 <= x0 or y1 <= y0 or abs(ax * by - ay * bx) < 1e-3:
            continue  # off-image or degenerate: no pixels to fill
        # Map each template pixel back into the profile (inverse map), so only the template
        # triangle has to be non-degenerate; sampling the whole profile keeps edges correct.
        m = cv2.getAffineTransform(local, src[tri].astype(np.float32))
        patch = cv2.warpAffine(profile, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR
                               | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        tri_mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(tri_mask, np.round(local * 16).astype(np.int32), 1, shift=4)
        inside = tri_mask.astype(bool)
        warped[y0:y1, x0:x1][inside] = patch[inside]
        covered[y0:y1, x0:x1] |= inside
    return warped, covered


def _match_colour(warped: np.ndarray, template: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match per-channel mean and std in Lab inside ``mask``: fixes skin tone and exposure
    while keeping the profile's shading pattern (Reinhard-style colour transfer)."""
    src = cv2.cvtColor(warped.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    ref = cv2.cvtColor(template.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)
    s, r = src[mask], ref[mask]
    src = (src - s.mean(0)) / (s.std(0) + 1e-6) * r.std(0) + r.mean(0)
    rgb = cv2.cvtColor(src.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


def classical_swap(profile: np.ndarray, template: np.ndarray, *,
                   blend: str = "poisson") -> np.ndarray:
    """Put the face of ``profile`` into ``template`` (both RGB uint8, any sizes).

    Returns an RGB uint8 image of the template's shape; only the template's face oval (and,
    for ``alpha``, a few feathered pixels around it) changes. Raises the face toolkit's
    errors (``NoFaceError``, ``FaceTooSmallError``...) when either image has no usable face.
    """
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}: use 'poisson' or 'alpha'")
    dst = _landmarks(template)
    src = _landmarks(profile)
    h, w = template.shape[:2]
    oval = face_mask(dst, (h, w)) > 0.5
    warped, covered = _warp_face(profile, src, dst, oval)
    mask = oval & covered
    warped = _match_colour(warped, template, mask)

    # Erode by ~4% of the face width so the seam falls on skin inside the oval, not on the
    # jaw line or hairline where the two faces' outlines disagree.
    xs = np.flatnonzero(mask.any(axis=0))
    k = max(3, round(0.04 * (xs[-1] - xs[0] + 1)))
    inner = cv2.erode(mask.astype(np.uint8), cv2.getStructuringElement(
        cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))

    if blend == "alpha":
        # Feather the inner mask; multiplying by `covered` keeps unwarped (black) pixels out.
        alpha = cv2.GaussianBlur(inner.astype(np.float32), (0, 0), sigmaX=k / 2)
        alpha = (alpha * covered)[..., None]
        out = warped * alpha + template * (1 - alpha)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    # seamlessClone centres the mask's bounding box on `center` and fails when that box
    # reaches the image edge, so pad everything by a margin and crop back afterwards.
    pad = k + 2
    padded = [cv2.copyMakeBorder(a, pad, pad, pad, pad, cv2.BORDER_REFLECT)
              for a in (warped, template)]
    inner = cv2.copyMakeBorder(inner * 255, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x, y, bw, bh = cv2.boundingRect(inner)
    out = cv2.seamlessClone(*padded, inner, (x + bw // 2, y + bh // 2), cv2.NORMAL_CLONE)
    return np.ascontiguousarray(out[pad:pad + h, pad:pad + w])
