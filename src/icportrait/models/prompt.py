"""A stored prompt embedding: what the base UNet cross-attends to when there is no text."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class PromptEmbedding(ModelMixin, ConfigMixin):
    """A learnable ``(1, seq_len, dim)`` embedding, e.g. the null (empty-prompt) embedding.

    Models without a text encoder (the tiny spec) learn it; for SD 1.5 it holds the text
    encoder's embedding of the empty prompt so the pipeline runs without the text encoder.
    """

    @register_to_config
    def __init__(self, seq_len: int = 77, dim: int = 768):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(1, seq_len, dim))

    def forward(self, batch: int) -> torch.Tensor:
        return self.embedding.expand(batch, -1, -1)
