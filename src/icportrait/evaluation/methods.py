"""The methods an evaluation runs side by side: IC-Portrait, its ablations, and baselines.

Every method maps a :class:`~icportrait.evaluation.suites.Sample` to an output image in the
template's frame (synthetic: the render itself; real photos: the template photo, the face
pasted back) and, for IC-Portrait, the matching flow.

- ``icportrait``: the model with its defaults (all profile references, the default
  mask ratio, cached flow, its own flow source and warp space).
- Ablations: ``icportrait:no-warp`` (F_ref without the warped profile term),
  ``icportrait:zero-shot`` (the matching net replaced by the base UNet's own encoder, i.e.
  untrained matching), ``icportrait:net-flow`` / ``icportrait:mesh-flow`` (flows from the
  matching net / from the two faces' meshes), ``icportrait:latent-warp`` /
  ``icportrait:image-warp`` (warp-initialised sampling warps latents / pixels),
  ``icportrait:mask-0.5`` / ``icportrait:mask-0.95`` (mask ratio),
  ``icportrait:single-ref`` (only the first profile photo), ``icportrait:per-step`` (flow
  recomputed at every denoising step), ``icportrait:base-only`` (no F_ref at all: the
  frozen base model alone, which shows what the control nets add), ``icportrait:from-noise``
  (sampling from pure noise, the paper's, for a model whose default is warp-initialised),
  ``icportrait:gt-flow`` (synthetic only: the ground-truth flow instead of the matching
  net's; where it is unknown the warp start keeps the template; what a perfect matching net
  would give), ``icportrait:no-confidence`` (warped features not weighted by the match
  confidence, for an appearance net trained with ``confidence_gate``; and the face warped
  even where a mesh or given flow says the profile does not show it),
  ``icportrait:photo-fill`` (mesh flows: where the profile photo nearest the template's pose
  does not show a point of its face, another profile photo that shows it instead of the
  template), ``icportrait:mirror-fill`` (likewise, also the mirror image of a profile's
  other side),
  ``icportrait:profile-tone`` (the warped face keeps the profile's mean colour, its skin
  tone, instead of taking the template's), ``icportrait:no-detail`` (the portrait as the
  autoencoder decodes it, without the warp start's face detail that it loses added back),
  ``icportrait:appearance-per-step`` (the
  appearance net on the noisy canvas at every step, for one trained to run once per image).
- Baselines: ``classical-swap`` (landmark warp, colour transfer, Poisson blending),
  ``template`` (the template unchanged), ``masked-template`` (the template with the model's
  80% of patches hidden, what the model sees of it), ``gt-warp`` (synthetic only: the profile
  warped by the ground-truth flow, the template elsewhere; an upper bound for the warping
  path), ``truth`` (synthetic only: the ground truth itself, what a perfect method would
  give; its identity scores say how well the judge tells the suite's people apart).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from icportrait.defaults import EVAL_STEPS, MASK_RATIO
from icportrait.errors import ICPortraitError
from icportrait.evaluation.suites import Sample
from icportrait.generation.portrait import confidence_of

ABLATIONS = {
    "icportrait": {},
    "icportrait:no-warp": {"warp_profile": False},
    "icportrait:zero-shot": {"flow_source": "net"},
    "icportrait:mask-0.5": {"mask_ratio": 0.5},
    "icportrait:mask-0.95": {"mask_ratio": 0.95},
    "icportrait:single-ref": {},
    "icportrait:per-step": {"flow_mode": "per_step", "flow_source": "net"},
    "icportrait:base-only": {"reference_scale": 0.0},
    "icportrait:from-noise": {"strength": 1.0},
    "icportrait:gt-flow": {},
    "icportrait:net-flow": {"flow_source": "net"},
    "icportrait:mesh-flow": {"flow_source": "mesh"},
    "icportrait:image-warp": {"warp_space": "image"},
    "icportrait:latent-warp": {"warp_space": "latent"},
    "icportrait:no-confidence": {"use_confidence": False},
    "icportrait:photo-fill": {"photo_fill": True},
    "icportrait:mirror-fill": {"mirror_fill": True},
    "icportrait:profile-tone": {"profile_tone": True},
    "icportrait:no-detail": {"restore_detail": False},
    "icportrait:appearance-per-step": {"reference_once": False},
}
BASELINES = ("classical-swap", "template", "masked-template", "gt-warp", "truth")
NEEDS_TRUTH = ("gt-warp", "truth", "icportrait:gt-flow")  # synthetic suites only
METHODS = (*ABLATIONS, *BASELINES)


@dataclass
class MethodOutput:
    image: np.ndarray                       # H x W x 3 uint8, the template's frame
    flow: torch.Tensor | None = None        # (2, h, w) target -> profile[0], latent cells
    flow_ref: torch.Tensor | None = None    # (h, w) which reference each cell matched
    confidence: torch.Tensor | None = None  # (h, w) of each match (descriptor nets)
    info: dict = field(default_factory=dict)


def check_methods(names: list[str], model: object | None) -> None:
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ICPortraitError(f"unknown method(s) {', '.join(unknown)}; choose from "
                              f"{', '.join(METHODS)}")
    if model is None and any(n in ABLATIONS for n in names):
        raise ICPortraitError("IC-Portrait methods need --model (a pipeline folder)")


class ModelRunner:
    """Runs the pipeline (and its ablations) on samples, deterministic in ``seed``."""

    def __init__(self, pipe, steps: int = EVAL_STEPS, seed: int = 0):
        self.pipe, self.steps, self.seed = pipe, steps, seed
        self._zero_shot = None

    @property
    def resolution(self) -> int:
        return self.pipe.resolution

    def zero_shot_net(self):
        """The untrained matching net: the base UNet's encoder (what ``train matching``
        starts from), matching raw features (no descriptor head)."""
        if self._zero_shot is None:
            net = copy.deepcopy(self.pipe.matching_net)
            if net.has_descriptor:
                net = net.with_descriptor_head(0)
            net.load_encoder_from(self.pipe.unet)
            self._zero_shot = net
        return self._zero_shot

    def __call__(self, name: str, sample: Sample) -> MethodOutput:
        pipe = self.pipe
        kwargs = {"num_inference_steps": self.steps, **ABLATIONS[name]}
        # the ground truth is a flow to the first profile photo
        one = name in ("icportrait:single-ref", "icportrait:gt-flow")
        profile = sample.profile[:1] if one else sample.profile
        real = not sample.synthetic
        original = pipe.matching_net
        if name == "icportrait:zero-shot":
            pipe.matching_net = self.zero_shot_net()
        if name == "icportrait:gt-flow":
            if not sample.synthetic:
                raise ICPortraitError("gt-flow needs ground truth (synthetic suites only)")
            kwargs["flows"] = ground_truth_flows(sample, pipe)
        try:
            out = pipe(profile, sample.template, output_type="np", align_faces=real,
                       paste_back=real,
                       generator=torch.Generator(pipe.device).manual_seed(self.seed), **kwargs)
            confidence = confidence_of(pipe, out)
        finally:
            pipe.matching_net = original
        image = (np.asarray(out.images[0]) * 255 + 0.5).clip(0, 255).astype(np.uint8)
        h, w = sample.template.shape[:2]
        if image.shape[:2] != (h, w):  # a synthetic suite at another size than the model's
            import cv2

            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
        if out.flow is None:  # base-only: no matching was run
            return MethodOutput(image)
        return MethodOutput(image, out.flow[0].cpu(), out.flow_ref[0].cpu(),
                            confidence=confidence)


def run_baseline(name: str, sample: Sample, seed: int = 0) -> MethodOutput:
    if name == "template":
        return MethodOutput(sample.template.copy())
    if name == "masked-template":
        return MethodOutput(masked_template(sample.template, MASK_RATIO, seed))
    if name in NEEDS_TRUTH and not sample.synthetic:
        raise ICPortraitError(f"{name} needs ground truth (synthetic suites only)")
    if name == "gt-warp":
        return MethodOutput(ground_truth_warp(sample))
    if name == "truth":
        return MethodOutput(sample.truth.copy())
    if name == "classical-swap":
        from icportrait.evaluation.classical_swap import classical_swap
        from icportrait.faces.detect import SMALL_IMAGE_SIDE

        return MethodOutput(at_least(SMALL_IMAGE_SIDE, classical_swap, sample.profile[0],
                                     sample.template))
    raise ICPortraitError(f"unknown baseline {name!r}")


def masked_template(template: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """The template with ``ratio`` of its patches set to grey, on the model's 16 x 16 patch
    grid (:func:`icportrait.conditioning.default_patch_size`)."""
    import cv2

    from icportrait.conditioning import patch_mask

    h, w = template.shape[:2]
    mask = patch_mask(1, 16, 16, ratio, 1, torch.Generator().manual_seed(seed))[0, 0]
    hidden = cv2.resize(mask.numpy().astype(np.float32), (w, h),
                        interpolation=cv2.INTER_NEAREST) > 0.5
    out = template.copy()
    out[hidden] = 128
    return out


def ground_truth_flows(sample: Sample, pipe) -> dict:
    """The sample's ground-truth flow (template -> profile, pixels: what a perfect matching
    net finds) on the model's latent grid, as the pipeline's precomputed ``flows``: no motion
    where it is unknown, confidence 1 where it is known."""
    from icportrait.models.matching import pixel_flows

    flow = torch.from_numpy(sample.template_flow)[None].to(pipe.device)
    valid = torch.from_numpy(sample.template_valid)[None].to(pipe.device)
    return pixel_flows(flow, valid, pipe.resolution // pipe.vae_scale_factor)


def ground_truth_warp(sample: Sample) -> np.ndarray:
    from icportrait.synth.correspondence import bilinear

    warped, ok = bilinear(sample.profile[0].astype(np.float32), sample.flow)
    ok &= sample.valid
    out = sample.template.astype(np.float32)
    out[ok] = warped[ok]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def at_least(size: int, fn, *images: np.ndarray) -> np.ndarray:
    """Run an image -> image function on copies upscaled by one factor so the smallest side
    is ``size`` (landmark detectors miss small faces:
    :func:`~icportrait.faces.detect.enlarge_small` for one image), and bring the result back
    to the last input's size."""
    import cv2

    small = min(min(im.shape[:2]) for im in images)
    if small >= size:
        return fn(*images)
    f = size / small
    big = [cv2.resize(im, None, fx=f, fy=f, interpolation=cv2.INTER_CUBIC) for im in images]
    h, w = images[-1].shape[:2]
    return cv2.resize(fn(*big), (w, h), interpolation=cv2.INTER_AREA)
