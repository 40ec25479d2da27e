"""Training datasets over multi-view sources (synthetic shards, image folders) and real
photos: view pairs for the control nets, single images for the autoencoder."""

from icportrait.data.multiview import MultiViewFolder, open_multiview
from icportrait.data.pairs import PairDataset, collate, pair_dataset
from icportrait.synth.dataset import SynthDataset

__all__ = ["MultiViewFolder", "PairDataset", "SynthDataset", "collate", "open_multiview",
           "pair_dataset"]
