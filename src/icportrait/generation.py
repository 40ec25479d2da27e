"""What the command line, the demo and the web UI share: load a model, make a template (a
photo, optionally relit, or a rendered pose), generate, and lay results out in a grid."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from icportrait.errors import ICPortraitError, ModelFilesError
from icportrait.faces.pose import HeadPose
from icportrait.relight import Light

EMBEDDED_MODEL = Path(__file__).resolve().parents[2] / "weights" / "tiny"


def default_model_path() -> Path:
    """$ICPORTRAIT_MODEL, else the embedded model next to the source tree (weights/tiny)."""
    env = os.environ.get("ICPORTRAIT_MODEL")
    return Path(env) if env else EMBEDDED_MODEL


def load_pipeline(model: Path | None = None, device: str = "auto", dtype: str = "auto"):
    """The pipeline in folder ``model`` (default: the embedded tiny model), on ``device``
    (auto: CUDA when available), in fp16 on CUDA and fp32 on CPU unless ``dtype`` says."""
    from icportrait.pipelines import ICPortraitPipeline

    model = Path(model) if model else default_model_path()
    if not (model / "model_index.json").is_file():
        hint = " (the embedded model is missing from this install; pass --model DIR)" \
            if model == EMBEDDED_MODEL else ""
        raise ModelFilesError(f"no model at {model}{hint}")
    if device not in ("auto", "cpu", "cuda") or dtype not in ("auto", "fp32", "fp16"):
        raise ICPortraitError("device must be auto, cpu or cuda; dtype auto, fp32 or fp16")
    use = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if use == "cuda" and not torch.cuda.is_available():
        raise ICPortraitError("device cuda: no CUDA device is available")
    half = dtype == "fp16" or (dtype == "auto" and use == "cuda")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # our commands show their own progress
    pipe = ICPortraitPipeline.from_pretrained(
        model, dtype=torch.float16 if half else torch.float32).to(use)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass(frozen=True)
class Settings:
    steps: int = 30
    seed: int = 0
    mask_ratio: float = 0.8
    paste_back: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    image: np.ndarray            # H x W x 3 uint8
    flow: torch.Tensor           # (2, h, w) target -> profile, latent cells
    template: np.ndarray         # the template actually used (relit or rendered)
    seconds: float


def make_template(template: np.ndarray | None = None, pose: HeadPose | None = None,
                  light: Light | None = None, size: int = 256) -> np.ndarray:
    """The template to generate into: the photo, relit through its face mesh when ``light``
    is given; without a photo, the neutral synthetic head rendered in ``pose`` (default
    frontal) under ``light``."""
    if template is not None and pose is not None:
        raise ICPortraitError("give a template photo or a pose, not both")
    if template is not None:
        if light is None:
            return template
        from icportrait.relight import relight_photo

        return relight_photo(template, light)
    from icportrait.pose_templates import render_template

    return render_template(pose or HeadPose(0.0, 0.0, 0.0), light, size)["rgb"]


def generate_portrait(pipe, profiles: list[np.ndarray], template: np.ndarray,
                      settings: Settings = Settings()) -> Result:
    """One portrait: ``template`` re-rendered with the identity of ``profiles``."""
    t0 = time.perf_counter()
    out = pipe(profiles, template, num_inference_steps=settings.steps,
               mask_ratio=settings.mask_ratio, align_faces=True,
               paste_back=settings.paste_back, output_type="np",
               generator=torch.Generator(pipe.device).manual_seed(settings.seed))
    image = (np.asarray(out.images[0]) * 255 + 0.5).clip(0, 255).astype(np.uint8)
    return Result(image, out.flow[0].cpu(), template, time.perf_counter() - t0)


def grid(images: list[np.ndarray], cols: int | None = None, size: int | None = None,
         pad: int = 4) -> np.ndarray:
    """Images side by side (``cols`` per row), each resized to ``size`` x ``size`` (default:
    the first image's height), on a white background."""
    import cv2

    if not images:
        raise ICPortraitError("nothing to lay out")
    size = size or images[0].shape[0]
    cols = cols or len(images)
    rows = -(-len(images) // cols)
    out = np.full((rows * (size + pad) + pad, cols * (size + pad) + pad, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        tile = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA
                          if im.shape[0] > size else cv2.INTER_CUBIC)
        y, x = pad + r * (size + pad), pad + c * (size + pad)
        out[y:y + size, x:x + size] = tile
    return out
