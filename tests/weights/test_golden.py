"""The embedded model's outputs are pinned bit for bit (see tests/support/golden.py)."""

from __future__ import annotations

import json

from icportrait.store import EMBEDDED_MODEL
from support.golden import GOLDEN, outputs, weights_digest


def test_embedded_model_outputs_are_unchanged_bit_for_bit():
    golden = json.loads(GOLDEN.read_text())
    assert weights_digest(EMBEDDED_MODEL) == golden["weights_sha256"], (
        "weights/tiny is not the model the golden outputs were recorded with: after a "
        "deliberate release, record them again with `python tests/support/golden.py`")
    got = outputs()
    assert {k: v == got[k] for k, v in golden["outputs"].items()} == {k: True for k in got}
