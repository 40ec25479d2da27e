"""Evaluation suites, methods, scoring, the runner (resumable) and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from icportrait.cli import main
from icportrait.errors import ICPortraitError
from icportrait.evaluation import methods, scoring, suites
from icportrait.evaluation.report import markdown_table, write_report
from icportrait.evaluation.runner import run_eval, summarize

TINY = suites.SynthSuite("synth-test", 1, identities=3, views=3, lights=2,
                         pairs_per_identity=1, size=96, seed=4242)


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory, monkeypatch_module):
    cache = tmp_path_factory.mktemp("eval-cache")
    monkeypatch_module.setitem(suites.SYNTH_SUITES, TINY.name, TINY)
    monkeypatch_module.setenv("ICPORTRAIT_CACHE", str(cache))
    return suites.load_suite(TINY.name)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_synthetic_suite_has_consistent_ground_truth(tiny_suite):
    assert len(tiny_suite) == 3
    ds = suites.synth_dataset(TINY, suites.cache_dir())
    for s in tiny_suite:
        i, j = int(s.identity.split("-")[1]), int(s.template_identity.split("-")[1])
        b = s.meta["template_view"]
        assert i != j
        # shared views: the template person is posed exactly like the ground truth
        np.testing.assert_array_equal(ds.pose(i, b), ds.pose(j, b))
        assert s.truth.shape == s.template.shape == (96, 96, 3)
        assert len(s.profile) == 2 and s.valid.any() and s.face_region.any()
        # the ground-truth flow really maps truth pixels onto the profile's
        assert s.flow.shape == (2, 96, 96)
        assert np.isfinite(s.normals[s.face_region]).all()


def test_suite_is_deterministic(tiny_suite):
    again = suites.load_suite(TINY.name)
    assert [s.id for s in again] == [s.id for s in tiny_suite]
    np.testing.assert_array_equal(again[0].template, tiny_suite[0].template)


def test_real_and_folder_suites(tmp_path, astronaut, grace_hopper):
    real = suites.load_suite("real")
    assert len(real) == 4 and {s.identity for s in real} == {"astronaut", "grace_hopper"}
    assert all(s.identity != s.template_identity and not s.synthetic for s in real)
    from PIL import Image

    (tmp_path / "ann").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "ann" / "1.png")
    Image.fromarray(astronaut[:, ::-1]).save(tmp_path / "ann" / "2.png")
    Image.fromarray(grace_hopper).save(tmp_path / "bob.jpg")
    got = suites.load_suite(f"folder:{tmp_path}")
    assert {s.id for s in got} == {f"{tmp_path.name}-ann-as-bob", f"{tmp_path.name}-bob-as-ann"}
    assert len(next(s for s in got if s.identity == "ann").profile) == 2


def test_people_suites_lay_out_the_photo_sources_once(tmp_path, monkeypatch, grace_hopper):
    # The installed photo sources only: the real suites also fetch a PyPI source archive.
    people = {"astronaut": ("skimage", ("astronaut.png",)),
              "hopper": ("matplotlib", ("grace_hopper.jpg",)),
              "ann": ("skimage", ("astronaut.png", "camera.png"))}
    suite = suites.PeopleSuite("people-test", 1, ("hopper", "ann", "astronaut"))
    root = suites.people_folder(suite, tmp_path, people)
    assert root == tmp_path / "people-test-v1"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*.png")) == [
        "ann/astronaut.png", "ann/camera.png", "astronaut.png", "hopper.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["people-test-v1"]  # nothing half-made
    samples = suites.folder_samples(root)
    assert len(samples) == 6 and {len(s.profile) for s in samples if s.identity == "ann"} == {2}
    hopper = next(s for s in samples if s.template_identity == "hopper").template
    np.testing.assert_array_equal(hopper, grace_hopper)  # under MAX_SIDE: as it ships
    # Made once: a second call reads the folder and fetches nothing.
    monkeypatch.setattr("icportrait.data.photos.source_photos", pytest.fail)
    assert suites.people_folder(suite, tmp_path, people) == root
    # The named suites are the four people and the two no stage trained on.
    assert suites.PEOPLE_SUITES["people"].people == ("astronaut", "hopper", "obama", "biden")
    assert set(suites.PEOPLE_SUITES["people-heldout"].people) == {"hopper", "biden"}
    assert {"people", "people-heldout"} <= set(suites.SUITE_NAMES)


def test_a_missing_source_photo_is_named(tmp_path):
    suite = suites.PeopleSuite("people-test", 1, ("x", "y"))
    people = {"x": ("skimage", ("astronaut.png",)), "y": ("skimage", ("nobody.png",))}
    with pytest.raises(ICPortraitError, match=r"photo source skimage has no nobody\.png"):
        suites.people_folder(suite, tmp_path, people)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, message", [
    ("nope", "unknown suite"), ("folder:/does/not/exist", "not found"),
])
def test_bad_suites(name, message):
    with pytest.raises(ICPortraitError, match=message):
        suites.load_suite(name)


def test_folder_suite_needs_two_people(tmp_path, astronaut):
    from PIL import Image

    with pytest.raises(ICPortraitError, match="at least two people"):
        suites.load_suite(f"folder:{tmp_path}")
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    with pytest.raises(ICPortraitError, match="found 1"):
        suites.load_suite(f"folder:{tmp_path}")


def test_baselines(tiny_suite):
    s = tiny_suite[0]
    masked = methods.run_baseline("masked-template", s).image
    hidden = (masked == 128).all(-1) & ~(s.template == 128).all(-1)
    assert 0.7 < hidden.mean() < 0.85
    assert (methods.run_baseline("template", s).image == s.template).all()
    warped = methods.run_baseline("gt-warp", s).image.astype(int)
    # the profile's pixels where the flow is known (nearest-pixel check), the template elsewhere
    assert (warped[~s.valid] == s.template[~s.valid]).all()
    ys, xs = np.nonzero(s.valid)
    src = s.profile[0][np.rint(s.flow[1, ys, xs]).astype(int), np.rint(s.flow[0, ys, xs])
                       .astype(int)].astype(int)
    assert np.median(np.abs(warped[ys, xs] - src)) < 6
    assert np.median(np.abs(s.template[ys, xs].astype(int) - src)) > 10
    assert (methods.run_baseline("truth", s).image == s.truth).all()
    for name in ("gt-warp", "truth"):
        with pytest.raises(ICPortraitError, match="synthetic suites only"):
            methods.run_baseline(name, suites.real_samples()[0])


def test_method_names_are_checked():
    with pytest.raises(ICPortraitError, match="unknown method"):
        methods.check_methods(["icportrait", "magic"], model="m")
    with pytest.raises(ICPortraitError, match="need --model"):
        methods.check_methods(["icportrait:no-warp"], model=None)


def test_flow_scores_on_known_flows(tiny_suite):
    s = tiny_suite[0]
    cells = 24  # a 96 px image matched on a 24 x 24 latent grid (4 px per cell)
    centres = np.arange(cells) * 4 + 1.5
    ys = np.round(centres).astype(int)
    # the pipeline's flow is template -> profile: another head than the truth's
    assert s.identity != s.template_identity
    assert not np.array_equal(s.template_flow, s.flow)
    gt = torch.from_numpy(s.template_flow[:, ys][:, :, ys])
    exact = (gt + 0.5) / 4 - 0.5  # pixels -> cell units, as the model reports flows
    sure = torch.from_numpy(s.template_valid[ys][:, ys].astype(np.float32))
    perfect = scoring.flow_scores(exact, None, s, confidence=sure)
    assert perfect["flow_pck"] == 1.0 and perfect["flow_epe"] < 1e-3
    assert perfect["flow_confidence_visible"] == 1.0
    assert perfect["flow_confidence_occluded"] in (0.0, None)
    truth_flow = torch.from_numpy(s.flow[:, ys][:, :, ys])
    assert scoring.flow_scores((truth_flow + 0.5) / 4 - 0.5, None, s)["flow_epe"] > 0.1
    shifted = scoring.flow_scores(exact + 3.0, None, s)  # 12 px off: > 5% of 48 px
    assert shifted["flow_pck"] == 0.0 and shifted["flow_epe"] == pytest.approx(12 * 2**0.5,
                                                                               rel=1e-3)


def test_face_scores(astronaut, grace_hopper):
    a, g = scoring.read_face(astronaut), scoring.read_face(grace_hopper)
    same = scoring.face_scores(a, a.embedding, a, None)
    assert same["id_to_profile"] == 0 and same["yaw_error"] == 0 and same["face_detected"]
    other = scoring.face_scores(a, g.embedding, g, None)
    assert other["id_to_profile"] > 0.6 and other["id_to_truth"] is None
    assert scoring.read_face(np.full((200, 200, 3), 90, np.uint8)) is None


def test_summary_skips_missing_values():
    got = summarize({"a": {"psnr": 10.0, "face_detected": True},
                     "b": {"psnr": None, "face_detected": False}})
    assert got["psnr"] == 10.0 and got["psnr_n"] == 1 and got["face_detected"] == 0.5


def test_run_eval_resumes_and_reports(tiny_suite, tmp_path, monkeypatch, dummy_model_dir):
    out = tmp_path / "eval"
    names = ["icportrait", "icportrait:no-warp", "icportrait:zero-shot",
             "icportrait:single-ref", "icportrait:base-only", "icportrait:gt-flow",
             "template", "gt-warp", "truth"]
    res = run_eval(TINY.name, out, names, model=dummy_model_dir, steps=2, limit=2)
    assert set(res["summary"]) == set(names) and res["samples"] == 2
    # the ground-truth flow ablation runs on the true flow (scored against itself, up to
    # the latent grid's resampling)
    gt = res["summary"]["icportrait:gt-flow"]["flow_pck10"]
    assert gt > 0.7 and gt > res["summary"]["icportrait"]["flow_pck10"]
    model_row = res["summary"]["icportrait"]
    assert model_row["n"] == 2 and model_row["seconds"] > 0 and model_row["psnr"] > 0
    assert model_row["flow_pck"] is not None
    assert res["summary"]["template"]["id_to_template"] in (0.0, None)
    truth_row = res["summary"]["truth"]  # a perfect method: no error, and valid JSON
    assert truth_row["shading_error"] == 0 and truth_row["psnr"] is None
    json.loads((out / "results.json").read_text(), parse_constant=pytest.fail)
    for name in names:
        assert (out / "samples" / name / f"{tiny_suite[0].id}.png").is_file()
    assert (out / "samples" / "icportrait" / f"{tiny_suite[0].id}-flow.png").is_file()
    # a rerun reuses every finished (method, sample) pair
    done = out / "samples" / "icportrait" / f"{tiny_suite[0].id}.json"
    stamp = done.stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(methods.ModelRunner, "__call__", lambda *a: calls.append(a))
    again = run_eval(TINY.name, out, names, model=dummy_model_dir, steps=2, limit=2)
    assert not calls and done.stat().st_mtime_ns == stamp
    assert again["summary"]["icportrait"]["psnr"] == model_row["psnr"]
    page = write_report(out).read_text()
    assert "icportrait:no-warp" in page and 'src="samples/icportrait/' in page
    assert (out / "plots" / "vs-yaw-gap.png").is_file()
    assert "| icportrait |" in markdown_table(res)
    assert "refused" not in markdown_table(res)  # the column shows only when one refused


def test_a_sample_a_method_refuses_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    from icportrait.errors import FaceError
    from icportrait.evaluation import runner

    real = runner.run_baseline
    refused = "real-astronaut-as-grace_hopper"

    def swap_or_refuse(method, sample, seed=0):
        if sample.id == refused:
            raise FaceError("profile: the face mesh model found no face landmarks")
        return real(method, sample, seed)

    monkeypatch.setattr(runner, "run_baseline", swap_or_refuse)
    res = run_eval("real", tmp_path, ["classical-swap"])
    row = res["summary"]["classical-swap"]
    assert row["n"] == 4 and row["failed"] == 1 and row["face_detected"] == 0.75
    assert row["rank1"] == 0.75    # refused: not identified
    assert row["id_to_profile_n"] == 3    # distances over the three outputs
    assert "no face landmarks" in res["per_sample"]["classical-swap"][refused]["failed"]
    assert not (tmp_path / "samples" / "classical-swap" / f"{refused}.png").exists()
    head, _, cells = (line.split(" | ") for line in markdown_table(res).splitlines())
    assert cells[head.index("refused")] == "1"
    page = write_report(tmp_path).read_text()
    assert "refused: profile: the face mesh model found no face landmarks" in page
    # Resumed (now with the second judge too), the refusal stands and nothing is rerun.
    monkeypatch.setattr(runner, "run_baseline", pytest.fail)
    again = run_eval("real", tmp_path, ["classical-swap"], judges=("dlib", "sface"))
    assert again["summary"]["classical-swap"]["failed"] == 1
    assert again["summary"]["classical-swap"]["rank1_sface"] == 0.75


def test_eval_cli_errors(tmp_path, capsys):
    assert main(["eval", "--suite", "nope", "--out", str(tmp_path), "--baselines-only"]) == 2
    assert "unknown suite" in capsys.readouterr().err
    assert main(["eval", "--suite", "real", "--out", str(tmp_path),
                 "--model", str(tmp_path / "none")]) == 2
    assert "no model at" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--suite", f"folder:{tmp_path / 'empty'}", "--out", str(tmp_path),
                 "--baselines-only"]) == 2
    assert "at least two people" in capsys.readouterr().err


def test_eval_cli_real_baselines(tmp_path, capsys):
    code = main(["eval", "--suite", "real", "--out", str(tmp_path), "--baselines-only",
                 "--baselines", "classical-swap,template", "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    swap, tmpl = res["summary"]["classical-swap"], res["summary"]["template"]
    # the classical swap moves the identity toward the profile person
    assert swap["id_to_profile"] < tmpl["id_to_profile"]
    assert swap["id_to_template"] > tmpl["id_to_template"]
    assert (tmp_path / "report.html").is_file()


def test_sface_judge_tells_people_apart_and_adds_its_scores(astronaut, grace_hopper, tmp_path,
                                                           capsys):
    from icportrait.evaluation import sface

    judge = sface.judge(suites.cache_dir())
    a, mirrored, g = (judge.embed(x) for x in (astronaut, astronaut[:, ::-1], grace_hopper))
    assert a.shape == (128,) and abs(float(np.linalg.norm(a)) - 1) < 1e-5
    assert sface.distance(a, mirrored) < 0.2 < sface.SAME_PERSON_DISTANCE < sface.distance(a, g)
    assert judge.embed(np.full((200, 200, 3), 128, np.uint8)) is None   # no face
    code = main(["eval", "--suite", "real", "--out", str(tmp_path), "--baselines-only",
                 "--baselines", "classical-swap,template", "--judges", "sface", "--json"])
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    swap, tmpl = res["summary"]["classical-swap"], res["summary"]["template"]
    # the second judge agrees: the swap is nearer the profile person than the template is
    assert swap["id_to_profile_sface"] < tmpl["id_to_profile_sface"]
    assert tmpl["id_to_template_sface"] == 0 and swap["rank1_sface"] > tmpl["rank1_sface"]
    with pytest.raises(ICPortraitError, match="unknown identity judge"):
        run_eval("real", tmp_path, ["template"], judges=("dlib", "arcface"))


def test_pose_error_on_a_known_offset():
    from icportrait.faces.pose import HeadPose
    from icportrait.generation.pose_templates import render_template

    a = scoring.read_face(render_template(HeadPose(0.0, 0.0, 0.0))["rgb"])
    b = scoring.read_face(render_template(HeadPose(20.0, 0.0, 10.0))["rgb"])
    got = scoring.face_scores(b, a.embedding, a, None)
    assert got["yaw_error"] == pytest.approx(20, abs=4)
    assert got["roll_error"] == pytest.approx(10, abs=3)
    assert got["pitch_error"] < 5
    assert got["id_to_profile"] < 0.6  # the same neutral head, turned


def test_landmark_flow_scores_on_a_real_pair(astronaut, grace_hopper):
    from icportrait.models.matching import identity_flow

    same = suites.Sample("a-a", [astronaut], astronaut, "astronaut", "astronaut")
    still = identity_flow(1, 32, 32)[0]
    s = scoring.landmark_flow_scores(still, same, size=128)
    # The same photo on both sides: "no motion" (and the model's flow, here also no motion)
    # and the mesh flow put every point on itself.
    assert s["landmark_pck5"] == s["landmark_pck5_no_motion"] == 1.0
    assert s["landmark_pck5_mesh"] > 0.95
    scattered = torch.randint(0, 32, (2, 32, 32), generator=torch.Generator().manual_seed(0))
    assert scoring.landmark_flow_scores(scattered.float(), same, 128)["landmark_pck10"] < 0.2
    other = suites.Sample("a-h", [grace_hopper], astronaut, "hopper", "astronaut")
    t = scoring.landmark_flow_scores(still, other, size=128)
    assert 0.0 < t["landmark_pck5_no_motion"] < t["landmark_pck10_no_motion"] <= 1.0
    assert t["landmark_pck5_mesh"] > t["landmark_pck5_no_motion"]
    assert scoring.landmark_flow_scores(still, TINY_SAMPLE_SYNTHETIC, 128) == {}


TINY_SAMPLE_SYNTHETIC = suites.Sample("s", [np.zeros((8, 8, 3), np.uint8)],
                                      np.zeros((8, 8, 3), np.uint8), "i", "j",
                                      truth=np.zeros((8, 8, 3), np.uint8))
