"""Fast CPU rendering of :class:`~icportrait.synth.head.HeadMesh` heads with OpenGL (moderngl).

Backend: moderngl on a headless EGL context, which on a machine without a GPU runs Mesa's
llvmpipe (a multi-threaded, JIT-compiled software rasteriser). Measured on the 2-core
development machine it renders a 36 k-vertex head with all outputs at several hundred views
per second at 128 px, one to two orders of magnitude faster than a vectorised PyTorch or
numpy rasteriser (see ``benchmarks/synth_realism.py``).

Camera: a pinhole with OpenCV's conventions (x right, y down, z away from the camera; pixel
(row i, column j) has its centre at image coordinates (u, v) = (j, i)) and focal length
``focal_per_side`` x image side, the face toolkit's :data:`~icportrait.faces.pose.FOCAL_PER_SIDE`
by default, so :func:`~icportrait.faces.head_pose` reads renders with its own camera model.
A head point ``p`` (head frame, see :mod:`icportrait.synth.head`) maps to the camera as
``R @ (p - pivot) + t`` where ``R`` is the head -> camera rotation (``pose_to_matrix``) and
``t`` places the head so that, at ``R = I``, its eyes land on the face toolkit's canonical
points (0.375, 0.471) and (0.625, 0.471) of the image for ``margin = 1``.

Outputs of :func:`render` (H x W arrays, row 0 at the top):

* ``rgb``: uint8 H x W x 3, sRGB, antialiased (MSAA), composited over the background;
* ``alpha``: float32 H x W in [0, 1], coverage of the head (fractional on antialiased edges);
* ``depth``: float32 H x W, camera z of the visible surface at the pixel centre, NaN on
  background;
* ``normals``: float32 H x W x 3, unit normals in camera axes, 0 on background;
* ``surface_xyz``: float32 H x W x 3, the visible surface point in the head's rest frame (the
  canonical coordinate that identifies a surface point across views), NaN on background;
* ``region``: uint8 H x W region labels (:data:`icportrait.synth.head.REGIONS`), 255 on
  background.

Geometry maps are sampled exactly at pixel centres (no antialiasing), so they are exact
correspondences: projecting ``surface_xyz`` with the view's camera gives back the pixel.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import numpy as np

from icportrait.errors import MissingDependencyError
from icportrait.faces.align import CANONICAL_FIVE
from icportrait.faces.pose import FOCAL_PER_SIDE
from icportrait.synth.head import HeadMesh

MAX_LIGHTS = 4

_VERTEX = """
#version 330
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in float in_ao;
in vec3 in_color;
in float in_region;
uniform mat3 rot;
uniform vec3 pivot;
uniform vec3 trans;
uniform vec4 intr;      // fx, fy, cx, cy in pixels (OpenCV)
uniform vec2 size;      // width, height
uniform vec2 near_far;
out vec3 v_cam;
out vec3 v_normal;
out vec2 v_uv;
out float v_ao;
out vec3 v_color;
out vec3 v_rest;
flat out float v_region;
void main() {
    vec3 pc = rot * (in_pos - pivot) + trans;
    v_cam = pc;
    v_normal = rot * in_normal;
    v_uv = in_uv;
    v_ao = in_ao;
    v_color = in_color;
    v_rest = in_pos;
    v_region = in_region;
    float n = near_far.x, f = near_far.y;
    // Pixel centres sit at integer (u, v) in OpenCV; in GL window coordinates at +0.5.
    // NDC y grows with v, so GL's first framebuffer row is the image's top row.
    gl_Position = vec4(
        2.0 * (intr.x * pc.x + (intr.z + 0.5) * pc.z) / size.x - pc.z,
        2.0 * (intr.y * pc.y + (intr.w + 0.5) * pc.z) / size.y - pc.z,
        (pc.z * (f + n) - 2.0 * f * n) / (f - n),
        pc.z);
}
"""

_FRAGMENT_COLOR = """
#version 330
#define GEOMETRY_OUTPUTS {geometry}
in vec3 v_cam;
in vec3 v_normal;
in vec2 v_uv;
in float v_ao;
in vec3 v_color;
in vec3 v_rest;
flat in float v_region;
uniform sampler2D tex;
uniform vec3 ambient;
uniform int n_lights;
uniform vec3 light_dir[4];   // unit, camera axes, pointing from the surface to the light
uniform vec3 light_col[4];   // linear RGB
uniform vec3 sh[9];          // irradiance SH coefficients, camera axes, linear RGB
uniform float specular;
uniform float exposure;
layout(location = 0) out vec4 f_color;
#if GEOMETRY_OUTPUTS
layout(location = 1) out vec4 o_rest;
layout(location = 2) out vec4 o_normal_depth;
#endif

