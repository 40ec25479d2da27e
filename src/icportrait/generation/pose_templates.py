"""Templates without a photo: a neutral synthetic head rendered in any pose and light.

``--pose yaw=30,pitch=-10,roll=0`` (degrees; missing angles are 0) and ``--poses`` for a set:
``;``-separated poses (``yaw=-30;yaw=0;yaw=30``) or a sweep ``ANGLE=START:STOP:COUNT``
(``yaw=-40:40:5``). Angles follow the face toolkit's convention (as the viewer sees the
image): yaw > 0 when the nose turns toward the image's right, pitch > 0 when the person looks
up, roll > 0 when the head turns counter-clockwise. Angles are the renderer's; the face
toolkit reads these renders back within about 2.5° of yaw, with its known pitch offset of
about +8° (see the README's pose notes).
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from icportrait.errors import ICPortraitError
from icportrait.faces.pose import HeadPose
from icportrait.generation.relight import Light

LIMITS = {"yaw": 75.0, "pitch": 40.0, "roll": 45.0}
MAX_POSES = 64


def parse_pose(text: str) -> HeadPose:
    values = {"yaw": 0.0, "pitch": 0.0, "roll": 0.0}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in values:
            raise ICPortraitError(f"--pose {text!r}: expected yaw=DEG,pitch=DEG,roll=DEG, "
                                  f"got {part!r}")
        try:
            values[key] = float(value)
        except ValueError:
            raise ICPortraitError(f"--pose {text!r}: {key} must be a number of degrees, got "
                                  f"{value!r}") from None
    if not text.strip():
        raise ICPortraitError("--pose is empty; e.g. yaw=30,pitch=-10,roll=0")
    for key, limit in LIMITS.items():
        if abs(values[key]) > limit:
            raise ICPortraitError(f"--pose {text!r}: |{key}| must be at most {limit:g}°")
    return HeadPose(values["yaw"], values["pitch"], values["roll"])


def parse_poses(text: str) -> list[HeadPose]:
    """``;``-separated poses, or one sweep ``ANGLE=START:STOP:COUNT`` (other angles may follow
    as fixed values: ``yaw=-40:40:5,pitch=10``)."""
    sweep = re.search(r"(yaw|pitch|roll)=(-?[\d.]+):(-?[\d.]+):(\d+)", text)
    if sweep:
        key, lo, hi, count = sweep.group(1), float(sweep.group(2)), float(sweep.group(3)), \
            int(sweep.group(4))
        if not 1 <= count <= MAX_POSES:
            raise ICPortraitError(f"--poses {text!r}: COUNT must be in [1, {MAX_POSES}]")
        rest = (text[:sweep.start()] + text[sweep.end():]).strip(",")
        return [parse_pose(f"{key}={v:g}" + (f",{rest}" if rest else ""))
                for v in np.linspace(lo, hi, count)]
    poses = [parse_pose(p) for p in text.split(";") if p.strip()]
    if not poses:
        raise ICPortraitError("--poses is empty; e.g. 'yaw=-30;yaw=0;yaw=30' or yaw=-40:40:5")
    if len(poses) > MAX_POSES:
        raise ICPortraitError(f"--poses: at most {MAX_POSES} poses")
    return poses


@lru_cache(maxsize=1)
def neutral_head():
    """The data engine's head at its default (average) parameters."""
    from icportrait.synth.head import HeadParams, build_head

    return build_head(HeadParams())


def render_template(pose: HeadPose, light: Light | None = None, size: int = 256) -> dict:
    """The neutral head in ``pose`` under ``light`` (default: a soft frontal key light),
    framed like the face toolkit's aligned crops. Returns the renderer's maps (``rgb``,
    ``normals``, ``alpha``, ...)."""
    from icportrait.faces.pose import pose_to_matrix
    from icportrait.synth.raster import Camera, Lighting, render

    light = light or Light()
    if light.sh is not None:
        sh = np.repeat(np.asarray(light.sh, np.float32)[:, None], 3, 1)
        lighting = Lighting(ambient=(0.0, 0.0, 0.0), directions=(), colors=(), sh=sh)
    else:
        col = tuple(float(c * light.intensity) for c in light.colour)
        lighting = Lighting(ambient=(0.22, 0.22, 0.24), directions=(light.direction,),
                            colors=(col,))
    return render(neutral_head(), pose_to_matrix(pose), size, Camera(), lighting)
