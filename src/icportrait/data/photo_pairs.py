"""Training pairs cut from real photos, with exact flow.

A pair is two crops of one photo of a photo corpus (``data photos``): a face aligned as the
face toolkit aligns it, each crop with its own jitter of scale, rotation and shift and its
own colour jitter, or two overlapping windows of a scene. Both crops are affine images of the
same photo, so the flow between them is known exactly wherever both see the photo. This puts
real faces and real textures into both halves of the canvases the base, the matching net and
the appearance net train on, which synthetic renders alone never do.

Crops of one photo only differ by an affine map, whereas two people's aligned faces differ in
shape and pose. So in a share ``reshape_fraction`` of the face pairs the target is *reshaped*:
the profile crop warped piecewise-affinely (along the 478-point face mesh, plus anchors on
the crop's border) so that its mesh takes another face's shape, partly, and a small turn
about the vertical axis (the mesh's depth). That warp is the flow, so it stays exact.

For the matching net, a share ``cross_person`` of the face pairs also carries a ``template``
cut from *another* face of the corpus (another person, or the same person in another photo),
with ``template_flow`` from the two faces' meshes (piecewise-affine, known inside the
template's face hull): the mesh-flow baseline used as a training signal between two real
faces, which no crop or reshape of one photo gives.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from icportrait.data.photos import PhotoCrops, colour_jitter, warp_photo
from icportrait.defaults import RESHAPE_FRACTION
from icportrait.errors import ICPortraitError

RESHAPE_TURN = 12.0             # degrees: the largest turn of a reshaped target
RESHAPE_SHARE = (0.5, 1.0)      # how far a reshaped target moves towards the other shape
# Only near-frontal faces are reshaped (and give shapes): on a turned face the mesh's hidden
# side overlaps itself in the image, so moving its points would fold the warp.
RESHAPE_MAX_YAW = 25.0


class PhotoPairs(Dataset):
    """``length`` pairs from one split of a photo corpus, in ``PairDataset``'s item format.

    Each item: ``profile`` and ``target`` ``(3, size, size)`` float in [0, 1]; with
    ``with_flow``, ``flow`` ``(2, size, size)`` target -> profile in pixel coordinates (pixel
    centres at integers, icportrait.models.matching) and ``valid`` where the target pixel's
    source lies inside both the photo and the profile crop; zero poses, the photo's index as
    ``identity``, and with ``cross_identity`` > 0 ``template`` = the target (a photo has no
    other person in the same view). A share ``face_fraction`` of the pairs are aligned faces,
    the rest scene windows; of the face pairs a share ``reshape_fraction`` have a reshaped
    target (module docstring). Item ``k`` depends only on ``(seed, k)``.
    """

    def __init__(self, root: str | Path, size: int, split: str = "train", length: int = 10000,
                 face_fraction: float = 0.75, seed: int = 0, with_flow: bool = True,
                 cross_identity: float = 0.0, reshape_fraction: float = RESHAPE_FRACTION,
                 cross_person: float = 0.0):
        if not 0.0 <= cross_person <= 1.0:
            raise ICPortraitError(f"cross_person must be in [0, 1], got {cross_person}")
        self.crops = PhotoCrops(root, size, split, length, face_fraction, seed)
        if face_fraction > 0 and not self.crops.faces:
            raise ICPortraitError(f"{root} has no faces in its {split} photos")
        self.size, self.length, self.seed = size, length, seed
        self.face_fraction, self.with_flow = face_fraction, with_flow
        self.cross_identity, self.reshape_fraction = cross_identity, reshape_fraction
        self.cross_person = cross_person if len(self.crops.faces) > 1 else 0.0
        self._meshes: dict[int, tuple[np.ndarray, float]] = {}
        self._frontal: list[int] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, idx: int) -> dict:
        rng = np.random.default_rng([self.seed, idx, 13])
        crops, s = self.crops, self.size
        face = rng.random() < self.face_fraction
        f: int | None = None
        if face:
            f = int(rng.integers(len(crops.faces)))
            k, five = crops.faces[f]
            photo = crops.photo(k)
            m_p, m_t = (crops.face_transform(five, rng) for _ in range(2))
        else:
            k = int(rng.integers(len(crops.photos)))
            photo = crops.photo(k)
            m_p, m_t = self._scene_transforms(photo.shape[:2], rng)
        # Mirror both (the pair stays an exact correspondence; the other face of a reshape
        # too, so that its mesh points keep their sides).
        flip = np.array([[-1.0, 0, s - 1], [0, 1, 0], [0, 0, 1]]) if rng.random() < 0.5 \
            else np.eye(3)
        m_p, m_t = flip @ m_p, flip @ m_t
        profile = warp_photo(photo, m_p[:2], s)
        if face and rng.random() < self.reshape_fraction and f in self._frontal_faces():
            g = self._frontal_faces()[rng.integers(len(self._frontal_faces()))]
            other = flip @ crops.face_transform(crops.faces[g][1], rng)
            flow = self._reshape_flow(_moved(self._mesh(f)[0], m_p),
                                      _moved(self._mesh(g)[0], other), rng)
            target = cv2.remap(profile, flow[0], flow[1], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
            valid = ((flow >= 0) & (flow <= s - 1)).all(0)
        else:
            target = warp_photo(photo, m_t[:2], s)
            flow, valid = pair_flow(m_p, m_t, photo.shape[:2], s) if self.with_flow \
                else (None, None)
        profile, target = colour_jitter(profile, rng), colour_jitter(target, rng)

        def img(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0

        zero = torch.zeros(3)
        item = {"profile": img(profile), "target": img(target), "profile_pose": zero,
                "target_pose": zero.clone(), "identity": k, "profile_view": 0,
                "target_view": 1, "profile_light": 0, "target_light": 1}
        if self.with_flow:
            item["flow"], item["valid"] = torch.from_numpy(flow), torch.from_numpy(valid)
        if self.cross_person > 0 and self.with_flow:
            item.update(self._template_of_another_face(idx, f, flip, m_p, item))
        elif self.cross_identity > 0:
            item["template"], item["template_identity"] = item["target"], k
            if self.with_flow:
                item["template_flow"], item["template_valid"] = item["flow"], item["valid"]
        return item

    def _template_of_another_face(self, idx: int, f: int | None, flip: np.ndarray,
                                  m_p: np.ndarray, item: dict) -> dict:
        """A face pair's template: another face of the corpus, aligned and jittered like the
        profile, and the two meshes' flow template -> profile; otherwise the target itself."""
        rng = np.random.default_rng([self.seed, idx, 17])
        crops, s = self.crops, self.size
        if f is None or rng.random() >= self.cross_person:
            return {"template": item["target"], "template_identity": item["identity"],
                    "template_flow": item["flow"], "template_valid": item["valid"]}
        from icportrait.faces.correspondence import mesh_correspondence

        g = int((f + rng.integers(1, len(crops.faces))) % len(crops.faces))
        k, five = crops.faces[g]
        m_t = flip @ crops.face_transform(five, rng)
        template = colour_jitter(warp_photo(crops.photo(k), m_t[:2], s), rng)
        mesh_t = _moved(self._mesh(g)[0], m_t)[:, :2]
        mesh_p = _moved(self._mesh(f)[0], m_p)[:, :2]
        # full resolution: cells are pixels
        flow, inside = mesh_correspondence(mesh_t, mesh_p, (s, s), s)
        valid = inside & ((flow >= 0) & (flow <= s - 1)).all(0)
        return {"template": torch.from_numpy(np.ascontiguousarray(template)).permute(2, 0, 1)
                .float() / 255.0, "template_identity": k,
                "template_flow": torch.from_numpy(flow), "template_valid": torch.from_numpy(valid)}

    def _frontal_faces(self) -> list[int]:
        """The faces that are reshaped and give shapes (computed on first use)."""
        if self._frontal is None:
            self._frontal = [f for f in range(len(self.crops.faces))
                             if abs(self._mesh(f)[1]) <= RESHAPE_MAX_YAW]
        return self._frontal

    def _mesh(self, f: int) -> tuple[np.ndarray, float]:
        """Face ``f``'s 478-point mesh (x, y, depth) in its photo's pixels and its yaw: the
        face the toolkit finds nearest to its stored landmarks (computed once per face)."""
        if f not in self._meshes:
            from icportrait.faces import analyze_faces

            k, five = self.crops.faces[f]
            found = [x for x in analyze_faces(self.crops.photo(k)) if x.mesh is not None]
            if not found:
                raise ICPortraitError(f"face {f} of the photo corpus has no mesh any more")
            near = min(found, key=lambda x: np.abs(x.five - five).sum())
            self._meshes[f] = (near.mesh, near.pose.yaw if near.pose else 90.0)
        return self._meshes[f]

    def _reshape_flow(self, mesh: np.ndarray, other: np.ndarray, rng) -> np.ndarray:
        """Target -> profile flow ``(2, S, S)`` (pixels) of a reshape of the profile crop whose
        mesh is ``mesh`` towards ``other`` (both in crop pixels, x, y, depth)."""
        from icportrait.faces.correspondence import mesh_flow

        s = self.size
        shape = mesh[:, :2] + rng.uniform(*RESHAPE_SHARE) * (other[:, :2] - mesh[:, :2])
        turn = np.radians(rng.uniform(-RESHAPE_TURN, RESHAPE_TURN))
        centre = shape[:, 0].mean()
        depth = mesh[:, 2] - mesh[:, 2].mean()
        shape[:, 0] = centre + (shape[:, 0] - centre) * np.cos(turn) + depth * np.sin(turn)
        edge = np.linspace(0, s - 1, 9)
        border = np.unique(np.concatenate([np.stack([edge, np.full(9, v)], 1) for v in (0, s - 1)]
                                          + [np.stack([np.full(9, v), edge], 1)
                                             for v in (0, s - 1)]), axis=0)
        # Every third mesh point (neighbours 1 px apart that move differently fold the warp),
        # and none near or past the border (they would fold it there).
        inside = ((shape > 2) & (shape < s - 3)).all(1) & \
            ((mesh[:, :2] > 2) & (mesh[:, :2] < s - 3)).all(1) & (np.arange(len(mesh)) % 3 == 0)
        return mesh_flow(np.vstack([shape[inside], border]),
                         np.vstack([mesh[inside, :2], border]), (s, s), s)

    def _scene_transforms(self, hw: tuple[int, int], rng) -> tuple[np.ndarray, np.ndarray]:
        """Two overlapping windows of a scene: a shared side, shifted by up to a quarter."""
        h, w = hw
        s = self.size
        side = float(np.exp(rng.uniform(np.log(min(s, h, w)), np.log(min(h, w)))))
        y, x = rng.uniform(0, h - side), rng.uniform(0, w - side)
        out = []
        for _ in range(2):
            scale = side * float(np.exp(rng.uniform(np.log(0.85), np.log(1.15))))
            dy, dx = rng.uniform(-0.25, 0.25, 2) * side
            k = s / scale
            out.append(np.array([[k, 0, -(x + dx) * k], [0, k, -(y + dy) * k], [0, 0, 1]]))
        return out[0], out[1]


