"""Where models come from and where they go: every load and save of a pipeline.

* :func:`load_pipeline`: a model for inference (``generate``, ``eval``, ``serve``, ``demo``):
  the embedded default (``$ICPORTRAIT_MODEL``, else ``weights/tiny``) or a pipeline folder.
* :func:`load_for_training`: what a training stage starts from: a pipeline folder, or the
  pretrained base of a registered spec (a diffusers folder or one original-format file)
  whose control nets are then created from its UNet.
* :func:`load_base` / :func:`load_base_pipeline`: a spec's pretrained base (components, or a
  pipeline with fresh control nets).
* :func:`save_pipeline`: ``save_pretrained`` written atomically (a release stores fp16).

What can be built or loaded is the registry in :mod:`icportrait.specs`. Nothing is ever
downloaded: every path is local.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from icportrait.errors import ICPortraitError, ModelFilesError
from icportrait.models.prompt import PromptEmbedding
from icportrait.pipelines.pipeline_ic_portrait import ICPortraitPipeline
from icportrait.specs import SD_SCHEDULER, ModelSpec, assemble_pipeline, get_spec

EMBEDDED_MODEL = Path(__file__).resolve().parents[2] / "weights" / "tiny"


def default_model_path() -> Path:
    """$ICPORTRAIT_MODEL, else the embedded model next to the source tree (weights/tiny)."""
    env = os.environ.get("ICPORTRAIT_MODEL")
    return Path(env) if env else EMBEDDED_MODEL


def load_pipeline(model: str | os.PathLike | None = None, device: str = "auto",
                  dtype: str = "auto") -> ICPortraitPipeline:
    """The pipeline in folder ``model`` (default: the embedded tiny model), on ``device``
    (auto: CUDA when available), in fp16 on CUDA and fp32 on CPU unless ``dtype`` says."""
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


def is_pipeline_folder(path: str | os.PathLike) -> bool:
    index = Path(path) / "model_index.json"
    return index.is_file() and "ICPortrait" in json.loads(index.read_text()).get(
        "_class_name", "")


def load_base_pipeline(path: str | os.PathLike, spec: str = "sd15",
                       torch_dtype: torch.dtype | None = None) -> ICPortraitPipeline:
    """A pipeline on the pretrained base of ``spec`` at ``path`` (folder or single file),
    with fresh control nets copied from its UNet's encoder (train them)."""
    return assemble_pipeline(**load_base(path, spec, torch_dtype=torch_dtype))


def load_for_training(path: str | os.PathLike, spec: str = "sd15") -> ICPortraitPipeline:
    """An icportrait pipeline folder, or a pretrained base of ``spec`` (a diffusers folder or
    a single original-format file), whose control nets then start from its encoder."""
    p = Path(path)
    try:
        if not is_pipeline_folder(p) and (p.is_file() or (p / "unet").is_dir()):
            return load_base_pipeline(p, spec)
        return ICPortraitPipeline.from_pretrained(p)
    except ModelFilesError as exc:
        raise ModelFilesError(f"--init: {exc}") from exc


def load_base(path: str | os.PathLike, spec: ModelSpec | str = "sd15",
              config_dir: str | os.PathLike | None = None,
              torch_dtype: torch.dtype | None = None) -> dict:
    """Base components of ``spec`` from a local diffusers folder or one original-format file.

    A folder needs ``unet/`` and ``vae/`` (``scheduler/``, ``text_encoder/`` and
    ``tokenizer/`` are used when present). A single file holds UNet and VAE in the original
    layout; their architecture comes from ``config_dir`` (default: the spec's packaged
    configs). Nothing is downloaded.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    path = Path(path)
    if not path.exists():
        raise ModelFilesError(f"{spec.title} base not found: {path}")
    kw = {"dtype": torch_dtype} if torch_dtype is not None else {}
    if path.is_dir():
        missing = [c for c in ("unet", "vae") if not (path / c).is_dir()]
        if missing:
            raise ModelFilesError(
                f"{path} is not a diffusers {spec.title} folder: missing {', '.join(missing)}/"
            )
        try:
            unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw)
            vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw)
        except (OSError, ValueError) as exc:
            raise ModelFilesError(f"cannot load the {spec.title} base from {path}: {exc}") from exc
        scheduler = (DDIMScheduler.from_pretrained(path, subfolder="scheduler")
                     if (path / "scheduler").is_dir() else DDIMScheduler(**SD_SCHEDULER))
        text_encoder, tokenizer = _load_text(path, kw)
    else:
        if path.suffix not in (".safetensors", ".ckpt"):
            raise ModelFilesError(f"{path}: expected a .safetensors or .ckpt checkpoint file")
        config = str(config_dir or spec.config_path())
        try:
            unet = UNet2DConditionModel.from_single_file(str(path), config=config,
                                                         subfolder="unet", **kw)
            vae = AutoencoderKL.from_single_file(str(path), config=config, subfolder="vae", **kw)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelFilesError(f"cannot load the {spec.title} checkpoint {path}: "
                                  f"{exc}") from exc
        scheduler = DDIMScheduler(**spec.scheduler)
        text_encoder = tokenizer = None
    null = PromptEmbedding(seq_len=spec.null_seq_len, dim=unet.config.cross_attention_dim)
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


def save_pipeline(pipe: ICPortraitPipeline, path: str | os.PathLike) -> Path:
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
