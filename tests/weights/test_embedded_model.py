"""The embedded default model (weights/tiny): shipped as promised and usable out of the box."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from icportrait.generation import Settings, generate_portrait
from icportrait.store import EMBEDDED_MODEL, load_pipeline


def test_embedded_model_is_small_fp16_and_documented():
    files = [f for f in EMBEDDED_MODEL.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 30 * 2**20
    assert not [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    release = json.loads((EMBEDDED_MODEL / "release.json").read_text())
    assert release["dtype"] == "fp16" and release["psnr_vs_fp32_db"] >= 40
    recipe = (EMBEDDED_MODEL / "RECIPE.md").read_text()
    for needed in ("icportrait train base", "icportrait train matching",
                   "icportrait train appearance", "--seed 0", "wall time"):
        assert needed in recipe


def test_embedded_model_generates(astronaut, grace_hopper):
    pipe = load_pipeline()
    assert pipe.unet.dtype == torch.float32 and pipe.resolution == 128
    result = generate_portrait(pipe, [astronaut], grace_hopper, Settings(steps=4, seed=0))
    assert result.image.shape == (128, 128, 3) and result.image.dtype == np.uint8
    assert result.image.std() > 10  # a picture, not a flat field
    again = generate_portrait(pipe, [astronaut], grace_hopper, Settings(steps=4, seed=0))
    np.testing.assert_array_equal(result.image, again.image)  # seeded: reproducible


@pytest.mark.slow
def test_demo_on_the_embedded_model_within_five_minutes(tmp_path, monkeypatch):
    from icportrait.cli import main

    monkeypatch.delenv("ICPORTRAIT_MODEL", raising=False)
    t0 = time.perf_counter()
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert time.perf_counter() - t0 < 300
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["generation"]["model"] == str(EMBEDDED_MODEL)
    assert (tmp_path / "summary.png").stat().st_size > 10_000
