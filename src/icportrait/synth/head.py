"""A procedural parametric head: skull, face, ears, neck and hair, with a painted texture.

Everything here is written from scratch (no scanned or licence-restricted head model): a
head is a seeded parameter vector (:class:`HeadParams`) turned into a textured triangle mesh
(:class:`HeadMesh`) by :func:`build_head`.

Head frame (the "rest" frame of an identity), matching the face toolkit's camera axes when
the head is frontal: **x right** (image right in a frontal view, i.e. the person's left),
**y down**, **z away from the viewer**; the face looks toward -z. Units: crown to chin is
about 0.95, the eyes lie on y = 0 at x = ±eye_spacing, the chin at y ≈ 0.47.

Construction
------------
The surface is one grid of rays (rows x columns) cast from inside the head, a "capsule"
parametrisation: the upper rows are spherical rays from the cranium's centre (so the crown
closes without a seam), the lower rows are horizontal rays from a vertical axis (so the face,
jaw and neck are cross-sections of a vertical stack). Along each ray the surface radius is a
smooth union of three primitives (cranium ellipsoid, face superellipse stack, neck), plus
displacements for the features (nose, brows, eye sockets and eyeballs, cheekbones, lips,
chin, ears) and the hair volume. Columns are denser on the face and ears and rows denser
between hairline and chin, so mesh and texture resolution go where the camera looks.

The texture is painted in the grid's (u, v) parameter space, texel by texel, from each
texel's position on the surface: features (eyes with sclera, iris and pupil, lashes, brows,
lips, nostrils, freckles, hair, beard) are drawn in frontal face coordinates, so paint and
geometry agree by construction. Its alpha channel holds a specular strength.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

# Region labels (per texel and per vertex).
REGIONS = {
    "skin": 0, "eye": 1, "brow": 2, "lips": 3, "nostril": 4, "hair": 5, "ear": 6,
    "beard": 7, "clothing": 8, "glasses": 9,
}

# The cranium ellipsoid's centre height; the grid's upper rows are rays from a point on the
# vertical axis at Y_DOME (above the face, so the face lies wholly in the horizontal rows and
# no seam crosses the forehead); the neck is cut at Y_BOTTOM.
Y_CRANIUM = -0.2
Y_DOME = -0.34
Y_BOTTOM = 1.05
Z_AXIS = 0.05          # the vertical axis the horizontal rays start from
TEXTURE_SIZE = 1024    # square texture; the last rows are a white strip for flat materials
_WHITE_ROWS = 8

HAIR_STYLES = ("buzz", "short", "medium", "long", "fringe", "bald")
FACIAL_HAIR = ("none", "stubble", "moustache", "goatee", "beard")


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadParams:
    """One identity: shape and appearance. Lengths in head units (crown to chin ≈ 0.95)."""

    # skull and face outline
    head_width: float = 0.30        # cranium half-width
    head_depth: float = 0.42        # cranium half-depth
    crown_height: float = 0.30      # cranium top above its centre (y = -0.2)
    face_width: float = 0.29        # half-width at the cheekbones
    jaw_width: float = 0.235        # half-width at the jaw angle
    chin_width: float = 0.15        # half-width just above the chin
    face_length: float = 1.0        # vertical scale of the lower face (nose to chin)
    chin_protrusion: float = 0.015
    cheekbones: float = 0.012
    cheek_fullness: float = 0.01    # extra half-width of the lower cheeks and jaw
    jaw_round: float = 0.5          # 0 tapered .. 1 square lower-face cross-section
    neck_width: float = 0.22
    # nose
    nose_length: float = 0.17       # y of the tip
    nose_width: float = 0.036       # alar half-width
    nose_projection: float = 0.09   # tip height above the face
    nose_bridge: float = 0.02       # bridge height at the nasion
    # eyes and brows
    eye_spacing: float = 0.135      # half the distance between the eye centres
    eye_width: float = 0.115
    eye_open: float = 0.38          # upper lid height, in eye half-widths
    eye_tilt: float = 0.05          # canthal tilt (outer corner up), in half-widths
    eye_depth: float = 0.025        # socket depth
    brow_ridge: float = 0.012
    brow_height: float = -0.065     # y of the brows
    brow_thickness: float = 0.018
    brow_arch: float = 0.012
    brow_density: float = 0.85
    # mouth and ears
    mouth_width: float = 0.095      # half-width
    upper_lip: float = 0.018
    lower_lip: float = 0.024
    ear_size: float = 1.0
    ear_protrusion: float = 0.05
    # hair
    hair_style: str = "short"
    hairline: float = -0.29
    hair_recess: float = 0.02       # temple recession
    hair_volume: float = 0.04
    # appearance (RGB in 0..1, sRGB)
    skin_rgb: tuple[float, float, float] = (0.85, 0.66, 0.55)
    skin_variation: float = 0.05
    redness: float = 0.3
    freckles: float = 0.0           # 0..1 density
    moles: int = 2
    iris_rgb: tuple[float, float, float] = (0.3, 0.2, 0.1)
    brow_rgb: tuple[float, float, float] = (0.15, 0.1, 0.07)
    lip_rgb: tuple[float, float, float] = (0.7, 0.4, 0.38)
    hair_rgb: tuple[float, float, float] = (0.2, 0.13, 0.08)
    grey_hair: float = 0.0
    lash_darkness: float = 0.8
    clothing_rgb: tuple[float, float, float] = (0.2, 0.25, 0.4)
    facial_hair: str = "none"
    glasses: bool = False
    glasses_rgb: tuple[float, float, float] = (0.08, 0.08, 0.08)
    glasses_shape: float = 0.5      # 0 round .. 1 rectangular
    seed: int = 0                   # texture noise
    extra: dict = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict:
        return asdict(self)


def _mix(a, b, t) -> tuple[float, float, float]:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return tuple(float(v) for v in np.clip(a + (b - a) * t, 0, 1))


# Skin tones from light to dark (sRGB albedo, before lighting).
_SKIN_LIGHT = (0.93, 0.76, 0.66)
_SKIN_MID = (0.78, 0.56, 0.42)
_SKIN_DARK = (0.36, 0.22, 0.15)
_HAIR_COLOURS = [
    (0.05, 0.04, 0.035), (0.12, 0.08, 0.05), (0.25, 0.16, 0.09), (0.42, 0.28, 0.16),
    (0.7, 0.55, 0.33), (0.55, 0.25, 0.1), (0.85, 0.75, 0.55),
]
_IRIS_COLOURS = [
    (0.25, 0.14, 0.06), (0.35, 0.22, 0.1), (0.12, 0.07, 0.04), (0.3, 0.45, 0.6),
    (0.35, 0.45, 0.3), (0.45, 0.5, 0.5),
]


def sample_head_params(rng: np.random.Generator, spread: float = 1.0) -> HeadParams:
    """A random identity. Draws a few latent traits (masculinity, skin tone, age) and derives
    correlated shape and appearance parameters from them, with independent jitter on top.

    ``spread`` scales each shape parameter's jitter and its range about the average face:
    above 1, identities differ more (so that a face recogniser tells them apart)."""
    m = float(rng.uniform())              # masculinity: jaw, brow ridge, facial hair
    tone = float(rng.beta(1.3, 1.3))      # 0 light .. 1 dark
    age = float(rng.uniform())
    n = rng.normal

    def jit(mean: float, sd: float, lo: float, hi: float) -> float:
        lo, hi = mean - (mean - lo) * spread, mean + (hi - mean) * spread
        return float(np.clip(mean + spread * sd * n(), lo, hi))

    skin = _mix(_SKIN_LIGHT, _SKIN_MID, min(tone * 2, 1.0)) if tone < 0.5 else \
        _mix(_SKIN_MID, _SKIN_DARK, tone * 2 - 1)
    skin = _mix(skin, (skin[0] * 1.05, skin[1], skin[2] * 0.85), rng.uniform(-0.6, 0.8))
    dark_hair = tone > 0.45 or rng.uniform() < 0.6
    hair = _HAIR_COLOURS[int(rng.integers(0, 3))] if dark_hair else \
        _HAIR_COLOURS[int(rng.integers(2, len(_HAIR_COLOURS)))]
    hair = _mix(hair, (0, 0, 0), rng.uniform(-0.15, 0.2))
    iris = _IRIS_COLOURS[int(rng.integers(0, 3))] if tone > 0.4 else \
        _IRIS_COLOURS[int(rng.integers(0, len(_IRIS_COLOURS)))]
    styles_m = ["buzz", "short", "short", "medium", "bald", "fringe"]
    styles_f = ["long", "long", "medium", "fringe", "short"]
    style = str(rng.choice(styles_m if m > 0.5 else styles_f))
    facial = "none"
    if m > 0.55 and rng.uniform() < 0.6:
        facial = str(rng.choice(["stubble", "moustache", "goatee", "beard", "beard"]))
    lip_base = _mix(skin, (0.72, 0.3, 0.32), 0.45 + 0.2 * rng.uniform())
    if m < 0.4 and rng.uniform() < 0.5:   # lipstick
        lip_base = _mix(lip_base, (0.65, 0.12, 0.18), rng.uniform(0.3, 0.8))
    return HeadParams(
        head_width=jit(0.30, 0.012, 0.27, 0.33),
        head_depth=jit(0.42, 0.015, 0.38, 0.46),
        crown_height=jit(0.30, 0.015, 0.26, 0.34),
        face_width=jit(0.285 + 0.01 * m, 0.016, 0.25, 0.325),
        jaw_width=jit(0.215 + 0.04 * m, 0.024, 0.17, 0.29),
        chin_width=jit(0.135 + 0.03 * m, 0.018, 0.10, 0.2),
        face_length=jit(0.97, 0.06, 0.85, 1.12),
        chin_protrusion=jit(0.012 + 0.01 * m, 0.008, -0.005, 0.04),
        cheekbones=jit(0.012, 0.007, 0.0, 0.03),
        neck_width=jit(0.21 + 0.03 * m, 0.012, 0.19, 0.26),
        nose_length=jit(0.17, 0.015, 0.135, 0.205),
        nose_width=jit(0.034 + 0.006 * m + 0.006 * tone, 0.007, 0.024, 0.055),
        nose_projection=jit(0.085, 0.015, 0.05, 0.125),
        nose_bridge=jit(0.02, 0.008, 0.004, 0.04),
        eye_spacing=jit(0.135, 0.009, 0.115, 0.155),
        eye_width=jit(0.114, 0.009, 0.095, 0.135),
        eye_open=jit(0.4 - 0.06 * age, 0.05, 0.26, 0.5),
        eye_tilt=jit(0.05, 0.08, -0.12, 0.22),
        eye_depth=jit(0.022 + 0.01 * m, 0.006, 0.01, 0.04),
        brow_ridge=jit(0.006 + 0.014 * m, 0.005, 0.0, 0.03),
        brow_height=jit(-0.07, 0.012, -0.1, -0.05),
        brow_thickness=jit(0.022 + 0.01 * m, 0.004, 0.014, 0.036),
        brow_arch=jit(0.012 - 0.004 * m, 0.006, 0.0, 0.025),
        brow_density=jit(0.92, 0.08, 0.6, 1.0),
        mouth_width=jit(0.097, 0.01, 0.075, 0.12),
        upper_lip=jit(0.021 - 0.004 * m, 0.004, 0.011, 0.03),
        lower_lip=jit(0.028 - 0.004 * m, 0.005, 0.016, 0.04),
        ear_size=jit(1.0, 0.08, 0.8, 1.2),
        ear_protrusion=jit(0.05, 0.015, 0.02, 0.09),
        hair_style=style,
        hairline=jit(-0.3 + 0.04 * m * age, 0.02, -0.36, -0.2),
        hair_recess=jit(0.01 + 0.05 * m * age, 0.015, 0.0, 0.08),
        hair_volume=jit(0.045, 0.015, 0.015, 0.09),
        skin_rgb=skin,
        skin_variation=jit(0.05, 0.02, 0.01, 0.1),
        redness=jit(0.3, 0.15, 0.0, 0.7),
        freckles=float(rng.uniform() ** 3 * (1 - tone)),
        moles=int(rng.integers(0, 5)),
        iris_rgb=_mix(iris, (0.5, 0.5, 0.5), rng.uniform(-0.2, 0.2)),
        brow_rgb=_mix(hair, (0, 0, 0), rng.uniform(0.3, 0.7)),
        lip_rgb=lip_base,
        hair_rgb=hair,
        grey_hair=float(max(0.0, age - 0.6) * 2 * rng.uniform()),
        lash_darkness=jit(0.75 + 0.2 * (1 - m), 0.1, 0.4, 1.0),
        clothing_rgb=tuple(float(v) for v in rng.uniform(0.05, 0.8, 3)),
        facial_hair=facial,
        glasses=bool(rng.uniform() < 0.25),
        glasses_rgb=_mix((0.05, 0.05, 0.05), tuple(rng.uniform(0, 0.7, 3)), rng.uniform() ** 2),
        glasses_shape=float(rng.uniform()),
        seed=int(rng.integers(0, 2**31 - 1)),
        cheek_fullness=jit(0.005 + 0.008 * age, 0.008, -0.01, 0.03),
        jaw_round=float(rng.uniform()),
    )


# --------------------------------------------------------------------------------------
# Mesh container
# --------------------------------------------------------------------------------------


@dataclass(eq=False)  # identity semantics: renderers cache uploads per mesh object
class HeadMesh:
    """A textured triangle mesh in the head frame (x right, y down, z away; see module doc).

    vertices  V x 3 float32, rest positions (also the canonical surface coordinate)
    normals   V x 3 float32, unit, outward
    uv        V x 2 float32 in [0, 1]; v = 0 is the texture's first row
    triangles T x 3 int32, counter-clockwise seen from outside with y pointing up (so
              clockwise in image coordinates, y down)
    colors    V x 3 float32, multiplies the texture (1 for skin; flat materials use the
              texture's white strip and carry their colour here)
    ao        V float32 in [0, 1], baked ambient occlusion
    regions   V uint8, labels from :data:`REGIONS`
    texture   H x W x 4 uint8: sRGB albedo and, in alpha, specular strength
    texture_regions  H x W uint8
    landmarks named 3D points (eye centres, nose tip, mouth corners, chin)
    lod_triangles  coarser triangle sets over the same vertices (level 1, 2, ...: every
              2nd, 4th ... grid line), for renders too small for the full mesh
    """

    vertices: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray
    ao: np.ndarray
    regions: np.ndarray
    texture: np.ndarray
    texture_regions: np.ndarray
    landmarks: dict[str, np.ndarray]
    params: HeadParams
    lod_triangles: list[np.ndarray] = field(default_factory=list)

    @property
    def eye_center(self) -> np.ndarray:
        return (self.landmarks["eye_left"] + self.landmarks["eye_right"]) / 2

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks["eye_right"] - self.landmarks["eye_left"]))


# --------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 at e0, 1 at e1 (either order), cubic in between."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float):
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth maximum: equals max(a, b) when they differ by more than k."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.maximum(a, b) + h * h * k / 4


def _warp(n: int, centers: list[tuple[float, float, float]], lo: float, hi: float) -> np.ndarray:
    """n + 1 samples of [lo, hi] whose density is 1 + sum of Gaussian boosts (c, width, gain).

    Inverting the cumulative density puts more samples where the boosts are.
    """
    x = np.linspace(lo, hi, 4097)
    dens = np.ones_like(x)
    for c, w, g in centers:
        dens += g * np.exp(-0.5 * ((x - c) / w) ** 2)
    cdf = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2)])
    return np.interp(np.linspace(0, cdf[-1], n + 1), cdf, x)


def _noise(rng: np.random.Generator, shape: tuple[int, int], cells: tuple[int, int]) -> np.ndarray:
    """Smooth value noise in about [-1, 1]: random cells upsampled bicubically."""
    g = rng.standard_normal((cells[0], cells[1])).astype(np.float32)
    return cv2.resize(g, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


@dataclass
class _Grid:
    """Rays of the surface grid: origins and directions (R x C x 3) and row/column params."""

    origin: np.ndarray
    direction: np.ndarray
    phi: np.ndarray       # column azimuth (C,), 0 = front, +pi/2 = +x
    row_y: np.ndarray     # y of the ray origin per row (R,)
    horizontal: np.ndarray  # (R,) bool: rows of horizontal rays
    u: np.ndarray         # (C,) texture u per column
    v: np.ndarray         # (R,) texture v per row


def _make_grid(p: HeadParams, rows: int, cols: int) -> _Grid:
    m1 = 0.3 * np.pi / 2          # (about) the meridian length of the dome
    total = m1 + (Y_BOTTOM - Y_DOME)
    # Dense from the brows to below the chin.
    m = _warp(rows - 1, [(m1 + 0.32, 0.2, 3.0), (m1 + 0.6, 0.08, 1.5)], 0.0, total)
    alpha = np.clip(m / m1, 0, 1) * np.pi / 2
    row_y = np.where(m > m1, Y_DOME + (m - m1), Y_DOME)
    # Dense on the face (phi = 0) and, less, on the ears (phi = ±pi/2).
    phi = _warp(cols - 1, [(0.0, 0.5, 2.5), (np.pi / 2, 0.22, 1.0), (-np.pi / 2, 0.22, 1.0)],
                -np.pi, np.pi)
    sa, ca = np.sin(alpha)[:, None], np.cos(alpha)[:, None]
    sp, cp = np.sin(phi)[None, :], np.cos(phi)[None, :]
    direction = np.stack(np.broadcast_arrays(sa * sp, -ca + 0 * sp, -sa * cp), -1)
    origin = np.zeros((rows, cols, 3))
    origin[..., 1] = row_y[:, None]
    origin[..., 2] = Z_AXIS
    v = np.linspace(0, 1, rows) * (TEXTURE_SIZE - _WHITE_ROWS) / TEXTURE_SIZE
    return _Grid(origin, direction, phi, row_y, m > m1, np.linspace(0, 1, cols), v)


def _ellipsoid_hit(o: np.ndarray, d: np.ndarray, c, a) -> np.ndarray:
    """Distance along rays (origin inside) to an axis-aligned ellipsoid; 0 when it misses."""
    a = np.asarray(a, float)
    oc = (o - np.asarray(c, float)) / a
    dd = d / a
    qa = (dd * dd).sum(-1)
    qb = 2 * (oc * dd).sum(-1)
    qc = (oc * oc).sum(-1) - 1
    disc = qb * qb - 4 * qa * qc
    t = (-qb + np.sqrt(np.maximum(disc, 0))) / (2 * qa)
    return np.where((disc > 0) & (qc < 0), t, 0.0)


def _superellipse_hit(
    phi: np.ndarray, half_w: np.ndarray, z_front: np.ndarray, z_back: np.ndarray,
    expo: np.ndarray, iters: int = 24,
) -> np.ndarray:
    """Distance along horizontal rays from (x=0, z=Z_AXIS) at azimuth phi to the boundary of a
    superellipse cross-section |x/W|^n + |(z - zc)/D|^n = 1; 0 where the section is empty."""
    zc, depth = (z_front + z_back) / 2, np.maximum((z_back - z_front) / 2, 1e-6)
    w = np.maximum(half_w, 1e-6)
    valid = (half_w > 1e-4) & (z_front < Z_AXIS) & (z_back > Z_AXIS)
    lo, hi = np.zeros_like(phi), np.full_like(phi, 1.5)
    sp, cp = np.sin(phi), np.cos(phi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        x, z = mid * sp, Z_AXIS - mid * cp
        inside = np.abs(x / w) ** expo + np.abs((z - zc) / depth) ** expo < 1
        lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
    return np.where(valid, (lo + hi) / 2, 0.0)


def _face_profiles(p: HeadParams, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Half-width, front z, back z and front exponent of the face primitive at heights y.

    Monotone cubic (PCHIP) through a few anatomical levels: smooth (C1) so shading shows no
    bands at the levels. Outside [-0.2, 0.56 fl] the primitive is absent.
    """
    from scipy.interpolate import PchipInterpolator

    fl = p.face_length
    # Cheeks stay full down to the mouth and the jaw rounds into the chin (a soft U rather
    # than a V); ``cheek_fullness`` widens the lower face, ``jaw_round`` squares it.
    ys = np.array([-0.22, -0.05, 0.08, 0.22, 0.33 * fl, 0.41 * fl, 0.47 * fl, 0.51 * fl,
                   0.56 * fl])
    fw, jw, cw = p.face_width, p.jaw_width + p.cheek_fullness, p.chin_width
    w = np.array([0.2, fw - 0.01, fw, fw - 0.008 + p.cheek_fullness, jw,
                  (jw + cw) / 2 + 0.004, cw * 0.8, cw * 0.5, 0.065])
    zf = np.array([-0.3, -0.385, -0.39, -0.39, -0.385, -0.375, -0.345, -0.27, -0.1])
    zb = np.array([0.0, 0.1, 0.12, 0.12, 0.1, 0.06, 0.02, 0.02, 0.02])
    ex = np.array([2.0, 2.1, 2.0, 2.0, 1.9, 1.8, 1.8, 2.0, 2.0]) \
        + np.array([0, 0, 0, 0.04, 0.1, 0.08, 0.04, 0, 0]) * p.jaw_round
    inside = (y >= ys[0]) & (y <= ys[-1])
    yc = np.clip(y, ys[0], ys[-1])
    out = [np.where(inside, PchipInterpolator(ys, arr)(yc), 0.0) for arr in (w, zf, zb, ex)]
    out[3] = np.where(inside, out[3], 2.0)
    return tuple(out)


def _feature_layout(p: HeadParams) -> dict[str, float]:
    """Vertical positions of the features (face coordinates, y down)."""
    fl = p.face_length
    tip = p.nose_length * fl
    base = tip + 0.028
    chin = 0.47 * fl
    mouth = base + (chin - base) * 0.34
    return {"tip": tip, "base": base, "chin": chin, "mouth": mouth, "nasion": -0.01}


def _face_displacement(p: HeadParams, x, y, z) -> np.ndarray:
    """Outward displacement (along the rays) of the facial features at base points."""
    lay = _feature_layout(p)
    front = _smoothstep(-0.12, -0.28, z)
    ax = np.abs(x)
    d = np.zeros_like(x)
    # Nose: a ridge rising from the bridge to the tip, dropping under the tip.
    t = np.clip((y - lay["nasion"]) / (lay["tip"] - lay["nasion"]), 0, 1)
    height = p.nose_bridge + (p.nose_projection - p.nose_bridge) * t**1.7
    vert = np.where(y < lay["nasion"], np.exp(-0.5 * ((y - lay["nasion"]) / 0.03) ** 2), 1.0)
    vert = vert * np.where(y > lay["tip"], np.exp(-0.5 * ((y - lay["tip"]) / 0.016) ** 2), 1.0)
    # a rounded ridge whose sides slope at ~60°, widening from the bridge to the tip
    sigma = 0.016 + (p.nose_width * 0.8 - 0.016) * t
    d += height * vert * np.exp(-0.5 * np.abs(x / sigma) ** 2.5)
    d += 0.015 * _gauss(x, y, 0, lay["tip"] - 0.004, 0.02, 0.016)  # rounded tip
    for s in (-1, 1):
        d += 0.04 * _gauss(x, y, s * p.nose_width * 0.8, lay["tip"] + 0.01, 0.016, 0.015)
        d -= 0.015 * _gauss(x, y, s * p.nose_width * 0.45, lay["base"] - 0.004, 0.008, 0.005)
    # Brow ridge, eye sockets and eyeballs, cheekbones, temples.
    d += p.brow_ridge * np.exp(-0.5 * ((y - p.brow_height - 0.01) / 0.025) ** 2) \
        * np.exp(-0.5 * (x / 0.17) ** 4)
    for s in (-1, 1):
        ex = s * p.eye_spacing
        d -= p.eye_depth * _gauss(x, y, ex, 0.0, 0.055, 0.036)
        d += p.eye_depth * 0.75 * _gauss(x, y, ex, 0.003, 0.036, 0.022)
        d += p.cheekbones * _gauss(x, y, s * 0.175, 0.1, 0.05, 0.04)
        # the cheek's fullness beside the nasolabial fold
        d += 0.01 * _gauss(x, y, s * (p.mouth_width + 0.02), lay["mouth"] - 0.04, 0.03, 0.035)
    # Mouth: the muzzle, lips, the line between them, the fold under the lower lip, the chin.
    ym = lay["mouth"]
    d += 0.016 * _gauss(x, y, 0, ym - 0.03, 0.09, 0.06)
    d += 0.011 * _gauss(x, y, 0, ym - p.upper_lip * 0.55, p.mouth_width * 0.7, p.upper_lip * 0.6)
    d += 0.013 * _gauss(x, y, 0, ym + p.lower_lip * 0.5, p.mouth_width * 0.6, p.lower_lip * 0.55)
    d -= 0.004 * np.exp(-0.5 * ((y - ym) / 0.003) ** 2) * _smoothstep(1.05, 0.8, ax / p.mouth_width)
    d -= 0.007 * _gauss(x, y, 0, ym + p.lower_lip + 0.02, 0.04, 0.012)
    d += p.chin_protrusion * _gauss(x, y, 0, lay["chin"] - 0.045, p.chin_width * 0.45, 0.035)
    d -= 0.004 * _gauss(x, y, 0, ym - p.upper_lip - 0.01, 0.006, 0.012)  # philtrum
    return d * front


def _ear_displacement(p: HeadParams, x, y, z) -> tuple[np.ndarray, np.ndarray]:
    """Lateral ear displacement and the ear's mask (for painting), at base points."""
    side = _smoothstep(0.17, 0.24, np.abs(x))
    cy, cz = 0.07, 0.05
    ry, rz = 0.13 * p.ear_size, 0.07 * p.ear_size
    e = ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2
    mask = _smoothstep(1.0, 0.8, e) * side
    tilt = np.clip(0.6 + 0.4 * (z - cz) / rz, 0.2, 1.0)  # the back edge stands off more
    return p.ear_protrusion * mask * tilt, mask


def _hair_boundary(p: HeadParams, aphi: np.ndarray) -> np.ndarray:
    """Lowest y reached by the hair at azimuth |phi| (radians)."""
    deg = np.degrees(aphi)
    hl = p.hairline
    style = p.hair_style
    if style == "fringe":
        hl = p.brow_height - 0.06
    knots = [0, 30, 50, 64, 74, 82, 90, 110, 125, 180]
    if style == "long":
        ys = [hl, hl + p.hair_recess, hl + 0.07, 0.05, 0.7, 0.8, 0.8, 0.8, 0.8, 0.8]
    elif style == "medium":
        ys = [hl, hl + p.hair_recess, hl + 0.07, 0.08, 0.22, 0.28, 0.32, 0.35, 0.38, 0.4]
    else:  # short, buzz, fringe, bald: sideburns, hair above the ears, nape
        ys = [hl, hl + p.hair_recess, hl + 0.06, 0.07, 0.07, -0.04, -0.06, 0.0, 0.2, 0.32]
    if style == "fringe":
        ys[2] = p.hairline + 0.06
    return np.interp(deg, knots, ys)


def _hair_mask(p: HeadParams, phi, y, noise) -> np.ndarray:
    if p.hair_style == "bald":
        # a horseshoe of short hair around the back and sides
        top = _smoothstep(-0.1, -0.05, y)
        return _hair_mask_style(p, phi, y, noise) * np.maximum(top, 0) \
            * _smoothstep(1.2, 1.6, np.abs(phi))
    return _hair_mask_style(p, phi, y, noise)


def _hair_mask_style(p: HeadParams, phi, y, noise) -> np.ndarray:
    bound = _hair_boundary(p, np.abs(phi)) + 0.006 * noise
    return _smoothstep(0.004, -0.004, y - bound)


def _hair_thickness(p: HeadParams) -> float:
    return {"buzz": 0.006, "bald": 0.004}.get(p.hair_style, p.hair_volume)


def _radii(p: HeadParams, g: _Grid) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Surface distance along every ray, and per-vertex feature masks."""
    o, d = g.origin, g.direction
    rows, cols = o.shape[:2]
    c_cr = (0.0, Y_CRANIUM, 0.05)
    r_up = _ellipsoid_hit(o, d, c_cr, (p.head_width, p.crown_height, p.head_depth))
    r_dn = _ellipsoid_hit(o, d, c_cr, (p.head_width, 0.36, p.head_depth))
    hit_y = o[..., 1] + r_up * d[..., 1]
    r_cr = np.where(hit_y < Y_CRANIUM, r_up, r_dn)
    phi = np.broadcast_to(g.phi[None, :], (rows, cols))
    y = np.broadcast_to(g.row_y[:, None], (rows, cols))
    w, zf, zb, ex = _face_profiles(p, y)
    r_face = np.where(g.horizontal[:, None], _superellipse_hit(phi, w, zf, zb, ex), 0.0)
    neck_on = (y > -0.05) & g.horizontal[:, None]
    nw = np.full_like(y, p.neck_width)
    nzf = np.full_like(y, -0.11 - 0.02 * (p.neck_width - 0.2) / 0.05)
    r_neck = np.where(neck_on, _superellipse_hit(phi, nw, nzf, np.full_like(y, 0.3),
                                                 np.full_like(y, 2.2)), 0.0)
    r = _smax(_smax(r_cr, r_face, 0.05), r_neck, 0.06)
    base = o + r[..., None] * d
    x, yb, z = base[..., 0], base[..., 1], base[..., 2]
    disp = _face_displacement(p, x, yb, z)
    ear, ear_mask = _ear_displacement(p, x, yb, z)
    rng = np.random.default_rng(p.seed + 1)
    hn = _noise(rng, (rows, cols), (12, 48))
    hair = _hair_mask(p, phi, yb, hn)
    thick = _hair_thickness(p) * (1 + 0.15 * hn)
    # Hair thins toward its boundary so the hairline meets the skin without a step.
    bound = _hair_boundary(p, np.abs(phi))
    thick = thick * _smoothstep(0.0, 0.06, bound - yb) if p.hair_style != "long" else \
        thick * _smoothstep(0.0, 0.03, bound - yb)
    r_skin = r + disp + ear
    r_hair = r + np.maximum(thick, ear + 0.01 * (p.hair_style in ("long", "medium")))
    if p.hair_style in ("long", "medium"):
        # Hair hangs: below the temples a horizontal ray meets a curtain at the radius the
        # hair has at temple height, tapering inward a little as it falls.
        ref = int(np.argmin(np.abs(g.row_y - (-0.02))))
        curtain = r_hair[ref][None, :] - 0.06 * np.clip(yb + 0.02, 0, None)
        below = g.horizontal[:, None] & (yb > -0.02)
        r_hair = np.where(below, np.maximum(r_hair, curtain), r_hair)
    # The geometric mask is the painted one blurred over the grid (so the hair's edge does
    # not make a sawtooth where it crosses rows diagonally, e.g. long hair's front edge) and
    # then kept inside the painted hair: the hair volume rises only where hair is painted,
    # never as a skin-coloured wall in front of it.
    hair_geo = _grid_blur(hair, 1.5) if p.hair_style != "bald" else hair
    if p.hair_style != "bald":
        hair_geo = _smoothstep(0.45, 0.95, hair_geo)
    r_final = r_skin + hair_geo * np.maximum(r_hair - r_skin, 0)
    r_final = r_final + _beard_thickness(p, x, yb, z)
    masks = {"hair": hair, "ear": ear_mask, "base": base, "hair_noise": hn}
    return r_final, masks


def _beard_region(p: HeadParams, x, y, z) -> np.ndarray:
    """Where facial hair grows, by style (0..1)."""
    if p.facial_hair == "none":
        return np.zeros_like(x)
    lay = _feature_layout(p)
    ax = np.abs(x)
    front = _smoothstep(0.1, -0.1, z)
    ym, mw = lay["mouth"], p.mouth_width
    moustache = _smoothstep(lay["base"] + 0.004, lay["base"] + 0.012, y) \
        * _smoothstep(ym - p.upper_lip * 0.7, ym - p.upper_lip - 0.004, y) \
        * _smoothstep(mw + 0.02, mw - 0.005, ax)
    if p.facial_hair == "moustache":
        return moustache * front
    chin = _smoothstep(ym + p.lower_lip * 0.8, ym + p.lower_lip + 0.01, y) \
        * _smoothstep(mw + 0.01, mw - 0.02, ax)
    if p.facial_hair == "goatee":
        return np.maximum(moustache, chin) * front
    # beard and stubble: the whole lower face below a line from the sideburn to the mouth
    top = 0.07 + (ym - 0.05 - 0.07) * _smoothstep(0.27, 0.1, ax)
    # from the cheek line down over the jaw and under the chin, fading out on the neck
    jaw = _smoothstep(top - 0.01, top + 0.035, y) \
        * _smoothstep(lay["chin"] + 0.1, lay["chin"] + 0.03, y)
    lips = _gauss(x, y, 0, ym + (p.lower_lip - p.upper_lip) * 0.5, mw * 0.95,
                  (p.upper_lip + p.lower_lip) * 0.55)
    return np.clip(np.maximum(jaw, moustache) - (lips > 0.5), 0, 1) \
        * _smoothstep(0.15, 0.05, z) * (np.abs(x) < 0.32)


def _grid_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a rows x cols grid whose columns wrap around."""
    pad = int(3 * sigma) + 1
    ext = np.concatenate([a[:, -pad:], a, a[:, :pad]], axis=1).astype(np.float32)
    return cv2.GaussianBlur(ext, (0, 0), sigma)[:, pad:-pad].astype(a.dtype)


def _beard_thickness(p: HeadParams, x, y, z) -> np.ndarray:
    if p.facial_hair != "beard":
        return np.zeros_like(x)
    return 0.008 * _beard_region(p, x, y, z)


def _grid_normals(pos: np.ndarray) -> np.ndarray:
    """Outward unit normals of a rows x cols grid whose columns wrap around (periodic)."""
    d_col = np.roll(pos, -1, axis=1) - np.roll(pos, 1, axis=1)
    d_row = np.empty_like(pos)
    d_row[1:-1] = pos[2:] - pos[:-2]
    d_row[0], d_row[-1] = pos[1] - pos[0], pos[-1] - pos[-2]
    n = np.cross(d_row, d_col)  # rows run down, columns toward +x at the front: outward
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(norm > 1e-12, n / np.maximum(norm, 1e-12), 0)
    n[0] = (0, -1, 0)  # the crown pole
    return n


def _grid_triangles(rows: int, cols: int, step: int = 1) -> np.ndarray:
    """Two triangles per grid cell, for a rows x (cols + 1) vertex grid (seam duplicated).

    ``step`` > 1 skips rows and columns (keeping the first and last): a coarser level of
    detail over the same vertices, for small renders where triangles would be sub-pixel.
    """
    ri = np.unique(np.r_[np.arange(0, rows, step), rows - 1])
    ci = np.unique(np.r_[np.arange(0, cols + 1, step), cols])
    r0, c0 = np.meshgrid(ri[:-1], ci[:-1], indexing="ij")
    r1, c1 = np.meshgrid(ri[1:], ci[1:], indexing="ij")
    w = cols + 1
    a, b, cc, dd = r0 * w + c0, r0 * w + c1, r1 * w + c0, r1 * w + c1
    tris = np.concatenate([np.stack([a, b, dd], -1), np.stack([a, dd, cc], -1)])
    return tris.reshape(-1, 3).astype(np.int32)


def _ambient_occlusion(pos: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Cavity term: where the surface lies below the average of its grid neighbourhood
    (along the normal), ambient light is partly occluded (eye sockets, nostrils, ear)."""
    pad = 6
    ext = np.concatenate([pos[:, -pad:], pos, pos[:, :pad]], axis=1).astype(np.float32)
    smooth = np.stack([cv2.GaussianBlur(ext[..., k], (0, 0), 2.5) for k in range(3)], -1)
    cavity = ((smooth[:, pad:-pad] - pos) * normals).sum(-1)
    return np.clip(1 - 25.0 * np.maximum(cavity, 0), 0.4, 1.0)


# --------------------------------------------------------------------------------------
# Texture painting
# --------------------------------------------------------------------------------------


class _Canvas:
    """An RGB float texture plus specular and region layers, painted with soft masks."""

    def __init__(self, shape: tuple[int, int], color) -> None:
        self.rgb = np.empty((*shape, 3), np.float32)
        self.rgb[:] = color
        self.spec = np.full(shape, 0.25, np.float32)
        self.region = np.zeros(shape, np.uint8)

    def paint(self, mask: np.ndarray, color, spec: float | None = None,
              region: str | None = None) -> None:
        m = np.clip(mask, 0, 1).astype(np.float32)[..., None]
        col = np.asarray(color, np.float32)
        self.rgb += (col - self.rgb) * m
        if spec is not None:
            self.spec += (spec - self.spec) * m[..., 0]
        if region is not None:
            self.region[m[..., 0] > 0.5] = REGIONS[region]

    def shade(self, factor: np.ndarray) -> None:
        self.rgb *= np.asarray(factor, np.float32)[..., None] if np.ndim(factor) == 2 else factor


def _paint_eye(cv: _Canvas, p: HeadParams, x, y, side: int, rng) -> None:
    hw = p.eye_width / 2
    u = side * (x - side * p.eye_spacing) / hw       # -1 inner corner .. +1 outer corner
    v = y / hw + p.eye_tilt * u                        # down, relative to the eye's axis
    near = (np.abs(u) < 2.2) & (np.abs(v) < 2.2)
    if not near.any():
        return
    uu = np.clip(u, -1, 1)
    upper = -p.eye_open * (1 - uu**2) ** 0.8 * (1 - 0.15 * uu)
    lower = p.eye_open * 0.85 * (1 - uu**2) ** 0.9 * (1 + 0.15 * uu)
    px = 1.5 / TEXTURE_SIZE * 40  # soft edge width in half-width units
    inside = _smoothstep(-px, px, v - upper) * _smoothstep(px, -px, v - lower) \
        * _smoothstep(1.0, 0.95, np.abs(u))
    # Socket shading around the eye, the lid crease and the under-eye.
    ring = np.exp(-0.5 * ((u / 1.5) ** 2 + ((v + 0.1) / 0.9) ** 2))
    cv.shade(1 - 0.33 * ring)
    crease = np.exp(-0.5 * ((v - (upper - 0.28)) / 0.07) ** 2) * _smoothstep(1.3, 0.6, np.abs(u))
    cv.shade(1 - 0.35 * crease)
    # Sclera, shaded toward the corners.
    sclera = np.array([0.93, 0.88, 0.84]) * (1 - 0.18 * np.abs(uu)[..., None] ** 2)
    cv.paint(inside, sclera.reshape(*u.shape, 3) if sclera.ndim == 3 else sclera, 0.9, "eye")
    caruncle = _gauss(u, v, -0.92, 0.02, 0.07, 0.1) * inside
    cv.paint(caruncle, (0.8, 0.45, 0.45))
    # Iris with a dark limbal ring and radial streaks, the pupil, a catchlight.
    iu, iv = u - 0.0, v - 0.03
    rr = np.sqrt(iu**2 + iv**2)
    ri = 0.4
    ang = np.arctan2(iv, iu)
    streak = 1 + 0.25 * np.sin(ang * 23 + rng.uniform(0, 6)) * np.sin(ang * 7)
    iris_col = np.asarray(p.iris_rgb, np.float32) * (0.8 + 0.4 * (rr / ri))[..., None] \
        * streak[..., None]
    iris = _smoothstep(ri + 0.03, ri - 0.03, rr) * inside
    cv.rgb += (iris_col - cv.rgb) * iris[..., None]
    cv.paint(_smoothstep(ri - 0.02, ri + 0.02, rr) * _smoothstep(ri + 0.06, ri, rr) * inside,
             np.asarray(p.iris_rgb) * 0.3)
    cv.paint(_smoothstep(0.18, 0.14, rr) * inside, (0.02, 0.02, 0.02))
    cv.paint(_smoothstep(0.08, 0.05, np.hypot(iu - 0.12, iv + 0.12)) * inside, (0.95, 0.95, 0.95))
    # Shadow of the upper lid on the eyeball.
    cv.shade(1 - 0.35 * inside * np.exp(-0.5 * ((v - upper) / 0.08) ** 2))
    # Lashes: a dark band along the upper lid, thicker outward, and a lighter lower line.
    lash_w = 0.09 + 0.07 * _smoothstep(-0.5, 1.0, u)
    up_lash = _smoothstep(lash_w, lash_w * 0.4, np.abs(v - upper + lash_w * 0.3)) \
        * _smoothstep(1.15, 0.9, np.abs(u + 0.05))
    lash_col = (0.05, 0.035, 0.03)
    cv.paint(up_lash * p.lash_darkness, lash_col, 0.2, "eye")
    lo_lash = _smoothstep(0.05, 0.015, np.abs(v - lower - 0.02)) * _smoothstep(1.0, 0.7, np.abs(u))
    cv.paint(lo_lash * p.lash_darkness * 0.45, lash_col)


def _paint_brow(cv: _Canvas, p: HeadParams, x, y, side: int, strands: np.ndarray) -> None:
    inner, length = 0.03, p.eye_spacing + p.eye_width * 0.55 - 0.03
    u = (side * x - inner) / length                 # 0 at the inner end, 1 at the tail
    centre = p.brow_height - p.brow_arch * np.exp(-0.5 * ((u - 0.62) / 0.32) ** 2) \
        + 0.008 * np.clip(u - 0.7, 0, 1) * 3
    half = p.brow_thickness * (0.6 - 0.4 * np.clip(u, 0, 1)) + 0.002
    ends = _smoothstep(-0.05, 0.08, u) * _smoothstep(1.02, 0.9, u)
    mask = _smoothstep(half, half * 0.5, np.abs(y - centre)) * ends
    density = np.clip(p.brow_density * (0.85 + 0.4 * strands), 0, 1)
    cv.paint(mask * density, p.brow_rgb, 0.15, "brow")


def _paint_lips(cv: _Canvas, p: HeadParams, x, y, lay: dict[str, float]) -> None:
    mw, ym = p.mouth_width, lay["mouth"]
    a = x / mw
    aa = np.clip(np.abs(a), 0, 1)
    bow = 1 + 0.25 * np.exp(-0.5 * ((aa - 0.3) / 0.12) ** 2) - 0.15 * np.exp(-0.5 * (a / 0.1) ** 2)
    top = ym - p.upper_lip * (1 - aa**2.2) ** 0.7 * bow
    bottom = ym + p.lower_lip * (1 - aa**2) ** 0.6
    e = 0.0015
    lips = _smoothstep(-e, e, y - top) * _smoothstep(e, -e, y - bottom) \
        * _smoothstep(1.0, 0.93, np.abs(a))
    lower = _smoothstep(ym - 0.002, ym + 0.004, y)
    col = np.asarray(p.lip_rgb, np.float32)
    lip_col = col[None, None] * (1 + 0.12 * lower - 0.15 * aa**3)[..., None]
    cv.rgb += (lip_col - cv.rgb) * lips[..., None]
    cv.spec += (0.55 - cv.spec) * lips
    cv.region[lips > 0.5] = REGIONS["lips"]
    line = _smoothstep(0.003, 0.0008, np.abs(y - ym - 0.002 * aa**2)) \
        * _smoothstep(1.08, 0.85, np.abs(a))
    cv.paint(line * 0.85, (0.2, 0.08, 0.08))
    corners = _gauss(np.abs(x), y, mw, ym, 0.01, 0.006)
    cv.shade(1 - 0.35 * corners)


def _paint_skin(cv: _Canvas, p: HeadParams, x, y, z, rng, shape) -> None:
    lay = _feature_layout(p)
    low = _noise(rng, shape, (10, 20))
    mid = _noise(rng, shape, (60, 120))
    fine = _noise(rng, shape, (300, 500))
    cv.shade(1 + p.skin_variation * (0.7 * low + 0.3 * mid) + 0.025 * fine)
    red = np.asarray((1.04, 0.9, 0.9), np.float32)
    blush = _gauss(np.abs(x), y, 0.15, 0.13, 0.05, 0.045) \
        + 0.8 * _gauss(x, y, 0, lay["tip"], 0.03, 0.03)
    cv.rgb *= 1 + (red - 1) * (p.redness * np.clip(blush, 0, 1))[..., None]
    # under-eye darkening and a touch of shading under the brows
    for s in (-1, 1):
        cv.shade(1 - 0.1 * _gauss(x, y, s * p.eye_spacing, 0.05, 0.045, 0.015))
    # freckles and moles: random spots on the face
    front = z < -0.15
    for _ in range(int(p.freckles * 150)):
        cx, cy = rng.normal(0, 0.1), rng.normal(0.06, 0.06)
        spot = _gauss(x, y, cx, cy, 0.003, 0.003) * front
        cv.rgb *= 1 - 0.25 * spot[..., None]
    for _ in range(p.moles):
        cx, cy = rng.uniform(-0.22, 0.22), rng.uniform(-0.2, 0.42)
        cv.paint(_gauss(x, y, cx, cy, 0.004, 0.004) * front * 0.9,
                 np.asarray(p.skin_rgb) * 0.45)


def _paint_nose(cv: _Canvas, p: HeadParams, x, y, lay) -> None:
    for s in (-1, 1):
        nostril = _gauss(x, y, s * p.nose_width * 0.45, lay["base"] - 0.006, 0.011, 0.006)
        cv.paint(_smoothstep(0.3, 0.7, nostril), (0.15, 0.06, 0.05), 0.05, "nostril")
        # the crease around the ala
        r = np.hypot((x - s * p.nose_width * 0.85) / 0.017, (y - lay["tip"] - 0.012) / 0.016)
        cv.shade(1 - 0.25 * np.exp(-0.5 * ((r - 1.0) / 0.2) ** 2) * (y > lay["tip"] - 0.02))
    # the soft shadow the nose casts on the upper lip under frontal light
    cv.shade(1 - 0.18 * _gauss(x, y, 0, lay["base"] + 0.01, p.nose_width * 1.1, 0.01))


def _paint_hair(cv: _Canvas, p: HeadParams, hair: np.ndarray, rng, shape) -> None:
    streak = _noise(rng, shape, (12, 400)) * 0.6 + _noise(rng, shape, (40, 900)) * 0.4
    base = np.asarray(p.hair_rgb, np.float32)
    grey = np.asarray((0.7, 0.7, 0.7), np.float32)
    col = base[None, None] * (1 + 0.35 * streak)[..., None]
    g = np.clip(p.grey_hair * (0.6 + 0.6 * _noise(rng, shape, (200, 600))), 0, 1)[..., None]
    col = col + (grey - col) * g
    if p.hair_style in ("buzz", "bald"):
        # short hair lets the scalp show through
        skin = cv.rgb.copy()
        col = skin * 0.55 + col * 0.45
    cv.rgb += (col - cv.rgb) * hair[..., None]
    cv.spec += (0.3 - cv.spec) * hair
    cv.region[hair > 0.5] = REGIONS["hair"]


def _paint_beard(cv: _Canvas, p: HeadParams, region: np.ndarray, rng, shape) -> None:
    if p.facial_hair == "none":
        return
    fine = _noise(rng, shape, (300, 800))
    patch = _noise(rng, shape, (60, 200))
    # Ragged, thinning edges: noise moves the boundary and the density falls off over it.
    edge = 4 * region * (1 - region)
    region = np.clip(region + 0.3 * patch * edge, 0, 1) ** 1.5
    if p.facial_hair == "stubble":
        tint = np.asarray(p.hair_rgb, np.float32) * 0.5 + cv.rgb * 0.5
        cv.rgb += (tint * (0.95 + 0.1 * fine[..., None]) - cv.rgb) * (0.55 * region)[..., None]
        return
    col = np.asarray(p.hair_rgb, np.float32)[None, None] * (0.85 + 0.35 * fine)[..., None]
    dens = np.clip(0.95 * region * (0.85 + 0.3 * fine), 0, 1)
    cv.rgb += (col - cv.rgb) * dens[..., None]
    cv.spec += (0.1 - cv.spec) * region
    cv.region[region > 0.5] = REGIONS["beard"]


def _paint_texture(p: HeadParams, pos: np.ndarray, base: np.ndarray, phi: np.ndarray,
                   ear_mask: np.ndarray, hair_noise: np.ndarray) -> _Canvas:
    """Paint the texture from per-texel surface positions (TH x TW x 3, head frame), base
    (feature-free) positions, azimuths, the ear mask and the hairline noise the geometry
    used (so painted and modelled hairlines agree)."""
    shape = pos.shape[:2]
    rng = np.random.default_rng(p.seed)
    x, y, z = base[..., 0], base[..., 1], base[..., 2]
    cv = _Canvas(shape, p.skin_rgb)
    lay = _feature_layout(p)
    _paint_skin(cv, p, x, y, z, rng, shape)
    front = _smoothstep(-0.15, -0.25, z)
    # Neck shading and clothing below it.
    cv.shade(1 - 0.12 * _smoothstep(0.45, 0.6, y) * (1 - front))
    collar = 0.72 + 0.06 * np.cos(phi)
    cloth = _smoothstep(collar - 0.003, collar + 0.003, y)
    cv.paint(cloth, p.clothing_rgb, 0.05, "clothing")
    # Ears: redder, with a darker concha.
    cv.rgb *= 1 + (np.asarray((1.03, 0.93, 0.92), np.float32) - 1) * ear_mask[..., None]
    cv.region[(ear_mask > 0.5)] = REGIONS["ear"]
    concha = ear_mask * _gauss(y, z, 0.08, 0.04, 0.045, 0.025)
    cv.shade(1 - 0.35 * concha)
    f = front > 0.5
    sub = np.ix_(f.any(1), f.any(0))  # features only touch the face's bounding box
    sx, sy, szz = x[sub], y[sub], z[sub]
    part = _Canvas(sx.shape, 0)
    part.rgb, part.spec, part.region = cv.rgb[sub], cv.spec[sub], cv.region[sub]
    part_front = front[sub]
    strands = _noise(rng, sx.shape, (60, 300))
    _paint_nose(part, p, sx, sy, lay)
    _paint_lips(part, p, sx, sy, lay)
    for s in (-1, 1):
        _paint_eye(part, p, sx, sy, s, rng)
        _paint_brow(part, p, sx, sy, s, strands)
    keep = part_front[..., None]
    cv.rgb[sub] = part.rgb * keep + cv.rgb[sub] * (1 - keep)
    cv.spec[sub] = np.where(part_front > 0.5, part.spec, cv.spec[sub])
    cv.region[sub] = np.where(part_front > 0.5, part.region, cv.region[sub])
    del szz
    _paint_beard(cv, p, _beard_region(p, x, y, z), rng, shape)
    hair = _hair_mask(p, phi, y, hair_noise)
    fine = _noise(rng, shape, (200, 700))
    hair = np.clip(hair * (1 + 0.5 * fine * (hair < 0.99)), 0, 1)
    _paint_hair(cv, p, hair, rng, shape)
    return cv


# --------------------------------------------------------------------------------------
# Glasses
# --------------------------------------------------------------------------------------


def _tube(path: np.ndarray, radius: float, sides: int = 6, closed: bool = True):
    """Vertices and triangles of a tube of circular section swept along ``path`` (N x 3)."""
    n = len(path)
    if closed:
        nxt, prv = np.roll(path, -1, 0), np.roll(path, 1, 0)
    else:  # extrapolate one step at both ends
        nxt = np.concatenate([path[1:], path[-1:] * 2 - path[-2:-1]])
        prv = np.concatenate([path[:1] * 2 - path[1:2], path[:-1]])
    tang = nxt - prv
    tang /= np.linalg.norm(tang, axis=1, keepdims=True)
    ref = np.where(np.abs(tang[:, 1:2]) < 0.9, [[0, 1, 0]], [[1, 0, 0]])
    b1 = np.cross(tang, ref)
    b1 /= np.linalg.norm(b1, axis=1, keepdims=True)
    b2 = np.cross(tang, b1)
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.cos(ang)[None, :, None] * b1[:, None] + np.sin(ang)[None, :, None] * b2[:, None]
    verts = (path[:, None] + radius * ring).reshape(-1, 3)
    normals = ring.reshape(-1, 3)
    segs = n if closed else n - 1
    i, j = np.meshgrid(np.arange(segs), np.arange(sides), indexing="ij")
    a = i * sides + j
    b = i * sides + (j + 1) % sides
    c = ((i + 1) % n) * sides + j
    d = ((i + 1) % n) * sides + (j + 1) % sides
    tris = np.concatenate([np.stack([a, c, d], -1), np.stack([a, d, b], -1)]).reshape(-1, 3)
    # Both windings: thin tubes are cheap, and culling then keeps whichever side faces the
    # camera whatever the path's direction.
    return verts, normals, np.concatenate([tris, tris[:, ::-1]])


def _glasses(p: HeadParams, surface_z_at) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames: two rims, a bridge and two temples, as tubes. ``surface_z_at(x, y)`` gives the
    face's front z so the frames sit in front of it."""
    parts = []
    rim_w, rim_h = p.eye_width * 0.62 + 0.012, p.eye_width * 0.42 + 0.01
    zc = surface_z_at(p.eye_spacing, 0.0) - 0.05
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    expo = 2 / (2 + 4 * p.glasses_shape)       # superellipse: round .. rectangular
    cx, sy = np.cos(t), np.sin(t)
    rx = np.sign(cx) * np.abs(cx) ** expo * rim_w
    ry = np.sign(sy) * np.abs(sy) ** expo * rim_h
    for s in (-1, 1):
        # the outer side of each rim wraps back a little, following the face
        path = np.stack([s * p.eye_spacing + rx, 0.01 + ry,
                         zc + 0.03 * ((rx * s) / rim_w).clip(0) ** 2], -1)
        parts.append(_tube(path, 0.006, 6, True))
    inner = p.eye_spacing - rim_w
    bridge = np.stack([np.linspace(-inner, inner, 8), -0.005 - 0.012 * np.cos(
        np.linspace(-np.pi / 2, np.pi / 2, 8)), np.full(8, zc + 0.002)], -1)
    parts.append(_tube(bridge, 0.005, 6, False))
    for s in (-1, 1):
        x0 = s * (p.eye_spacing + rim_w)
        n = 10
        tt = np.linspace(0, 1, n)
        temple = np.stack([x0 + s * (p.head_width + 0.015 - abs(x0)) * np.sqrt(tt),
                           np.full(n, -0.01) + 0.02 * tt, zc + 0.03 + (0.1 - zc) * tt], -1)
        parts.append(_tube(temple, 0.005, 6, False))
    verts, norms, tris, off = [], [], [], 0
    for v, nrm, t_ in parts:
        verts.append(v)
        norms.append(nrm)
        tris.append(t_ + off)
        off += len(v)
    return np.concatenate(verts), np.concatenate(norms), np.concatenate(tris)


# --------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------


def _sample_grid(arr: np.ndarray, size: tuple[int, int], rows_used: int) -> np.ndarray:
    """Bilinearly resample a rows x (cols + 1) vertex grid at the texel centres of the first
    ``rows_used`` texture rows (the rest is the white strip)."""
    rows, cols1 = arr.shape[:2]
    tw = size[1]
    mx = ((np.arange(tw) + 0.5) / tw * (cols1 - 1)).astype(np.float32)
    my = ((np.arange(rows_used) + 0.5) / rows_used * (rows - 1)).astype(np.float32)
    map_x, map_y = np.meshgrid(mx, my)
    return cv2.remap(arr.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def build_head(params: HeadParams, rows: int = 120, cols: int = 168,
               texture_size: int = TEXTURE_SIZE) -> HeadMesh:
    """Build the textured mesh of ``params``; deterministic for equal params."""
    p = params
    g = _make_grid(p, rows, cols)
    r, masks = _radii(p, g)
    pos = g.origin + r[..., None] * g.direction
    # Duplicate the first column at the end so the texture seam has u = 0 and u = 1.
    wrap = lambda a: np.concatenate([a, a[:, :1]], axis=1)  # noqa: E731
    pos_w = wrap(pos)
    normals = _grid_normals(pos)
    ao = _ambient_occlusion(pos, normals)
    uu, vv = np.meshgrid(np.linspace(0, 1, cols + 1), g.v)
    # Texture: resample positions at texel centres, then paint.
    used = texture_size - _WHITE_ROWS
    base_w = wrap(masks["base"])
    tex_base = _sample_grid(base_w, (texture_size, texture_size), used)
    tex_pos = _sample_grid(pos_w, (texture_size, texture_size), used)
    phi_grid = np.broadcast_to(np.append(g.phi, np.pi)[None, :], pos_w.shape[:2])
    tex_phi = _sample_grid(np.ascontiguousarray(phi_grid), (texture_size, texture_size), used)
    tex_ear = _sample_grid(wrap(masks["ear"]), (texture_size, texture_size), used)
    tex_hn = _sample_grid(wrap(masks["hair_noise"]), (texture_size, texture_size), used)
    canvas = _paint_texture(p, tex_pos, tex_base, tex_phi, tex_ear, tex_hn)
    tex = np.full((texture_size, texture_size, 4), 255, np.uint8)
    tex[:used, :, :3] = np.clip(canvas.rgb * 255 + 0.5, 0, 255).astype(np.uint8)
    tex[:used, :, 3] = np.clip(canvas.spec * 255 + 0.5, 0, 255).astype(np.uint8)
    tex_regions = np.zeros((texture_size, texture_size), np.uint8)
    tex_regions[:used] = canvas.region
    tex_regions[used:] = REGIONS["glasses"]

    verts = pos_w.reshape(-1, 3)
    norms = wrap(normals).reshape(-1, 3)
    uv = np.stack([uu, vv], -1).reshape(-1, 2)
    tris = _grid_triangles(rows, cols)
    lods = [_grid_triangles(rows, cols, step) for step in (2, 4)]
    aos = wrap(ao).reshape(-1)
    ti = np.clip((uv[:, 1] * texture_size).astype(int), 0, used - 1)
    tj = np.clip((uv[:, 0] * texture_size).astype(int), 0, texture_size - 1)
    regions = tex_regions[ti, tj]
    colors = np.ones_like(verts)
    landmarks = _landmarks(p, verts[: rows * (cols + 1)], masks["base"], wrap)
    if p.glasses:
        gv, gn, gt = _glasses(p, lambda x, y: _front_z(verts, x, y))
        white_v = (used + _WHITE_ROWS / 2) / texture_size
        tris = np.concatenate([tris, gt + len(verts)])
        lods = [np.concatenate([t, gt + len(verts)]) for t in lods]
        verts = np.concatenate([verts, gv])
        norms = np.concatenate([norms, gn])
        uv = np.concatenate([uv, np.tile([[0.5, white_v]], (len(gv), 1))])
        aos = np.concatenate([aos, np.ones(len(gv))])
        regions = np.concatenate([regions, np.full(len(gv), REGIONS["glasses"], np.uint8)])
        colors = np.concatenate([colors, np.tile(np.asarray(p.glasses_rgb)[None], (len(gv), 1))])
    return HeadMesh(
        vertices=verts.astype(np.float32), normals=norms.astype(np.float32),
        uv=uv.astype(np.float32), triangles=tris.astype(np.int32),
        colors=colors.astype(np.float32), ao=aos.astype(np.float32), regions=regions,
        texture=tex, texture_regions=tex_regions, landmarks=landmarks, params=p,
        lod_triangles=[t.astype(np.int32) for t in lods],
    )


def _front_z(verts: np.ndarray, x: float, y: float) -> float:
    """z of the front-most vertex near (x, y) in frontal projection."""
    d = (verts[:, 0] - x) ** 2 + (verts[:, 1] - y) ** 2
    near = d < np.partition(d, 20)[20] + 1e-12
    return float(verts[near, 2].min())


def _landmarks(p: HeadParams, verts: np.ndarray, base: np.ndarray, wrap) -> dict:
    """3D landmarks: the front vertex nearest each feature's frontal (x, y) position."""
    lay = _feature_layout(p)
    bx = wrap(base).reshape(-1, 3)
    front = bx[:, 2] < -0.1
    targets = {
        "eye_left": (-p.eye_spacing, 0.0), "eye_right": (p.eye_spacing, 0.0),
        "nose_tip": (0.0, lay["tip"] - 0.004),
        "mouth_left": (-p.mouth_width, lay["mouth"]), "mouth_right": (p.mouth_width, lay["mouth"]),
        "chin": (0.0, lay["chin"]),
    }
    out = {}
    for name, (x, y) in targets.items():
        d = (bx[:, 0] - x) ** 2 + (bx[:, 1] - y) ** 2 + 1e3 * ~front
        out[name] = verts[int(np.argmin(d))].astype(np.float64)
    return out
