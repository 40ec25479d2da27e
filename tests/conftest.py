"""Shared fixtures: tiny model components, the public-domain portraits that ship in
packages, and the slow marker."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def dummy_model_dir(tmp_path_factory) -> Path:
    """A saved pipeline folder of tiny random components (tests/support/models.py)."""
    from icportrait.specs import build_pipeline
    from support.models import DUMMY

    path = tmp_path_factory.mktemp("dummy-model") / "model"
    build_pipeline(DUMMY).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from icportrait.faces.samples import load_sample

    return load_sample("astronaut")


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    from icportrait.faces.samples import load_sample

    return load_sample("grace_hopper")


@pytest.fixture(scope="session")
def hopper_crop_mesh(grace_hopper) -> np.ndarray:
    """Grace Hopper's face mesh, scaled into a 128 px crop (x, y pixels and depth)."""
    from icportrait.faces import face_mesh

    m = face_mesh(grace_hopper)[:468].astype(np.float64)
    lo, span = m[:, :2].min(0), np.ptp(m[:, :2], 0).max()
    out = m.copy()
    out[:, :2] = (m[:, :2] - lo) / span * 80 + 24
    out[:, 2] = m[:, 2] / span * 80
    return out