vec3 sh_irradiance(vec3 n) {
    return sh[0] * 0.282095
         + sh[1] * 0.488603 * n.y + sh[2] * 0.488603 * n.z + sh[3] * 0.488603 * n.x
         + sh[4] * 1.092548 * n.x * n.y + sh[5] * 1.092548 * n.y * n.z
         + sh[6] * 0.315392 * (3.0 * n.z * n.z - 1.0)
         + sh[7] * 1.092548 * n.x * n.z + sh[8] * 0.546274 * (n.x * n.x - n.y * n.y);
}

void main() {
    vec4 t = texture(tex, v_uv);
    // sRGB <-> linear as gamma 2 (x^2 and sqrt): close to 2.2 and much cheaper on llvmpipe
    vec3 albedo = t.rgb * v_color;
    albedo *= albedo;
    vec3 n = normalize(v_normal);
    vec3 view = normalize(-v_cam);
    vec3 diffuse = (ambient + max(sh_irradiance(n), vec3(0.0))) * v_ao;
    vec3 spec = vec3(0.0);
    // Wet surfaces (eyes, lips) have sharp highlights, skin broad ones.
    float shininess = mix(12.0, 160.0, t.a * t.a);
    for (int i = 0; i < n_lights; ++i) {
        float ndl = dot(n, light_dir[i]);
        if (ndl <= 0.0) continue;
        // a little wrap-around, as light scatters under skin
        diffuse += light_col[i] * (ndl * 0.85 + 0.15 * sqrt(ndl));
        vec3 h = normalize(light_dir[i] + view);
        spec += light_col[i] * exp2(shininess * (max(dot(n, h), 1e-4) - 1.0) * 1.4427) * ndl;
    }
    vec3 c = albedo * diffuse + spec * t.a * specular * v_ao;
    c = vec3(1.0) - exp(-c * exposure);       // soft shoulder instead of hard clipping
    f_color = vec4(sqrt(c), 1.0);
#if GEOMETRY_OUTPUTS
    o_rest = vec4(v_rest, v_region);
    o_normal_depth = vec4(n, v_cam.z);
#endif
}
"""

_FRAGMENT_GEOMETRY = """
#version 330
in vec3 v_cam;
in vec3 v_normal;
in vec2 v_uv;
in float v_ao;
in vec3 v_color;
in vec3 v_rest;
flat in float v_region;
layout(location = 0) out vec4 o_rest;
layout(location = 1) out vec4 o_normal_depth;
void main() {
    o_rest = vec4(v_rest, v_region);
    o_normal_depth = vec4(normalize(v_normal), v_cam.z);
}
"""


# --------------------------------------------------------------------------------------
# Camera and light
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Camera:
    """Pinhole framing. ``margin`` zooms out like :func:`icportrait.faces.align_face`'s; the
    head turns about ``pivot`` (head frame; default: between the ears)."""

    focal_per_side: float = FOCAL_PER_SIDE
    margin: float = 1.0
    pivot: tuple[float, float, float] = (0.0, 0.05, 0.05)
    near: float = 0.2
    far: float = 10.0


@dataclass(frozen=True)
class Lighting:
    """Ambient + directional lights + 2nd-order SH environment, all in camera axes, linear RGB.

    ``directions``: L x 3, from the surface toward each light (normalised on use);
    ``colors``: L x 3; ``sh``: 9 x 3 irradiance coefficients (shading = albedo x sum_k c_k
    Y_k(n), Y in the order of :func:`icportrait.colour.sh_basis`); ``background``: one sRGB
    colour (3,) in 0..1, or two (top, bottom) for a vertical gradient.
    """

    ambient: tuple[float, float, float] = (0.25, 0.25, 0.27)
    directions: tuple[tuple[float, float, float], ...] = ((-0.4, -0.5, -0.75),)
    colors: tuple[tuple[float, float, float], ...] = ((1.0, 0.97, 0.92),)
    sh: np.ndarray = field(default_factory=lambda: np.zeros((9, 3), np.float32))
    specular: float = 0.35
    exposure: float = 1.6
    background: tuple = ((0.55, 0.57, 0.6), (0.35, 0.36, 0.4))


def random_lighting(rng: np.random.Generator, max_lights: int = 2) -> Lighting:
    """A plausible random portrait lighting: a key light from the front hemisphere, maybe a
    fill or rim light, a coloured SH environment and a gradient background."""
    def direction(spread: float) -> tuple[float, float, float]:
        az = rng.uniform(-spread, spread)
        el = rng.uniform(-0.3, 0.9)
        # camera axes: the light sits toward the camera (-z), up is -y
        return (float(np.sin(az) * np.cos(el)), float(-np.sin(el)),
                float(-np.cos(az) * np.cos(el)))

    def tint(sat: float) -> np.ndarray:
        return 1 + sat * rng.uniform(-1, 1, 3)

    n = int(rng.integers(1, max_lights + 1))
    dirs = [direction(1.3)] + [direction(2.2) for _ in range(n - 1)]
    cols = [tuple(float(v) for v in rng.uniform(0.7, 1.2) * tint(0.12))]
    cols += [tuple(float(v) for v in rng.uniform(0.2, 0.6) * tint(0.25)) for _ in range(n - 1)]
    # Environment: a random smooth sky (band 0 and 1, a little band 2).
    sh = np.zeros((9, 3), np.float32)
    sh[0] = rng.uniform(0.5, 1.1) * tint(0.15)
    sh[1:4] = rng.normal(0, 0.25, (3, 1)) * tint(0.2)
    sh[1] += 0.2  # more light from above (camera -y): negative y weight -> brighter up
    sh[1] *= -1
    sh[4:] = rng.normal(0, 0.06, (5, 3))
    top = rng.uniform(0.1, 0.9, 3)
    bottom = np.clip(top * rng.uniform(0.5, 1.1) + rng.normal(0, 0.05, 3), 0, 1)
    return Lighting(
        ambient=tuple(float(v) for v in rng.uniform(0.05, 0.15) * tint(0.1)),
        directions=tuple(dirs), colors=tuple(cols), sh=sh,
        specular=float(rng.uniform(0.15, 0.5)), exposure=float(rng.uniform(1.3, 1.9)),
        background=(tuple(float(v) for v in top), tuple(float(v) for v in bottom)),
    )


def intrinsics(size: int, camera: Camera) -> np.ndarray:
    """3 x 3 OpenCV camera matrix of a ``size`` x ``size`` render."""
    f = camera.focal_per_side * size
    return np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], np.float64)


def head_translation(mesh: HeadMesh, camera: Camera) -> np.ndarray:
    """Camera-frame position of the pivot that puts the eyes on the canonical points at R = I.

    The framing depends on the identity (its eye distance and height) but not on the image
    size, so views of one head at any size line up.
    """
    eyes = mesh.eye_center
    target = 0.5 + (CANONICAL_FIVE[:2].mean(0) - 0.5) / camera.margin  # image fraction
    eye_frac = (CANONICAL_FIVE[1, 0] - CANONICAL_FIVE[0, 0]) / camera.margin
    depth = camera.focal_per_side * mesh.eye_distance / eye_frac
    offset = (target - 0.5) * depth / camera.focal_per_side   # camera x, y of the eye midpoint
    eye_cam = np.array([offset[0], offset[1], depth])
    return eye_cam + (np.asarray(camera.pivot) - eyes)


def project(points: np.ndarray, rotation: np.ndarray, mesh: HeadMesh, size: int,
            camera: Camera | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N x 2, OpenCV: u = column, v = row) and camera depth (N,) of head-
    frame ``points`` (N x 3) in a view rendered with the same arguments."""
    camera = camera or Camera()
    pc = (np.asarray(points, np.float64) - camera.pivot) @ np.asarray(rotation).T \
        + head_translation(mesh, camera)
    k = intrinsics(size, camera)
    uv = pc[:, :2] / pc[:, 2:3] * k[0, 0] + k[:2, 2]
    return uv, pc[:, 2]


