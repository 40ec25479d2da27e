"""The matching descriptor head, its flow and its loss."""

from __future__ import annotations

import pytest
import torch

from icportrait.conditioning import split, stitch
from icportrait.models.control_net import ControlFeatures, ICControlNet
from icportrait.models.descriptor import HypercolumnHead
from icportrait.models.matching import identity_flow
from icportrait.models.reference import descriptor_flow, flows_from_features
from icportrait.specs import build_pipeline
from icportrait.training.losses import descriptor_loss
from support.models import DUMMY


def _levels(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 8, 8, 16, generator=g), torch.randn(2, 8, 8, 16, generator=g),
            torch.randn(2, 16, 4, 8, generator=g)]


def test_hypercolumn_takes_the_deepest_map_per_size_and_keeps_halves_apart():
    levels = _levels()
    deepest = list(ControlFeatures.from_list(levels).deepest_by_size().values())
    assert [f.shape[1] for f in deepest] == [8, 16]
    assert deepest[0] is levels[1]
    head = HypercolumnHead((8, 16), dim=6)
    d = head(deepest)
    assert d.shape == (2, 6, 8, 16)
    torch.testing.assert_close(d.norm(dim=1), torch.ones(2, 8, 16))
    # Changing the target half never changes the profile half's descriptors.
    other = [stitch(split(f)[0], torch.randn_like(split(f)[1])) for f in deepest]
    assert torch.equal(split(head(other))[0], split(d)[0])
    with pytest.raises(ValueError, match="expects levels of"):
        HypercolumnHead((8, 32), dim=6)(deepest)


def test_matching_net_with_a_head_saves_loads_and_flows(tmp_path):
    pipe = build_pipeline(DUMMY, seed=0)
    net = pipe.matching_net.with_descriptor_head(16)
    assert net.has_descriptor and not pipe.matching_net.has_descriptor
    enc = {k: v for k, v in pipe.matching_net.state_dict().items()}
    assert all(torch.equal(net.state_dict()[k], v) for k, v in enc.items())
    net.save_pretrained(tmp_path / "m")
    back = ICControlNet.from_pretrained(tmp_path / "m")
    assert back.config.descriptor_dim == 16
    c = pipe.unet.config.in_channels
    x = torch.randn(3, net.config.in_channels, 8, 16)
    feats = back(x, 10, pipe.encode_prompt(None, 3))
    d = back.descriptors(feats)
    assert d.shape == (3, 16, 8, 16) and c > 0
    m = descriptor_flow(back, feats, num_refs=3)  # one target, three references
    assert m.flow.shape == (1, 2, 8, 8) and m.ref.max() < 3 and (m.score <= 1).all()
    assert list(flows_from_features(back, feats, 3)) == [(8, 8)]
    with pytest.raises(Exception, match="matches once"):
        flows_from_features(back, feats, 3, levels=[(4, 4)])


def test_descriptor_loss_prefers_true_matches():
    g = torch.Generator().manual_seed(0)
    b, d, h = 2, 32, 8
    src = torch.nn.functional.normalize(torch.randn(b, d, h, h, generator=g), dim=1)
    flow = identity_flow(b, 32, 32).clone()
    flow[:, 0] = (flow[:, 0] + 8).clamp(max=31)   # target pixel x comes from x + 8
    valid = torch.ones(b, 32, 32, dtype=torch.bool)
    valid[..., 24:] = False
    tgt_true = torch.roll(src, shifts=-2, dims=3)  # target cell x shows source cell x + 2
    tgt_rand = torch.nn.functional.normalize(torch.randn(b, d, h, h, generator=g), dim=1)
    # Random features are unlike their neighbours, so use near one-hot targets here.
    good = descriptor_loss(stitch(src, tgt_true), flow, valid, 0.07, 0.25, target_sigma=0.2)
    bad = descriptor_loss(stitch(src, tgt_rand), flow, valid, 0.07, 0.25, target_sigma=0.2)
    assert good < 0.5 * bad
    none = descriptor_loss(stitch(src, tgt_true), flow, torch.zeros_like(valid), 0.07, 0.25)
    assert none == 0
