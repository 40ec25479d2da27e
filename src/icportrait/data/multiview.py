"""Multi-view identity sources that pair datasets read.

Two kinds, one interface (``num_identities``, ``num_views``, ``num_lights``, ``image``,
``pose``, ``flow``):

* :class:`SynthDataset`: a folder written by ``icportrait data synth`` (shards + manifest);
  ground-truth flow is computed exactly from the stored geometry.
* :class:`MultiViewFolder`: your own captured or generated sets, one folder per identity::

      ROOT/<identity>/views.json     {"<view>": {"yaw": 10, "pitch": 0, "roll": 0,
                                                 "light": "key-left"}, ...}
      ROOT/<identity>/<view>.png     (or .jpg/.webp), one image per view, same size
      ROOT/<identity>/flows/<target>__<source>.npz   optional: arrays "flow" (2, H, W),
                                     target -> source pixel coordinates, and "valid" (H, W)

  Views that share a ``light`` label count as the same lighting; without labels every view
  is its own lighting. Pairs without a flow file have no ground truth (``valid`` all False).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np

from icportrait.errors import ICPortraitError
from icportrait.faces.io import load_image
from icportrait.synth.correspondence import ViewCamera, ground_truth_flow

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*$")


def _safe_name(name: str, what: str) -> str:
    """A file-name component from a dataset's own metadata: no separators, no '..'."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
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
        names = [_safe_name(s, "shard") for s in self.manifest["shards"]]
        self.shards = [s for s in names if (self.root / f"{s}.json").exists()]
        self._ids: list[tuple[str, int]] = []
        for s in self.shards:
            meta = json.loads((self.root / f"{s}.json").read_text())
            self._ids += [(s, k) for k in range(len(meta["identities"]))]
        if not self._ids:
            raise ICPortraitError(f"{self.root} has no complete shard yet")
        self._camera = cfg

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

    def same_light(self, i: int, view_a: int, light_a: int, view_b: int, light_b: int) -> bool:
        return light_a == light_b


class MultiViewFolder:
    """Your own multi-view sets in the folder format of the module docstring."""

    _SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ICPortraitError(f"multi-view folder not found: {self.root}")
        self._ids = sorted(p for p in self.root.iterdir() if (p / "views.json").is_file())
        if not self._ids:
            raise ICPortraitError(f"{self.root} has no <identity>/views.json folders")
        self._views = []
        for p in self._ids:
            views = json.loads((p / "views.json").read_text())
            names = sorted(_safe_name(n, "view") for n in views)
            for n in names:
                if self._file(p, n) is None:
                    raise ICPortraitError(f"{p}: view {n!r} has no image file")
            self._views.append([(n, views[n]) for n in names])
        self.num_lights = 1

    def _file(self, folder: Path, view: str) -> Path | None:
        for s in self._SUFFIXES:
            if (folder / f"{view}{s}").is_file():
                return folder / f"{view}{s}"
        return None

    @property
    def num_identities(self) -> int:
        return len(self._ids)

    def views_of(self, i: int) -> int:
        return len(self._views[i])

    @property
    def num_views(self) -> int:
        return min(len(v) for v in self._views)

    def image(self, i: int, view: int, light: int = 0) -> np.ndarray:
        name = self._views[i][view][0]
        return load_image(self._file(self._ids[i], name))

    def pose(self, i: int, view: int) -> np.ndarray:
        d = self._views[i][view][1]
        return np.array([d.get("yaw", 0.0), d.get("pitch", 0.0), d.get("roll", 0.0)], np.float32)

    def flow(self, i: int, target: int, source: int) -> tuple[np.ndarray, np.ndarray]:
        t, s = self._views[i][target][0], self._views[i][source][0]
        path = self._ids[i] / "flows" / f"{t}__{s}.npz"
        h, w = self.image(i, target).shape[:2]
        if not path.is_file():
            return np.zeros((2, h, w), np.float32), np.zeros((h, w), bool)
        with np.load(path, allow_pickle=False) as z:
            return z["flow"].astype(np.float32), z["valid"].astype(bool)

    def same_light(self, i: int, view_a: int, light_a: int, view_b: int, light_b: int) -> bool:
        la = self._views[i][view_a][1].get("light")
        lb = self._views[i][view_b][1].get("light")
        return la is not None and la == lb


def open_multiview(root: str | Path) -> SynthDataset | MultiViewFolder:
    """A synthetic dataset if ``root`` has a manifest, else the multi-view folder format."""
    root = Path(root)
    if not root.exists():
        raise ICPortraitError(f"dataset folder not found: {root}")
    if (root / "manifest.json").is_file():
        return SynthDataset(root)
    return MultiViewFolder(root)
