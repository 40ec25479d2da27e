"""Dense correspondence from two face meshes: the classical flow IC-Portrait is compared with.

The 478-point meshes of two aligned faces give a piecewise-affine map between them: each
target point inside the target mesh's triangulation takes the same barycentric position in
the matching profile triangle. Outside the mesh the map is "no motion" (the same place).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay


def mesh_flow(target_mesh: np.ndarray, source_mesh: np.ndarray, grid: tuple[int, int],
              image_size: int) -> np.ndarray:
    """Flow target -> source ``(2, h, w)`` float32 on a ``grid`` of cells of an
    ``image_size`` px square crop, in source cells (the :mod:`icportrait.models.matching`
    convention), from meshes ``(N, >= 2)`` in crop pixels of the same N points."""
    return mesh_correspondence(target_mesh, source_mesh, grid, image_size)[0]


def mesh_correspondence(target_mesh: np.ndarray, source_mesh: np.ndarray,
                        grid: tuple[int, int], image_size: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mesh_flow`, and where it is the meshes' map: the cells ``(h, w)`` inside the
    target mesh's triangulation (elsewhere the flow is "no motion")."""
    h, w = grid
    if target_mesh.shape[0] != source_mesh.shape[0]:
        raise ValueError("the two meshes must list the same points")
    sy, sx = image_size / h, image_size / w
    ys, xs = np.meshgrid((np.arange(h) + 0.5) * sy - 0.5, (np.arange(w) + 0.5) * sx - 0.5,
                         indexing="ij")
    points = np.stack([xs.ravel(), ys.ravel()], 1)
    dst, src = target_mesh[:, :2].astype(np.float64), source_mesh[:, :2].astype(np.float64)
    tri = Delaunay(dst)
    simplex = tri.find_simplex(points)
    mapped = points.copy()
    inside = simplex >= 0
    t = tri.transform[simplex[inside]]                    # (n, 3, 2) barycentric transforms
    b = np.einsum("nij,nj->ni", t[:, :2], points[inside] - t[:, 2])
    bary = np.concatenate([b, 1 - b.sum(1, keepdims=True)], 1)
    mapped[inside] = np.einsum("ni,nij->nj", bary, src[tri.simplices[simplex[inside]]])
    cells = np.stack([(mapped[:, 0] + 0.5) / sx - 0.5, (mapped[:, 1] + 0.5) / sy - 0.5])
    return cells.reshape(2, h, w).astype(np.float32), inside.reshape(h, w)