# --------------------------------------------------------------------------------------
# Renderer
# --------------------------------------------------------------------------------------


# Triangles are grouped by the direction of their normals; a group whose normals all face
# away from the camera is not drawn. llvmpipe shades vertices on one thread, so skipping the
# back of the head roughly halves the cost of a view.
_AZIMUTH_BINS, _ELEVATION_BINS = 32, 8
# Extra angle a group may face away and still be drawn: perspective (the camera sees a head
# of radius ~0.6 from ~1.8 away) makes some normals up to ~20° beyond 90° visible.
_CULL_MARGIN = np.radians(24.0)


def _normal_bins(normals: np.ndarray, triangles: np.ndarray):
    """Sort triangles by their normal's direction; return the order, the groups' index
    ranges (start, count) into the sorted triangles, their mean axes and cone half-angles."""
    n = normals[triangles].sum(1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    az = np.arctan2(n[:, 0], -n[:, 2])
    el = np.arcsin(np.clip(-n[:, 1], -1, 1))
    ia = np.clip(((az + np.pi) / (2 * np.pi) * _AZIMUTH_BINS).astype(int), 0, _AZIMUTH_BINS - 1)
    ie = np.clip(((el + np.pi / 2) / np.pi * _ELEVATION_BINS).astype(int), 0,
                 _ELEVATION_BINS - 1)
    key = ia * _ELEVATION_BINS + ie
    order = np.argsort(key, kind="stable")
    counts = np.bincount(key, minlength=_AZIMUTH_BINS * _ELEVATION_BINS)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    axes = np.zeros((len(counts), 3))
    half = np.zeros(len(counts))
    for b in np.nonzero(counts)[0]:
        nb = n[order[starts[b]:starts[b] + counts[b]]]
        a = nb.mean(0)
        a /= max(np.linalg.norm(a), 1e-12)
        axes[b] = a
        half[b] = np.arccos(np.clip(nb @ a, -1, 1)).max()
    keep = counts > 0
    return order, starts[keep], counts[keep], axes[keep], half[keep]


class _Level:
    """One level of detail: an index buffer sorted into normal-direction groups and a vertex
    array per program."""

    def __init__(self, ctx, programs, vbo, normals: np.ndarray, triangles: np.ndarray) -> None:
        order, starts, counts, self.axes, self.half = _normal_bins(normals, triangles)
        self.starts, self.counts = starts * 3, counts * 3   # in indices, not triangles
        self.ibo = ctx.buffer(np.ascontiguousarray(triangles[order], "i4").tobytes())
        fmt = "3f 3f 2f 1f 3f 1f"
        names = ["in_pos", "in_normal", "in_uv", "in_ao", "in_color", "in_region"]
        self.vaos = {}
        for key, prog in programs.items():
            layout = " ".join(f if n in prog else f.replace("f", "x4")
                              for f, n in zip(fmt.split(), names, strict=True))
            used = [n for n in names if n in prog]
            self.vaos[key] = ctx.vertex_array(prog, [(vbo, layout, *used)], self.ibo)

    def visible_ranges(self, to_camera: np.ndarray) -> list[tuple[int, int]]:
        """(first index, count) ranges of the groups that may face ``to_camera`` (unit vector
        from the head toward the camera, head frame); neighbouring groups are merged."""
        ang = np.arccos(np.clip(self.axes @ to_camera, -1, 1))
        vis = ang < np.pi / 2 + self.half + _CULL_MARGIN
        ranges: list[tuple[int, int]] = []
        for s, c in zip(self.starts[vis], self.counts[vis], strict=True):
            if ranges and ranges[-1][0] + ranges[-1][1] == s:
                ranges[-1] = (ranges[-1][0], ranges[-1][1] + c)
            else:
                ranges.append((int(s), int(c)))
        return ranges

    def draw(self, key: str, to_camera: np.ndarray) -> None:
        for first, count in self.visible_ranges(to_camera):
            self.vaos[key].render(vertices=count, first=first)

    def release(self) -> None:
        for vao in self.vaos.values():
            vao.release()
        self.ibo.release()


class _GpuMesh:
    """A mesh uploaded to the context: one interleaved vertex buffer, its levels of detail
    and the mipmapped texture."""

    def __init__(self, ctx, programs, mesh: HeadMesh) -> None:
        data = np.concatenate([
            mesh.vertices, mesh.normals, mesh.uv, mesh.ao[:, None], mesh.colors,
            mesh.regions[:, None].astype(np.float32)], axis=1).astype("f4")
        self.center = mesh.vertices.mean(0)
        self.vbo = ctx.buffer(data.tobytes())
        self.levels = [_Level(ctx, programs, self.vbo, mesh.normals, t)
                       for t in [mesh.triangles, *mesh.lod_triangles]]
        tex = np.ascontiguousarray(mesh.texture)
        self.texture = ctx.texture((tex.shape[1], tex.shape[0]), 4, tex.tobytes())
        # Trilinear mipmaps; anisotropic filtering costs llvmpipe ~40% of a view.
        self.texture.build_mipmaps()

    def level(self, size: int, triangles_per_pixel: float) -> _Level:
        """The finest level with at most about ``triangles_per_pixel`` triangles per pixel.

        llvmpipe's cost is mostly per triangle; sub-pixel triangles add cost, not detail.
        """
        for lvl in self.levels:
            if lvl.counts.sum() / 3 <= triangles_per_pixel * size * size:
                return lvl
        return self.levels[-1]

    def release(self) -> None:
        for lvl in self.levels:
            lvl.release()
        self.vbo.release()
        self.texture.release()


class Renderer:
    """An EGL context with compiled programs, framebuffers per size and uploaded meshes.

    The mesh's level of detail is chosen per size: the finest with at most
    ``triangles_per_pixel`` triangles per image pixel (with the default head, 128 px renders
    use the level with every 2nd grid line, 256 px the full mesh).

    ``samples`` = 0 (default) renders everything in one pass with multiple render targets
    and no antialiasing; ``samples`` > 0 renders the image with that many MSAA samples and
    the geometry maps in a second pass (about twice the cost). Not thread-safe; use one per
    thread (the module-level :func:`render` keeps one per thread). Meshes are uploaded on
    first use and kept while the mesh object lives.
    """

    def __init__(self, samples: int = 0, triangles_per_pixel: float = 1.0) -> None:
        try:
            import moderngl
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise MissingDependencyError(
                "rendering synthetic heads needs moderngl (`pip install moderngl`) and Mesa's "
                "EGL (Debian: libegl-mesa0 libgl1-mesa-dri)"
            ) from exc
        self._mgl = moderngl
        try:
            # The versioned names come with the runtime packages (libegl1, libgl1); the bare
            # .so names glcontext looks for by default need the -dev packages.
            self.ctx = moderngl.create_standalone_context(
                backend="egl", libgl="libGL.so.1", libegl="libEGL.so.1"
            )
        except Exception as exc:  # glcontext raises plain Exceptions
            raise MissingDependencyError(
                f"no headless OpenGL context ({exc}); install Mesa's EGL "
                "(Debian: libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri)"
            ) from exc
        self.samples = samples
        self.triangles_per_pixel = triangles_per_pixel
        color = _FRAGMENT_COLOR.replace("{geometry}", "0")
        full = _FRAGMENT_COLOR.replace("{geometry}", "1")
        self.programs = {
            "color": self.ctx.program(vertex_shader=_VERTEX, fragment_shader=color),
            "full": self.ctx.program(vertex_shader=_VERTEX, fragment_shader=full),
            "geometry": self.ctx.program(vertex_shader=_VERTEX,
                                         fragment_shader=_FRAGMENT_GEOMETRY),
        }
        self._fbos: dict[tuple[str, int], object] = {}
        self._meshes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._dead: list[_GpuMesh] = []  # GPU copies of collected meshes, freed on next use

    def _gpu(self, mesh: HeadMesh) -> _GpuMesh:
        gpu = self._meshes.get(mesh)
        if gpu is None:
            gpu = _GpuMesh(self.ctx, self.programs, mesh)
            self._meshes[mesh] = gpu
            # Not released here: the collector may run while another context is current
            # (or in another thread), and GL calls go to whatever context is current.
            weakref.finalize(mesh, self._dead.append, gpu)
        return gpu

    def _fbo(self, kind: str, size: int):
        key = (kind, size)
        if key not in self._fbos:
            ctx, wh = self.ctx, (size, size)
            geo = [ctx.renderbuffer(wh, 4, dtype="f4"), ctx.renderbuffer(wh, 4, dtype="f4")]
            if kind == "msaa":
                fbo = ctx.framebuffer([ctx.renderbuffer(wh, 4, samples=self.samples)],
                                      ctx.depth_renderbuffer(wh, samples=self.samples))
            elif kind == "color":     # image only: still needs depth testing
                fbo = ctx.framebuffer([ctx.renderbuffer(wh, 4)], ctx.depth_renderbuffer(wh))
            elif kind == "resolve":   # MSAA resolve target
                fbo = ctx.framebuffer([ctx.renderbuffer(wh, 4)])
            elif kind == "full":      # colour, rest xyz + region, normal + depth
                fbo = ctx.framebuffer([ctx.renderbuffer(wh, 4), *geo], ctx.depth_renderbuffer(wh))
            else:                     # geometry only
                fbo = ctx.framebuffer(geo, ctx.depth_renderbuffer(wh))
            self._fbos[key] = fbo
        return self._fbos[key]

    def _set_uniforms(self, prog, rotation, trans, size, camera, lighting) -> None:
        k = intrinsics(size, camera)
        prog["rot"].write(np.asarray(rotation, "f4").T.tobytes())  # GLSL is column-major
        prog["pivot"].value = tuple(float(v) for v in camera.pivot)
        prog["trans"].value = tuple(float(v) for v in trans)
        prog["intr"].value = (k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        prog["size"].value = (float(size), float(size))
        prog["near_far"].value = (camera.near, camera.far)
        if lighting is None or "ambient" not in prog:
            return
        dirs = np.zeros((MAX_LIGHTS, 3), "f4")
        cols = np.zeros((MAX_LIGHTS, 3), "f4")
        n = min(len(lighting.directions), MAX_LIGHTS)
        if n:
            d = np.asarray(lighting.directions[:n], "f4")
            dirs[:n] = d / np.linalg.norm(d, axis=1, keepdims=True)
            cols[:n] = np.asarray(lighting.colors[:n], "f4")
        prog["ambient"].value = tuple(float(v) for v in lighting.ambient)
        prog["n_lights"].value = n
        prog["light_dir"].write(dirs.tobytes())
        prog["light_col"].write(cols.tobytes())
        prog["sh"].write(np.asarray(lighting.sh, "f4").reshape(9, 3).tobytes())
        prog["specular"].value = float(lighting.specular)
        prog["exposure"].value = float(lighting.exposure)

    def render(
        self, mesh: HeadMesh, rotation: np.ndarray, size: int = 256,
        camera: Camera | None = None, lighting: Lighting | None = None,
        geometry: bool = True,
    ) -> dict[str, np.ndarray]:
        """Render one view; see the module docstring for the outputs. ``geometry=False``
        skips depth, normals, surface_xyz and region (faster when only the image is needed).
        """
        # GL calls go to the thread's current context: make ours current for this render
        # (another Renderer in the same thread would otherwise receive them).
        with self.ctx:
            while self._dead:
                self._dead.pop().release()
            return self._render(mesh, rotation, size, camera, lighting, geometry)

    def _render(self, mesh, rotation, size, camera, lighting, geometry):
        camera, lighting = camera or Camera(), lighting or Lighting()
        rotation = np.asarray(rotation, np.float64)
        if rotation.shape != (3, 3):
            raise ValueError(f"rotation must be 3 x 3, got {rotation.shape}")
        gpu = self._gpu(mesh)
        trans = head_translation(mesh, camera)
        # The camera in the head frame, seen from the mesh's centre.
        cam_head = rotation.T @ (-trans) + np.asarray(camera.pivot)
        to_cam = cam_head - gpu.center
        to_cam /= np.linalg.norm(to_cam)
        ctx = self.ctx
        ctx.enable(self._mgl.DEPTH_TEST | self._mgl.CULL_FACE)
        # NDC y follows the image's v (down), which mirrors the on-screen winding.
        ctx.front_face = "ccw"
        gpu.texture.use(0)
        single = geometry and not self.samples
        key = "full" if single else "color"
        prog = self.programs[key]
        self._set_uniforms(prog, rotation, trans, size, camera, lighting)
        prog["tex"].value = 0
        fbo = self._fbo("msaa" if self.samples else key, size)
        # Set the viewport only once the target is bound: moderngl stores it per framebuffer,
        # so setting it earlier rewrote the previous target's (renders at mixed sizes in one
        # process came out at the last size).
        fbo.use()
        ctx.viewport = (0, 0, size, size)
        # Clears every target to 0: zero depth marks background in the geometry maps.
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        level = gpu.level(size, self.triangles_per_pixel)
        level.draw(key, to_cam)
        if self.samples:
            resolve = self._fbo("resolve", size)
            ctx.copy_framebuffer(resolve, fbo)
            fbo = resolve
        rgba = np.frombuffer(fbo.read(components=4), np.uint8).reshape(size, size, 4)
        alpha = rgba[..., 3].astype(np.float32) / 255.0
        out = {"rgb": _composite(rgba, alpha, lighting.background), "alpha": alpha}
        if single:
            out.update(_read_geometry(fbo, size, first=1))
        elif geometry:
            prog = self.programs["geometry"]
            self._set_uniforms(prog, rotation, trans, size, camera, None)
            fbo = self._fbo("geometry", size)
            fbo.use()
            ctx.viewport = (0, 0, size, size)
            fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            level.draw("geometry", to_cam)
            out.update(_read_geometry(fbo, size, first=0))
        return out


def _read_geometry(fbo, size: int, first: int) -> dict[str, np.ndarray]:
    """Depth, normals, surface_xyz and region from the two float targets starting at
    attachment ``first``. Background is recognised by its zero depth (the clear value)."""
    rest = np.frombuffer(fbo.read(components=4, attachment=first, dtype="f4"), np.float32)
    nd = np.frombuffer(fbo.read(components=4, attachment=first + 1, dtype="f4"), np.float32)
    rest, nd = rest.reshape(size, size, 4), nd.reshape(size, size, 4)
    empty = nd[..., 3] <= 0
    xyz = rest[..., :3].copy()
    xyz[empty] = np.nan
    depth = nd[..., 3].copy()
    depth[empty] = np.nan
    region = np.where(empty, 255, np.rint(rest[..., 3])).astype(np.uint8)
    return {"depth": depth, "normals": nd[..., :3].copy(), "surface_xyz": xyz, "region": region}


def _composite(rgba: np.ndarray, alpha: np.ndarray, background) -> np.ndarray:
    """Premultiplied foreground (MSAA resolve of colour over transparent black) over the
    background: one colour, or (top, bottom) for a vertical gradient."""
    size_h = rgba.shape[0]
    bg = np.asarray(background, np.float32) * 255
    if bg.ndim == 2:  # gradient
        t = np.linspace(0, 1, size_h, dtype=np.float32)[:, None, None]
        bg = bg[0] * (1 - t) + bg[1] * t
    out = rgba[..., :3].astype(np.float32) + (1 - alpha[..., None]) * bg
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


_local = threading.local()


def default_renderer() -> Renderer:
    """This thread's shared :class:`Renderer` (created on first use)."""
    r = getattr(_local, "renderer", None)
    if r is None:
        r = _local.renderer = Renderer()
    return r


def render(
    mesh: HeadMesh, rotation: np.ndarray, size: int = 256, camera: Camera | None = None,
    lighting: Lighting | None = None, geometry: bool = True,
) -> dict[str, np.ndarray]:
    """Render ``mesh`` turned by ``rotation`` (3 x 3, head -> camera, e.g. from
    :func:`icportrait.faces.pose_to_matrix`) into a ``size`` x ``size`` image.

    Returns ``rgb``, ``alpha``, ``depth``, ``normals``, ``surface_xyz`` and ``region`` (see the
    module docstring for layouts and conventions).
    """
    return default_renderer().render(mesh, rotation, size, camera, lighting, geometry)
