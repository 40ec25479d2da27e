"""The face mesh's surface: mediapipe's 468-point mesh as triangles.

The landmark model gives points and, in ``FACEMESH_TESSELATION``, the edges between them; the
triangles are the edges' 3-cliques. Photo lifting renders them, and the mesh flow rasterises
them (a triangulation of the points' 2D positions would fold where a turned face overlaps
itself). :func:`mirror_pairs` says which point is which point's mirror image across the face;
reproduce its data file with ``python -m icportrait.faces.topology``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import numpy as np

MIRROR_PATH = Path(__file__).parent / "data" / "mesh_mirror.json"


@lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """Triangles (T x 3 vertex indices) of mediapipe's 468-point face mesh, from its edges."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    adj: dict[int, set[int]] = defaultdict(set)
    for a, b in FACEMESH_TESSELATION:
        adj[a].add(b)
        adj[b].add(a)
    tris = {tuple(sorted((a, b, c))) for a in adj for b in adj[a] for c in adj[a] & adj[b]}
    return np.array(sorted(tris), dtype=np.int64)


def fill_holes(triangles: np.ndarray) -> np.ndarray:
    """Close the mesh's holes (eye openings, mouth) with fans; the outer rim stays open.

    Boundary edges (used by one triangle) form loops; every loop but the longest (the face
    outline) is a hole.
    """
    edges = Counter()
    for t in triangles:
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            edges[(min(a, b), max(a, b))] += 1
    nxt: dict[int, list[int]] = defaultdict(list)
    for (a, b), n in edges.items():
        if n == 1:
            nxt[a].append(b)
            nxt[b].append(a)
    loops, seen = [], set()
    for start in list(nxt):
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            options = [v for v in nxt[cur] if v != prev and (v not in seen or v == start)]
            if not options or options[0] == start:
                break
            prev, cur = cur, options[0]
            loop.append(cur)
            seen.add(cur)
        if len(loop) >= 3:
            loops.append(loop)
    holes = sorted(loops, key=len)[:-1]
    fans = [(loop[0], loop[k], loop[k + 1]) for loop in holes for k in range(1, len(loop) - 1)]
    return np.concatenate([triangles, np.array(fans, np.int64).reshape(-1, 3)])


@lru_cache(maxsize=1)
def surface_triangles() -> np.ndarray:
    """The mesh's triangles with its holes closed (:func:`fill_holes`), all wound the same
    way round the surface: two triangles sharing an edge run along it in opposite directions.
    (:func:`mesh_triangles` lists each with sorted vertices, so in no particular winding.)
    Then one sign of the projected area means "faces the camera" for every triangle."""
    def edges(t) -> list[tuple[int, int]]:
        return [tuple(sorted((t[k], t[(k + 1) % 3]))) for k in range(3)]

    tris = [list(t) for t in fill_holes(mesh_triangles())]
    uses = Counter(e for t in tris for e in edges(t))
    # A 3-clique of edges around other triangles is no face of the surface: all its edges
    # are then shared three ways (two such on mediapipe's mesh).
    tris = [t for t in tris if min(uses[e] for e in edges(t)) < 3]
    by_edge: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, t in enumerate(tris):
        for e in edges(t):
            by_edge[e].append(i)
    done = [False] * len(tris)
    for seed in range(len(tris)):
        if done[seed]:
            continue
        done[seed], stack = True, [seed]
        while stack:
            i = stack.pop()
            t = tris[i]
            for k in range(3):
                a, b = t[k], t[(k + 1) % 3]
                for j in by_edge[tuple(sorted((a, b)))]:
                    if done[j]:
                        continue
                    u = tris[j]
                    # j must run b -> a along the shared edge; flip it if it runs a -> b.
                    if any(u[m] == a and u[(m + 1) % 3] == b for m in range(3)):
                        u[1], u[2] = u[2], u[1]
                    done[j] = True
                    stack.append(j)
    return np.array(tris, np.int64)


@lru_cache(maxsize=1)
def mirror_pairs() -> np.ndarray:
    """``perm`` (468,): ``perm[i]`` is the mesh point at point i's mirror image across the
    face (midline points are their own); ``perm[perm] == identity``."""
    return np.array(json.loads(MIRROR_PATH.read_text())["mirror"], np.int64)


def build_mirror_pairs(images: list[np.ndarray]) -> np.ndarray:
    """:func:`mirror_pairs` from frontal portraits: the mesh model labels points by where they
    appear, so a photo's mirror image, flipped back, has the photo's own geometry with each
    point under its mirror's label. One-to-one nearest points of the two (averaged over the
    photos) pair the labels."""
    from scipy.optimize import linear_sum_assignment

    from icportrait.faces.detect import detect_faces, select_face
    from icportrait.faces.head_template import _normalise as normalised
    from icportrait.faces.landmarks import face_mesh

    own, swapped = [], []
    for img in images:
        flipped = np.ascontiguousarray(img[:, ::-1])
        own.append(normalised(face_mesh(img, select_face(detect_faces(img)))[:468]))
        back = face_mesh(flipped, select_face(detect_faces(flipped)))[:468].astype(np.float64)
        back[:, 0] = img.shape[1] - 1 - back[:, 0]
        swapped.append(normalised(back))
    a, b = np.mean(own, 0), np.mean(swapped, 0)
    rows, cols = linear_sum_assignment(((a[:, None] - b[None]) ** 2).sum(-1))
    perm = np.empty(len(a), np.int64)
    perm[rows] = cols
    if not (perm[perm] == np.arange(len(perm))).all():
        raise ValueError("mirror pairs are not symmetric: use frontal portraits")
    return perm


def main() -> None:
    from icportrait.faces.samples import SAMPLE_NAMES, load_sample
    from icportrait.io import atomic_write_text

    perm = build_mirror_pairs([load_sample(n) for n in SAMPLE_NAMES])
    atomic_write_text(MIRROR_PATH, json.dumps(
        {"made_by": "python -m icportrait.faces.topology", "mirror": perm.tolist()},
        separators=(",", ":")) + "\n")
    print(f"wrote {MIRROR_PATH} ({int((perm == np.arange(len(perm))).sum())} midline points)")


if __name__ == "__main__":
    main()
