"""One portrait: make a template (a photo, optionally relit, or a rendered pose) and render
it with the profile's identity. The command line, the web UI and the demo all call this."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from icportrait.defaults import MASK_RATIO, STEPS
from icportrait.errors import ICPortraitError
from icportrait.faces.pose import HeadPose
from icportrait.generation.relight import Light


@dataclass(frozen=True)
class Settings:
    steps: int = STEPS
    strength: float | None = None     # share of the schedule run (None: the model's default)
    seed: int = 0
    mask_ratio: float = MASK_RATIO
    paste_back: bool = False
    profile_face: int | None = None   # which face of the profile photos (index, left to right)
    template_face: int | None = None  # which face of the template photo
    photo_fill: bool = False          # what the nearest profile photo hides, from the others
    mirror_fill: bool = False         # the face's hidden side from the profile's other side
    profile_tone: bool = False        # keep the profile's skin tone (docs/sampling.md)
    restore_detail: bool = True       # the warp start's face detail the autoencoder loses

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    image: np.ndarray            # H x W x 3 uint8
    flow: torch.Tensor           # (2, h, w) target -> profile, latent cells
    template: np.ndarray         # the template actually used (relit or rendered)
    seconds: float
    confidence: torch.Tensor | None = None  # (h, w) of each match, in [0, 1] or cosine
    faces: dict | None = None               # the face used in each photo (pipeline's faces)


def make_template(template: np.ndarray | None = None, pose: HeadPose | None = None,
                  light: Light | None = None, size: int = 256, face: int | None = None
                  ) -> np.ndarray:
    """The template to generate into: the photo, relit through the mesh of its face
    (``face``: by index, else the largest) when ``light`` is given; without a photo, the
    neutral synthetic head rendered in ``pose`` (default frontal) under ``light``."""
    if template is not None and pose is not None:
        raise ICPortraitError("give a template photo or a pose, not both")
    if template is not None:
        if light is None:
            return template
        from icportrait.generation.relight import relight_photo

        return relight_photo(template, light, face)
    from icportrait.generation.pose_templates import render_template

    return render_template(pose or HeadPose(0.0, 0.0, 0.0), light, size)["rgb"]


def generate_portrait(pipe, profiles: list[np.ndarray], template: np.ndarray,
                      settings: Settings = Settings()) -> Result:
    """One portrait: ``template`` re-rendered with the identity of ``profiles``."""
    t0 = time.perf_counter()
    out = pipe(profiles, template, num_inference_steps=settings.steps,
               strength=settings.strength, mask_ratio=settings.mask_ratio, align_faces=True,
               profile_face=settings.profile_face, template_face=settings.template_face,
               paste_back=settings.paste_back, photo_fill=settings.photo_fill,
               mirror_fill=settings.mirror_fill,
               profile_tone=settings.profile_tone, restore_detail=settings.restore_detail,
               output_type="np",
               generator=torch.Generator(pipe.device).manual_seed(settings.seed))
    image = (np.asarray(out.images[0]) * 255 + 0.5).clip(0, 255).astype(np.uint8)
    return Result(image, out.flow[0].cpu(), template, time.perf_counter() - t0,
                  confidence_of(pipe, out), out.faces)


def confidence_of(pipe, out) -> torch.Tensor | None:
    """The first portrait's match confidence when the matching net gives one (a descriptor
    net's softmax peak); the paper's variant's cosine score is not a confidence."""
    if out.flow_score is None or not pipe.matching_net.has_descriptor:
        return None
    return out.flow_score[0].cpu()
