"""The synthetic dataset: generation, determinism, resumption, ground-truth flow, pairs, CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from icportrait.cli import main
from icportrait.data import MultiViewFolder, PairDataset, SynthDataset
from icportrait.errors import ICPortraitError
from icportrait.synth.check import check_dataset, preview_grid
from icportrait.synth.correspondence import compose_flows, cross_identity_flow
from icportrait.synth.generate import SynthConfig, generate, parse_shard, render_identity

CFG = SynthConfig(identities=3, views=3, lights=2, size=64, seed=7, per_shard=2,
                  yaw=(-40.0, 40.0))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    summary = generate(root, CFG)
    assert summary["shards_written"] == 2 and summary["views_rendered"] == 18
    return root


def test_layout_and_manifest(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["kind"] == "icportrait-synth" and manifest["generator_version"] >= 1
    assert manifest["config"]["seed"] == 7 and manifest["config"]["yaw"] == [-40.0, 40.0]
    assert manifest["shards"] == ["shard-00000", "shard-00001"]
    ds = SynthDataset(dataset)
    assert ds.num_identities == 3
    d = ds.identity(2)
    assert d["rgb"].shape == (3, 2, 64, 64, 3) and d["rgb"].dtype == np.uint8
    assert d["surface_xyz"].shape == (3, 64, 64, 3) and d["pose"].shape == (3, 3)
    yaws = d["pose"][:, 0]
    assert np.all((yaws >= -40) & (yaws <= 40))
    # Lights differ between the two renders of a view; the geometry is stored once.
    assert np.abs(d["rgb"][0, 0].astype(int) - d["rgb"][0, 1]).mean() > 2


def test_deterministic_by_seed_and_independent_of_sharding(dataset, tmp_path):
    ds = SynthDataset(dataset)
    again, _ = render_identity(1, CFG)
    for key in ("rgb", "surface_xyz", "pose"):
        np.testing.assert_array_equal(again[key], ds.identity(1)[key])
    for part in ("1/2", "0/2"):  # two workers, in either order
        generate(tmp_path, CFG, parse_shard(part))
    split = SynthDataset(tmp_path)
    for i in range(3):
        np.testing.assert_array_equal(split.identity(i)["rgb"], ds.identity(i)["rgb"])
    other, _ = render_identity(1, SynthConfig(**{**CFG.to_json(), "seed": 8}))
    assert not np.array_equal(other["rgb"], again["rgb"])


def test_resume_skips_finished_shards(dataset, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    (root / "shard-00001.json").unlink()  # as if the run died while writing shard 1
    summary = generate(root, CFG)
    assert summary == {**summary, "shards_written": 1, "shards_skipped": 1}
    with pytest.raises(ICPortraitError, match="other settings"):
        generate(root, SynthConfig(**{**CFG.to_json(), "views": 4}))


def test_ground_truth_flow_is_exact(dataset):
    ds = SynthDataset(dataset)
    flow_ab, valid_ab = ds.flow(0, 0, 1)
    flow_ba, valid_ba = ds.flow(0, 1, 0)
    assert 0.05 < valid_ab.mean() < 0.6
    land, ok = compose_flows(flow_ab, valid_ab, flow_ba, valid_ba)
    ys, xs = np.nonzero(ok)
    err = np.hypot(land[0][ok] - xs, land[1][ok] - ys)
    assert ok.sum() > 100 and np.median(err) < 0.5
    report = check_dataset(dataset, pairs=8)
    assert report["identities"] == 3 and report["shards_complete"] == 2
    assert report["reprojection_px"]["median"] < 0.5
    assert report["photometric_mae"] < report["photometric_mae_unwarped"]


def _landmark_pixels(ds: SynthDataset, i: int, view: int) -> dict:
    """Each landmark's pixel in a view, where that pixel shows the landmark itself."""
    xyz = ds.identity(i)["surface_xyz"][view].astype(np.float64)
    out = {}
    for name, point in ds.metadata(i)["landmarks"].items():
        uv, _ = ds.camera(i, view).project(np.asarray(point))
        x, y = np.rint(uv).astype(int)
        if 0 <= x < ds.size and 0 <= y < ds.size and np.linalg.norm(xyz[y, x] - point) < 0.03:
            out[name] = uv
    return out


