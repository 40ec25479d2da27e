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


# A triangle the source shows at under this share of its area in the target (sizes divided
# out) lends nothing; from the upper share on, all of it (on synth-small, (0.15, 0.5) left
# more of the profile's background on turned cheeks).
FORESHORTENING = (0.3, 0.7)


def _front_sign(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, float]:
    """Each triangle's signed 2D area, and the sign of the camera-facing ones (most of a face
    seen from the front)."""
    a, b, c = (points[triangles[:, k], :2] for k in range(3))
    area = np.cross(b - a, c - a)
    return area, float(np.sign(area.sum()) or 1.0)


def _rasterise(points: np.ndarray, triangles: np.ndarray, xy: np.ndarray, shape: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The front-facing triangle nearest the camera at each query point ``xy`` ``(n, 2)`` of a
    grid of ``shape`` (pixels, row-major), with its barycentric weights and depth: ``(tri
    (-1: none), bary (n, 3), depth (n,))``. Depth is the mesh's z (smaller is nearer); of
    equally near triangles, the first listed."""
    h, w = shape
    n = len(xy)
    tri = np.full(n, -1, np.int64)
    bary = np.zeros((n, 3))
    depth = np.full(n, np.inf)
    area, front = _front_sign(points, triangles)
    faces = np.flatnonzero(area * front > 1e-9)
    # The query grid is regular: each triangle's candidates are the grid points in its
    # bounding box, all (triangle, point) pairs at once.
    x0, dx = xy[0, 0], (xy[1, 0] - xy[0, 0]) if w > 1 else 1.0
    y0, dy = xy[0, 1], (xy[w, 1] - xy[0, 1]) if h > 1 else 1.0
    p = points[triangles[faces]]                                        # (f, 3, 3)
    lo = np.floor((p[..., :2].min(1) - [x0, y0]) / [dx, dy]).astype(np.int64)
    hi = np.ceil((p[..., :2].max(1) - [x0, y0]) / [dx, dy]).astype(np.int64)
    c0, r0 = np.maximum(lo[:, 0], 0), np.maximum(lo[:, 1], 0)
    c1, r1 = np.minimum(hi[:, 0], w - 1), np.minimum(hi[:, 1], h - 1)
    cols, rows = np.maximum(c1 - c0 + 1, 0), np.maximum(r1 - r0 + 1, 0)
    count = cols * rows
    if not count.sum():
        return tri, bary, depth
    which = np.repeat(np.arange(len(faces)), count)                     # pair -> triangle
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    idx = (r0[which] + k // cols[which]) * w + c0[which] + k % cols[which]
    q, t = xy[idx], p[which]
    # Barycentric weights of q in (a, b, c).
    v0, v1 = t[:, 1, :2] - t[:, 0, :2], t[:, 2, :2] - t[:, 0, :2]
    d = q - t[:, 0, :2]
    inv = 1.0 / (v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0])
    l1 = (d[:, 0] * v1[:, 1] - d[:, 1] * v1[:, 0]) * inv
    l2 = (v0[:, 0] * d[:, 1] - v0[:, 1] * d[:, 0]) * inv
    lam = np.stack([1 - l1 - l2, l1, l2], 1)
    z = lam[:, 0] * t[:, 0, 2] + lam[:, 1] * t[:, 1, 2] + lam[:, 2] * t[:, 2, 2]
    ok = np.flatnonzero((lam >= -1e-6).all(1))
    # Per point, the nearest; of equal depths, the first triangle.
    order = ok[np.lexsort((which[ok], z[ok], idx[ok]))]
    first = order[np.r_[True, idx[order][1:] != idx[order][:-1]]]
    sel = idx[first]
    tri[sel], bary[sel], depth[sel] = faces[which[first]], lam[first], z[first]
    return tri, bary, depth


def surface_depth(mesh: np.ndarray, image_size: int) -> np.ndarray:
    """The depth of a face mesh's nearest camera-facing surface at each pixel of an
    ``image_size`` px square crop ``(S, S)`` (inf off the face): what hides what."""
    from icportrait.faces.topology import surface_triangles

    side = int(image_size)
    xy = np.stack(np.meshgrid(np.arange(side, dtype=np.float64),
                              np.arange(side, dtype=np.float64), indexing="xy"), -1)
    _, _, depth = _rasterise(np.asarray(mesh[:468], np.float64), surface_triangles(),
                             xy.reshape(-1, 2), (side, side))
    return depth.reshape(side, side)


def face_mesh_correspondence(target_mesh: np.ndarray, source_mesh: np.ndarray,
                             grid: tuple[int, int], image_size: int,
                             depth_tolerance: float = 0.05,
                             source_depth: np.ndarray | None = None,
                             mirror: np.ndarray | None = None,
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flow target -> source of two face meshes (468 or 478 x 3: x, y in crop pixels,
    depth) along the face's own surface: each cell centre takes the barycentric position in
    the nearest camera-facing triangle of the target mesh, carried to the same triangle of the
    source mesh. Unlike :func:`mesh_correspondence` (a triangulation of the 2D points, which
    folds across a turned face), a point never lands across the face from where it belongs.

    Returns ``(flow (2, h, w) in source cells, inside (h, w) bool, visible (h, w) in
    [0, 1])``: ``inside``, the cell shows the target's face; ``visible``, how well the source
    shows that point too: 0 where its triangle turns away from the source camera, is
    squeezed to under :data:`FORESHORTENING`'s lower share of its target area, or lies behind
    a nearer part of the source face (more than ``depth_tolerance`` of the face's width), 1
    from the upper share on. Outside the target's face the flow is "no motion".
    ``source_depth``: the source's :func:`surface_depth`, when several grids share it.
    ``mirror``: mirror pairs (:func:`~icportrait.faces.topology.mirror_pairs`): the flow to
    each point's mirror image across the source face instead, and how well the source shows
    that (a face is nearly symmetric: it can stand in for a side the source hides).
    """
    from icportrait.faces.topology import surface_triangles

    if target_mesh.shape[0] != source_mesh.shape[0]:
        raise ValueError("the two meshes must list the same points")
    tris = surface_triangles()
    tgt = np.asarray(target_mesh[:468], np.float64)
    src = np.asarray(source_mesh[:468], np.float64)
    h, w = grid
    sy, sx = image_size / h, image_size / w
    ys, xs = np.meshgrid((np.arange(h) + 0.5) * sy - 0.5, (np.arange(w) + 0.5) * sx - 0.5,
                         indexing="ij")
    points = np.stack([xs.ravel(), ys.ravel()], 1)
    tri, bary, _ = _rasterise(tgt, tris, points, (h, w))
    inside = tri >= 0
    tgt_area, tgt_front = _front_sign(tgt, tris)
    front = tgt_area * tgt_front > 0
    src_area, src_front = _front_sign(src, tris)
    scale = np.abs(src_area[front]).sum() / max(np.abs(tgt_area[front]).sum(), 1e-9)
    src_depth = surface_depth(src, image_size) if source_depth is None else source_depth
    width = float(np.ptp(src[:, 0])) or 1.0

    def carry(points_src: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
        """The target's cells carried to the same triangles of ``points_src``, and how well
        the source shows them there."""
        corners = points_src[tris[tri[inside]]]                      # (n, 3, 3)
        landed = np.einsum("ni,nij->nj", bary[inside], corners[..., :2])
        # How squarely the source shows each triangle: its area relative to the target's
        # (the faces' sizes divided out); negative when it turns away from the source
        # camera. A triangle squeezed to a sliver at the silhouette holds no detail.
        area, _ = _front_sign(points_src, tris)
        ratio = area * sign / np.maximum(np.abs(tgt_area), 1e-9) / scale
        lo, hi = FORESHORTENING
        shown = np.clip((ratio[tri[inside]] - lo) / (hi - lo), 0, 1)
        # Hidden: the source's nearest surface where the point lands is well in front of
        # it. The farthest of the four pixels around: a point beside a nearer edge (the
        # nose's) is not hidden by it.
        s_side = src_depth.shape[0]
        z = np.einsum("ni,ni->n", bary[inside], corners[..., 2])
        x0, y0 = (np.clip(np.floor(landed[:, k]).astype(int), 0, s_side - 2) for k in (0, 1))
        seen = np.max([src_depth[y0 + dy, x0 + dx] for dy in (0, 1) for dx in (0, 1)], axis=0)
        return landed, shown * (z <= seen + depth_tolerance * width)

    mapped = points.copy()
    visible = np.zeros(h * w)
    # To the mirror points: the same triangles of the source relabelled by the mirror pairs,
    # which wind the other way round.
    mapped[inside], visible[inside] = carry(src, src_front) if mirror is None \
        else carry(src[mirror], -src_front)
    cells = np.stack([(mapped[:, 0] + 0.5) / sx - 0.5, (mapped[:, 1] + 0.5) / sy - 0.5])
    return (cells.reshape(2, h, w).astype(np.float32), inside.reshape(h, w),
            visible.reshape(h, w))
