"""The model store: every load and save of a pipeline, driven by the spec registry."""

from __future__ import annotations

import pytest

import icportrait
from icportrait.errors import ICPortraitError, ModelFilesError
from icportrait.pipelines import ICPortraitPipeline
from icportrait.specs import SPECS, build_components
from icportrait.store import load_for_training, load_pipeline, save_pipeline


def test_public_names_resolve():
    for name in icportrait.__all__:
        assert getattr(icportrait, name) is not None


def test_registry_knows_how_each_spec_is_made():
    assert SPECS["tiny"].buildable and not SPECS["sd15"].buildable
    assert (SPECS["sd15"].config_path() / "unet" / "config.json").is_file()
    with pytest.raises(ModelFilesError, match=r"icportrait\.store\.load_base"):
        build_components("sd15")


def test_load_and_save_round_trip(dummy_model_dir, tmp_path):
    pipe = load_pipeline(dummy_model_dir, device="cpu")
    assert isinstance(pipe, ICPortraitPipeline)
    out = save_pipeline(pipe, tmp_path / "copy")
    assert not list(tmp_path.glob(".tmp-*")) and (out / "model_index.json").is_file()
    save_pipeline(pipe, out)  # replacing an existing folder leaves no debris either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]
    assert isinstance(load_for_training(out), ICPortraitPipeline)


def test_bad_model_paths_are_named(tmp_path, dummy_model_dir):
    with pytest.raises(ModelFilesError, match="no model at"):
        load_pipeline(tmp_path / "nowhere")
    with pytest.raises(ModelFilesError, match=r"--init: .*not found"):
        load_for_training(tmp_path / "nowhere")
    with pytest.raises(ICPortraitError, match="device must be"):
        load_pipeline(dummy_model_dir, device="tpu")
