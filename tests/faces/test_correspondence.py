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
