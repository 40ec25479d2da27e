"""What each training stage trains, on which data, with which loss.

Every stage is a pipeline folder in, a pipeline folder out:

    vae         spec "tiny" (random)  -> trains the VAE             (reconstruction + KL)
    base        pipeline              -> trains the UNet + null embedding (denoising canvases)
    matching    pipeline              -> trains the matching net    (denoising, + optional
                                                                     correspondence loss)
    appearance  pipeline (with a trained matching net) -> trains the appearance net

In ``matching`` and ``appearance`` the base (VAE, UNet, null embedding) is frozen, as in the
paper. A stage's ``module`` holds only what it trains (so checkpoints stay small); the frozen
pipeline is kept beside it.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset

from icportrait.conditioning import (
    default_patch_size,
    noised,
    patch_mask,
    prepare_condition,
    split,
    stitch,
    vae_encode,
)
from icportrait.data.pairs import PairDataset
from icportrait.errors import ICPortraitError, ModelFilesError
from icportrait.models.control_net import ICControlNet
from icportrait.models.reference import match_features, reference_features
from icportrait.pipelines.pipeline_ic_portrait import ICPortraitPipeline
from icportrait.specs import assemble_pipeline, build_components
from icportrait.training.config import TrainConfig
from icportrait.training.losses import correspondence_loss


def save_pipeline(pipe: ICPortraitPipeline, path: Path) -> Path:
    """``save_pretrained`` into a temporary folder, then swap it in: never half-written."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    if path.exists():
        old = path.with_name(f".old-{path.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return path


def load_init(path: str) -> ICPortraitPipeline:
    """An icportrait pipeline folder, or a Stable Diffusion 1.5 base (a diffusers folder or
    a single original-format file), whose control nets then start from its encoder."""
    p = Path(path)
    index = p / "model_index.json"
    is_ours = index.is_file() and "ICPortrait" in json.loads(index.read_text()).get(
        "_class_name", "")
    try:
        if not is_ours and (p.is_file() or (p / "unet").is_dir()):
            from icportrait.specs import load_sd15_pipeline

            return load_sd15_pipeline(p)
        return ICPortraitPipeline.from_pretrained(path)
    except ModelFilesError as exc:
        raise ModelFilesError(f"--init: {exc}") from exc


def pair_dataset(cfg: TrainConfig, folders: list[str], seed: int, with_flow: bool):
    sets = [PairDataset(f, same_light=cfg.same_light, yaw_gap=cfg.yaw_gap,
                        include_self=cfg.self_pairs, seed=seed, with_flow=with_flow)
            for f in folders]
    return sets[0] if len(sets) == 1 else ConcatDataset(sets)


def collate(items: list[dict]) -> dict:
    out = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else torch.tensor(vals)
    return out


class _Frozen:
    """Holds the frozen pipeline outside the trained module (not an nn.Module attribute,
    so it is neither checkpointed nor wrapped by DDP)."""

    def __init__(self, pipe: ICPortraitPipeline, device):
        from diffusers import DDPMScheduler

        if pipe.scheduler.config.get("prediction_type", "epsilon") != "epsilon":
            raise ICPortraitError("training supports epsilon-prediction models only, this one "
                                  f"predicts {pipe.scheduler.config.prediction_type!r}")
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

    def _noise(self, x0: torch.Tensor, gen: torch.Generator):
        sched = self.frozen.train_scheduler
        noise = torch.randn(x0.shape, generator=gen, device=gen.device).to(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), generator=gen,
                          device=gen.device).to(x0.device)
        return sched.add_noise(x0, noise, t), noise, t

    def _condition(self, p: torch.Tensor, t: torch.Tensor, gen: torch.Generator):
        b, _, h, w = t.shape
        gens = [torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=gen,
                                                                 device=gen.device)))
                for _ in range(b)]
        mask = patch_mask(b, h, w, self.cfg.mask_ratio, default_patch_size(h), gens, t.device)
        return prepare_condition(p, t, mask)

    def _match_input(self, cond, gen: torch.Generator):
        """The control input cached flows are computed from (see ICPortraitPipeline)."""
        noise = torch.randn(cond.latents.shape, generator=gen, device=gen.device)
        noisy = noised(cond.latents, self.pipe.scheduler.alphas_cumprod, self.cfg.match_timestep,
                       noise)
        tm = torch.full((noisy.shape[0],), self.cfg.match_timestep, device=noisy.device)
        return cond.control_input(noisy), tm

    def _target_loss(self, noisy, ts, text, net: ICControlNet, feats, noise) -> torch.Tensor:
        """Denoising loss on the target half, with ``feats`` entering the frozen base UNet
        as ``net``'s ControlNet residuals (the profile half is known at inference)."""
        down, mid = net.residuals(feats)
        pred = self.pipe.unet(noisy, ts, encoder_hidden_states=text,
                              down_block_additional_residuals=down,
                              mid_block_additional_residual=mid).sample
        return F.mse_loss(split(pred)[1].float(), split(noise)[1].float())

    def _save(self, path: Path, **trained) -> Path:
        """The frozen pipeline with the ``trained`` components swapped in."""
        pipe = self.pipe
        parts = dict(vae=pipe.vae, unet=pipe.unet, scheduler=pipe.scheduler,
                     null_embedding=pipe.null_embedding, text_encoder=pipe.text_encoder,
                     tokenizer=pipe.tokenizer, matching_net=pipe.matching_net,
                     appearance_net=pipe.appearance_net)
        return save_pipeline(assemble_pipeline(**{**parts, **trained}), path)

    def export(self, path: Path) -> Path:
        raise NotImplementedError