def test_cross_identity_flow_finds_the_same_point_of_the_face(dataset):
    ds = SynthDataset(dataset)
    # One head with itself: the landmark-registered surface match is the exact flow.
    exact, exact_ok = ds.flow(0, 0, 1)
    flow, ok = cross_identity_flow(
        ds.identity(0)["surface_xyz"][0].astype(np.float32), ds.metadata(0)["landmarks"],
        ds.identity(0)["surface_xyz"][1].astype(np.float32), ds.metadata(0)["landmarks"])
    both = ok & exact_ok
    assert both.sum() > 0.9 * exact_ok.sum() and (ok & ~exact_ok).sum() < 0.1 * ok.sum()
    assert np.median(np.linalg.norm(flow - exact, axis=0)[both]) < 0.5
    # Two heads: one's eyes, nose, mouth corners and chin land on the other's.
    errors = []
    for j, i in ((0, 1), (1, 2), (2, 0)):
        for vt, vp in ((0, 0), (0, 1), (2, 1)):
            flow, ok = ds.cross_flow(j, vt, i, vp)
            assert flow.shape == (2, 64, 64) and ok.dtype == bool and ok.any()
            seen = _landmark_pixels(ds, i, vp)
            for name, uv in _landmark_pixels(ds, j, vt).items():
                x, y = np.rint(uv).astype(int)
                if name in seen and ok[y, x]:
                    errors.append(np.linalg.norm(flow[:, y, x] - seen[name]))
    assert len(errors) > 20 and np.median(errors) < 1.0
    # It is not the no-motion map: the heads differ.
    still = np.stack(np.meshgrid(np.arange(64), np.arange(64)))  # (x, y) of each pixel
    assert np.linalg.norm(flow - still, axis=0)[ok].mean() > 0.5


def test_pairs_options(dataset):
    same = PairDataset(dataset, same_light=True)
    diff = PairDataset(dataset, same_light=False)
    assert all(p[2] == p[4] for p in same.pairs) and all(p[2] != p[4] for p in diff.pairs)
    assert len(same) == 3 * 3 * 2 * 2  # identities x ordered view pairs x lights
    gap = PairDataset(dataset, yaw_gap=(20.0, 90.0))
    ds = SynthDataset(dataset)
    for i, vp, _, vt, _ in gap.pairs:
        assert 20 <= abs(ds.pose(i, vp)[0] - ds.pose(i, vt)[0]) <= 90
    item = same[0]
    assert item["profile"].shape == (3, 64, 64) and item["flow"].shape == (2, 64, 64)
    assert item["valid"].dtype.is_floating_point is False and 0 <= item["profile"].min()
    with pytest.raises(ICPortraitError, match="no pairs"):
        PairDataset(dataset, yaw_gap=(170.0, 180.0))
    with pytest.raises(ICPortraitError, match="yaw_gap"):
        PairDataset(dataset, yaw_gap=(30.0, 10.0))


def test_multiview_folder_format(dataset, tmp_path):
    ds = SynthDataset(dataset)
    for i in range(2):
        folder = tmp_path / f"person{i}"
        folder.mkdir()
        views = {}
        for v in range(3):
            Image.fromarray(ds.image(i, v, 0)).save(folder / f"v{v}.png")
            yaw, pitch, roll = (float(x) for x in ds.pose(i, v))
            views[f"v{v}"] = {"yaw": yaw, "pitch": pitch, "roll": roll, "light": "a"}
        (folder / "views.json").write_text(json.dumps(views))
        flow, valid = ds.flow(i, 1, 0)
        (folder / "flows").mkdir()
        np.savez(folder / "flows" / "v1__v0.npz", flow=flow, valid=valid)
    pairs = PairDataset(tmp_path)
    assert isinstance(pairs.source, MultiViewFolder) and len(pairs) == 2 * 6
    with_flow = next(pairs[k] for k in range(len(pairs))
                     if pairs.pairs[k][1] == 0 and pairs.pairs[k][3] == 1)
    assert with_flow["valid"].any()
    without = next(pairs[k] for k in range(len(pairs)) if pairs.pairs[k][1:4:2] == (1, 2))
    assert not without["valid"].any()
    assert PairDataset(tmp_path, same_light=True).pairs  # one shared light label


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(identities=0), "at least 1"),
        (dict(views=0), "at least 1"),
        (dict(yaw=(30.0, -30.0)), "empty"),
        (dict(yaw=(-120.0, 0.0)), "exceeds"),
        (dict(size=8), "size"),
    ],
)
def test_bad_settings(kwargs, match, tmp_path):
    with pytest.raises(ICPortraitError, match=match):
        generate(tmp_path, SynthConfig(**{**CFG.to_json(), **kwargs}))


