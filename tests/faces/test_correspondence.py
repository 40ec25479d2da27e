"""The mesh flow: a piecewise-affine map between two face meshes, on a cell grid."""

from __future__ import annotations

import numpy as np
import pytest

from icportrait.faces.correspondence import mesh_correspondence, mesh_flow
from icportrait.models.matching import identity_flow


def _mesh(seed=0):
    return np.random.default_rng(seed).uniform(10, 118, (60, 3))


def test_same_mesh_is_no_motion_and_a_shift_moves_only_inside():
    m = _mesh()
    ident = identity_flow(1, 32, 32)[0].numpy()
    np.testing.assert_allclose(mesh_flow(m, m, (32, 32), 128), ident, atol=1e-4)
    shifted = mesh_flow(m, m + np.array([8.0, -4.0, 0.0]), (32, 32), 128) - ident
    moved = np.abs(shifted).sum(0) > 1e-4
    assert 0.3 < moved.mean() < 1.0  # inside the hull only; "no motion" outside
    _, inside = mesh_correspondence(m, m + np.array([8.0, -4.0, 0.0]), (32, 32), 128)
    np.testing.assert_array_equal(inside, moved)  # what it says is inside is what moved
    np.testing.assert_allclose(shifted[0][moved], 2.0, atol=1e-4)   # 8 px = 2 cells
    np.testing.assert_allclose(shifted[1][moved], -1.0, atol=1e-4)


def test_affine_maps_are_exact():
    m = _mesh(1)
    a = np.array([[0.9, 0.1], [-0.05, 1.1]])
    target = m.copy()
    target[:, :2] = (m[:, :2] - 64) @ a.T + 64
    flow = mesh_flow(target, m, (16, 16), 128)
    ys, xs = np.meshgrid((np.arange(16) + 0.5) * 8 - 0.5, (np.arange(16) + 0.5) * 8 - 0.5,
                         indexing="ij")
    back = (np.stack([xs, ys], -1) - 64) @ np.linalg.inv(a).T + 64
    inside = np.abs(flow - identity_flow(1, 16, 16)[0].numpy()).sum(0) > 1e-3
    np.testing.assert_allclose(flow[0][inside], ((back[..., 0] + 0.5) / 8 - 0.5)[inside],
                               atol=1e-3)
    with pytest.raises(ValueError, match="same points"):
        mesh_flow(m, m[:-1], (16, 16), 128)


def _turned(mesh, degrees):
    """The mesh turned about the vertical axis through its centre (orthographic)."""
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    c = mesh.mean(0)
    return (mesh - c) @ rot.T + c, rot, c


def test_surface_triangles_are_wound_one_way():
    from collections import Counter

    from icportrait.faces.topology import surface_triangles

    tris = surface_triangles()
    directed = Counter((int(t[k]), int(t[(k + 1) % 3])) for t in tris for k in range(3))
    # An edge shared by two triangles is run once each way: never twice the same way.
    assert max(directed.values()) == 1
    assert sum((b, a) in directed for a, b in directed) > 0.9 * len(directed)


def test_surface_flow_follows_a_turned_face_and_knows_what_the_source_hides(hopper_crop_mesh):
    from icportrait.faces.correspondence import face_mesh_correspondence

    m = hopper_crop_mesh
    same, inside, shown = face_mesh_correspondence(m, m, (64, 64), 128)
    ident = identity_flow(1, 64, 64)[0].numpy()
    np.testing.assert_allclose(same[:, inside], ident[:, inside], atol=1e-3)
    assert 0.2 < inside.mean() < 0.6 and shown[inside].min() > 0.99

    # Target: the face turned by 35 degrees; source: the face itself. Each target cell's
    # surface point, turned back, is where the flow must land in the source.
    target, rot, c = _turned(hopper_crop_mesh, 35)
    flow, inside, shown = face_mesh_correspondence(target, hopper_crop_mesh, (64, 64), 128)
    from icportrait.faces.correspondence import _rasterise
    from icportrait.faces.topology import surface_triangles

    tris = surface_triangles()
    xy = (np.stack(np.meshgrid(np.arange(64), np.arange(64)), -1).reshape(-1, 2) + 0.5) * 2 - 0.5
    tri, bary, _ = _rasterise(target, tris, xy, (64, 64))
    point = np.einsum("ni,nij->nj", bary[tri >= 0], target[tris[tri[tri >= 0]]])
    back = (point - c) @ rot + c                      # inverse rotation (orthonormal)
    want = (back[:, :2] + 0.5) / 2 - 0.5              # source cells
    got = flow.reshape(2, -1)[:, tri >= 0].T
    np.testing.assert_allclose(got, want, atol=1e-3)
    # The frontal source shows most of the turned face (not the sides it turned towards us,
    # which a frontal photo sees edge-on).
    assert shown[inside].mean() > 0.7

    # The other way round: a turned source hides part of the frontal face from view.
    _, inside, shown = face_mesh_correspondence(hopper_crop_mesh, target, (64, 64), 128)
    assert 0.03 < (shown[inside] < 0.5).mean() < 0.5
    cols = np.nonzero(inside)[1]
    left = cols < np.median(cols)
    # Turned about y, one side of the face squeezes: its cells are the hidden ones.
    hidden_left = (shown[inside][left] < 0.5).mean()
    hidden_right = (shown[inside][~left] < 0.5).mean()
    assert max(hidden_left, hidden_right) > 5 * min(hidden_left, hidden_right) + 0.02


