"""Matching flows from the face toolkit's meshes: the geometric alternative to the matching
net (``flow_source="mesh"``).

The 478-point meshes of the template and profile faces give a map along the face's surface
(:func:`icportrait.faces.correspondence.face_mesh_correspondence`); it follows a turned head,
where the tiny matching net stays near "no motion". Its confidence says where the profile
does not show the template's point (the far side of a turned head, or outside the template's
mesh, where the flow is "no motion"): there the template is kept.
"""

from __future__ import annotations

import numpy as np
import torch

from icportrait.errors import FaceError
from icportrait.models.matching import Match


def crop_mesh(image: np.ndarray, role: str) -> np.ndarray:
    """The face mesh ``(478, 3)`` of a model-size crop that was not aligned by the pipeline
    (e.g. a synthetic render), in its pixels."""
    from icportrait.faces import face_mesh
    from icportrait.faces.detect import enlarge_small

    big, f = enlarge_small(image)
    try:
        mesh = face_mesh(big)
    except FaceError as exc:
        raise type(exc)(f"{role}: {exc} (flow_source='mesh' needs a face mesh)") from None
    return mesh / f


def closest_reference(template: np.ndarray, profiles: list[np.ndarray]) -> int:
    """The profile whose mesh a similarity transform fits best to the template's (the nearest
    pose and expression): mesh flows come from one reference per template."""
    import cv2

    def residual(p: np.ndarray) -> float:
        m, _ = cv2.estimateAffinePartial2D(p[:, :2].astype(np.float32),
                                           template[:, :2].astype(np.float32))
        if m is None:
            return float("inf")
        moved = p[:, :2] @ m[:, :2].T + m[:, 2]
        return float(np.mean(np.linalg.norm(moved - template[:, :2], axis=1)))

    return int(np.argmin([residual(p) for p in profiles]))


def mesh_flows(template_meshes: list[np.ndarray], profile_meshes: list[np.ndarray],
               grid: tuple[int, int], size: int, device=None, pixel_grid: bool = False
               ) -> dict:
    """Flows ``{grid: Match}`` template -> profile on the ``grid`` of cells of ``size`` px
    crops, one per template, each to its :func:`closest_reference`. The confidence is how
    well the profile shows each point of the template's face (1: squarely; 0: turned away,
    hidden, or outside the template's mesh, where the flow is "no motion"). ``pixel_grid``:
    also on the ``(size, size)`` pixel grid (the meshes' own detail, for a warp in pixels)."""
    from icportrait.faces.correspondence import face_mesh_correspondence, surface_depth

    grids = list(dict.fromkeys([tuple(grid), *([(size, size)] if pixel_grid else [])]))
    parts = {g: ([], [], []) for g in grids}
    for tm in template_meshes:
        r = closest_reference(tm, profile_meshes)
        depth = surface_depth(profile_meshes[r], size)  # shared by the grids
        for g in grids:
            flow, _, shown = face_mesh_correspondence(tm, profile_meshes[r], g, size,
                                                      source_depth=depth)
            flows, scores, refs = parts[g]
            flows.append(torch.from_numpy(flow))
            scores.append(torch.from_numpy(shown.astype(np.float32)))
            refs.append(torch.full(g, r, dtype=torch.long))
    return {g: Match(*(torch.stack(x).to(device) for x in parts[g])) for g in grids}


def fill_flows(template_meshes: list[np.ndarray], profile_meshes: list[np.ndarray],
               grid: tuple[int, int], size: int, device=None, photos: bool = False,
               mirror: bool = False) -> dict | None:
    """Flows ``{grid: Match}`` to stand-ins for what each template's
    :func:`closest_reference` does not show (the far side of a turned head): per cell, of
    the other profile photos' same points (``photos``) and every photo's mirror images of
    them across its face (``mirror``), the one shown best, and that score. The other photos
    come first, so a real view wins a tie with a mirror image. None when there is nothing
    to stand in."""
    from icportrait.faces.correspondence import face_mesh_correspondence, surface_depth
    from icportrait.faces.topology import mirror_pairs

    n = len(profile_meshes)
    if not mirror and not (photos and n > 1):
        return None
    pairs = mirror_pairs() if mirror else None
    depths: dict[int, np.ndarray] = {}
    flows, scores, refs = [], [], []
    for tm in template_meshes:
        r0 = closest_reference(tm, profile_meshes)
        candidates = [(r, None) for r in range(n) if r != r0] if photos else []
        candidates += [(r, pairs) for r in range(n)] if mirror else []
        best_flow = np.zeros((2, *grid), np.float32)
        best = np.full(grid, -1.0)
        ref = np.full(grid, r0)
        for r, relabel in candidates:
            if r not in depths:
                depths[r] = surface_depth(profile_meshes[r], size)
            flow, _, shown = face_mesh_correspondence(tm, profile_meshes[r], grid, size,
                                                      source_depth=depths[r], mirror=relabel)
            better = shown > best
            best_flow[:, better], best[better], ref[better] = flow[:, better], shown[better], r
        flows.append(torch.from_numpy(best_flow))
        scores.append(torch.from_numpy(best.astype(np.float32)))
        refs.append(torch.from_numpy(ref.astype(np.int64)))
    return {tuple(grid): Match(*(torch.stack(x).to(device) for x in (flows, scores, refs)))}
