"""3D-aware relighting of a portrait: a face surface, a requested light, Lambertian shading.

``--light`` syntax: ``DIRECTION[,COLOUR[,INTENSITY]]`` where

* DIRECTION is ``left``, ``right``, ``top``, ``bottom``, ``front``, or ``AZ:EL`` in degrees
  (azimuth toward the image's right, elevation up; ``0:0`` is the camera's direction), or
  ``sh:c0,...,c8`` (9 grey 2nd-order spherical-harmonic irradiance coefficients, the
  :func:`~icportrait.colour.sh_basis` order; then no colour/intensity);
* COLOUR is ``white``, ``warm``, ``cool`` or ``#rrggbb``; INTENSITY a positive number.

"left" is the image's left (the viewer's), not the subject's.

The surface comes from the mediapipe face mesh of the photo (a depth map interpolated over the
mesh, differentiated into normals), or from a render's own normals (synthetic templates). The
current shading is estimated over the face (see :func:`estimate_shading`: constant albedo, no
cast shadows); the image is divided by it (an albedo estimate) and
multiplied by the requested light's shading, inside a feathered face mask, in linear RGB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from icportrait.colour import linear_to_srgb, sh_basis, srgb_to_linear
from icportrait.errors import ICPortraitError

# Unit vectors in camera axes (x right, y down, z away), from the surface toward the light.
NAMED_DIRECTIONS = {
    "left": (-60.0, 15.0), "right": (60.0, 15.0), "top": (0.0, 60.0),
    "bottom": (0.0, -50.0), "front": (0.0, 10.0),
}
COLOURS = {"white": (1.0, 1.0, 1.0), "warm": (1.0, 0.85, 0.68), "cool": (0.75, 0.87, 1.0)}
AMBIENT = 0.25  # share of the shading that does not depend on direction (sky, bounce)


@dataclass(frozen=True)
class Light:
    """A directional light plus ambient, or an SH environment (``sh`` set)."""

    direction: tuple[float, float, float] = (0.0, -0.17, -0.98)
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = 1.0
    sh: tuple[float, ...] | None = None

    def to_dict(self) -> dict:
        return {"direction": [round(v, 4) for v in self.direction], "colour": list(self.colour),
                "intensity": self.intensity, "sh": None if self.sh is None else list(self.sh)}


def direction_from_angles(azimuth: float, elevation: float) -> tuple[float, float, float]:
    az, el = np.radians(azimuth), np.radians(elevation)
    return (float(np.sin(az) * np.cos(el)), float(-np.sin(el)), float(-np.cos(az) * np.cos(el)))


def parse_light(text: str) -> Light:
    """Parse the ``--light`` syntax of the module docstring; errors say what was wrong."""
    text = text.strip()
    if text.startswith("sh:"):
        try:
            coeffs = tuple(float(v) for v in text[3:].split(","))
        except ValueError:
            raise ICPortraitError(f"--light {text!r}: SH coefficients must be numbers") from None
        if len(coeffs) != 9:
            raise ICPortraitError(f"--light {text!r}: give 9 SH coefficients, got {len(coeffs)}")
        return Light(sh=coeffs)
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise ICPortraitError(f"--light {text!r}: expected DIRECTION[,COLOUR[,INTENSITY]]")
    name = parts[0].lower()
    if name in NAMED_DIRECTIONS:
        direction = direction_from_angles(*NAMED_DIRECTIONS[name])
    elif re.fullmatch(r"-?[\d.]+:-?[\d.]+", name):
        az, el = (float(v) for v in name.split(":"))
        if not (-180 <= az <= 180 and -90 <= el <= 90):
            raise ICPortraitError(f"--light {text!r}: azimuth in [-180, 180], elevation in "
                                  "[-90, 90]")
        direction = direction_from_angles(az, el)
    else:
        raise ICPortraitError(
            f"--light {text!r}: unknown direction {parts[0]!r}; use "
            f"{', '.join(NAMED_DIRECTIONS)}, AZ:EL in degrees, or sh:c0,...,c8")
    colour = (1.0, 1.0, 1.0)
    if len(parts) > 1 and parts[1]:
        colour = parse_colour(parts[1], text)
    intensity = 1.0
    if len(parts) > 2:
        try:
            intensity = float(parts[2])
        except ValueError:
            raise ICPortraitError(f"--light {text!r}: intensity must be a number") from None
        if not 0 < intensity <= 10:
            raise ICPortraitError(f"--light {text!r}: intensity must be in (0, 10]")
    return Light(direction, colour, intensity)


def parse_colour(value: str, context: str) -> tuple[float, float, float]:
    value = value.lower()
    if value in COLOURS:
        return COLOURS[value]
    if re.fullmatch(r"#[0-9a-f]{6}", value):
        return tuple(int(value[i:i + 2], 16) / 255 for i in (1, 3, 5))
    raise ICPortraitError(f"--light {context!r}: colour must be {', '.join(COLOURS)} or "
                          "#rrggbb")


def shading(normals: np.ndarray, light: Light) -> np.ndarray:
    """Irradiance ``H x W x 3`` at unit ``normals`` (H x W x 3, camera axes) under ``light``:
    ``AMBIENT + (1 - AMBIENT) * max(0, n . d)`` times colour and intensity for a directional
    light; ``sum_k c_k Y_k(n)`` (clipped at 0) for SH. NaN normals give NaN."""
    if light.sh is not None:

        s = np.clip(sh_basis(normals) @ np.asarray(light.sh, np.float64), 0, None)
        return np.repeat(s[..., None], 3, -1)
    d = np.asarray(light.direction, np.float64)
    d = d / np.linalg.norm(d)
    lambert = np.clip(normals @ d, 0, None)
    s = AMBIENT + (1 - AMBIENT) * lambert
    return s[..., None] * np.asarray(light.colour) * light.intensity


def _fit_lambert(lum: np.ndarray, normals: np.ndarray, dirs: np.ndarray):
    """For each candidate direction (D x 3), the least-squares ``a + b max(0, n . d)`` fit of
    ``lum`` (N,) at ``normals`` (N x 3): returns residuals (D,), a (D,), b (D,)."""
    lam = np.clip(normals @ dirs.T, 0, None)                    # N x D
    lm, ym = lam.mean(0), lum.mean()
    var = np.maximum(((lam - lm) ** 2).mean(0), 1e-12)
    b = np.maximum(((lam - lm) * (lum - ym)[:, None]).mean(0) / var, 0)
    a = np.maximum(ym - b * lm, 0)
    res = ((a + b * lam - lum[:, None]) ** 2).mean(0)
    return res, a, b


def _directions(az: np.ndarray, el: np.ndarray) -> np.ndarray:
    az, el = np.meshgrid(np.radians(az), np.radians(el))
    return np.stack([np.sin(az) * np.cos(el), -np.sin(el), -np.cos(az) * np.cos(el)],
                    -1).reshape(-1, 3)


def estimate_shading(linear: np.ndarray, normals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image's current shading ``H x W`` (mean 1 over ``mask``), in the same family as
    :func:`shading`: ``a + b max(0, n . d)`` fitted to luminance over the mask (constant
    albedo, no cast shadows). ``d`` is searched on a 7.5° grid of the camera-facing
    hemisphere, then refined on a 1.5° grid; ``a, b >= 0`` by least squares. Clipped below at
    15% of the mean so dark regions are not blown up when divided."""
    lum = (linear @ np.array([0.299, 0.587, 0.114]))[mask]
    n = normals[mask]
    step = max(1, len(n) // 4000)  # a few thousand pixels pin three parameters down
    lum_s, n_s = lum[::step], n[::step]
    dirs = _directions(np.arange(-90, 90.1, 7.5), np.arange(-82.5, 82.6, 7.5))
    best = dirs[np.argmin(_fit_lambert(lum_s, n_s, dirs)[0])]
    az0 = np.degrees(np.arctan2(best[0], -best[2]))
    el0 = np.degrees(np.arcsin(np.clip(-best[1], -1, 1)))
    dirs = _directions(az0 + np.arange(-7.5, 7.6, 1.5), el0 + np.arange(-7.5, 7.6, 1.5))
    res, a, b = _fit_lambert(lum_s, n_s, dirs)
    k = int(np.argmin(res))
    fit = a[k] + b[k] * np.clip(np.nan_to_num(normals) @ dirs[k], 0, None)
    mean = max(float(fit[mask].mean()), 1e-6)
    return np.clip(fit / mean, 0.15, None)


def relight(image: np.ndarray, light: Light, normals: np.ndarray,
            mask: np.ndarray, feather: float = 0.03) -> np.ndarray:
    """Relight the surface ``mask`` of ``image`` (RGB uint8) whose unit ``normals`` are known
    (H x W x 3, camera axes). The face keeps its mean brightness times ``light.intensity``;
    the mask is feathered by ``feather`` x image size so no seam shows."""
    import cv2

    if image.shape[:2] != normals.shape[:2] or image.shape[:2] != mask.shape:
        raise ICPortraitError(f"relight: image {image.shape[:2]}, normals {normals.shape[:2]} "
                              f"and mask {mask.shape} must have the same size")
    mask = mask & np.isfinite(normals).all(-1) & (np.linalg.norm(np.nan_to_num(normals),
                                                                 axis=-1) > 0.5)
    if mask.sum() < 50:
        raise ICPortraitError("relight: the face surface covers too few pixels")
    lin = srgb_to_linear(image.astype(np.float64))
    old = estimate_shading(lin, normals, mask)
    new = np.nan_to_num(shading(normals, light))
    base = shading(normals[mask], Light(light.direction, (1, 1, 1), 1.0, light.sh))
    new = new / max(float(base.mean()), 1e-6)  # keep the face's mean brightness
    relit = lin / old[..., None] * new
    sigma = max(1.0, feather * max(image.shape[:2]))
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)[..., None]
    alpha = np.minimum(alpha * 2, 1.0) * mask[..., None]  # full strength inside the surface
    return linear_to_srgb(lin * (1 - alpha) + relit * alpha)


