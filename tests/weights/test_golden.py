"""The embedded model's outputs are pinned: portraits bit for bit, flows to within a
ten-thousandth of a cell (see tests/support/golden.py)."""

from __future__ import annotations

import json

import numpy as np

from icportrait.store import EMBEDDED_MODEL
from support.golden import FLOW_ATOL, GOLDEN, decode_flow, outputs, weights_digest


def test_embedded_model_outputs_are_unchanged():
    golden = json.loads(GOLDEN.read_text())
    assert weights_digest(EMBEDDED_MODEL) == golden["weights_sha256"], (
        "weights/tiny is not the model the golden outputs were recorded with: after a "
        "deliberate release, record them again with `python tests/support/golden.py`")
    got = outputs()
    assert set(got) == set(golden["outputs"])
    for name, want in golden["outputs"].items():
        assert got[name]["image"] == want["image"], f"{name}: the portrait changed"
        np.testing.assert_allclose(decode_flow(got[name]["flow"], got[name]["flow_shape"]),
                                   decode_flow(want["flow"], want["flow_shape"]),
                                   rtol=0, atol=FLOW_ATOL, err_msg=f"{name}: the flow changed")
