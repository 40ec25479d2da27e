"""`icportrait generate` and `icportrait relight`: thin callers of icportrait.generation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from icportrait import __version__
from icportrait.cli.common import (
    Device,
    Dtype,
    MaskRatio,
    Model,
    Seed,
    command_line,
    fail,
    progress_bar,
)
from icportrait.defaults import MASK_RATIO, STEPS, check_strength
from icportrait.errors import ICPortraitError


def generate(
    profile: Annotated[list[Path], typer.Option(help="Photo(s) of the person.")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Image to write (.png/.jpg); a folder when --template is one.")],
    template: Annotated[Path | None, typer.Option(
        help="Portrait fixing pose, framing and light, or a folder of them (batch, resumable).")
    ] = None,
    pose: Annotated[str | None, typer.Option(
        help="No template photo: render one in this pose, e.g. yaw=30,pitch=-10,roll=0.")
    ] = None,
    poses: Annotated[str | None, typer.Option(
        help="Several poses: 'yaw=-30;yaw=0;yaw=30' or a sweep yaw=-40:40:5 (also a grid).")
    ] = None,
    light: Annotated[str | None, typer.Option(
        help="Relight the template: left|right|top|bottom|front|AZ:EL[,colour[,intensity]] "
             "or sh:c0,...,c8.")] = None,
    model: Model = None,
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = STEPS,
    strength: Annotated[float | None, typer.Option(
        help="Share of the denoising schedule to run, in (0, 1]: 1 starts from noise (the "
             "paper); below 1 from the profile warped onto the template (default: the "
             "model's own).")] = None,
    seed: Seed = 0,
    mask_ratio: MaskRatio = MASK_RATIO,
    paste_back: Annotated[bool | None, typer.Option(
        "--paste-back/--crop",
        help="With a template photo, the portrait is pasted back into it at its own size "
             "(default); --crop writes the model-resolution face crop instead.")] = None,
    profile_face: Annotated[int | None, typer.Option(
        help="Which face of the profile photo(s), by index left to right as `faces inspect` "
             "lists them (default: the largest, unless another is nearly as large).")
    ] = None,
    template_face: Annotated[int | None, typer.Option(
        help="Which face of the template photo(s), by index (default: the largest).")
    ] = None,
    photo_fill: Annotated[bool, typer.Option(
        help="With several profile photos: fill what the one nearest the template's pose does "
             "not show (a turned head's far side) from the others, instead of the template's "
             "face.")] = False,
    mirror_fill: Annotated[bool, typer.Option(
        help="Fill the side of the face the profile photos do not show (a turned head) from "
             "the mirror image of its other side, instead of the template's face.")] = False,
    profile_tone: Annotated[bool, typer.Option(
        help="Keep the profile's skin tone (its mean colour, with the photo's light colour) "
             "instead of the template's; only the face is toned.")] = False,
    restore_detail: Annotated[bool, typer.Option(
        help="Add back the warped profile's face detail that the autoencoder blurs "
             "(--no-restore-detail: the decoder's output as it is).")] = True,
    save_flow: Annotated[
        Path | None, typer.Option(help="Also write the matching flow picture here.")
    ] = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Render the template (a photo, a folder of photos, or a pose) with the profile's identity."""
    from icportrait.generation import PortraitRun, Settings
    from icportrait.generation.pose_templates import parse_pose, parse_poses
    from icportrait.generation.relight import parse_light
    from icportrait.io import load_image
    from icportrait.store import default_model_path, load_pipeline

    if sum(x is not None for x in (template, pose, poses)) != 1:
        raise ICPortraitError("give exactly one of --template, --pose or --poses")
    if template is not None and not template.exists():
        raise ICPortraitError(f"template not found: {template}")
    batch = template is not None and template.is_dir()
    if batch and save_flow is not None:
        raise ICPortraitError("--save-flow takes one file: not with a template folder")
    if paste_back and template is None:
        raise ICPortraitError("--paste-back needs a template photo")
    if paste_back is None:  # a photo's portrait comes back at the photo's size
        paste_back = template is not None
    # Parse everything before the slow model load, so a typo fails at once.
    the_light = parse_light(light) if light else None
    the_poses = [parse_pose(pose)] if pose else parse_poses(poses) if poses else None
    profiles = [load_image(p) for p in profile]
    if template_face is not None and template is None:
        raise ICPortraitError("--template-face chooses a face of a template photo: give "
                              "--template")
    if strength is not None:
        check_strength(strength, "--strength")
    settings = Settings(steps=steps, strength=strength, seed=seed, mask_ratio=mask_ratio,
                        paste_back=paste_back, profile_face=profile_face,
                        template_face=template_face, photo_fill=photo_fill,
                        mirror_fill=mirror_fill,
                        profile_tone=profile_tone, restore_detail=restore_detail)
    t0 = time.perf_counter()
    pipe = load_pipeline(model, device, dtype)
    info = {"profile": [str(p) for p in profile], "model": str(model or default_model_path()),
            "device": str(pipe.device), "dtype": str(pipe.unet.dtype).removeprefix("torch."),
            "seconds_load": round(time.perf_counter() - t0, 3), "icportrait": __version__,
            "command": command_line()}
    run = PortraitRun(pipe, profiles, settings, the_light, info, say=print, busy=_spinner)
    if batch:
        if run.folder(template, output, on_error=lambda p, e: fail(f"error: {p}: {e}")):
            raise typer.Exit(1)
    elif poses is not None:
        run.poses(the_poses, output, save_flow)
    elif pose is not None:
        run.one(None, output, save_flow, pose=the_poses[0],
                extra={"pose": the_poses[0].as_dict()})
    else:
        run.one(load_image(template), output, save_flow, extra={"template": str(template)})


def _spinner(name: str):
    bar = progress_bar(disable=False)
    bar.add_task(f"generating {name}", total=None)
    return bar


def relight(
    image: Annotated[Path, typer.Option(help="Portrait to relight (e.g. a generated one).")],
    light: Annotated[str, typer.Option(
        help="left|right|top|bottom|front|AZ:EL[,colour[,intensity]] or sh:c0,...,c8.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image to write.")],
    face: Annotated[int | None, typer.Option(
        help="Which face, by index left to right as `faces inspect` lists them (default: "
             "the largest).")] = None,
) -> None:
    """Relight a portrait through its 3D face surface (the face mesh's normals)."""
    from icportrait.generation.relight import parse_light, relight_photo
    from icportrait.io import load_image, save_image

    the_light = parse_light(light)
    t0 = time.perf_counter()
    save_image(relight_photo(load_image(image), the_light, face), output)
    print(f"wrote {output} ({time.perf_counter() - t0:.1f} s)")
