"""IC-Portrait's networks and the pure tensor ops around them."""

from icportrait.models.control_net import ControlFeatures, ICControlNet
from icportrait.models.matching import Match, argmax_flow, flow_to_color, warp
from icportrait.models.prompt import PromptEmbedding
from icportrait.models.reference import match_features, reference_features

__all__ = [
    "ControlFeatures",
    "ICControlNet",
    "Match",
    "PromptEmbedding",
    "argmax_flow",
    "flow_to_color",
    "match_features",
    "reference_features",
    "warp",
]
