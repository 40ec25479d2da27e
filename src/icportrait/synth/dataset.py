"""Read access to a synthetic dataset folder written by :mod:`icportrait.synth.generate`
(shards + manifest), beside its writer; ground-truth flow is computed exactly from the stored
geometry."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

from icportrait.errors import ICPortraitError
from icportrait.synth.correspondence import ViewCamera, cross_identity_flow, ground_truth_flow

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")


def safe_name(name: str, what: str) -> str:
    """A file-name component from a dataset's own metadata: no separators, no '..'."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise ICPortraitError(f"invalid {what} name {name!r} in dataset metadata")
    return name


class SynthDataset:
    """Read access to a synthetic dataset folder (complete shards only).

    Decompressed shards are kept in memory (up to ``max_cached_shards``, least recently
    used first out), since random batches touch many shards.
    """

    def __init__(self, root: str | Path, max_cached_shards: int = 64):
        self.root = Path(root)
        self._cache: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self._meta_cache: dict[str, dict] = {}
        self.max_cached_shards = max_cached_shards
        path = self.root / "manifest.json"
        if not path.is_file():
            raise ICPortraitError(f"{self.root} is not a synthetic dataset (no manifest.json)")
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("kind") != "icportrait-synth":
            raise ICPortraitError(f"{path} is not an icportrait synthetic dataset manifest")
        cfg = self.manifest["config"]
        self.size, self.per_shard = cfg["size"], cfg["per_shard"]
        self.num_views, self.num_lights = cfg["views"], cfg["lights"]
        names = [safe_name(s, "shard") for s in self.manifest["shards"]]
        self.shards = [s for s in names if (self.root / f"{s}.json").exists()]
        self._ids: list[tuple[str, int]] = []
        for s in self.shards:
            meta = json.loads((self.root / f"{s}.json").read_text())
            self._ids += [(s, k) for k in range(len(meta["identities"]))]
        if not self._ids:
            raise ICPortraitError(f"{self.root} has no complete shard yet")
        self._camera = cfg

    @property
    def shared_views(self) -> bool:
        """Every identity was rendered in the same poses and lights (``--shared-views``)."""
        return bool(self.manifest["config"].get("extra", {}).get("shared_views"))

    @property
    def num_identities(self) -> int:
        return len(self._ids)

    def views_of(self, i: int) -> int:
        return self.num_views

    def _shard(self, name: str) -> dict[str, np.ndarray]:
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        with np.load(self.root / f"{name}.npz", allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        self._cache[name] = data
        while len(self._cache) > self.max_cached_shards:
            self._cache.popitem(last=False)
        return data

    def _meta(self, name: str) -> dict:
        if name not in self._meta_cache:
            self._meta_cache[name] = json.loads((self.root / f"{name}.json").read_text())
        return self._meta_cache[name]

    def identity(self, i: int) -> dict[str, np.ndarray]:
        shard, k = self._ids[i]
        return {key: arr[k] for key, arr in self._shard(shard).items()}

    def metadata(self, i: int) -> dict:
        shard, k = self._ids[i]
        return self._meta(shard)["identities"][k]

    def image(self, i: int, view: int, light: int) -> np.ndarray:
        return self.identity(i)["rgb"][view, light]

    def pose(self, i: int, view: int) -> np.ndarray:
        return self.identity(i)["pose"][view]

    def camera(self, i: int, view: int) -> ViewCamera:
        d = self.identity(i)
        cam = self.metadata(i)["camera"]
        return ViewCamera(d["rotation"][view].astype(np.float64),
                          d["translation"].astype(np.float64), np.asarray(cam["pivot"]),
                          cam["focal_per_side"], self.size)

    def flow(self, i: int, target: int, source: int) -> tuple[np.ndarray, np.ndarray]:
        """Ground-truth flow target view -> source view ``(2, S, S)`` and validity."""
        d = self.identity(i)
        return ground_truth_flow(d["surface_xyz"][target].astype(np.float32),
                                 d["depth"][source].astype(np.float32), self.camera(i, source))

    def cross_flow(self, j: int, target: int, i: int, source: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Flow from identity ``j``'s view ``target`` to identity ``i``'s view ``source``:
        the same point of the face on both heads (synth.correspondence.cross_identity_flow);
        for ``i == j`` the exact :meth:`flow`."""
        if i == j:
            return self.flow(i, target, source)
        marks = [self.metadata(k).get("landmarks") for k in (j, i)]
        if marks[0] is None or marks[1] is None:
            raise ICPortraitError(f"{self.root} was rendered before landmarks were stored: "
                                  "render it again for cross-identity flow")
        return cross_identity_flow(
            self.identity(j)["surface_xyz"][target].astype(np.float32), marks[0],
            self.identity(i)["surface_xyz"][source].astype(np.float32), marks[1])

    def same_light(self, i: int, view_a: int, light_a: int, view_b: int, light_b: int) -> bool:
        return light_a == light_b
