"""Single images for the autoencoder: every view of a multi-view source, or photo crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from icportrait.data.multiview import check_size, open_multiview
from icportrait.data.photos import PhotoCrops, is_photo_corpus
from icportrait.errors import ICPortraitError


class ViewImages(Dataset):
    """Every (identity, view, light) image of a synthetic or multi-view source, as
    ``{"image": (3, S, S) float in [0, 1]}``."""

    def __init__(self, root: str | Path):
        self.source = open_multiview(root)
        src = self.source
        self.index = [(i, v, lt) for i in range(src.num_identities)
                      for v in range(src.views_of(i)) for lt in range(src.num_lights)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int) -> dict:
        a = self.source.image(*self.index[idx])
        image = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0
        return {"image": image}


def image_dataset(folders: list[str], size: int, split: str = "train", seed: int = 0,
                  photo_crops: int = 10000) -> Dataset:
    """The images of ``folders``: photo corpora give ``photo_crops`` crops of ``size`` px
    from their ``split``; synthetic and multi-view folders every view (at their own size,
    which must be ``size``)."""
    sets: list[Dataset] = []
    for folder in folders:
        if is_photo_corpus(folder):
            sets.append(PhotoCrops(folder, size, split, photo_crops, seed=seed))
            continue
        views = ViewImages(folder)
        check_size(views.source, size, str(folder))
        sets.append(views)
    if not sets:
        raise ICPortraitError("no image data given")
    return sets[0] if len(sets) == 1 else ConcatDataset(sets)


def photo_validation_sets(folders: list[str], size: int, seed: int = 1, n: int = 16
                          ) -> dict[str, Dataset]:
    """Held-out crops of the photo corpora among ``folders``: faces and scenes apart."""
    corpora = [f for f in folders if is_photo_corpus(f)]
    out: dict[str, Dataset] = {}
    for kind, fraction in (("photo_faces", 1.0), ("photo_scenes", 0.0)):
        sets = [PhotoCrops(f, size, "val", n, face_fraction=fraction, seed=seed)
                for f in corpora]
        if sets:
            out[kind] = sets[0] if len(sets) == 1 else ConcatDataset(sets)
    return out
