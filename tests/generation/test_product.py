"""Pose templates, relighting, and `icportrait generate` / `relight` on a tiny random model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from icportrait.cli import main
from icportrait.errors import ICPortraitError
from icportrait.faces.pose import HeadPose
from icportrait.generation.pose_templates import parse_pose, parse_poses, render_template
from icportrait.generation.relight import (
    Light,
    direction_from_angles,
    parse_light,
    relight,
    shading,
)


def sphere(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals of a sphere facing the camera (camera axes: x right, y down, z away)."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    x, y = np.meshgrid(c, c)
    inside = x**2 + y**2 < 0.95
    z = -np.sqrt(np.clip(1 - x**2 - y**2, 0, None))
    n = np.stack([x, y, z], -1)
    n[~inside] = np.nan
    return n, inside


# ------------------------------------------------------------------ parsing
def test_parse_pose():
    assert parse_pose("yaw=30,pitch=-10,roll=0") == HeadPose(30.0, -10.0, 0.0)
    assert parse_pose("pitch=5") == HeadPose(0.0, 5.0, 0.0)
    assert parse_pose(" Yaw = -20 ") == HeadPose(-20.0, 0.0, 0.0)


@pytest.mark.parametrize("text, message", [
    ("yaw=abc", "must be a number"), ("tilt=3", "expected yaw="), ("yaw30", "expected yaw="),
    ("yaw=100", "at most 75"), ("", "empty"),
])
def test_parse_pose_errors(text, message):
    with pytest.raises(ICPortraitError, match=message):
        parse_pose(text)


def test_parse_poses():
    assert [p.yaw for p in parse_poses("yaw=-40:40:5")] == [-40, -20, 0, 20, 40]
    sweep = parse_poses("yaw=-10:10:3,pitch=5")
    assert [p.pitch for p in sweep] == [5, 5, 5] and sweep[-1].yaw == 10
    assert parse_poses("yaw=-30;yaw=0;pitch=10")[2] == HeadPose(0.0, 10.0, 0.0)
    with pytest.raises(ICPortraitError, match="COUNT"):
        parse_poses("yaw=-40:40:0")


def test_parse_light():
    left = parse_light("left")
    assert left.direction[0] < -0.5 and left.direction[2] < 0  # image-left, toward the camera
    warm = parse_light("30:20,#ff8000,1.5")
    assert warm.colour == (1.0, 128 / 255, 0.0) and warm.intensity == 1.5
    np.testing.assert_allclose(warm.direction, direction_from_angles(30, 20))
    assert parse_light("sh:1,0,0,0,0,0,0,0,0").sh[0] == 1.0
    for bad, message in [("sideways", "unknown direction"), ("left,purple", "colour"),
                         ("left,white,-1", "intensity"), ("sh:1,2", "9 SH"),
                         ("400:0", "azimuth")]:
        with pytest.raises(ICPortraitError, match=message):
            parse_light(bad)


# ------------------------------------------------------------------ shading and relighting
def test_shading_on_a_sphere_is_lambertian():
    n, inside = sphere()
    d = np.array(direction_from_angles(40, 25))
    s = shading(n, Light(tuple(d), (1.0, 0.5, 0.25), 2.0))
    expected = (0.25 + 0.75 * np.clip(n @ d, 0, None))[..., None] * [2.0, 1.0, 0.5]
    np.testing.assert_allclose(s[inside], expected[inside], atol=1e-9)
    # the brightest point is the one facing the light
    peak = np.unravel_index(np.nanargmax(s[..., 0]), inside.shape)
    np.testing.assert_allclose(n[peak], d, atol=0.03)
    assert np.isnan(s[~inside]).all()


def test_relight_moves_the_light_on_a_sphere():
    from icportrait.colour import linear_to_srgb
    from icportrait.evaluation.image_metrics import shading_direction

    n, inside = sphere()
    albedo = np.array([0.6, 0.45, 0.35])
    lit_left = linear_to_srgb(np.nan_to_num(shading(n, parse_light("left"))) * albedo * 0.8)
    target = parse_light("right")
    out = relight(lit_left, target, n, inside)
    assert out.shape == lit_left.shape and out.dtype == np.uint8
    # the sphere as if it had been lit from the right in the first place
    ideal = linear_to_srgb(np.nan_to_num(shading(n, target)) * albedo * 0.8)
    assert np.abs(out.astype(float) - ideal)[inside].mean() < 2
    got = shading_direction(out, n, inside & (n @ np.array(target.direction) > 0.2))
    angle = np.degrees(np.arccos(np.clip(got @ np.array(target.direction), -1, 1)))
    assert angle < 3
    xs = np.arange(128)[None].repeat(128, 0)
    lum = out.astype(float).mean(-1)
    assert lum[inside & (xs > 64)].mean() > lum[inside & (xs < 64)].mean() + 20
    # outside the surface nothing changes
    assert (out[~inside] == lit_left[~inside]).all()


def test_relight_photo_brightens_the_lit_side(astronaut):
    from icportrait.generation.relight import photo_normals, relight_photo

    normals, mask = photo_normals(astronaut)
    assert mask.sum() > 5000 and np.isfinite(normals[mask]).all()
    # normals face the camera
    assert (normals[mask][:, 2] < 0).mean() > 0.99
    xs = np.nonzero(mask)[1]
    left_side = mask & (np.arange(astronaut.shape[1])[None] < xs.mean())
    for name, sign in (("left", 1), ("right", -1)):
        lum = relight_photo(astronaut, parse_light(name)).astype(float).mean(-1)
        diff = lum[left_side].mean() - lum[mask & ~left_side].mean()
        assert sign * diff > 20, (name, diff)


def test_relight_errors():
    n, inside = sphere(64)
    with pytest.raises(ICPortraitError, match="same size"):
        relight(np.zeros((32, 32, 3), np.uint8), Light(), n, inside)
    with pytest.raises(ICPortraitError, match="too few pixels"):
        relight(np.zeros((64, 64, 3), np.uint8), Light(), n, np.zeros_like(inside))


def test_pose_template_is_read_back_by_the_face_toolkit():
    from icportrait.faces import detect_faces, face_mesh, head_pose, select_face

    for yaw in (-30, 30):
        img = render_template(HeadPose(float(yaw), 0.0, 0.0), parse_light("front"))["rgb"]
        est = head_pose(face_mesh(img, select_face(detect_faces(img))), img.shape)
        assert abs(est.yaw - yaw) < 6


# ------------------------------------------------------------------ the commands
@pytest.fixture(scope="module")
def dummy_model(dummy_model_dir):
    return dummy_model_dir


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut, grace_hopper):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut).save(d / "astronaut.png")
    Image.fromarray(grace_hopper).save(d / "grace.jpg", quality=92)
    return d


def test_generate_poses_and_light(dummy_model, photos, tmp_path, capsys):
    out = tmp_path / "sweep.png"
    code = main(["generate", "--profile", str(photos / "astronaut.png"), "--poses",
                 "yaw=-30:30:3", "--light", "left,warm", "-o", str(out), "--model",
                 str(dummy_model), "--steps", "2"])
    assert code == 0
    for k in range(3):
        side = json.loads((tmp_path / f"sweep-{k:02d}.json").read_text())
        assert side["pose"]["yaw"] == [-30, 0, 30][k] and side["light"]["colour"][2] < 1
        assert Image.open(tmp_path / f"sweep-{k:02d}.png").size == (32, 32)
    w, h = Image.open(out).size
    assert w > 3 * 32 and h > 2 * 32  # templates above, portraits below
    assert len(json.loads(out.with_suffix(".json").read_text())["images"]) == 3
    code = main(["generate", "--profile", str(photos / "astronaut.png"), "--pose", "yaw=20",
                 "-o", str(tmp_path / "one.png"), "--model", str(dummy_model), "--steps", "2",
                 "--save-flow", str(tmp_path / "flow.png")])
    assert code == 0 and (tmp_path / "flow.png").is_file()


def test_generate_batch_resumes(dummy_model, photos, tmp_path, capsys, astronaut):
    templates = tmp_path / "templates"
    templates.mkdir()
    Image.fromarray(astronaut).save(templates / "a.png")
    Image.fromarray(astronaut[:, ::-1]).save(templates / "b.png")
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(templates / "wall.png")
    out = tmp_path / "out"
    argv = ["generate", "--profile", str(photos / "grace.jpg"), "--template", str(templates),
            "-o", str(out), "--model", str(dummy_model), "--steps", "2"]
    assert main(argv) == 1  # the wall has no face: reported, the others are written
    err = capsys.readouterr().err
    assert "wall.png" in err and "no face" in err
    assert {p.name for p in out.iterdir()} == {"a.png", "a.json", "b.png", "b.json"}
    stamp = (out / "a.png").stat().st_mtime_ns
    (templates / "wall.png").unlink()
    assert main(argv) == 0
    assert (out / "a.png").stat().st_mtime_ns == stamp
    assert capsys.readouterr().out.count("skip") == 2


@pytest.mark.parametrize("extra, message", [
    ([], "exactly one of"),
    (["--pose", "yaw=1000"], "at most 75"),
    (["--pose", "yaw=10", "--light", "sideways"], "unknown direction"),
    (["--template", "/no/such.png"], "template not found"),
    (["--pose", "yaw=10", "--paste-back"], "needs a template photo"),
])
def test_generate_usage_errors(extra, message, photos, tmp_path, capsys, dummy_model):
    out = tmp_path / "x.png"
    code = main(["generate", "--profile", str(photos / "astronaut.png"), "-o", str(out),
                 "--model", str(dummy_model), *extra])
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_relight_command(photos, tmp_path, capsys):
    out = tmp_path / "relit.png"
    assert main(["relight", "--image", str(photos / "astronaut.png"), "--light", "right",
                 "-o", str(out)]) == 0
    assert Image.open(out).size == Image.open(photos / "astronaut.png").size
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(blank)
    assert main(["relight", "--image", str(blank), "--light", "right", "-o", str(out)]) == 2
    assert "no face" in capsys.readouterr().err
