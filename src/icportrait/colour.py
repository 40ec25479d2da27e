"""Colour and light maths shared by every layer: the sRGB transfer curves and the
second-order spherical-harmonic (SH) basis that lighting is expressed in."""

from __future__ import annotations

import numpy as np

# Real-valued SH basis constants (band 0, 1, 2), in the order used by :func:`sh_basis`.
_SH_C = (0.282095, 0.488603, 1.092548, 0.315392, 0.546274)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB codes in [0, 255] -> linear light in [0, 1] (IEC 61966-2-1)."""
    x = x / 255.0
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> uint8 sRGB codes."""
    x = np.clip(x, 0, 1)
    y = np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)
    return np.clip(y * 255 + 0.5, 0, 255).astype(np.uint8)


def sh_basis(n: np.ndarray) -> np.ndarray:
    """The 9 real SH basis functions at unit vectors ``n`` (... x 3) -> ... x 9."""
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    c0, c1, c2, c3, c4 = _SH_C
    return np.stack([
        np.full_like(x, c0), c1 * y, c1 * z, c1 * x, c2 * x * y, c2 * y * z,
        c3 * (3 * z * z - 1), c2 * x * z, c4 * (x * x - y * y)], -1)
