"""Training pairs (profile view, target view) of one identity, with ground-truth flow."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from icportrait.data.multiview import MultiViewFolder, SynthDataset, check_size, open_multiview
from icportrait.data.photo_pairs import PhotoPairs
from icportrait.data.photos import is_photo_corpus
from icportrait.defaults import PHOTO_PAIRS
from icportrait.errors import ICPortraitError


class PairDataset(Dataset):
    """Pairs of views of the same identity.

    Each item: ``profile`` and ``target`` images ``(3, S, S)`` float in [0, 1]; ``flow``
    ``(2, S, S)`` target -> profile (pixel coordinates, see icportrait.models.matching) and
    ``valid`` ``(S, S)`` where the flow is known (visible in both views); ``profile_pose`` and
    ``target_pose`` ``(3,)`` yaw/pitch/roll; ``identity``, view and light indices.

    ``same_light``: True keeps pairs under the same lighting, False pairs under different
    lights, None takes both. ``yaw_gap``: (min, max) absolute yaw difference in degrees.
    The pair list is fixed at construction (deterministic in ``seed``). ``with_flow=False``
    skips the ground-truth flow (``flow``/``valid`` absent), for stages that do not use it.

    ``cross_identity`` > 0 adds a ``template`` image: in that share of the items (chosen by
    ``seed``) another identity in the target's view and light, the rest the target itself.
    Only sources rendered with shared views have such templates (``data synth
    --shared-views``); the others always give the target. The target stays the truth, so in
    a cross-identity triplet identity can only come from the profile, pose and light from
    the template. With flow, such items also carry ``template_flow``/``template_valid``,
    template -> profile (``SynthDataset.cross_flow``).
    """

    def __init__(self, source, same_light: bool | None = None,
                 yaw_gap: tuple[float, float] = (0.0, 180.0), include_self: bool = False,
                 seed: int = 0, with_flow: bool = True, cross_identity: float = 0.0):
        if not 0.0 <= cross_identity <= 1.0:
            raise ICPortraitError(f"cross_identity must be in [0, 1], got {cross_identity}")
        self.with_flow = with_flow
        self.cross_identity = cross_identity
        self.seed = seed
        is_source = isinstance(source, (SynthDataset, MultiViewFolder))
        self.source = source if is_source else open_multiview(source)
        lo, hi = yaw_gap
        if lo < 0 or lo > hi:
            raise ICPortraitError(f"yaw_gap must satisfy 0 <= min <= max, got {yaw_gap}")
        src = self.source
        pairs = []
        for i in range(src.num_identities):
            n_views = src.views_of(i)
            poses = [src.pose(i, v) for v in range(n_views)]
            for vp in range(n_views):
                for vt in range(n_views):
                    if vp == vt and not include_self:
                        continue
                    gap = abs(float(poses[vp][0] - poses[vt][0]))
                    if not lo <= gap <= hi:
                        continue
                    for lp in range(src.num_lights):
                        for lt in range(src.num_lights):
                            same = src.same_light(i, vp, lp, vt, lt)
                            if same_light is None or same == same_light:
                                pairs.append((i, vp, lp, vt, lt))
        if not pairs:
            raise ICPortraitError(
                f"no pairs match same_light={same_light}, yaw_gap={yaw_gap} in this dataset"
            )
        rng = np.random.default_rng(seed)
        self.pairs = [pairs[k] for k in rng.permutation(len(pairs))]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int) -> dict:
        i, vp, lp, vt, lt = self.pairs[idx]
        src = self.source
        profile, target = src.image(i, vp, lp), src.image(i, vt, lt)

        def img(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0

        item = {
            "profile": img(profile), "target": img(target),
            "profile_pose": torch.from_numpy(np.asarray(src.pose(i, vp), np.float32)),
            "target_pose": torch.from_numpy(np.asarray(src.pose(i, vt), np.float32)),
            "identity": i, "profile_view": vp, "target_view": vt,
            "profile_light": lp, "target_light": lt,
        }
        if self.with_flow:
            flow, valid = src.flow(i, vt, vp)
            item["flow"], item["valid"] = torch.from_numpy(flow), torch.from_numpy(valid)
        if self.cross_identity > 0:
            j = self.template_identity(idx)
            item["template"] = item["target"] if j == i else img(src.image(j, vt, lt))
            item["template_identity"] = j
            if self.with_flow:  # template -> profile: the same point of the face on both heads
                tflow, tvalid = (flow, valid) if j == i else src.cross_flow(j, vt, i, vp)
                item["template_flow"] = torch.from_numpy(tflow)
                item["template_valid"] = torch.from_numpy(tvalid)
        return item

    def template_identity(self, idx: int) -> int:
        """The identity whose render is item ``idx``'s template (its own when none other)."""
        i = self.pairs[idx][0]
        n = self.source.num_identities
        if not self.source.shared_views or n < 2:
            return i
        rng = np.random.default_rng([self.seed, idx, 7])
        if rng.random() >= self.cross_identity:
            return i
        return int((i + rng.integers(1, n)) % n)


def pair_dataset(folders: list[str], same_light: bool | None = None,
                 yaw_gap: tuple[float, float] = (0.0, 180.0), include_self: bool = False,
                 seed: int = 0, with_flow: bool = True, size: int | None = None,
                 cross_identity: float = 0.0, photo_pairs: int = PHOTO_PAIRS,
                 cross_person: float = 0.0) -> Dataset:
    """The pairs of every folder in ``folders``, concatenated; each folder's images must be
    ``size`` px when it is given. A photo corpus (``data photos``) gives ``photo_pairs``
    pairs of crops of one photo (icportrait.data.photo_pairs; needs ``size``; the view and
    light filters do not apply to it); ``cross_person``: the share of those whose template
    is another face of the corpus (PhotoPairs, for matching)."""
    sets: list[Dataset] = []
    for f in folders:
        if is_photo_corpus(f):
            if size is None:
                raise ICPortraitError(f"{f} is a photo corpus: its pairs need a crop size")
            sets.append(PhotoPairs(f, size, "train", photo_pairs, seed=seed,
                                   with_flow=with_flow, cross_identity=cross_identity,
                                   cross_person=cross_person))
            continue
        ds = PairDataset(f, same_light=same_light, yaw_gap=yaw_gap, include_self=include_self,
                         seed=seed, with_flow=with_flow, cross_identity=cross_identity)
        if size is not None:
            check_size(ds.source, size, str(f))
        sets.append(ds)
    return sets[0] if len(sets) == 1 else ConcatDataset(sets)


def collate(items: list[dict]) -> dict:
    """Items of a dataset -> one batch: tensors stacked, numbers made tensors."""
    out = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else torch.tensor(vals)
    return out
