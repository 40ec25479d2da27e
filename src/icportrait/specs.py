"""Named model specs: how to build or load an ICPortraitPipeline.

* ``tiny``: a small UNet + patch autoencoder for 2 CPU cores, 128 px per canvas half
  (32 x 32 x 12 latents, factor 4). Built here with random weights; the project trains it
  (weights/tiny).
* ``sd15``: the Stable Diffusion 1.x layout. The base (UNet, VAE, optionally text encoder and
  tokenizer) is loaded from a local diffusers folder or from one original-format
  ``.safetensors``/``.ckpt`` file whose architecture comes from the spec's packaged config
  folder; the control nets are created from the base UNet.

A new backbone of the same family is one entry here plus, for single files, a config folder
under ``configs/``: :mod:`icportrait.store` loads and saves every kind of model from this
registry. Reproduce a fresh tiny model::

    >>> pipe = build_pipeline("tiny", seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from icportrait.defaults import STRENGTH
from icportrait.errors import ModelFilesError
from icportrait.models.autoencoder import PatchAutoencoder
from icportrait.models.control_net import ICControlNet
from icportrait.models.prompt import PromptEmbedding
from icportrait.pipelines.pipeline_ic_portrait import ICPortraitPipeline

SD_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)


@dataclass(frozen=True)
class ModelSpec:
    """A model family: built from these configs (``vae`` and ``unet`` given: trained here
    from scratch) or loaded from pretrained base weights (``config_dir``: the packaged
    diffusers configs that single-file checkpoints are read with)."""

    name: str
    resolution: int                   # pixels per canvas half
    label: str = ""                   # how messages name it (default: the name)
    vae_class: str = "AutoencoderKL"  # a key of VAE_CLASSES
    vae: dict = field(default_factory=dict)
    unet: dict = field(default_factory=dict)
    null_seq_len: int = 77
    scheduler: dict = field(default_factory=lambda: dict(SD_SCHEDULER))
    config_dir: str | None = None     # under the package's configs/ folder

    @property
    def title(self) -> str:
        return self.label or self.name

    @property
    def buildable(self) -> bool:
        return bool(self.vae and self.unet)

    def config_path(self) -> Path:
        if self.config_dir is None:
            raise ModelFilesError(f"spec {self.name!r} has no packaged config folder")
        return Path(str(resources.files("icportrait").joinpath("configs", self.config_dir)))


TINY = ModelSpec(
    name="tiny",
    resolution=128,
    # A patch autoencoder (models/autoencoder.py) with 12 latent channels per 4 x 4 patch:
    # started from the PCA of patches, it keeps real faces (weights/tiny/RECIPE.md has the
    # comparison with AutoencoderKL and with 8 channels).
    vae_class="PatchAutoencoder",
    vae=dict(in_channels=3, latent_channels=12, patch_size=4, sample_size=128,
             hidden_channels=64, num_res_blocks=2),
    unet=dict(
        sample_size=32, in_channels=12, out_channels=12, layers_per_block=2,
        block_out_channels=(32, 64, 128),
        # Attention only below full latent resolution: the canvas is 32 x 64 = 2048 tokens.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=32, num_attention_heads=None,
        norm_num_groups=32,
    ),
    null_seq_len=4,
    # v-prediction: an epsilon-UNet's noise error at high noise levels is amplified by
    # sqrt((1 - a) / a) (5x at t = 800, 11x at t = 950) into its clean-image estimate; in 12
    # latent channels its samples stayed noise (docs/autoencoder.md). A velocity target keeps
    # that estimate's error at its own size.
    scheduler=dict(SD_SCHEDULER, prediction_type="v_prediction"),
)

SD15 = ModelSpec(name="sd15", resolution=512, label="SD 1.5", config_dir="sd15")

SPECS = {s.name: s for s in (TINY, SD15)}
VAE_CLASSES = {"AutoencoderKL": AutoencoderKL, "PatchAutoencoder": PatchAutoencoder}


def get_spec(name: str) -> ModelSpec:
    if name not in SPECS:
        raise ModelFilesError(f"unknown spec {name!r}; known: {', '.join(SPECS)}")
    return SPECS[name]


def _heads(cfg: dict) -> dict:
    # For the tiny spec we state head *dimension*; diffusers' UNet wants a head count.
    cfg = dict(cfg)
    dim = cfg.pop("attention_head_dim")
    cfg["attention_head_dim"] = tuple(max(1, c // dim) for c in cfg["block_out_channels"])
    return cfg


def build_components(spec: ModelSpec | str, seed: int = 0) -> dict:
    """Randomly initialised base components of a spec (tiny: trained from scratch)."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    if not spec.buildable:
        raise ModelFilesError(f"spec {spec.name!r} is loaded from weights, not built: use "
                              "icportrait.store.load_base")
    torch.manual_seed(seed)
    vae = VAE_CLASSES[spec.vae_class](**spec.vae)
    unet = UNet2DConditionModel(**_heads(spec.unet))
    null = PromptEmbedding(seq_len=spec.null_seq_len, dim=unet.config.cross_attention_dim)
    return {"vae": vae, "unet": unet, "null_embedding": null,
            "scheduler": DDIMScheduler(**spec.scheduler)}


def assemble_pipeline(vae, unet, scheduler, null_embedding=None, text_encoder=None,
                      tokenizer=None, matching_net=None, appearance_net=None,
                      default_strength: float = STRENGTH) -> ICPortraitPipeline:
    """An ICPortraitPipeline on a base; missing control nets are created from the UNet."""
    matching_net = matching_net or ICControlNet.from_unet(unet)
    appearance_net = appearance_net or ICControlNet.from_unet(unet)
    return ICPortraitPipeline(
        vae=vae, unet=unet, matching_net=matching_net, appearance_net=appearance_net,
        scheduler=scheduler, null_embedding=null_embedding, text_encoder=text_encoder,
        tokenizer=tokenizer, default_strength=default_strength,
    )


def build_pipeline(spec: ModelSpec | str = "tiny", seed: int = 0) -> ICPortraitPipeline:
    """A fresh pipeline with random base weights and zero-initialised control outputs."""
    return assemble_pipeline(**build_components(spec, seed))
