"""What each training stage trains, on which data, with which loss.

Every stage is a pipeline folder in, a pipeline folder out:

    vae         spec "tiny" (random)  -> trains the VAE             (reconstruction + KL)
    base        pipeline              -> trains the UNet + null embedding (denoising canvases)
    matching    pipeline              -> trains the matching net    (descriptor head: dual-
                                                                     softmax on true matches;
                                                                     paper's variant: denoising
                                                                     + optional correspondence)
    appearance  pipeline (with a trained matching net) -> trains the appearance net
                                                         (pairs, or cross-identity triplets)

In ``matching`` and ``appearance`` the base (VAE, UNet, null embedding) is frozen, as in the
paper. A stage's ``module`` holds only what it trains (so checkpoints stay small); the frozen
pipeline is kept beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from icportrait.conditioning import (
    default_patch_size,
    patch_mask,
    prepare_condition,
    split,
    stitch,
    vae_encode,
)
from icportrait.data.images import image_dataset, photo_validation_sets
from icportrait.data.pairs import collate, pair_dataset
from icportrait.errors import ICPortraitError
from icportrait.models.control_net import ICControlNet
from icportrait.models.matching import pixel_flows
from icportrait.models.reference import (
    compute_flows,
    matching_condition,
    matching_input,
    reference_features,
    warp_init,
)
from icportrait.pipelines.pipeline_ic_portrait import ICPortraitPipeline
from icportrait.specs import assemble_pipeline, build_components
from icportrait.store import load_for_training, save_pipeline
from icportrait.training.config import TrainConfig
from icportrait.training.lora import add_lora, merged_unet
from icportrait.training.losses import correspondence_loss, descriptor_loss

# What the UNet may be trained to predict (diffusers' scheduler ``prediction_type``).
PREDICTION_TYPES = ("epsilon", "v_prediction")


class _Frozen:
    """Holds the frozen pipeline outside the trained module (not an nn.Module attribute,
    so it is neither checkpointed nor wrapped by DDP)."""

    def __init__(self, pipe: ICPortraitPipeline, device):
        from diffusers import DDPMScheduler

        kind = pipe.scheduler.config.get("prediction_type", "epsilon")
        if kind not in PREDICTION_TYPES:
            raise ICPortraitError(f"training supports {', '.join(PREDICTION_TYPES)} models, "
                                  f"this one predicts {kind!r}")
        # Training noise uses the variance-preserving (DDPM) form of the model's schedule,
        # whatever sampler the pipeline was saved with (Euler's add_noise is not VP).
        self.train_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        pipe.to(device)
        for name in ("vae", "unet", "matching_net", "appearance_net", "null_embedding"):
            m = getattr(pipe, name, None)
            if m is not None:
                m.requires_grad_(False)
                m.eval()
        self.pipe = pipe


class StageModule(nn.Module):
    """Base: owns the trainable parts; ``forward(batch, generator) -> (loss, logs)``."""

    def __init__(self, cfg: TrainConfig, frozen: _Frozen):
        super().__init__()
        object.__setattr__(self, "frozen", frozen)  # not registered: see _Frozen
        self.cfg = cfg

    @property
    def pipe(self) -> ICPortraitPipeline:
        return self.frozen.pipe

    def _images(self, batch: dict, key: str) -> torch.Tensor:
        return batch[key].to(self.pipe.device) * 2 - 1

    @torch.no_grad()
    def _latents(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        vae = self.pipe.vae
        return vae_encode(vae, self._images(batch, "profile")), \
            vae_encode(vae, self._images(batch, "target"))

    @torch.no_grad()
    def _template_latents(self, batch: dict, target: torch.Tensor) -> torch.Tensor:
        """The template: the truth itself, or another identity in its view and light."""
        if "template" not in batch:
            return target
        return vae_encode(self.pipe.vae, self._images(batch, "template"))

    def _noise(self, x0: torch.Tensor, gen: torch.Generator, start: torch.Tensor | None = None):
        """Noised latents (of ``start`` when given, else of ``x0``), the UNet's regression
        target for ``x0`` (the noise, or the velocity for a v-prediction model) and the
        timesteps."""
        sched = self.frozen.train_scheduler
        noise = torch.randn(x0.shape, generator=gen, device=gen.device).to(x0)
        top = min(self.cfg.max_timestep or sched.config.num_train_timesteps,
                  sched.config.num_train_timesteps)
        t = torch.randint(0, top, (x0.shape[0],), generator=gen, device=gen.device).to(x0.device)
        target = sched.get_velocity(x0, noise, t) \
            if sched.config.prediction_type == "v_prediction" else noise
        return sched.add_noise(x0 if start is None else start, noise, t), target, t

    def _predicted_clean(self, noisy: torch.Tensor, pred: torch.Tensor, t: torch.Tensor
                         ) -> torch.Tensor:
        """The clean latents the UNet's output ``pred`` at ``noisy``, timesteps ``t``, implies."""
        a = self.frozen.train_scheduler.alphas_cumprod.to(noisy)[t].view(-1, 1, 1, 1)
        if self.frozen.train_scheduler.config.prediction_type == "v_prediction":
            return a.sqrt() * noisy - (1 - a).sqrt() * pred
        return (noisy - (1 - a).sqrt() * pred) / a.sqrt()

    def _condition(self, p: torch.Tensor, t: torch.Tensor, gen: torch.Generator):
        b, _, h, w = t.shape
        gens = [torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen,
                                                                 device=gen.device)))
                for _ in range(b)]
        mask = patch_mask(b, h, w, self.cfg.mask_ratio, default_patch_size(h), gens, t.device)
        return prepare_condition(p, t, mask)

    def _match_noise(self, cond, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(cond.latents.shape, generator=gen, device=gen.device)

    def _guided_unet(self, noisy, ts, text, net: ICControlNet, feats) -> torch.Tensor:
        """The frozen base UNet's output with ``feats`` entering as ``net``'s residuals."""
        down, mid = net.residuals(feats)
        return self.pipe.unet(noisy, ts, encoder_hidden_states=text,
                              down_block_additional_residuals=down,
                              mid_block_additional_residual=mid).sample

    def _target_loss(self, noisy, ts, text, net: ICControlNet, feats, target) -> torch.Tensor:
        """Denoising loss on the target half, with ``feats`` entering the frozen base UNet
        as ``net``'s ControlNet residuals (the profile half is known at inference)."""
        pred = self._guided_unet(noisy, ts, text, net, feats)
        return F.mse_loss(split(pred)[1].float(), split(target)[1].float())

    @property
    def default_strength(self) -> float:
        """What the exported model samples at: a stage trained below a timestep makes a
        model for warp-initialised sampling at that strength; otherwise as it came."""
        if self.cfg.max_timestep:
            return self.cfg.max_timestep / self.frozen.train_scheduler.config.num_train_timesteps
        return self.pipe.config.default_strength

    def _save(self, path: Path, **trained) -> Path:
        """The frozen pipeline with the ``trained`` components swapped in."""
        pipe = self.pipe
        parts = dict(vae=pipe.vae, unet=pipe.unet, scheduler=pipe.scheduler,
                     null_embedding=pipe.null_embedding, text_encoder=pipe.text_encoder,
                     tokenizer=pipe.tokenizer, matching_net=pipe.matching_net,
                     appearance_net=pipe.appearance_net, default_strength=self.default_strength)
        return save_pipeline(assemble_pipeline(**{**parts, **trained}), path)

    def export(self, path: Path) -> Path:
        raise NotImplementedError


class VAEModule(StageModule):
    def __init__(self, cfg, frozen):
        super().__init__(cfg, frozen)
        self.vae = frozen.pipe.vae.requires_grad_(True).train()

    def forward(self, batch, gen):
        x = self._images(batch, "image")
        crop = self.cfg.vae_crop
        if crop and crop < x.shape[-1]:  # cheaper, but see TrainConfig.vae_crop
            y0, x0 = (int(v) for v in torch.randint(0, x.shape[-1] - crop + 1, (2,),
                                                    generator=gen, device=gen.device))
            x = x[..., y0:y0 + crop, x0:x0 + crop]
        posterior = self.vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(
            posterior.mean.shape, generator=gen, device=gen.device).to(posterior.mean)
        rec = self.vae.decode(z).sample
        l1 = F.l1_loss(rec, x)
        kl = posterior.kl().mean()  # summed over latent elements, mean over the batch
        return l1 + self.cfg.kl_weight * kl, {"l1": l1.item(), "kl": kl.item()}

    @torch.no_grad()
    def export(self, path: Path, dataset=None) -> Path:
        pipe = self.pipe
        if dataset is not None:  # SD's recipe: scale latents to unit variance
            x = _sample_images(dataset, 32, 0).to(pipe.device)
            std = self.vae.encode(x).latent_dist.mean.std().item()
            self.vae.register_to_config(scaling_factor=round(1.0 / max(std, 1e-6), 5))
        pipe.vae = self.vae
        return save_pipeline(assemble_pipeline(pipe.vae, pipe.unet, pipe.scheduler,
                                               pipe.null_embedding), path)


class BaseModule(StageModule):
    def __init__(self, cfg, frozen):
        super().__init__(cfg, frozen)
        self.unet = frozen.pipe.unet.requires_grad_(True).train()
        if frozen.pipe.null_embedding is None:
            raise ICPortraitError("the base stage trains the null embedding, but the --init "
                                  "pipeline has none")
        self.null_embedding = frozen.pipe.null_embedding.requires_grad_(True)

    def forward(self, batch, gen):
        p, t = self._latents(batch)
        noisy, target, ts = self._noise(stitch(p, t), gen)
        pred = self.unet(noisy, ts, encoder_hidden_states=self.null_embedding(noisy.shape[0])
                         ).sample
        loss = F.mse_loss(pred.float(), target.float())
        return loss, {}

    def export(self, path: Path) -> Path:
        pipe = self.pipe
        # Control nets start from the *trained* base encoder.
        return save_pipeline(assemble_pipeline(pipe.vae, self.unet, pipe.scheduler,
                                               self.null_embedding, pipe.text_encoder,
                                               pipe.tokenizer,
                                               default_strength=self.default_strength), path)


class MatchingModule(StageModule):
    def __init__(self, cfg, frozen):
        super().__init__(cfg, frozen)
        net = frozen.pipe.matching_net
        if net.config.descriptor_dim != cfg.descriptor_dim:
            with torch.random.fork_rng():  # a fresh head, the same for every run of a seed
                torch.manual_seed(cfg.seed)
                net = net.with_descriptor_head(cfg.descriptor_dim)
        if net.has_descriptor:  # the prior is trained with, and saved in the net's config
            net.register_to_config(match_locality=cfg.match_locality)
        self.net: ICControlNet = net.requires_grad_(True).train()
        if net.has_descriptor:  # its residuals are never used: keep DDP from waiting on them
            net.zero_convs.requires_grad_(False)
            net.zero_mid.requires_grad_(False)

    def forward(self, batch, gen):
        pipe = self.pipe
        p, t = self._latents(batch)
        if self.net.has_descriptor:
            return self._descriptor_loss(batch, p, t, gen)
        cond = self._condition(p, t, gen)
        noisy, target, ts = self._noise(stitch(p, t), gen)
        text = pipe.encode_prompt(None, noisy.shape[0])
        feats = self.net(cond.control_input(noisy), ts, text)
        denoise = self._target_loss(noisy, ts, text, self.net, feats, target)
        logs = {"denoise": denoise.item()}
        loss = denoise
        if self.cfg.correspondence_loss > 0:
            ci, tm = matching_input(cond, pipe.scheduler.alphas_cumprod, self.cfg.match_timestep,
                                    self._match_noise(cond, gen))
            corr = correspondence_loss(self.net(ci, tm, text), batch["flow"].to(p.device),
                                       batch["valid"].to(p.device),
                                       self.cfg.correspondence_temperature)
            loss = loss + self.cfg.correspondence_loss * corr
            logs["correspondence"] = corr.item()
        return loss, logs

    def _descriptor_loss(self, batch, p, t, gen):
        """The descriptor net is trained on what it matches at inference: the template
        whole, noised to the matching timestep; the loss is on its flow's logits."""
        tmpl = self._template_latents(batch, t)
        cond = matching_condition(self.net, p, tmpl, torch.zeros_like(t[:, :1]))
        ci, tm = matching_input(cond, self.pipe.scheduler.alphas_cumprod,
                                self.cfg.match_timestep, self._match_noise(cond, gen))
        text = self.pipe.encode_prompt(None, p.shape[0])
        cfg = self.net.config
        flow, valid = _template_flow(batch)
        loss = descriptor_loss(self.net.descriptors(self.net(ci, tm, text)),
                               flow.to(p.device), valid.to(p.device),
                               cfg.match_temperature, cfg.match_locality)
        return loss, {"descriptor": loss.item()}

    def export(self, path: Path) -> Path:
        return self._save(path, matching_net=self.net)


class AppearanceModule(StageModule):
    def __init__(self, cfg, frozen):
        super().__init__(cfg, frozen)
        start = frozen.pipe.appearance_net
        net = start.attention_free() if cfg.attention_free else start
        if cfg.distill:
            # The student makes F_ref as its teacher does (the init pipeline's own net).
            if all(not c.weight.any() for c in [*start.zero_convs, start.zero_mid]):
                raise ICPortraitError("--distill: the --matching pipeline's appearance net is "
                                      "untrained (its residuals are zero); train it first")
            # frozen with the pipeline, and not a submodule (so not checkpointed)
            object.__setattr__(self, "teacher", start)
            wanted = start.config.reference_timestep
            if cfg.reference_timestep is not None and cfg.reference_timestep != wanted:
                raise ICPortraitError(f"--distill: the teacher reads timestep {wanted}, not "
                                      f"--reference-timestep {cfg.reference_timestep}")
            ref_t, gate = wanted, bool(start.config.confidence_gate)
        else:
            ref_t, gate = cfg.reference_timestep, cfg.confidence_gate
        self.net: ICControlNet = net.requires_grad_(True).train()
        # how F_ref is made is trained in, and saved in the net's config for sampling
        self.net.register_to_config(reference_timestep=ref_t, confidence_gate=gate)
        if cfg.lora_rank:
            self.lora = add_lora(frozen.pipe.unet, cfg.lora_rank)

    def forward(self, batch, gen):
        pipe = self.pipe
        p, t = self._latents(batch)
        tmpl = self._template_latents(batch, t)
        cond = self._condition(p, tmpl, gen)
        text = pipe.encode_prompt(None, p.shape[0])
        # (held-out batches carry no ground-truth flow: validation uses the matching net's)
        forced = self.cfg.teacher_forcing > 0 and "flow" in batch and \
            float(torch.rand((), generator=gen)) < self.cfg.teacher_forcing
        if forced:  # the ground-truth flow: the appearance net must learn to use the warp
            flow, valid = _template_flow(batch)
            flows = pixel_flows(flow.to(p.device), valid.to(p.device), p.shape[-1])
        else:
            with torch.no_grad():  # the matching net is frozen: flows as at inference
                mcond = matching_condition(pipe.matching_net, p, tmpl, split(cond.mask)[1])
                flows = compute_flows(pipe.matching_net, mcond, text,
                                      pipe.scheduler.alphas_cumprod, self.cfg.match_timestep,
                                      self._match_noise(mcond, gen))
        # warp start: the target half noised from where warp-initialised sampling starts it
        start = stitch(p, warp_init(p, tmpl, flows)) if self.cfg.warp_start else None
        noisy, target, ts = self._noise(stitch(p, t), gen, start)
        ref_t = self.net.config.reference_timestep
        control, ct = (cond.control_input(cond.latents), torch.full_like(ts, ref_t)) \
            if ref_t is not None else (cond.control_input(noisy), ts)
        gate = self.net.config.confidence_gate
        feats = reference_features(self.net(control, ct, text), flows, confidence_gate=gate)
        if self.cfg.distill:
            loss = self._distill_loss(control, ct, text, flows, feats)
            return loss, {"teacher_forced": float(forced), "distill": loss.item()}
        if self.cfg.warp_start:
            loss = self._clean_loss(noisy, ts, text, feats, t)
        else:
            loss = self._target_loss(noisy, ts, text, self.net, feats, target)
        return loss, {"teacher_forced": float(forced)}

    def _clean_loss(self, noisy, ts, text, feats, truth) -> torch.Tensor:
        """From a warp start the truth is not the noised latent's own clean value: the loss
        is on the clean target half the UNet predicts, against the truth."""
        clean = self._predicted_clean(noisy, self._guided_unet(noisy, ts, text, self.net, feats),
                                      ts)
        return F.mse_loss(split(clean)[1].float(), truth.float())

    def _distill_loss(self, control, ct, text, flows, feats) -> torch.Tensor:
        """The student's F_ref residuals against the teacher's, each level's squared error
        relative to the teacher's mean square there (so deep, small maps count as much)."""
        with torch.no_grad():
            teacher = self.teacher.residuals(reference_features(
                self.teacher(control, ct, text), flows,
                confidence_gate=self.net.config.confidence_gate))
        student = self.net.residuals(feats)
        pairs = [*zip(student[0], teacher[0], strict=True), (student[1], teacher[1])]
        return torch.stack([F.mse_loss(s.float(), t.float()) / t.float().pow(2).mean()
                            .clamp_min(1e-8) for s, t in pairs]).mean()

    def export(self, path: Path) -> Path:
        if self.cfg.lora_rank:
            return self._save(path, appearance_net=self.net, unet=merged_unet(self.pipe.unet))
        return self._save(path, appearance_net=self.net)


def _template_flow(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The ground-truth flow template -> profile and where it is known: across two
    identities in cross-identity pairs, else the truth's own."""
    if "template_flow" in batch:
        return batch["template_flow"], batch["template_valid"]
    return batch["flow"], batch["valid"]


def _sample_images(dataset, n: int, seed: int) -> torch.Tensor:
    """``n`` images of ``dataset`` (seeded), in [-1, 1]."""
    idx = np.random.default_rng(seed).integers(0, len(dataset), n)
    return torch.stack([dataset[int(i)]["image"] for i in idx]) * 2 - 1


MODULES = {"vae": VAEModule, "base": BaseModule, "matching": MatchingModule,
           "appearance": AppearanceModule}


class Stage:
    """A stage's data, trained module, validation and export, for the Trainer."""

    def __init__(self, cfg: TrainConfig, device):
        cfg.validate()
        self.cfg = cfg
        fresh = cfg.stage == "vae" and not (cfg.init and Path(cfg.init).is_dir())
        if fresh:
            pipe = assemble_pipeline(**build_components(cfg.init or cfg.spec, seed=cfg.seed))
        else:
            pipe = load_for_training(cfg.init)
        size = pipe.resolution
        if cfg.stage == "vae":
            # Single images: photo crops (a corpus's train split) and every synthetic view.
            self.dataset = image_dataset(cfg.data, size, "train", cfg.seed, cfg.photo_crops)
            if fresh and hasattr(pipe.vae, "init_from_images"):  # a patch autoencoder
                self.init_info = pipe.vae.init_from_images(
                    _sample_images(self.dataset, 256, cfg.seed))
            self.val = {**photo_validation_sets(cfg.data, size, cfg.seed + 1),
                        **({"synth": image_dataset([cfg.val_data], size)} if cfg.val_data
                           else {})} or None
        else:
            # Ground-truth flow costs time per item; only the correspondence loss and
            # matching validation (PCK) read it.
            needs_flow = (cfg.stage == "matching" and (cfg.descriptor_dim > 0
                                                       or cfg.correspondence_loss > 0)) \
                or (cfg.stage == "appearance" and cfg.teacher_forcing > 0)
            pairs = dict(same_light=cfg.same_light, yaw_gap=cfg.yaw_gap,
                         include_self=cfg.self_pairs, size=size)
            cross = cfg.cross_identity if cfg.stage in ("appearance", "matching") else 0.0
            self.dataset = pair_dataset(cfg.data, seed=cfg.seed, with_flow=needs_flow,
                                        cross_identity=cross, photo_pairs=cfg.photo_pairs,
                                        cross_person=cross if cfg.stage == "matching" else 0.0,
                                        **pairs)
            self.val = pair_dataset([cfg.val_data], seed=cfg.seed + 1,
                                    with_flow=cfg.stage == "matching", **pairs) \
                if cfg.val_data else None
        self.module = MODULES[cfg.stage](cfg, _Frozen(pipe, device))

    collate = staticmethod(collate)

    def validate(self, module: StageModule, folder: Path, step: int) -> dict:
        from icportrait.training.validation import validate_stage

        return validate_stage(self, module, folder, step)

    def export(self, module: StageModule, path: Path) -> Path:
        if isinstance(module, VAEModule):
            return module.export(path, self.dataset)
        return module.export(path)
