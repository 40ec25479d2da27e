"""Runs of several portraits, shared by the command line, the web UI and the demo: pose and
light sweeps, and writing portraits with JSON sidecars (one file, a folder of templates,
resumable, or a list of poses with a sheet)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from icportrait.errors import ICPortraitError
from icportrait.faces.pose import HeadPose
from icportrait.generation.pictures import flow_picture, sweep_sheet
from icportrait.generation.portrait import Result, Settings, generate_portrait, make_template
from icportrait.generation.relight import Light, parse_light
from icportrait.io import PHOTO_SUFFIXES, atomic_write_text, load_image, save_image

POSE_SWEEP_YAWS = (-30.0, -15.0, 0.0, 15.0, 30.0)   # degrees, the pose sweep's views
LIGHT_SWEEP = ("left", "front", "right", "top")      # the relighting sweep's directions

Progress = Callable[[int, int, str], None]           # (done, total, what comes next)


def _noop(_done: int, _total: int, _what: str) -> None:
    pass


def sweep_poses(pitch: float = 0.0, roll: float = 0.0) -> list[HeadPose]:
    """The pose sweep's views: the yaws of ``POSE_SWEEP_YAWS`` at one pitch and roll."""
    return [HeadPose(y, pitch, roll) for y in POSE_SWEEP_YAWS]


def sweep_lights(colour: str = "white") -> list[Light]:
    return [parse_light(f"{d},{colour}") for d in LIGHT_SWEEP]


def pose_sweep(pipe, profiles: list[np.ndarray], poses: list[HeadPose], settings: Settings,
               light: Light | None = None, progress: Progress = _noop) -> list[Result]:
    """One portrait per pose, each in a rendered neutral-head template (lit by ``light``)."""
    out = []
    for k, pose in enumerate(poses):
        progress(k, len(poses), f"yaw {pose.yaw:+g}°")
        out.append(generate_portrait(pipe, profiles, make_template(None, pose, light), settings))
    return out


def light_sweep(pipe, profiles: list[np.ndarray], lights: list[Light], settings: Settings,
                photo: np.ndarray | None = None, pose: HeadPose | None = None,
                progress: Progress = _noop) -> list[Result]:
    """One portrait per light: the template photo relit (or the rendered ``pose``)."""
    out = []
    for k, light in enumerate(lights):
        progress(k, len(lights), f"light {k + 1}")
        out.append(generate_portrait(pipe, profiles, make_template(photo, pose, light),
                                     settings))
    return out


@dataclass
class PortraitRun:
    """Portraits written to disk, each with a JSON sidecar written last (so in a folder run
    the sidecar marks a template as done). ``info`` goes into every sidecar; ``say`` reports
    each file written; ``busy(name)`` returns a context manager shown while generating."""

    pipe: object
    profiles: list[np.ndarray]
    settings: Settings
    light: Light | None = None
    info: dict = field(default_factory=dict)
    say: Callable[[str], None] = print
    busy: Callable[[str], object] | None = None

    def __post_init__(self):
        self.info = {**self.info, **self.settings.to_dict(),
                     "light": None if self.light is None else self.light.to_dict()}

    def one(self, template: np.ndarray | None, output: Path, save_flow: Path | None = None,
            pose: HeadPose | None = None, extra: dict | None = None) -> Result:
        tmpl = make_template(template, pose, self.light, face=self.settings.template_face)
        with self.busy(output.name) if self.busy else contextlib.nullcontext():
            result = generate_portrait(self.pipe, self.profiles, tmpl, self.settings)
        save_image(result.image, output)
        if save_flow is not None:
            save_image(np.asarray(flow_picture(result.flow, confidence=result.confidence)),
                       save_flow)
        h, w = result.image.shape[:2]
        written = "the template photo with the portrait pasted back" if \
            self.settings.paste_back and template is not None else "the model-resolution crop"
        sidecar = {**self.info, **(extra or {}), "output": written, "output_size": [w, h],
                   "faces": result.faces, "seconds_generate": round(result.seconds, 3)}
        atomic_write_text(output.with_suffix(".json"), json.dumps(sidecar, indent=2) + "\n")
        self.say(f"wrote {output} ({result.seconds:.1f} s)")
        return result

    def folder(self, folder: Path, out: Path,
               on_error: Callable[[Path, ICPortraitError], None] | None = None) -> int:
        """One portrait per template photo in ``folder`` into folder ``out``; templates whose
        sidecar exists are skipped (resume). Returns how many failed."""
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not paths:
            raise ICPortraitError(f"{folder} has no .png/.jpg/.webp templates")
        if out.suffix:
            raise ICPortraitError(f"with a template folder, -o must be a folder, got {out}")
        failed = 0
        for path in paths:
            target = out / f"{path.stem}.png"
            if target.with_suffix(".json").is_file():
                self.say(f"skip {path.name}: {target} is done")
                continue
            try:
                self.one(load_image(path), target, extra={"template": str(path)})
            except ICPortraitError as exc:
                failed += 1
                if on_error is None:
                    raise
                on_error(path, exc)
        return failed

    def poses(self, poses: list[HeadPose], output: Path, save_flow: Path | None = None
              ) -> list[Result]:
        """One portrait per pose (``output``-NN), then the sheet at ``output``."""
        suffix = output.suffix or ".png"
        names = [f"{output.stem}-{k:02d}{suffix}" for k in range(len(poses))]
        results = [self.one(None, output.with_name(name),
                            save_flow if k == 0 else None, pose=p, extra={"pose": p.as_dict()})
                   for k, (p, name) in enumerate(zip(poses, names, strict=True))]
        save_image(sweep_sheet(results, self.pipe.resolution), output)
        atomic_write_text(output.with_suffix(".json"), json.dumps(
            {**self.info, "poses": [p.as_dict() for p in poses], "images": names,
             "seconds_generate": round(sum(r.seconds for r in results), 3)}, indent=2) + "\n")
        self.say(f"wrote {output} (grid of {len(poses)} poses: templates above, portraits below)")
        return results
