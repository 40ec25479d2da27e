"""Named model specs: how to build or load an ICPortraitPipeline.

* ``tiny``: a small UNet + VAE for 2 CPU cores, 128 px per canvas half (32 x 32 latents,
  VAE factor 4). Built here with random weights; the project trains it (weights/tiny).
* ``sd15``: the Stable Diffusion 1.x layout. The base (UNet, VAE, optionally text encoder and
  tokenizer) is loaded from a local diffusers folder or from one original-format
  ``.safetensors``/``.ckpt`` file; the control nets are created from the base UNet.

Reproduce a fresh tiny model::

    >>> pipe = build_pipeline("tiny", seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from icportrait.errors import ModelFilesError
from icportrait.models.control_net import ICControlNet
from icportrait.models.prompt import PromptEmbedding
from icportrait.pipelines.pipeline_ic_portrait import ICPortraitPipeline

SD_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    resolution: int                   # pixels per canvas half
    vae: dict = field(default_factory=dict)
    unet: dict = field(default_factory=dict)
    null_seq_len: int = 77
    scheduler: dict = field(default_factory=lambda: dict(SD_SCHEDULER))


TINY = ModelSpec(
    name="tiny",
    resolution=128,
    vae=dict(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=128,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16,
        scaling_factor=1.0,
    ),
    unet=dict(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64, 128),
        # Attention only below full latent resolution: the canvas is 32 x 64 = 2048 tokens.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=32, num_attention_heads=None,
        norm_num_groups=32,
    ),
    null_seq_len=4,
)

SD15 = ModelSpec(name="sd15", resolution=512)

SPECS = {s.name: s for s in (TINY, SD15)}


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
    if not spec.vae or not spec.unet:
        raise ModelFilesError(f"spec {spec.name!r} is loaded from weights, not built: use "
                              "load_sd15_base")
    torch.manual_seed(seed)
    vae = AutoencoderKL(**spec.vae)
    unet = UNet2DConditionModel(**_heads(spec.unet))
    null = PromptEmbedding(seq_len=spec.null_seq_len, dim=unet.config.cross_attention_dim)
    return {"vae": vae, "unet": unet, "null_embedding": null,
            "scheduler": DDIMScheduler(**spec.scheduler)}


def assemble_pipeline(vae, unet, scheduler, null_embedding=None, text_encoder=None,
                      tokenizer=None, matching_net=None, appearance_net=None
                      ) -> ICPortraitPipeline:
    """An ICPortraitPipeline on a base; missing control nets are created from the UNet."""
    matching_net = matching_net or ICControlNet.from_unet(unet)
    appearance_net = appearance_net or ICControlNet.from_unet(unet)
    return ICPortraitPipeline(
        vae=vae, unet=unet, matching_net=matching_net, appearance_net=appearance_net,
        scheduler=scheduler, null_embedding=null_embedding, text_encoder=text_encoder,
        tokenizer=tokenizer,
    )


def build_pipeline(spec: ModelSpec | str = "tiny", seed: int = 0) -> ICPortraitPipeline:
    """A fresh pipeline with random base weights and zero-initialised control outputs."""
    return assemble_pipeline(**build_components(spec, seed))


# ---------------------------------------------------------------------------- SD 1.5
def sd15_config_dir() -> Path:
    return Path(str(resources.files("icportrait").joinpath("configs/sd15")))


def load_sd15_base(path: str | os.PathLike, config_dir: str | os.PathLike | None = None,
                   torch_dtype: torch.dtype | None = None) -> dict:
    """Base components from a local diffusers folder or an original-format single file.

    A folder needs ``unet/`` and ``vae/`` (``scheduler/``, ``text_encoder/`` and
    ``tokenizer/`` are used when present). A single file holds UNet and VAE in the original
    layout; their architecture comes from ``config_dir`` (default: the packaged SD 1.5
    configs). Nothing is downloaded.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFilesError(f"SD 1.5 base not found: {path}")
    kw = {"dtype": torch_dtype} if torch_dtype is not None else {}
    if path.is_dir():
        missing = [c for c in ("unet", "vae") if not (path / c).is_dir()]
        if missing:
            raise ModelFilesError(
                f"{path} is not a diffusers SD 1.5 folder: missing {', '.join(missing)}/"
            )
        try:
            unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw)
            vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw)
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"cannot load the SD 1.5 base from {path}: {exc}") from exc
        scheduler = (DDIMScheduler.from_pretrained(path, subfolder="scheduler")
                     if (path / "scheduler").is_dir() else DDIMScheduler(**SD_SCHEDULER))
        text_encoder, tokenizer = _load_text(path, kw)
    else:
        if path.suffix not in (".safetensors", ".ckpt"):
            raise ModelFilesError(f"{path}: expected a .safetensors or .ckpt checkpoint file")
        config = str(config_dir or sd15_config_dir())
        try:
            unet = UNet2DConditionModel.from_single_file(str(path), config=config,
                                                         subfolder="unet", **kw)
            vae = AutoencoderKL.from_single_file(str(path), config=config, subfolder="vae", **kw)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelFilesError(f"cannot load an SD 1.5 checkpoint from {path}: {exc}") from exc
        scheduler = DDIMScheduler(**SD_SCHEDULER)
        text_encoder = tokenizer = None
    null = PromptEmbedding(seq_len=77, dim=unet.config.cross_attention_dim)
    if text_encoder is not None:
        with torch.no_grad():
            ids = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                            return_tensors="pt").input_ids
            null.embedding.copy_(text_encoder(ids)[0])
    # Without a text encoder the null embedding stays zero (documented in the README).
    return {"vae": vae, "unet": unet, "scheduler": scheduler, "null_embedding": null,
            "text_encoder": text_encoder, "tokenizer": tokenizer}


def _load_text(path: Path, kw: dict):
    if not ((path / "text_encoder").is_dir() and (path / "tokenizer").is_dir()):
        return None, None
    from transformers import CLIPTextModel, CLIPTokenizer

    return (CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw),
            CLIPTokenizer.from_pretrained(path, subfolder="tokenizer"))


def load_sd15_pipeline(path: str | os.PathLike, config_dir: str | os.PathLike | None = None,
                       torch_dtype: torch.dtype | None = None) -> ICPortraitPipeline:
    """An ICPortraitPipeline whose base is SD 1.5 from ``path`` and whose control nets are
    fresh copies of its encoder (train them with `icportrait train`)."""
    return assemble_pipeline(**load_sd15_base(path, config_dir, torch_dtype))
