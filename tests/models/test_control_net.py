"""The control branch's attention-free copy (the fast appearance net)."""

from __future__ import annotations

import torch

from icportrait.models.control_net import ICControlNet
from support.models import dummy_pipeline, trained_like


def test_attention_free_copy_keeps_every_feature_and_conv():
    net = trained_like(dummy_pipeline()).appearance_net
    lite = net.attention_free()
    assert net.has_attention and not lite.has_attention
    assert sum(p.numel() for p in lite.parameters()) < sum(p.numel() for p in net.parameters())
    x = torch.randn(2, net.config.in_channels, 8, 16, generator=torch.Generator().manual_seed(0))
    text = torch.zeros(2, 2, net.config.cross_attention_dim)
    with torch.no_grad():
        full, fast = net(x, 10, text), lite(x, 10, text)
    assert [f.shape for f in fast.all()] == [f.shape for f in full.all()]
    # before any attention layer the two compute the same features
    assert torch.allclose(fast.down[0], full.down[0])
    lite_weights, net_weights = lite.state_dict(), net.state_dict()
    assert all(torch.equal(v, net_weights[k]) for k, v in lite_weights.items())
    assert torch.equal(lite.zero_mid.weight, net.zero_mid.weight)


def test_attention_free_copy_saves_and_loads(tmp_path):
    lite = dummy_pipeline().appearance_net.attention_free()
    lite.save_pretrained(tmp_path / "net")
    back = ICControlNet.from_pretrained(tmp_path / "net")
    assert not back.has_attention
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in lite.state_dict().items())
