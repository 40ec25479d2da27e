"""Multi-view identity sources that pair datasets read.

Two kinds, one interface (``num_identities``, ``num_views``, ``num_lights``, ``image``,
``pose``, ``flow``):

* :class:`~icportrait.synth.dataset.SynthDataset`: a folder written by ``icportrait data
  synth`` (shards + manifest), read by the synth package beside its writer;
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
from pathlib import Path

import numpy as np

from icportrait.errors import ICPortraitError
from icportrait.io import PHOTO_SUFFIXES, load_image
from icportrait.synth.dataset import SynthDataset, safe_name


class MultiViewFolder:
    """Your own multi-view sets in the folder format of the module docstring."""

    shared_views = False  # each identity has its own views (see SynthDataset.shared_views)

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
            names = sorted(safe_name(n, "view") for n in views)
            for n in names:
                if self._file(p, n) is None:
                    raise ICPortraitError(f"{p}: view {n!r} has no image file")
            self._views.append([(n, views[n]) for n in names])
        self.num_lights = 1

    def _file(self, folder: Path, view: str) -> Path | None:
        for s in PHOTO_SUFFIXES:
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


def check_size(source: SynthDataset | MultiViewFolder, size: int, name: str) -> None:
    """A clear error when ``source``'s images are not ``size`` x ``size`` (the model's)."""
    h, w = source.image(0, 0, 0).shape[:2]
    if (h, w) != (size, size):
        raise ICPortraitError(f"the model works at {size} px but {name} holds {w}x{h} px "
                              f"images; regenerate the data with --size {size}")


def open_multiview(root: str | Path) -> SynthDataset | MultiViewFolder:
    """A synthetic dataset if ``root`` has a manifest, else the multi-view folder format."""
    root = Path(root)
    if not root.exists():
        raise ICPortraitError(f"dataset folder not found: {root}")
    if (root / "manifest.json").is_file():
        return SynthDataset(root)
    return MultiViewFolder(root)
