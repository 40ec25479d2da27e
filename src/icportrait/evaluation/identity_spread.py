"""Can a face recogniser tell a synthetic dataset's identities apart? (`data check --identities`)

The renders of one identity across views and lights should be nearer each other than to
other identities, or the data can neither teach nor measure identity. For the first ``n``
identities of a dataset (use held-out ones, e.g. the validation set), every render is read
with dlib's descriptor, as the evaluation reads faces (:func:`~icportrait.evaluation.scoring.
read_face`), and scored:

* ``rank1``: the share of renders whose nearest identity, by the mean descriptor of each
  identity's renders less the one scored, is their own;
* ``same_median`` / ``different_median``: the median dlib distance between two renders of
  one identity / of two identities (dlib's "same person" threshold is 0.6);
* ``faces_found``: the share of renders in which a face was found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from icportrait.errors import ICPortraitError
from icportrait.evaluation.scoring import read_face
from icportrait.synth.dataset import SynthDataset


def identity_spread(root: str | Path, identities: int = 12, max_yaw: float = 45.0) -> dict:
    """Separability of the first ``identities`` identities' renders within ``max_yaw``."""
    ds = SynthDataset(root)
    n = min(identities, ds.num_identities)
    if n < 2:
        raise ICPortraitError(f"{root}: telling identities apart needs at least two, found "
                              f"{ds.num_identities}")
    vecs, owner = [], []
    total = 0
    for i in range(n):
        for v in range(ds.num_views):
            if abs(float(ds.pose(i, v)[0])) > max_yaw:
                continue
            for li in range(ds.num_lights):
                total += 1
                reading = read_face(np.ascontiguousarray(ds.image(i, v, li)))
                if reading is not None:
                    vecs.append(reading.embedding.astype(np.float64))
                    owner.append(i)
    out = {"identities": n, "renders": total,
           "faces_found": round(len(owner) / max(total, 1), 4)}
    return {**out, **spread_scores(np.asarray(vecs), np.asarray(owner))}


def spread_scores(x: np.ndarray, owner: np.ndarray) -> dict:
    """``rank1``, ``same_median`` and ``different_median`` of descriptors ``x`` ``(N, D)``
    whose identities are ``owner`` ``(N,)`` (None where there are too few to say)."""
    none = {"rank1": None, "same_median": None, "different_median": None}
    if len(owner) == 0 or len(np.unique(owner)) < 2:
        return none
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    mates = (owner[:, None] == owner[None]) & ~np.eye(len(x), dtype=bool)
    out = {"same_median": round(float(np.median(d[mates])), 4) if mates.any() else None,
           "different_median": round(float(np.median(d[owner[:, None] != owner[None]])), 4)}
    hits = []
    for k in range(len(x)):
        rest = np.arange(len(x)) != k
        if not (rest & (owner == owner[k])).any():  # its identity's only render
            continue
        means = {i: x[rest & (owner == i)].mean(0) for i in np.unique(owner[rest])}
        hits.append(min(means, key=lambda i: np.linalg.norm(x[k] - means[i])) == owner[k])
    out["rank1"] = round(float(np.mean(hits)), 4) if hits else None
    return out
