"""Procedural heads and their renderer: determinism, output contracts, exact correspondences."""

from __future__ import annotations

import numpy as np
import pytest

from icportrait.faces import HeadPose, pose_to_matrix
from icportrait.synth.head import HeadParams, build_head, sample_head_params
from icportrait.synth.raster import Lighting, Renderer, project

SIZE = 128
# Small grid and texture: the tests check contracts, not looks, and stay fast.
FAST = {"rows": 96, "cols": 128, "texture_size": 256}
# View-independent shading (white ambient light only), so a surface point has one colour in
# every view.
FLAT = Lighting(ambient=(1.0, 1.0, 1.0), directions=(), colors=(), specular=0.0,
                exposure=1.0, background=(0.0, 0.0, 0.0))


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    try:
        return Renderer()
    except Exception as exc:  # no moderngl or no EGL on this machine
        pytest.skip(f"no OpenGL/EGL context: {exc}")


@pytest.fixture(scope="module")
def params() -> HeadParams:
    return sample_head_params(np.random.default_rng(7))


@pytest.fixture(scope="module")
def head(params):
    return build_head(params, **FAST)


def rot(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    return pose_to_matrix(HeadPose(yaw, pitch, roll))


def test_same_params_same_mesh_and_render(renderer, params, head):
    again = build_head(params, **FAST)
    for name in ("vertices", "normals", "uv", "triangles", "texture", "colors", "ao"):
        np.testing.assert_array_equal(getattr(head, name), getattr(again, name), err_msg=name)
    a = renderer.render(head, rot(10, 5, 2), SIZE)
    b = renderer.render(again, rot(10, 5, 2), SIZE)
    np.testing.assert_array_equal(a["rgb"], b["rgb"])
    np.testing.assert_array_equal(a["surface_xyz"], b["surface_xyz"])


def test_renders_at_mixed_sizes_do_not_interfere(renderer, head):
    """A render must not depend on the sizes rendered before it in the same process."""
    first = renderer.render(head, rot(0, 0, 0), SIZE)
    for size in (64, 96, SIZE // 2):
        renderer.render(head, rot(20, 0, 0), size)
        renderer.render(head, rot(20, 0, 0), size, geometry=False)
    again = renderer.render(head, rot(0, 0, 0), SIZE)
    np.testing.assert_array_equal(first["rgb"], again["rgb"])
    np.testing.assert_array_equal(first["alpha"], again["alpha"])
    np.testing.assert_array_equal(first["region"], again["region"])


def test_two_renderers_in_one_thread_do_not_interfere(renderer, head):  # skips without EGL
    """GL calls go to the thread's current context: creating a second renderer (which makes
    its context current) must not redirect the shared default renderer's draws."""
    import gc

    from icportrait.synth.raster import render

    first = render(head, rot(10, 0, 0), SIZE)
    other = Renderer()
    other.render(build_head(sample_head_params(np.random.default_rng(3)), **FAST),
                 rot(-20, 0, 0), 64)
    gc.collect()  # that head's GPU copy is freed later by its own renderer, in its context
    again = render(head, rot(10, 0, 0), SIZE)
    np.testing.assert_array_equal(first["rgb"], again["rgb"])
    np.testing.assert_array_equal(first["depth"], again["depth"])
    np.testing.assert_array_equal(first["rgb"], other.render(head, rot(10, 0, 0), SIZE)["rgb"])


def test_different_seeds_differ(head):
    other = sample_head_params(np.random.default_rng(8))
    assert other != head.params
    mesh = build_head(other, **FAST)
    n = FAST["rows"] * (FAST["cols"] + 1)  # the head's grid (glasses, if any, come after)
    assert np.abs(mesh.vertices[:n] - head.vertices[:n]).max() > 0.01
    assert np.abs(mesh.texture.astype(int) - head.texture).mean() > 5


def test_mesh_is_well_formed(head):
    v, t = head.vertices, head.triangles
    assert v.dtype == np.float32 and v.shape[1] == 3 and t.dtype == np.int32
    assert t.min() >= 0 and t.max() < len(v)
    np.testing.assert_allclose(np.linalg.norm(head.normals, axis=1), 1.0, atol=1e-3)
    assert (head.uv >= 0).all() and (head.uv <= 1).all()
    # head frame: crown up (-y), chin down, face toward -z, about one unit tall
    assert v[:, 1].min() < -0.45 and head.landmarks["chin"][1] > 0.35
    assert head.landmarks["nose_tip"][2] < v[:, 2].mean() - 0.3
    # outward normals on the face
    assert head.normals[np.argmin(v[:, 2])][2] < 0


def test_render_outputs(renderer, head):
    out = renderer.render(head, rot(20, -5, 0), SIZE)
    assert out["rgb"].shape == (SIZE, SIZE, 3) and out["rgb"].dtype == np.uint8
    assert out["alpha"].shape == (SIZE, SIZE) and out["alpha"].dtype == np.float32
    assert 0 <= out["alpha"].min() and out["alpha"].max() <= 1
    fg = ~np.isnan(out["depth"])
    assert 0.2 < fg.mean() < 0.9
    assert out["depth"].dtype == np.float32 and (out["depth"][fg] > 0.5).all()
    assert out["normals"].shape == (SIZE, SIZE, 3)
    np.testing.assert_allclose(np.linalg.norm(out["normals"][fg], axis=1), 1, atol=1e-3)
    # visible normals face the camera (negative z in camera axes, give or take smoothing)
    assert np.median(out["normals"][fg][:, 2]) < -0.5
    assert out["surface_xyz"].dtype == np.float32
    assert np.isnan(out["surface_xyz"][~fg]).all() and np.isfinite(out["surface_xyz"][fg]).all()
    assert out["region"].dtype == np.uint8 and (out["region"][~fg] == 255).all()


def test_background_is_empty(renderer, head):
    out = renderer.render(head, rot(), SIZE, lighting=FLAT)
    for corner in ((0, 0), (0, -1)):  # the top corners are always background
        assert out["alpha"][corner] == 0
        assert np.isnan(out["depth"][corner]) and np.isnan(out["surface_xyz"][corner]).all()
        assert (out["rgb"][corner] == 0).all()  # FLAT's black background


def test_frontal_framing_and_nose(renderer, head):
    out = renderer.render(head, rot(), SIZE)
    eyes, _ = project(np.stack([head.landmarks["eye_left"], head.landmarks["eye_right"]]),
                      rot(), head, SIZE)
    np.testing.assert_allclose(eyes / SIZE, [[0.375, 0.471], [0.625, 0.471]], atol=1e-6)
    uv, _ = project(head.landmarks["nose_tip"][None], rot(), head, SIZE)
    u, v = np.rint(uv[0]).astype(int)
    point = out["surface_xyz"][v, u]
    assert np.linalg.norm(point - head.landmarks["nose_tip"]) < 0.02


def test_surface_map_projects_back_to_its_pixel(renderer, head):
    r = rot(-25, 8, 4)
    xyz = renderer.render(head, r, SIZE)["surface_xyz"]
    fg = ~np.isnan(xyz[..., 0])
    rows, cols = np.nonzero(fg)
    uv, _ = project(xyz[fg], r, head, SIZE)
    err = np.hypot(uv[:, 0] - cols, uv[:, 1] - rows)
    assert np.median(err) < 0.01 and np.percentile(err, 99) < 0.1


def test_correspondences_between_views(renderer, head):
    """Carry view A's surface points into view B with the known rotations: where the point is
    visible in B, B's surface map there names (nearly) the same point, and it has the same
    colour under view-independent lighting."""
    ra, rb = rot(-15, 0, 0), rot(15, -5, 3)
    a = renderer.render(head, ra, SIZE, lighting=FLAT)
    b = renderer.render(head, rb, SIZE, lighting=FLAT)
    fg = ~np.isnan(a["surface_xyz"][..., 0])
    rows, cols = np.nonzero(fg)
    pts = a["surface_xyz"][fg]
    uv_b, z_b = project(pts, rb, head, SIZE)
    j, i = np.rint(uv_b[:, 0]).astype(int), np.rint(uv_b[:, 1]).astype(int)
    inside = (i >= 0) & (i < SIZE) & (j >= 0) & (j < SIZE)
    i, j, z_b, pts, rows, cols = i[inside], j[inside], z_b[inside], pts[inside], rows[inside], \
        cols[inside]
    visible = np.abs(b["depth"][i, j] - z_b) < 0.01  # not occluded in B
    assert visible.mean() > 0.5
    i, j, pts, rows, cols = i[visible], j[visible], pts[visible], rows[visible], cols[visible]
    # round trip A -> B -> A, in A's pixels
    back, _ = project(b["surface_xyz"][i, j], ra, head, SIZE)
    err = np.hypot(back[:, 0] - cols, back[:, 1] - rows)
    assert np.median(err) < 1.0
    # the same surface point in both views
    assert np.median(np.linalg.norm(b["surface_xyz"][i, j] - pts, axis=1)) < 0.01
    diff = np.abs(a["rgb"][rows, cols].astype(int) - b["rgb"][i, j]).mean(1)
    assert np.median(diff) < 10


def test_image_only_render_matches_full_render(renderer, head):
    """``geometry=False`` must depth-test too: without a depth buffer, occluded surfaces (the
    far side of the nose, the inside of the hair) drew over visible ones as dark cracks."""
    for yaw in (-30, 30):
        full = renderer.render(head, rot(yaw, 5, 0), SIZE)["rgb"].astype(int)
        image = renderer.render(head, rot(yaw, 5, 0), SIZE, geometry=False)["rgb"].astype(int)
        assert np.abs(full - image).max() <= 2


def test_feature_spread_widens_face_shapes():
    def spacing(spread: float) -> np.ndarray:
        rng = np.random.default_rng(0)
        return np.array([sample_head_params(rng, spread).eye_spacing for _ in range(300)])

    narrow, wide = spacing(1.0), spacing(2.0)
    assert 1.6 < wide.std() / narrow.std() < 2.4
    assert abs(wide.mean() - narrow.mean()) < 0.004  # about the same average face
