"""The `icportrait` command, run in-process and (once) as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from icportrait.cli import main


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut, grace_hopper):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut).save(d / "astronaut.png")
    Image.fromarray(grace_hopper).save(d / "grace.jpg", quality=92)
    Image.fromarray(np.full((128, 128, 3), 180, np.uint8)).save(d / "wall.png")
    (d / "notes.jpg").write_text("not a picture")
    (d / "empty.png").write_bytes(b"")
    return d


@pytest.mark.parametrize(
    "argv", [["--help"], ["faces", "--help"], ["faces", "inspect", "--help"], ["demo", "--help"]]
)
def test_help_on_every_command(argv, capsys):
    assert main(argv) == 0
    assert "Usage" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["nosuchcmd"], ["faces", "inspect", "x.png", "--size", "a"]])
def test_usage_errors_exit_2_without_traceback(argv, capsys):
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_multi_value_options_are_expanded():
    from icportrait.cli import expand_multi_value

    argv = ["generate", "--profile", "a.jpg", "b.jpg", "--template", "t.jpg", "-o", "o.png"]
    assert expand_multi_value(argv) == ["generate", "--profile", "a.jpg", "--profile", "b.jpg",
                                        "--template", "t.jpg", "-o", "o.png"]


def test_inspect_rejects_bad_crop_settings(photos, capsys):
    assert main(["faces", "inspect", str(photos / "grace.jpg"), "--out", "x",
                 "--margin", "10"]) == 2
    assert "--margin must be in" in capsys.readouterr().err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("icportrait 0.")


def test_inspect_json(photos, capsys):
    code = main(["faces", "inspect", str(photos / "astronaut.png"), str(photos / "grace.jpg"),
                 "--json"])
    out = capsys.readouterr().out
    assert code == 0
    reports = json.loads(out)
    assert [len(r["faces"]) for r in reports] == [1, 1]
    face = reports[0]["faces"][0]
    assert face["landmarks"] == 478 and face["score"] > 0.8
    assert set(face["pose"]) == {"yaw", "pitch", "roll"}
    assert len(face["box"]) == 4


def test_inspect_writes_annotated_and_aligned(photos, tmp_path, capsys):
    code = main(["faces", "inspect", str(photos / "grace.jpg"), "--out", str(tmp_path),
                 "--size", "128"])
    assert code == 0
    assert "1 face(s)" in capsys.readouterr().out
    aligned = Image.open(tmp_path / "grace_aligned.png")
    assert aligned.size == (128, 128)
    assert Image.open(tmp_path / "grace_annotated.png").size == (512, 600)


def test_inspect_bad_inputs_continue_and_fail(photos, capsys):
    files = ["wall.png", "notes.jpg", "empty.png", "missing.png", "astronaut.png"]
    code = main(["faces", "inspect", *[str(photos / f) for f in files], "--json"])
    captured = capsys.readouterr()
    assert code == 1
    reports = {r["image"].rsplit("/", 1)[-1]: r for r in json.loads(captured.out)}
    assert reports["wall.png"]["error"] == "no face found"
    assert "not a supported image" in reports["notes.jpg"]["error"]
    assert "empty" in reports["empty.png"]["error"]
    assert "not found" in reports["missing.png"]["error"]
    assert "error" not in reports["astronaut.png"]
    # One line per failed image on stderr, no traceback.
    lines = captured.err.strip().splitlines()
    assert len(lines) == 4 and "Traceback" not in captured.err


def test_inspect_single_rejects_group_photo(tmp_path, astronaut, grace_hopper, capsys):
    group = np.hstack([astronaut, grace_hopper[:512]])
    Image.fromarray(group).save(tmp_path / "group.png")
    assert main(["faces", "inspect", str(tmp_path / "group.png"), "--single"]) == 1
    assert "2 faces found" in capsys.readouterr().err


def test_unknown_detector_is_one_line(photos, capsys):
    assert main(["faces", "inspect", str(photos / "astronaut.png"), "--detector", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown detector") and err.count("\n") == 1


def test_demo_writes_a_report(tmp_path, capsys, monkeypatch, dummy_model_dir):
    monkeypatch.setenv("ICPORTRAIT_MODEL", str(dummy_model_dir))  # fast stand-in model
    assert main(["demo", "--out", str(tmp_path), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    html = (tmp_path / "report.html").read_text()
    for sample in results["samples"]:
        assert len(sample["faces"]) == 1
        for name in sample["files"].values():
            assert (tmp_path / name).stat().st_size > 1000
            assert f"src='{name}'" in html
    verdicts = {(r["a"], r["b"]): r["same_person"] for r in results["identity"]}
    assert verdicts[("astronaut", "astronaut (mirrored)")] is True
    assert verdicts[("astronaut", "grace_hopper")] is False
    gen = results["generation"]
    assert gen["model"] == str(dummy_model_dir) and len(gen["pose_sweep"]["poses"]) == 5
    for name in ("portrait.png", "portrait_pasted.png", "flow.png", "pose_sweep.png",
                 "light_templates.png", "light_sweep.png", "summary.png"):
        assert (tmp_path / name).stat().st_size > 500 and f"src='{name}'" in html
    assert gen["identity"]["profile_to_template"] > 0.6
    assert "finished in" in html


def test_demo_without_a_model_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ICPORTRAIT_MODEL", str(tmp_path / "none"))
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert "no model at" in capsys.readouterr().err


def test_console_script_runs(photos):
    exe = [sys.executable, "-m", "icportrait", "faces", "inspect", str(photos / "wall.png")]
    proc = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    # Exactly one line: mediapipe's native start-up logging must not bury it.
    assert proc.stderr.strip().splitlines() == [f"{photos / 'wall.png'}: no face found"]


def test_generate_with_a_model_folder(photos, tmp_path, capsys, dummy_model_dir):
    out = tmp_path / "out" / "portrait.png"
    code = main(["generate", "--profile", str(photos / "astronaut.png"),
                 str(photos / "astronaut.png"),  # two references, DESIGN's syntax
                 "--template", str(photos / "grace.jpg"), "-o", str(out),
                 "--model", str(dummy_model_dir), "--steps", "2",
                 "--save-flow", str(tmp_path / "flow.png")])
    assert code == 0
    grace = Image.open(photos / "grace.jpg").size
    assert Image.open(out).size == grace  # pasted back into the template photo by default
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["steps"] == 2 and sidecar["seed"] == 0 and sidecar["seconds_generate"] > 0
    assert sidecar["paste_back"] and sidecar["output_size"] == list(grace)
    assert sidecar["output"] == "the template photo with the portrait pasted back"
    assert Image.open(tmp_path / "flow.png").size == (512, 256)
    crop = tmp_path / "out" / "crop.png"
    assert main(["generate", "--profile", str(photos / "astronaut.png"), "--template",
                 str(photos / "grace.jpg"), "-o", str(crop), "--model", str(dummy_model_dir),
                 "--steps", "1", "--crop", "--photo-fill", "--mirror-fill", "--profile-tone",
                 "--no-restore-detail"]) == 0
    assert Image.open(crop).size == (32, 32)  # the model's resolution
    sidecar = json.loads(crop.with_suffix(".json").read_text())
    assert not sidecar["paste_back"] and sidecar["output"] == "the model-resolution crop"
    assert sidecar["mirror_fill"] and sidecar["profile_tone"] and not sidecar["restore_detail"]
    assert sidecar["photo_fill"]
    first = json.loads(out.with_suffix(".json").read_text())
    assert not first["mirror_fill"] and not first["photo_fill"] and first["restore_detail"]
    code = main(["generate", "--profile", str(photos / "astronaut.png"), "--template",
                 str(photos / "grace.jpg"), "-o", str(out), "--model", str(tmp_path / "none")])
    assert code == 2
    assert "no model at" in capsys.readouterr().err
    code = main(["generate", "--profile", str(photos / "wall.png"), "--template",
                 str(photos / "grace.jpg"), "-o", str(tmp_path / "x.png"),
                 "--model", str(dummy_model_dir), "--steps", "2"])
    assert code == 2 and "no face found" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_generate_chooses_faces_of_group_photos(tmp_path, astronaut, grace_hopper, capsys,
                                                dummy_model_dir):
    # Two faces of similar size: a profile must say which one; a template takes the largest.
    pair = np.hstack([astronaut, astronaut[:, ::-1]])
    Image.fromarray(pair).save(tmp_path / "pair.png")
    group = np.hstack([grace_hopper[:512], astronaut])
    Image.fromarray(group).save(tmp_path / "group.png")
    common = ["--model", str(dummy_model_dir), "--steps", "1"]
    out = tmp_path / "a.png"
    code = main(["generate", "--profile", str(tmp_path / "pair.png"), "--template",
                 str(tmp_path / "group.png"), "-o", str(out), *common])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0 and not out.exists()
    assert "profile: 2 faces of similar size" in err and "--profile-face N" in err
    code = main(["generate", "--profile", str(tmp_path / "pair.png"), "--profile-face", "1",
                 "--template", str(tmp_path / "group.png"), "--template-face", "1", "-o",
                 str(out), *common])
    assert code == 0
    faces = json.loads(out.with_suffix(".json").read_text())["faces"]
    assert [f["index"] for f in faces["profile"]] == [1] and faces["profile"][0]["of"] == 2
    assert faces["template"][0]["index"] == 1 and faces["template"][0]["box"][0] > 512
    code = main(["generate", "--profile", str(tmp_path / "pair.png"), "--profile-face", "5",
                 "--template", str(tmp_path / "group.png"), "-o", str(tmp_path / "b.png"),
                 *common])
    assert code == 2 and "face 5 was asked for but 2 face(s)" in capsys.readouterr().err
    assert not (tmp_path / "b.png").exists()
    # relight: the face by index too
    assert main(["relight", "--image", str(tmp_path / "group.png"), "--light", "left",
                 "--face", "3", "-o", str(tmp_path / "c.png")]) == 2
    assert "face 3 was asked for" in capsys.readouterr().err
    assert main(["faces", "inspect", str(tmp_path / "group.png")]) == 0
    listed = capsys.readouterr().out
    assert "[0]" in listed and "[1]" in listed and "left to right" in listed