def _moved(mesh: np.ndarray, m: np.ndarray) -> np.ndarray:
    """A mesh (x, y, depth) in photo pixels mapped into a crop by the 3 x 3 map ``m``
    (depth scaled with it)."""
    xy = mesh[:, :2] @ m[:2, :2].T + m[:2, 2]
    return np.column_stack([xy, mesh[:, 2] * np.sqrt(abs(np.linalg.det(m[:2, :2])))])


def pair_flow(m_profile: np.ndarray, m_target: np.ndarray, photo_hw: tuple[int, int],
              size: int) -> tuple[np.ndarray, np.ndarray]:
    """Target -> profile flow of two affine crops (3 x 3 photo -> crop maps) of one photo,
    and where it is known: the target pixel shows the photo (not its reflected border) and
    its source lands inside the profile crop."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(size * size)])
    in_photo = np.linalg.inv(m_target) @ pts
    in_profile = m_profile @ in_photo
    h, w = photo_hw
    valid = ((in_photo[0] >= 0) & (in_photo[0] <= w - 1) & (in_photo[1] >= 0)
             & (in_photo[1] <= h - 1) & (in_profile[0] >= 0) & (in_profile[0] <= size - 1)
             & (in_profile[1] >= 0) & (in_profile[1] <= size - 1))
    flow = in_profile[:2].reshape(2, size, size).astype(np.float32)
    return flow, valid.reshape(size, size)
