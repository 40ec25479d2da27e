"""`data check --identities`: are a dataset's identities told apart by a face recogniser?"""

from __future__ import annotations

import json

import numpy as np

from icportrait.cli import main
from icportrait.evaluation.identity_spread import spread_scores
from icportrait.synth.generate import SynthConfig, generate


def test_spread_scores_on_known_descriptors():
    # two tight clusters 1 apart: every render nearest its own identity
    x = np.array([[0.0, 0], [0.1, 0], [1.0, 0], [1.1, 0]])
    owner = np.array([0, 0, 1, 1])
    s = spread_scores(x, owner)
    assert s["rank1"] == 1.0 and s["same_median"] == 0.1
    assert s["different_median"] == 1.0  # distances 1.0, 1.1, 0.9, 1.0
    # identity 1's renders sit on identity 0's: half of them are taken for it
    mixed = spread_scores(np.array([[0.0, 0], [1.0, 0], [0.05, 0], [1.05, 0]]),
                          np.array([0, 0, 1, 1]))
    assert mixed["rank1"] == 0.0
    assert spread_scores(x[:2], owner[:2])["rank1"] is None  # one identity: nothing to tell


def test_cli_check_identities(tmp_path, capsys):
    out = tmp_path / "ds"
    generate(out, SynthConfig(identities=2, views=2, lights=1, size=128, seed=1,
                              yaw=(-10.0, 10.0), extra={"feature_spread": 1.5}))
    assert main(["data", "check", str(out), "--json", "--pairs", "2", "--identities", "2"]) == 0
    spread = json.loads(capsys.readouterr().out)["identity_spread"]
    assert spread["identities"] == 2 and spread["renders"] == 4
    assert spread["faces_found"] == 1.0
    assert 0 < spread["same_median"] < spread["different_median"]
    assert main(["data", "synth", "--out", str(tmp_path / "x"), "--identities", "1",
                 "--feature-spread", "5"]) == 2
    assert "feature-spread" in capsys.readouterr().err