def test_mirror_pairs_pair_each_point_with_its_mirror_image(hopper_crop_mesh):
    from icportrait.faces.topology import mirror_pairs

    perm = mirror_pairs()
    np.testing.assert_array_equal(perm[perm], np.arange(468))
    assert {1, 4, 10, 152} <= set(np.flatnonzero(perm == np.arange(468)))  # the midline
    # Grace Hopper faces the camera: a point reflected across her face's vertical midline
    # lands near its mirror point (a few % of the face's width; a wrong pair is far).
    m = hopper_crop_mesh[:, :2]
    mid = m[perm == np.arange(468), 0].mean()
    reflected = m * [-1, 1] + [2 * mid, 0]
    err = np.linalg.norm(reflected[perm] - m, axis=1) / np.ptp(m[:, 0])
    assert np.median(err) < 0.03 and err.max() < 0.15


def test_mirror_correspondence_finds_what_the_source_hides_on_the_other_side(
        hopper_crop_mesh):
    from icportrait.faces.correspondence import _rasterise, face_mesh_correspondence
    from icportrait.faces.topology import mirror_pairs, surface_triangles

    # A mirror-symmetric face, frontal as the target and turned 50 degrees as the source.
    perm = mirror_pairs()
    m = hopper_crop_mesh
    mid = m[perm == np.arange(468), 0].mean()
    reflect = np.array([-1.0, 1.0, 1.0])
    sym = (m + (m * reflect + [2 * mid, 0, 0])[perm]) / 2
    source, rot, c = _turned(sym, 50)
    _, inside, direct = face_mesh_correspondence(sym, source, (64, 64), 128)
    flow, mirrored_inside, shown = face_mesh_correspondence(sym, source, (64, 64), 128,
                                                            mirror=perm)
    np.testing.assert_array_equal(mirrored_inside, inside)
    # The turned source hides one side of the face; it shows most of that side's mirror.
    hidden = inside & (direct < 0.5)
    assert hidden.sum() > 0.1 * inside.sum() and shown[hidden].mean() > 0.7
    assert np.maximum(direct, shown)[inside].mean() > direct[inside].mean() + 0.1
    # Each cell lands where the source shows its point's mirror image.
    tris = surface_triangles()
    xy = (np.stack(np.meshgrid(np.arange(64), np.arange(64)), -1).reshape(-1, 2) + 0.5) * 2 - 0.5
    tri, bary, _ = _rasterise(sym, tris, xy, (64, 64))
    sel = inside.ravel()
    point = np.einsum("ni,nij->nj", bary[sel], sym[tris[tri[sel]]])
    want = ((point * reflect + [2 * mid, 0, 0] - c) @ rot.T + c)[:, :2]
    got = (flow.reshape(2, -1)[:, sel].T + 0.5) * 2 - 0.5
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_rasteriser_finds_the_nearest_front_facing_triangle_at_every_point():
    from icportrait.faces.correspondence import _front_sign, _rasterise

    rng = np.random.default_rng(3)
    points = np.concatenate([rng.uniform(0, 20, (30, 2)), rng.uniform(0, 5, (30, 1))], 1)
    triangles = rng.choice(30, (40, 3))
    xy = np.stack(np.meshgrid(np.arange(24.0) - 2, np.arange(24.0) - 2), -1).reshape(-1, 2)
    tri, bary, depth = _rasterise(points, triangles, xy, (24, 24))
    area, front = _front_sign(points, triangles)
    assert (tri >= 0).sum() > 100 and len(np.unique(tri)) > 10  # overlapping triangles
    for k, q in enumerate(xy):  # brute force: every triangle at every point
        best, best_z = -1, np.inf
        for t in np.flatnonzero(area * front > 1e-9):
            a, b, c = points[triangles[t]]
            m = np.array([b[:2] - a[:2], c[:2] - a[:2]]).T
            l1, l2 = np.linalg.solve(m, q - a[:2])
            lam = np.array([1 - l1 - l2, l1, l2])
            z = lam @ points[triangles[t], 2]
            if (lam >= -1e-6).all() and z < best_z - 1e-12:
                best, best_z = t, z
        assert tri[k] == best
        if best >= 0:
            assert abs(depth[k] - best_z) < 1e-9
            np.testing.assert_allclose(bary[k] @ points[triangles[best], :2], q, atol=1e-9)
