"""The real-photo corpus and the autoencoder's image datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from icportrait.data.images import image_dataset, photo_validation_sets
from icportrait.data.photos import PhotoCrops, assemble_photos, read_manifest
from icportrait.errors import ICPortraitError

INSTALLED = ("skimage", "matplotlib")  # sources that need no download


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    summary = assemble_photos(root, INSTALLED)
    return root, summary


def test_corpus_records_sources_licences_splits_and_faces(corpus):
    root, summary = corpus
    manifest = read_manifest(root)
    photos = {p["file"]: p for p in manifest["photos"]}
    assert summary["sources"] == sorted(INSTALLED)
    assert all(p["licence"] for p in photos.values())
    # held-out photos stay out of training: a person nobody trains on, and a scene
    assert photos["photos/matplotlib__grace_hopper.png"]["split"] == "val"
    assert photos["photos/skimage__coffee.png"]["split"] == "val"
    assert photos["photos/skimage__astronaut.png"]["split"] == "train"
    assert len(photos["photos/skimage__astronaut.png"]["faces"]) == 1
    assert photos["photos/skimage__chelsea.png"]["faces"] == []   # a cat
    assert summary["train"]["faces"] >= 2 and summary["val"]["faces"] == 1
    for p in photos.values():
        assert max(p["size"]) <= manifest["max_side"] and (root / p["file"]).is_file()


def test_unknown_source_is_named(tmp_path):
    with pytest.raises(ICPortraitError, match=r"unknown photo source.*nope"):
        assemble_photos(tmp_path, ("nope",))


def test_crops_are_deterministic_and_faces_are_faces(corpus):
    from icportrait.faces import detect_faces

    root, _ = corpus
    faces = PhotoCrops(root, 128, "val", length=4, face_fraction=1.0, seed=5)
    a, b = faces[2]["image"], PhotoCrops(root, 128, "val", length=4, face_fraction=1.0,
                                         seed=5)[2]["image"]
    assert a.shape == (3, 128, 128) and torch.equal(a, b)
    assert not torch.equal(a, faces[3]["image"])
    crop = (a.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert len(detect_faces(np.ascontiguousarray(crop))) == 1   # an aligned face, jittered
    scenes = PhotoCrops(root, 64, "train", length=3, face_fraction=0.0)
    assert scenes[0]["image"].shape == (3, 64, 64)


def test_image_dataset_mixes_photos_and_renders_and_checks_sizes(corpus, tmp_path):
    from icportrait.synth.generate import SynthConfig, generate

    root, _ = corpus
    generate(tmp_path / "synth", SynthConfig(identities=1, views=2, lights=1, size=32, seed=0))
    ds = image_dataset([str(root), str(tmp_path / "synth")], 32, photo_crops=5)
    assert len(ds) == 5 + 2
    assert {tuple(ds[i]["image"].shape) for i in range(len(ds))} == {(3, 32, 32)}
    with pytest.raises(ICPortraitError, match=r"works at 64 px but .* holds 32x32 px"):
        image_dataset([str(tmp_path / "synth")], 64)
    val = photo_validation_sets([str(root), str(tmp_path / "synth")], 32, n=3)
    assert set(val) == {"photo_faces", "photo_scenes"} and len(val["photo_faces"]) == 3


def test_data_photos_command(tmp_path, capsys):
    from icportrait.cli import main

    assert main(["data", "photos", "--out", str(tmp_path / "c"), "--sources", "matplotlib",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["val"] == {"photos": 1, "faces": 1}


def test_the_autoencoder_learns_photo_crops(corpus, tmp_path):
    """Learnability: 40 steps on photo crops must raise held-out reconstruction PSNR."""
    from icportrait.specs import build_pipeline
    from icportrait.training.config import TrainConfig
    from icportrait.training.stages import Stage
    from icportrait.training.trainer import Trainer
    from icportrait.training.validation import validate_stage
    from support.models import DUMMY

    root, _ = corpus
    build_pipeline(DUMMY, seed=0).save_pretrained(tmp_path / "init")
    cfg = TrainConfig(stage="vae", output_dir=str(tmp_path / "run"), data=[str(root)],
                      init=str(tmp_path / "init"), steps=40, batch_size=8, lr=2e-3,
                      checkpoint_every=40, photo_crops=400, seed=0)
    stage = Stage(cfg, "cpu")
    before = validate_stage(stage, stage.module, tmp_path / "v", 0)
    Trainer(cfg, stage).run()
    after = validate_stage(stage, stage.module, tmp_path / "v", 40)
    assert set(before) == {"psnr_photo_faces", "psnr_photo_scenes"}
    assert after["psnr_photo_faces"] > before["psnr_photo_faces"] + 2
    assert after["psnr_photo_scenes"] > before["psnr_photo_scenes"] + 2


def test_the_patch_autoencoder_starts_from_the_data(corpus, tmp_path, monkeypatch):
    """A fresh PatchAutoencoder is fitted (PCA of patches) to the stage's images before the
    first step, so held-out photos reconstruct well from step 0; training then improves it."""
    from dataclasses import replace

    from icportrait import specs
    from icportrait.training.config import TrainConfig
    from icportrait.training.stages import Stage
    from icportrait.training.trainer import Trainer
    from icportrait.training.validation import validate_stage
    from support.models import DUMMY

    monkeypatch.setitem(specs.SPECS, "patch-test", replace(
        DUMMY, name="patch-test", vae_class="PatchAutoencoder",
        vae=dict(latent_channels=4, patch_size=2, sample_size=32, hidden_channels=16,
                 num_res_blocks=1)))
    cfg = TrainConfig(stage="vae", output_dir=str(tmp_path / "run"), data=[str(corpus[0])],
                      spec="patch-test", steps=60, batch_size=8, lr=2e-3, checkpoint_every=60,
                      photo_crops=400)
    stage = Stage(cfg, "cpu")
    assert stage.init_info["explained_variance"] > 0.9
    before = validate_stage(stage, stage.module, tmp_path / "v", 0)
    assert before["psnr_photo_faces"] > 20   # the PCA start, before any step
    Trainer(cfg, stage).run()
    after = validate_stage(stage, stage.module, tmp_path / "v", 60)
    assert after["psnr_photo_faces"] > before["psnr_photo_faces"] + 0.3


def test_photo_pairs_flow_is_exact_and_pairs_mix_with_renders(corpus, tmp_path):
    from icportrait.data.pairs import collate, pair_dataset
    from icportrait.data.photo_pairs import PhotoPairs
    from icportrait.synth.generate import SynthConfig, generate

    root, _ = corpus
    pairs = PhotoPairs(root, 64, "train", length=6, seed=3)
    again = PhotoPairs(root, 64, "train", length=6, seed=3)
    for i in range(6):
        item = pairs[i]
        assert torch.equal(item["target"], again[i]["target"])
        profile = (item["profile"].permute(1, 2, 0).numpy() * 255).astype(np.float32)
        target = (item["target"].permute(1, 2, 0).numpy() * 255).astype(np.float32)
        flow, valid = item["flow"].numpy(), item["valid"].numpy()
        assert valid.mean() > 0.3 and not torch.equal(item["profile"], item["target"])
        exact = _flow_residual(profile, target, flow, valid, 0.0)
        assert exact < 6.0, i            # grey levels (resampling and clipping remain)
        # the same flow off by 3 px is far worse
        assert _flow_residual(profile, target, flow, valid, 3.0) > 3 * exact
    generate(tmp_path / "synth", SynthConfig(identities=1, views=2, lights=1, size=64, seed=0))
    mixed = pair_dataset([str(tmp_path / "synth"), str(root)], size=64, photo_pairs=3,
                         cross_identity=0.5)
    assert len(mixed) == 2 + 3
    batch = collate([mixed[i] for i in range(len(mixed))])
    assert batch["flow"].shape == (5, 2, 64, 64) and batch["template"].shape == (5, 3, 64, 64)
    assert torch.equal(batch["template"][-1], batch["target"][-1])  # a photo's own target
    with pytest.raises(ICPortraitError, match=r"photo corpus.*crop size"):
        pair_dataset([str(root)])


def _flow_residual(profile, target, flow, valid, dx: float) -> float:
    """Up to colour jitter (a gain and offset per channel and image), the profile warped by
    the flow *is* the target: fit them per channel and measure what is left (grey levels)."""
    import cv2

    t = target[valid]
    w = cv2.remap(profile, flow[0] + dx, flow[1], cv2.INTER_LINEAR)[valid]
    fit = np.stack([np.polyval(np.polyfit(w[:, c], t[:, c], 1), w[:, c]) for c in range(3)], 1)
    return float(np.abs(fit - t).mean())


def test_reshaped_face_pairs_are_exact_and_not_affine(corpus):
    from icportrait.data.photo_pairs import PhotoPairs

    root, _ = corpus
    # (the corpus's frontal training face is the astronaut; the cameraman is in profile, so
    # his pairs stay affine)
    pairs = PhotoPairs(root, 64, "train", length=8, face_fraction=1.0, reshape_fraction=1.0,
                       seed=0)
    bent = []
    for i in range(len(pairs)):
        item = pairs[i]
        profile = (item["profile"].permute(1, 2, 0).numpy() * 255).astype(np.float32)
        target = (item["target"].permute(1, 2, 0).numpy() * 255).astype(np.float32)
        flow, valid = item["flow"].numpy(), item["valid"].numpy()
        exact = _flow_residual(profile, target, flow, valid, 0.0)
        assert exact < 6.0 and _flow_residual(profile, target, flow, valid, 3.0) > 3 * exact
        # how far the flow is from the best affine map: a reshape bends it
        ys, xs = np.nonzero(valid)
        a = np.column_stack([xs, ys, np.ones(len(xs))])
        fit, *_ = np.linalg.lstsq(a, flow[:, ys, xs].T, rcond=None)
        bent.append(np.abs(a @ fit - flow[:, ys, xs].T).max())
    assert max(bent) > 1.0, bent
    plain = PhotoPairs(root, 64, "train", length=2, face_fraction=1.0, reshape_fraction=0.0)
    item = plain[0]
    ys, xs = np.nonzero(item["valid"].numpy())
    a = np.column_stack([xs, ys, np.ones(len(xs))])
    f = item["flow"].numpy()[:, ys, xs].T
    fit, *_ = np.linalg.lstsq(a, f, rcond=None)
    assert np.abs(a @ fit - f).max() < 1e-3   # two crops of one photo: affine


def test_cross_person_templates_carry_the_meshes_flow(corpus):
    from icportrait.data.photo_pairs import PhotoPairs

    root, _ = corpus
    pairs = PhotoPairs(root, 64, "train", length=4, face_fraction=1.0, seed=2, cross_person=1.0)
    again = PhotoPairs(root, 64, "train", length=4, face_fraction=1.0, seed=2, cross_person=1.0)
    for i in range(len(pairs)):
        item = pairs[i]
        assert item["template_identity"] != item["identity"]   # another face of the corpus
        assert not torch.equal(item["template"], item["target"])
        assert torch.equal(item["template"], again[i]["template"])
        flow, valid = item["template_flow"].numpy(), item["template_valid"].numpy()
        assert 0.05 < valid.mean() < 0.8                        # the template's face hull
        assert (flow[:, valid] >= 0).all() and (flow[:, valid] <= 63).all()
        ys, xs = np.nonzero(valid)                               # two faces: not affine
        a = np.column_stack([xs, ys, np.ones(len(xs))])
        fit, *_ = np.linalg.lstsq(a, flow[:, ys, xs].T, rcond=None)
        assert np.abs(a @ fit - flow[:, ys, xs].T).max() > 1.0
    # without flow (denoising stages) there is nothing to match: no other face
    plain = PhotoPairs(root, 64, "train", length=2, face_fraction=1.0, with_flow=False,
                       cross_person=1.0)
    assert "template" not in plain[0]
    with pytest.raises(ICPortraitError, match="cross_person"):
        PhotoPairs(root, 64, "train", length=2, cross_person=2.0)
