"""Training pairs cut from real photos, with exact flow.

A pair is two crops of one photo of a photo corpus (``data photos``): a face aligned as the
face toolkit aligns it, each crop with its own jitter of scale, rotation and shift and its
own colour jitter, or two overlapping windows of a scene. Both crops are affine images of the
same photo, so the flow between them is known exactly wherever both see the photo. This puts
real faces and real textures into both halves of the canvases the base, the matching net and
the appearance net train on, which synthetic renders alone never do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from icportrait.data.photos import PhotoCrops, colour_jitter, warp_photo
from icportrait.errors import ICPortraitError


class PhotoPairs(Dataset):
    """``length`` pairs from one split of a photo corpus, in ``PairDataset``'s item format.

    Each item: ``profile`` and ``target`` ``(3, size, size)`` float in [0, 1]; with
    ``with_flow``, ``flow`` ``(2, size, size)`` target -> profile in pixel coordinates (pixel
    centres at integers, icportrait.models.matching) and ``valid`` where the target pixel's
    source lies inside both the photo and the profile crop; zero poses, the photo's index as
    ``identity``, and with ``cross_identity`` > 0 ``template`` = the target (a photo has no
    other person in the same view). A share ``face_fraction`` of the pairs are aligned faces,
    the rest scene windows. Item ``k`` depends only on ``(seed, k)``.
    """

    def __init__(self, root: str | Path, size: int, split: str = "train", length: int = 10000,
                 face_fraction: float = 0.75, seed: int = 0, with_flow: bool = True,
                 cross_identity: float = 0.0):
        self.crops = PhotoCrops(root, size, split, length, face_fraction, seed)
        if face_fraction > 0 and not self.crops.faces:
            raise ICPortraitError(f"{root} has no faces in its {split} photos")
        self.size, self.length, self.seed = size, length, seed
        self.face_fraction, self.with_flow = face_fraction, with_flow
        self.cross_identity = cross_identity

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, idx: int) -> dict:
        rng = np.random.default_rng([self.seed, idx, 13])
        crops = self.crops
        if rng.random() < self.face_fraction:
            k, five = crops.faces[rng.integers(len(crops.faces))]
            photo = crops.photo(k)
            m_p, m_t = (crops.face_transform(five, rng) for _ in range(2))
        else:
            k = int(rng.integers(len(crops.photos)))
            photo = crops.photo(k)
            m_p, m_t = self._scene_transforms(photo.shape[:2], rng)
        if rng.random() < 0.5:  # mirror both: the pair stays an exact correspondence
            s = self.size
            flip = np.array([[-1.0, 0, s - 1], [0, 1, 0], [0, 0, 1]])
            m_p, m_t = flip @ m_p, flip @ m_t
        profile = colour_jitter(warp_photo(photo, m_p[:2], self.size), rng)
        target = colour_jitter(warp_photo(photo, m_t[:2], self.size), rng)

        def img(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0

        zero = torch.zeros(3)
        item = {"profile": img(profile), "target": img(target), "profile_pose": zero,
                "target_pose": zero.clone(), "identity": k, "profile_view": 0,
                "target_view": 1, "profile_light": 0, "target_light": 1}
        if self.with_flow:
            flow, valid = pair_flow(m_p, m_t, photo.shape[:2], self.size)
            item["flow"], item["valid"] = torch.from_numpy(flow), torch.from_numpy(valid)
        if self.cross_identity > 0:
            item["template"], item["template_identity"] = item["target"], k
        return item

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