def test_dataset_names_cannot_escape_the_folder(dataset, tmp_path):
    root = tmp_path / "evil"
    shutil.copytree(dataset, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["shards"][0] = "../../etc/passwd"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ICPortraitError, match="invalid shard name"):
        SynthDataset(root)
    person = tmp_path / "mv" / "p0"
    person.mkdir(parents=True)
    (person / "views.json").write_text(json.dumps({"../secret": {"yaw": 0}}))
    with pytest.raises(ICPortraitError, match="invalid view name"):
        MultiViewFolder(tmp_path / "mv")


def test_unwritable_output_and_bad_shard(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(ICPortraitError, match="cannot write"):
        generate(blocker / "data", CFG)
    for spec in ("2/2", "a/b", "1"):
        with pytest.raises(ICPortraitError, match="--shard"):
            parse_shard(spec)
    with pytest.raises(ICPortraitError, match="not a synthetic dataset"):
        SynthDataset(tmp_path)


def test_photo_lifted_source(tmp_path, astronaut, grace_hopper):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(astronaut).save(photos / "a.png")
    Image.fromarray(grace_hopper).save(photos / "b.jpg")
    cfg = SynthConfig(identities=2, views=2, lights=1, size=64, yaw=(-20.0, 20.0),
                      source=f"photos:{photos}")
    generate(tmp_path / "out", cfg)
    ds = SynthDataset(tmp_path / "out")
    assert [ds.metadata(i)["photo"] for i in range(2)] == ["a.png", "b.jpg"]
    alpha = ds.identity(0)["alpha"]
    assert 0.1 < (alpha > 128).mean() < 0.6  # the face region, rendered
    _, valid = ds.flow(0, 0, 1)
    assert valid.mean() > 0.05
    with pytest.raises(ICPortraitError, match="only 2 photos"):
        generate(tmp_path / "more", SynthConfig(**{**cfg.to_json(), "identities": 3}))


def test_cli_synth_check_preview(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "synth", "--out", str(out), "--identities", "1", "--views", "2",
                 "--lights", "1", "--size", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shards_written"] == 1
    assert main(["data", "check", str(out), "--json", "--pairs", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["identities"] == 1 and report["reprojection_px"]["median"] < 1
    assert main(["data", "preview", str(out), "-o", str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size == (8 * 64, 64)
    assert main(["data", "synth", "--out", str(out), "--identities", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(out), "--yaw", "forty"]) == 2


def test_preview_grid_shape(dataset):
    grid = preview_grid(dataset, identities=2, columns=4)
    assert grid.shape == (2 * 64, 4 * 64, 3)


def test_cross_identity_templates_need_shared_views(dataset, tmp_path):
    own = PairDataset(dataset, cross_identity=1.0)
    item = own[0]
    assert torch.equal(item["template"], item["target"])  # no shared views: the truth itself
    generate(tmp_path, SynthConfig(**{**CFG.to_json(), "extra": {"shared_views": True}}))
    shared = SynthDataset(tmp_path)
    assert shared.shared_views and not SynthDataset(dataset).shared_views
    np.testing.assert_array_equal(shared.pose(0, 1), shared.pose(1, 1))
    pairs = PairDataset(shared, cross_identity=0.5, seed=3)
    crossed = 0
    for idx in range(len(pairs)):
        it = pairs[idx]
        i, j = it["identity"], it["template_identity"]
        if j == i:
            assert torch.equal(it["template"], it["target"])
            assert torch.equal(it["template_flow"], it["flow"])
            continue
        crossed += 1
        tflow, tvalid = shared.cross_flow(j, it["target_view"], i, it["profile_view"])
        assert np.array_equal(it["template_flow"].numpy(), tflow)
        assert np.array_equal(it["template_valid"].numpy(), tvalid)
        expected = shared.image(j, it["target_view"], it["target_light"])
        assert np.array_equal((it["template"].permute(1, 2, 0) * 255).round().byte().numpy(),
                              expected)
    assert 0.3 < crossed / len(pairs) < 0.7
    assert [pairs[k]["template_identity"] for k in range(5)] == \
        [PairDataset(shared, cross_identity=0.5, seed=3)[k]["template_identity"]
         for k in range(5)]
    with pytest.raises(ICPortraitError, match="cross_identity must be in"):
        PairDataset(shared, cross_identity=1.5)
