"""ICPortraitPipeline: a profile (one or more photos of a person) and a template -> portrait.

One ``__call__``, following IC-Portrait (arXiv 2501.17159, Figure 3):

1. VAE-encode profile and template; hide ~80% of the template's latent patches;
   stitch ``[profile | masked template]`` into the condition canvas (lighting-aware stitching).
2. The base UNet denoises the whole canvas ``[profile | target]``; the profile half is kept
   on the profile's own noised latent at every step (as SD inpainting keeps known pixels).
3. Both control nets read ``noisy canvas ⊕ condition ⊕ mask``. The matching net's features
   give an argmax flow target -> profile per resolution. By default (``cached``) it is
   computed once, on the condition canvas noised to ``match_timestep`` (diffusion features
   are good correspondences at moderate noise, and the condition is what is known of both
   halves); ``per_step`` recomputes it on the current latents at every step. At each step
   the appearance net's profile features are warped by the flow, its target (lighting)
   features added, and the result, F_ref, enters the base UNet as ControlNet residuals
   times ``reference_scale``.
   With ``strength`` < 1 (warp-initialised sampling, the default of the tiny model) the
   target half does not start from pure noise: it starts from the profile (its latent, or
   its photo then encoded: ``warp_space``) pulled along the flow (the matching net's, or
   the face meshes': ``flow_source``), relit with the template's low frequencies (in
   pixels, optionally keeping the profile's skin tone: ``profile_tone``) and kept to the
   template's face (:func:`~icportrait.models.reference.warp_init`), noised to
   ``strength`` x the schedule, and only the last ``strength`` share of the steps run (as
   SDEdit / diffusers' img2img do). ``strength=1`` is the paper's sampling from noise.
4. The target half is decoded: the portrait. Optionally it is pasted back into the template
   photo through the face toolkit's inverse alignment.

Exact reproduction: a ``generator`` (or one per template) fixes masks and noise.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.schedulers import KarrasDiffusionSchedulers, SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from icportrait.conditioning import (
    default_patch_size,
    patch_mask,
    prepare_condition,
    split,
    stitch,
    vae_decode,
    vae_encode,
)
from icportrait.defaults import (
    FLOW_SOURCE,
    FLOW_SOURCES,
    MASK_RATIO,
    MATCH_TIMESTEP,
    STEPS,
    STRENGTH,
    WARP_SPACE,
    WARP_SPACES,
    check_choice,
    check_mask_ratio,
    check_strength,
)
from icportrait.errors import FaceError, ICPortraitError, ModelFilesError, MultipleFacesError
from icportrait.models.autoencoder import PatchAutoencoder
from icportrait.models.control_net import ICControlNet
from icportrait.models.prompt import PromptEmbedding
from icportrait.models.reference import (
    Flows,
    compute_flows,
    finest,
    flows_from_features,
    matching_condition,
    reference_features,
    warp_init,
)
from icportrait.pipelines.image_inputs import as_image_list, to_model_batch, to_rgb_uint8

REQUIRED_COMPONENTS = ("vae", "unet", "matching_net", "appearance_net", "scheduler")


@dataclass
class ICPortraitPipelineOutput(BaseOutput):
    """``images``: one portrait per template. ``flow``: ``(B, 2, h, w)`` target -> profile
    flow at the finest matched level (see :mod:`icportrait.models.matching` for the
    convention), ``flow_ref`` ``(B, h, w)`` the reference each pixel matched, ``flow_score``
    its score (a descriptor net's softmax peak, the paper's variant's cosine), ``flows``
    every level. ``faces`` (with ``align_faces``): ``{"profile": [...], "template": [...]}``,
    per photo the face used (its index left to right, of how many, box, score, pose)."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    flow: torch.Tensor | None = None
    flow_ref: torch.Tensor | None = None
    flow_score: torch.Tensor | None = None
    flows: dict | None = None
    faces: dict | None = None  # align_faces: the face used in each photo (index, box, pose)


class ICPortraitPipeline(DiffusionPipeline):
    """IC-Portrait on a diffusers base (UNet + VAE + any scheduler) with two control nets."""

    model_cpu_offload_seq = "text_encoder->matching_net->appearance_net->unet->vae"
    _optional_components = ["null_embedding", "text_encoder", "tokenizer"]  # noqa: RUF012

    def __init__(
        self,
        vae: AutoencoderKL | PatchAutoencoder,
        unet: UNet2DConditionModel,
        matching_net: ICControlNet,
        appearance_net: ICControlNet,
        scheduler: KarrasDiffusionSchedulers | SchedulerMixin,
        null_embedding: PromptEmbedding | None = None,
        text_encoder=None,
        tokenizer=None,
        default_strength: float = STRENGTH,
        warp_space: str = WARP_SPACE,
        flow_source: str = FLOW_SOURCE,
    ):
        super().__init__()
        self.register_modules(
            vae=vae, unet=unet, matching_net=matching_net, appearance_net=appearance_net,
            scheduler=scheduler, null_embedding=null_embedding, text_encoder=text_encoder,
            tokenizer=tokenizer,
        )
        # How this model samples by default (saved in model_index.json, chosen by measurement
        # at release): a base trained on low noise levels only is meant for warp-initialised
        # sampling; a tiny matching net may be outdone by the face meshes.
        self.register_to_config(default_strength=default_strength,
                                warp_space=check_choice(warp_space, WARP_SPACES, "warp_space"),
                                flow_source=check_choice(flow_source, FLOW_SOURCES,
                                                         "flow_source"))
        self.vae_scale_factor = vae.config.get("patch_size") or \
            2 ** (len(vae.config.block_out_channels) - 1)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load a saved pipeline folder (in fp32 unless ``dtype`` is given); a missing folder
        or component is named clearly."""
        path = os.fspath(pretrained_model_name_or_path)
        if not os.path.isdir(path):
            raise ModelFilesError(f"model folder not found: {path}")
        if not os.path.isfile(os.path.join(path, "model_index.json")):
            raise ModelFilesError(f"{path} is not a pipeline folder (no model_index.json)")
        missing = [c for c in REQUIRED_COMPONENTS
                   if c not in kwargs and not os.path.isdir(os.path.join(path, c))]
        if missing:
            raise ModelFilesError(f"{path} lacks component folder(s): {', '.join(missing)}")
        for c in REQUIRED_COMPONENTS[:-1]:
            folder = os.path.join(path, c)
            # Only safetensors are loaded: pickled .bin weights could run code.
            if c not in kwargs and not any(f.endswith(".safetensors") for f in os.listdir(folder)):
                raise ModelFilesError(f"{folder} has no weights file (.safetensors)")
        kwargs.setdefault("use_safetensors", True)
        if "dtype" not in kwargs and "torch_dtype" not in kwargs:
            # fp32 unless asked: shipped weights are stored in fp16 to halve their size, and
            # fp16 compute is for GPUs.
            kwargs["dtype"] = torch.float32
        return super().from_pretrained(path, **kwargs)

    # ------------------------------------------------------------------ helpers
    @property
    def resolution(self) -> int:
        """Side in pixels of each canvas half (the profile and the portrait)."""
        return int(self.vae.config.sample_size)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` in [-1, 1] -> scaled latents (the posterior mean)."""
        return vae_encode(self.vae, images)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> ``(N, 3, H, W)`` images in [0, 1]."""
        return vae_decode(self.vae, latents)

    def encode_prompt(self, prompt: str | list[str] | None, batch: int) -> torch.Tensor:
        """``(B, L, D)`` text embeddings; without a prompt the stored null embedding."""
        if prompt is None:
            if self.null_embedding is not None:
                return self.null_embedding(batch).to(self.unet.dtype)
            if self.text_encoder is None or self.tokenizer is None:
                raise ModelFilesError(
                    "this model has neither a null_embedding nor a text encoder; "
                    "it cannot run"
                )
            prompt = ""
        if self.text_encoder is None or self.tokenizer is None:
            raise ICPortraitError("this model has no text encoder, so prompts are not supported")
        prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
        if len(prompts) != batch:
            raise ICPortraitError(f"got {len(prompts)} prompts for {batch} templates")
        ids = self.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt",
                             max_length=self.tokenizer.model_max_length).input_ids
        return self.text_encoder(ids.to(self.device))[0].to(self.unet.dtype)

    def _extra_step_kwargs(self, generator) -> dict:
        params = inspect.signature(self.scheduler.step).parameters
        return {"generator": generator} if "generator" in params else {}

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        profile,
        template,
        prompt: str | list[str] | None = None,
        num_inference_steps: int = STEPS,
        strength: float | None = None,
        mask_ratio: float = MASK_RATIO,
        mask_patch_size: int | None = None,
        guidance_scale: float = 1.0,
        reference_scale: float = 1.0,
        flow_mode: str = "cached",
        appearance_every: int = 1,
        reference_once: bool | None = None,
        use_confidence: bool = True,
        match_levels: list[tuple[int, int]] | None = None,
        match_timestep: int = MATCH_TIMESTEP,
        warp_profile: bool = True,
        warp_space: str | None = None,
        flow_source: str | None = None,
        photo_fill: bool = False,
        mirror_fill: bool = False,
        profile_tone: bool = False,
        restore_detail: bool = True,
        flows: Flows | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        align_faces: bool = False,
        profile_face: int | None = None,
        template_face: int | None = None,
        paste_back: bool = False,
        output_type: str = "pil",
        return_flow: bool = True,
        return_dict: bool = True,
    ):
        """Render each template with the profile's identity.

        Args:
            profile: one image or a list of images of the same person (path, PIL, RGB uint8
                array, or (3, H, W) tensor in [0, 1]); with several, each target pixel takes
                its match from whichever reference matches best.
            template: one image or a list (one portrait per template).
            prompt: optional text (models with a text encoder only).
            strength: how much of the schedule runs, in (0, 1] (default: the model's
                ``default_strength``): 1 starts from pure noise (the paper); below 1 the
                portrait starts from the flow-warped, relit profile noised to that level
                (warp-initialised sampling), and ``round(strength x steps)`` steps run (at
                least one).
            mask_ratio: fraction of template latent patches hidden, in [0, 1).
            mask_patch_size: patch side in latent cells (default: latent side / 16).
            guidance_scale: > 1 adds classifier-free guidance against the base UNet without
                F_ref and without the prompt (one more UNet pass per step).
            reference_scale: weight of F_ref; 0 skips the control nets (plain denoising).
            flow_mode: ``cached`` computes the matching flow once (at ``match_timestep``) and
                reuses it; ``per_step`` recomputes it from the current latents at every step.
            appearance_every: run the appearance net every N steps, reusing F_ref in between.
            reference_once: run the appearance net once per image, on the clean canvas
                ``[profile | masked template]`` at the net's ``reference_timestep``, and
                reuse F_ref at every step (default: as the appearance net was trained, i.e.
                when its config has a ``reference_timestep``); False runs it per step on the
                noisy canvas (the paper's, and the ablation).
            use_confidence: False ignores the match confidence that an appearance net
                trained with ``confidence_gate`` weights warped features by, and the mesh's
                (or given flows') confidence that keeps the template where the profile does
                not show the face (ablation ``no-confidence``).
            match_levels: half-resolutions ``(h, w)`` to match at (default: all).
            match_timestep: training timestep at which cached flows are computed.
            warp_profile: False drops the warped profile term (ablation "no matching").
            warp_space: where warp-initialised sampling warps the profile (default: the
                model's ``warp_space``): ``image`` warps and relights the profile photo along
                the flow, resampled smoothly to pixels, and encodes the result; ``latent``
                warps the profile's latents (a patch autoencoder's latents do not
                interpolate like pixels, so large warps tear).
            flow_source: where the flow comes from (default: the model's ``flow_source``):
                ``net``, the matching net; ``mesh``, the face toolkit's meshes of the two
                faces (piecewise affine, the classical swap's correspondence; follows a turned
                head), each template matched to the one profile photo nearest its pose, with
                confidence 0 outside the template's mesh, where the template is kept.
                Precomputed ``flows`` replace both.
            photo_fill: with mesh flows and several profile photos, a point of the
                template's face that the nearest photo does not show (the far side of a
                turned head) is taken from another photo where that shows it, instead of
                keeping the template there (ablation ``photo-fill``; off by default: no
                nearer the truth, and seams where two photos' shading meet,
                docs/sampling.md).
            mirror_fill: with mesh flows, such a point is also taken from its mirror image
                across a profile face where that shows (ablation ``mirror-fill``; off by
                default: seams where the two sides meet, docs/sampling.md).
            profile_tone: with ``warp_space="image"``, the warped face keeps the profile's
                skin tone (its mean colour, and with it the profile photo's light colour)
                under the template's light, instead of the template's (ablation
                ``profile-tone``; off by default: the face can then stand out from the
                template's neck and ears, docs/sampling.md).
            restore_detail: with ``warp_space="image"`` and a warp start, add back to the
                portrait's face what the autoencoder loses of the warp start there (its
                reconstruction error), scaled by the share of the start the sample keeps
                (``1 - strength``): a small autoencoder blurs the skin detail a recogniser
                reads (ablation ``no-detail``, docs/sampling.md). Pasted back with mesh
                flows, the start is redone at the template photo's own resolution and its
                detail above the model's resolution added too (an upscaled crop is a blur).
            flows: precomputed target -> profile flows ``{(h, w): Match}`` (keys: the half's
                feature size) used instead of the matching net's, e.g. a ground-truth flow
                (the ``gt-flow`` ablation); one reference only, cached flow mode.
            generator: a generator, or one per template (then a batch equals its singles).
            align_faces: detect and align faces in the inputs (real photos).
            profile_face, template_face: with ``align_faces``, the face to use in each
                profile / template photo by its index, left to right (as ``icportrait faces
                inspect`` lists them). By default a template's largest face; a profile's
                largest unless another is nearly as large (then an error asks for an index).
            paste_back: paste each portrait back into its template photo (needs align_faces).
            output_type: ``pil``, ``np`` ((B, H, W, 3) float in [0, 1]) or ``pt``.
        """
        if strength is None:
            strength = self.config.default_strength
        self._check_args(num_inference_steps, strength, mask_ratio, reference_scale, flow_mode,
                         appearance_every, output_type, align_faces, paste_back)
        warp_space = check_choice(warp_space or self.config.warp_space, WARP_SPACES,
                                  "warp_space")
        flow_source = check_choice(flow_source or self.config.flow_source, FLOW_SOURCES,
                                   "flow_source")
        if flow_source == "mesh" and flow_mode != "cached" and flows is None:
            raise ICPortraitError("mesh flows are computed once: use flow_mode='cached', or "
                                  "flow_source='net' for per-step flows")
        if flows is not None and flow_mode != "cached":
            raise ICPortraitError("precomputed flows replace the cached flow: use "
                                  "flow_mode='cached'")
        if not align_faces and (profile_face is not None or template_face is not None):
            raise ICPortraitError("profile_face / template_face choose among detected faces: "
                                  "they need align_faces=True")
        # _execution_device, not device: under CPU offload the models run elsewhere.
        device, dtype = self._execution_device, self.unet.dtype
        size = self.resolution
        profiles = [to_rgb_uint8(im, "profile") for im in as_image_list(profile, "profile")]
        templates = [to_rgb_uint8(im, "template") for im in as_image_list(template, "template")]
        prepared_profiles = prepared_templates = faces = masks = None
        profile_photos = profiles
        if align_faces:
            prepared_profiles = [_prepare_face(im, size, profile_face, "clear", "profile", k,
                                               len(profiles)) for k, im in enumerate(profiles)]
            prepared_templates = [_prepare_face(im, size, template_face, "largest", "template",
                                                k, len(templates))
                                  for k, im in enumerate(templates)]
            faces = {"profile": [p.to_dict() for p in prepared_profiles],
                     "template": [p.to_dict() for p in prepared_templates]}
            profiles = [p.image for p in prepared_profiles]
            originals, templates = templates, [p.image for p in prepared_templates]
            masks = [p.mask for p in prepared_templates]
        k, b = len(profiles), len(templates)
        gens = generator if isinstance(generator, list) else None
        if gens is not None and len(gens) != b:
            raise ICPortraitError(f"got {len(gens)} generators for {b} templates")

        profile_px = to_model_batch(profiles, size, device, self.vae.dtype)
        template_px = to_model_batch(templates, size, device, self.vae.dtype)
        profile_lat, template_lat = self.encode_images(profile_px), self.encode_images(template_px)
        profile_lat, template_lat = profile_lat.to(dtype), template_lat.to(dtype)
        c, h, w = template_lat.shape[1:]
        patch = mask_patch_size or default_patch_size(h)
        if h % patch or w % patch:
            raise ICPortraitError(f"mask_patch_size {patch} must divide the latent size "
                                  f"{h}x{w}")
        if match_levels is not None:
            known = {(h // 2**i, w // 2**i) for i in range(8)}
            bad = [lv for lv in match_levels if tuple(lv) not in known]
            if bad:
                raise ICPortraitError(f"match_levels {bad} are not feature sizes of this "
                                      f"model (latent {h}x{w}, halved per level)")
        mask = patch_mask(b, h, w, mask_ratio, patch, generator, device)

        # Canvases per (template b, reference k), reference-major within each template.
        prof_bk = profile_lat.repeat(b, 1, 1, 1)
        condition = prepare_condition(prof_bk, template_lat.repeat_interleave(k, 0),
                                      mask.repeat_interleave(k, 0))
        match_condition = matching_condition(self.matching_net, prof_bk,
                                             template_lat.repeat_interleave(k, 0),
                                             mask.repeat_interleave(k, 0))
        text = self.encode_prompt(prompt, b)
        ctrl_text = text.repeat_interleave(k, 0)
        null_text = self.encode_prompt(None, b) if guidance_scale > 1 else None

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if strength < 1:
            timesteps = timesteps[-max(1, round(strength * num_inference_steps)):]
        noise = randn_tensor((b, c, h, 2 * w), generator=generator, device=device, dtype=dtype)
        latents = noise * self.scheduler.init_noise_sigma
        prof_noise = randn_tensor((b, k * c, h, w), generator=generator, device=device,
                                  dtype=dtype).reshape(b * k, c, h, w)
        step_kwargs = self._extra_step_kwargs(generator)

        residuals = None
        start_flows = None  # a finer flow for the warp start than the latent grid's
        fill = None  # mesh flows to stand-ins (other photos, mirror points) for what one hides
        detail = None  # what the autoencoder loses of the warp start (restore_detail)
        mesh_start = False  # the warp start follows the faces' meshes (can be redone larger)
        # Mesh and given (ground-truth) flows score where the profile shows each point; the
        # matching net's score is a match strength, not that.
        shown = use_confidence and (flows is not None or flow_source == "mesh")
        use_reference = reference_scale > 0
        app = self.appearance_net.config
        once = app.reference_timestep is not None if reference_once is None else reference_once
        gate = bool(app.confidence_gate) and use_confidence
        needs_flow = (use_reference and flow_mode == "cached") or (strength < 1 and warp_profile)
        if flows is not None:
            if k != 1 or any(m.flow.shape[0] != b for m in flows.values()):
                raise ICPortraitError(f"precomputed flows must have one per template ({b}) "
                                      "and one reference")
        elif needs_flow and flow_source == "mesh":
            flows, masks, start_flows, fill = self._mesh_flows(
                profiles, templates, prepared_profiles, prepared_templates, (h, w), device,
                pixels=warp_space == "image", photo_fill=photo_fill, mirror_fill=mirror_fill)
            mesh_start = True
        elif needs_flow:
            match_noise = randn_tensor((b, k * c, h, 2 * w), generator=generator, device=device,
                                       dtype=dtype).reshape(b * k, c, h, 2 * w)
            flows = compute_flows(self.matching_net, match_condition, ctrl_text,
                                  self.scheduler.alphas_cumprod, match_timestep, match_noise, k,
                                  match_levels)
        if strength < 1:
            start, detail = self._warp_start(
                profile_px, template_px, prof_bk, template_lat,
                (start_flows or flows) if warp_profile else None, k, masks, warp_space, shown,
                profile_tone, fill if warp_profile else None,
                restore_detail and warp_profile)
            start = start.to(dtype)
            latents = stitch(split(latents)[0], self.scheduler.add_noise(
                start, split(noise)[1], timesteps[:1].expand(b)))
        # F_ref's appearance features, once per image: nothing in them depends on the sample.
        once_feats = self.appearance_net(
            condition.control_input(condition.latents),
            torch.tensor(app.reference_timestep or 0, device=device), ctrl_text) \
            if use_reference and once else None
        for i, t in enumerate(self.progress_bar(timesteps)):
            t_batch = t.reshape(1).expand(b * k)
            prof_t = self.scheduler.add_noise(prof_bk, prof_noise, t_batch)
            # Keep the canvas's profile half on the known profile (reference 0).
            latents = stitch(prof_t[::k], split(latents)[1])
            model_input = self.scheduler.scale_model_input(latents, t)
            down_res = mid_res = None
            if use_reference:
                per_step = not once and (residuals is None or i % appearance_every == 0)
                if per_step or flow_mode == "per_step":
                    canvas = stitch(prof_t, split(latents)[1].repeat_interleave(k, 0))
                    scaled = self.scheduler.scale_model_input(canvas, t)
                if flow_mode == "per_step":
                    flows = flows_from_features(
                        self.matching_net,
                        self.matching_net(match_condition.control_input(scaled), t, ctrl_text),
                        k, match_levels)
                if per_step or residuals is None or flow_mode == "per_step":
                    feats = once_feats if once else \
                        self.appearance_net(condition.control_input(scaled), t, ctrl_text)
                    fref = reference_features(feats, flows, k, warp_profile=warp_profile,
                                              confidence_gate=gate)
                    residuals = self.appearance_net.residuals(fref, reference_scale)
                down_res, mid_res = residuals
            noise = self.unet(model_input, t, encoder_hidden_states=text,
                              down_block_additional_residuals=down_res,
                              mid_block_additional_residual=mid_res).sample
            if null_text is not None:
                uncond = self.unet(model_input, t, encoder_hidden_states=null_text).sample
                noise = uncond + guidance_scale * (noise - uncond)
            latents = self.scheduler.step(noise, t, latents, **step_kwargs).prev_sample

        images = self.decode_latents(split(latents)[1])
        if detail is not None:
            images = (images + (1 - strength) * detail.to(images) / 2).clamp(0, 1)
        # Pasted back, the face gets the warp start's detail at the photo's own resolution.
        full = dict(profiles=prepared_profiles, profile_photos=profile_photos,
                    keep=1 - strength, use_confidence=shown, profile_tone=profile_tone,
                    photo_fill=photo_fill, mirror_fill=mirror_fill) \
            if paste_back and detail is not None and mesh_start else None
        output = self._format(images, output_type, prepared_templates if paste_back else None,
                              originals if paste_back else None, full)
        flow_out = (None, None, None)
        if return_flow and flows:
            m = finest(flows)
            flow_out = (m.flow, m.ref, m.score)
        if not return_dict:
            return output, flow_out[0]
        return ICPortraitPipelineOutput(output, *flow_out,
                                        flows=flows if return_flow else None, faces=faces)

    def _warp_start(self, profile_px, template_px, prof_bk, template_lat, flows, k,
                    masks, space: str, shown: bool, profile_tone: bool, fill=None,
                    restore_detail: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Warp-initialised sampling's start latents (:func:`warp_init`), warped in the
        latent grid (``prof_bk``: the profile latents, once per template) or in pixels and
        then encoded; ``masks``: the templates' face regions (size x size arrays), or None;
        ``shown``: the flows' scores say where the profile shows the face; ``profile_tone``:
        keep the profile's skin tone (pixels only); ``fill``: flows to stand-ins for what
        the profile hides (:func:`warp_init`). Also returns, with ``restore_detail``
        (pixels only), what the autoencoder loses of the start in the face region (the
        whole crop without one), in [-1, 1] units; else None."""
        source, target = (profile_px.repeat(template_lat.shape[0], 1, 1, 1), template_px) \
            if space == "image" else (prof_bk, template_lat)
        region = None if masks is None else _face_region(
            masks, target.shape[-2:], target.device, target.dtype)
        start = warp_init(source, target, flows, k, region, use_confidence=shown,
                          profile_tone=profile_tone and space == "image", fill=fill)
        if space != "image":
            return start, None
        start = start.clamp(-1, 1)
        latents = self.encode_images(start)
        if not restore_detail:
            return latents, None
        lost = start - (self.decode_latents(latents) * 2 - 1)
        return latents, lost if region is None else region * lost

    def _mesh_flows(self, profiles, templates, prepared_profiles, prepared_templates, grid,
                    device, pixels: bool = False, photo_fill: bool = False,
                    mirror_fill: bool = False):
        """``flow_source="mesh"``: flows from the faces' meshes on the latent ``grid``, the
        templates' face masks (from the aligned faces, or from meshes read on the model-size
        crops), with ``pixels`` the flows on the pixel grid (the meshes' own detail, for a
        warp start in pixels; else None) and the flows to stand-ins for what the nearest
        profile photo hides (:func:`fill_flows`: with ``photo_fill`` the other photos, with
        ``mirror_fill`` the mirror points) on the warp start's grid (else None)."""
        from icportrait.faces import face_mask
        from icportrait.pipelines.image_inputs import square_resize
        from icportrait.pipelines.mesh_flows import crop_mesh, fill_flows, mesh_flows

        size = self.resolution
        if prepared_templates is not None:
            prof = [p.mesh for p in prepared_profiles]
            tmpl = [p.mesh for p in prepared_templates]
            masks = [p.mask for p in prepared_templates]
        else:
            prof = [crop_mesh(square_resize(im, size), "profile") for im in profiles]
            tmpl = [crop_mesh(square_resize(im, size), "template") for im in templates]
            masks = [face_mask(m, (size, size)) for m in tmpl]
        flows = mesh_flows(tmpl, prof, grid, size, device, pixel_grid=pixels)
        fine = {(size, size): flows.pop((size, size))} \
            if pixels and tuple(grid) != (size, size) else None
        fill = fill_flows(tmpl, prof, (size, size) if pixels else grid, size, device,
                          photos=photo_fill, mirror=mirror_fill)
        return flows, masks, fine, fill

    def _format(self, images: torch.Tensor, output_type: str, prepared, originals,
                full: dict | None = None):
        """The portraits as ``output_type``; with ``prepared`` templates, pasted back into
        their ``originals``, with ``full`` (:func:`paste_full_resolution`'s arguments) at
        each photo's own resolution."""
        if output_type == "pt" and prepared is None:
            return images
        arr = images.permute(0, 2, 3, 1).float().cpu().numpy()
        if prepared is not None:
            from icportrait.faces import paste_back
            from icportrait.pipelines.full_resolution import paste_full_resolution

            pasted = [paste_full_resolution(a, p, o, **full) if full is not None else
                      paste_back(p.aligned, (a * 255 + 0.5).astype(np.uint8), o, mask=p.mask)
                      for p, a, o in zip(prepared, arr, originals, strict=True)]
            if output_type == "pil":
                return [PIL.Image.fromarray(x) for x in pasted]
            return [x.astype(np.float32) / 255 for x in pasted]
        if output_type == "np":
            return arr
        return [PIL.Image.fromarray((a * 255 + 0.5).astype(np.uint8)) for a in arr]

    @staticmethod
    def _check_args(steps, strength, mask_ratio, reference_scale, flow_mode, appearance_every,
                    output_type, align_faces, paste_back) -> None:
        if not isinstance(steps, int) or not 1 <= steps <= 1000:
            raise ICPortraitError(f"num_inference_steps must be an integer in [1, 1000], got "
                                  f"{steps}")
        check_strength(strength)
        check_mask_ratio(mask_ratio, "mask_ratio")
        if reference_scale < 0:
            raise ICPortraitError(f"reference_scale must be >= 0, got {reference_scale}")
        if flow_mode not in ("cached", "per_step"):
            raise ICPortraitError(f"flow_mode must be 'cached' or 'per_step', got {flow_mode!r}")
        if appearance_every < 1:
            raise ICPortraitError(f"appearance_every must be >= 1, got {appearance_every}")
        if output_type not in ("pil", "np", "pt"):
            raise ICPortraitError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if paste_back and not align_faces:
            raise ICPortraitError("paste_back needs align_faces=True (it inverts the alignment)")
        if paste_back and output_type == "pt":
            raise ICPortraitError("paste_back returns photos of their own sizes: use pil or np")


def _face_region(masks, size: tuple[int, int], device, dtype) -> torch.Tensor:
    """The templates' face masks (soft, [0, 1]) at ``size``: ``(B, 1, h, w)``."""
    masks = torch.stack([torch.from_numpy(np.asarray(m, np.float32)) for m in masks])
    masks = torch.nn.functional.interpolate(masks[:, None], size=size, mode="area")
    return masks.to(device=device, dtype=dtype)


def _prepare_face(image, size: int, index: int | None, policy: str, role: str, k: int,
                  n: int):
    """One photo's face, aligned; a face error names the photo (``profile 2: ...``) and,
    when the choice is ambiguous, how to make it."""
    from icportrait.faces import prepare_face

    try:
        return prepare_face(image, size=size, policy=policy, face=index)
    except FaceError as exc:
        name = f"{role} {k + 1}" if n > 1 else role
        hint = f"; choose with --{role}-face N (Python: {role}_face=N)" \
            if isinstance(exc, MultipleFacesError) else ""
        raise type(exc)(f"{name}: {exc}{hint}") from None


__all__ = ["ICPortraitPipeline", "ICPortraitPipelineOutput"]