def photo_normals(image: np.ndarray, face: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals ``H x W x 3`` (NaN off the face) and the face mask of a photo, from the
    mediapipe mesh: its depth interpolated linearly between the 478 points, smoothed, and
    differentiated. ``face``: which face, by index left to right (default: the largest)."""
    import cv2
    from scipy.interpolate import griddata

    from icportrait.faces import detect_faces, face_mask, face_mesh, select_face

    mesh = face_mesh(image, select_face(detect_faces(image), index=face))
    h, w = image.shape[:2]
    mask = face_mask(mesh, (h, w)) > 0.5
    x0, y0 = np.floor(mesh[:, :2].min(0)).astype(int)
    x1, y1 = np.ceil(mesh[:, :2].max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    gy, gx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    z = griddata(mesh[:, :2], mesh[:, 2], (gx, gy), method="linear")
    face_w = float(np.ptp(mesh[:, 0]))
    z = cv2.GaussianBlur(np.nan_to_num(z, nan=float(np.nanmax(z))).astype(np.float32), (0, 0),
                         max(1.0, 0.02 * face_w))
    dzdy, dzdx = np.gradient(z)
    n = np.stack([dzdx, dzdy, -np.ones_like(z)], -1)  # toward the camera (-z)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    normals = np.full((h, w, 3), np.nan, np.float32)
    normals[y0:y1 + 1, x0:x1 + 1] = n
    normals[~mask] = np.nan
    return normals, mask


def relight_photo(image: np.ndarray, light: Light, face: int | None = None) -> np.ndarray:
    """Relight a portrait photo through its face mesh (see :func:`photo_normals`)."""
    normals, mask = photo_normals(image, face)
    return relight(image, light, normals, mask)