class VAEModule(StageModule):
    def __init__(self, cfg, frozen):
        super().__init__(cfg, frozen)
        self.vae = frozen.pipe.vae.requires_grad_(True).train()

    def forward(self, batch, gen):
        x = torch.cat([self._images(batch, "profile"), self._images(batch, "target")])
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
            idx = np.random.default_rng(0).integers(0, len(dataset), 32)
            x = torch.stack([dataset[int(i)]["target"] for i in idx]).to(pipe.device) * 2 - 1
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
        noisy, noise, ts = self._noise(stitch(p, t), gen)
        pred = self.unet(noisy, ts, encoder_hidden_states=self.null_embedding(noisy.shape[0])
                         ).sample
        loss = F.mse_loss(pred.float(), noise.float())
        return loss, {}

    def export(self, path: Path) -> Path:
        pipe = self.pipe
        # Control nets start from the *trained* base encoder.
        return save_pipeline(assemble_pipeline(pipe.vae, self.unet, pipe.scheduler,
                                               self.null_embedding, pipe.text_encoder,
                                               pipe.tokenizer), path)


class MatchingModule(StageModule):
    def __init__(self, cfg, frozen):
        super().__init__(cfg, frozen)
        self.net: ICControlNet = frozen.pipe.matching_net.requires_grad_(True).train()

    def forward(self, batch, gen):
        pipe = self.pipe
        p, t = self._latents(batch)
        cond = self._condition(p, t, gen)
        noisy, noise, ts = self._noise(stitch(p, t), gen)
        text = pipe.encode_prompt(None, noisy.shape[0])
        feats = self.net(cond.control_input(noisy), ts, text)
        denoise = self._target_loss(noisy, ts, text, self.net, feats, noise)
        logs = {"denoise": denoise.item()}
        loss = denoise
        if self.cfg.correspondence_loss > 0:
            ci, tm = self._match_input(cond, gen)
            corr = correspondence_loss(self.net(ci, tm, text), batch["flow"].to(p.device),
                                       batch["valid"].to(p.device),
                                       self.cfg.correspondence_temperature)
            loss = loss + self.cfg.correspondence_loss * corr
            logs["correspondence"] = corr.item()
        return loss, logs

    def export(self, path: Path) -> Path:
        return self._save(path, matching_net=self.net)


LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def add_lora(unet, rank: int) -> nn.ModuleList:
    """Add peft LoRA adapters (rank ``rank``) to the attention projections of ``unet``
    in place; returns their A/B layers, the only trainable parameters, as one module (so
    checkpoints hold the adapters, not the whole base)."""
    from peft import LoraConfig
    from peft.tuners.lora import LoraLayer

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=LORA_TARGETS))
    layers = [m for _, m in unet.named_modules() if isinstance(m, LoraLayer)]
    return nn.ModuleList([part for m in layers for part in (m.lora_A, m.lora_B)])


def merged_unet(unet):
    """A copy of ``unet`` with its LoRA adapters merged into the weights and removed."""
    merged = copy.deepcopy(unet)
    merged.fuse_lora()
    merged.unload_lora()
    return merged


class AppearanceModule(StageModule):
    def __init__(self, cfg, frozen):
        super().__init__(cfg, frozen)
        self.net: ICControlNet = frozen.pipe.appearance_net.requires_grad_(True).train()
        if cfg.lora_rank:
            self.lora = add_lora(frozen.pipe.unet, cfg.lora_rank)

    def forward(self, batch, gen):
        pipe = self.pipe
        p, t = self._latents(batch)
        cond = self._condition(p, t, gen)
        text = pipe.encode_prompt(None, p.shape[0])
        with torch.no_grad():  # the matching net is frozen: flows as at inference
            ci, tm = self._match_input(cond, gen)
            flows = match_features(pipe.matching_net(ci, tm, text))
        noisy, noise, ts = self._noise(stitch(p, t), gen)
        feats = reference_features(self.net(cond.control_input(noisy), ts, text), flows)
        return self._target_loss(noisy, ts, text, self.net, feats, noise), {}

    def export(self, path: Path) -> Path:
        if self.cfg.lora_rank:
            return self._save(path, appearance_net=self.net, unet=merged_unet(self.pipe.unet))
        return self._save(path, appearance_net=self.net)


MODULES = {"vae": VAEModule, "base": BaseModule, "matching": MatchingModule,
           "appearance": AppearanceModule}


class Stage:
    """A stage's data, trained module, validation and export, for the Trainer."""

    def __init__(self, cfg: TrainConfig, device):
        cfg.validate()
        self.cfg = cfg
        if cfg.stage == "vae":
            pipe = assemble_pipeline(**build_components(cfg.init or cfg.spec, seed=cfg.seed)) \
                if not (cfg.init and Path(cfg.init).is_dir()) else load_init(cfg.init)
        else:
            pipe = load_init(cfg.init)
        self._check_spec(pipe)
        # Ground-truth flow costs time per item; only the correspondence loss and matching
        # validation (PCK) read it.
        needs_flow = cfg.stage == "matching" and cfg.correspondence_loss > 0
        self.dataset = pair_dataset(cfg, cfg.data, cfg.seed, needs_flow)
        self.module = MODULES[cfg.stage](cfg, _Frozen(pipe, device))
        self.val = pair_dataset(cfg, [cfg.val_data], cfg.seed + 1, cfg.stage == "matching") \
            if cfg.val_data else None

    def _check_spec(self, pipe: ICPortraitPipeline) -> None:
        from icportrait.data.multiview import open_multiview

        size = pipe.resolution
        for folder in [*self.cfg.data, *([self.cfg.val_data] if self.cfg.val_data else [])]:
            data_size = open_multiview(folder).image(0, 0, 0).shape[:2]
            if data_size != (size, size):
                raise ICPortraitError(
                    f"the model works at {size} px but {folder} holds {data_size[1]}x"
                    f"{data_size[0]} px images; regenerate the data with --size {size}"
                )

    collate = staticmethod(collate)

    def validate(self, module: StageModule, folder: Path, step: int) -> dict:
        from icportrait.training.validation import validate_stage

        return validate_stage(self, module, folder, step)

    def export(self, module: StageModule, path: Path) -> Path:
        if isinstance(module, VAEModule):
            return module.export(path, self.dataset)
        return module.export(path)
