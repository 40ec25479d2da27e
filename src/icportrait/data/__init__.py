"""Training-pair datasets over multi-view sources (synthetic shards, image folders)."""

from icportrait.data.multiview import MultiViewFolder, SynthDataset, open_multiview
from icportrait.data.pairs import PairDataset

__all__ = ["MultiViewFolder", "PairDataset", "SynthDataset", "open_multiview"]
