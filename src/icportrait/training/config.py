"""Typed training configuration, saved as JSON next to every checkpoint."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from icportrait.defaults import (
    DESCRIPTOR_DIM,
    MASK_RATIO,
    MATCH_LOCALITY,
    MATCH_TIMESTEP,
    PHOTO_PAIRS,
    check_mask_ratio,
)
from icportrait.errors import ICPortraitError

STAGES = ("vae", "base", "matching", "appearance")


@dataclass
class TrainConfig:
    """Everything that defines a training run (defaults are the tiny spec's).

    Stages: ``vae`` and ``base`` pretrain the tiny spec's VAE and UNet on renders (SD 1.5
    users bring pretrained weights instead); ``matching`` trains the matching net,
    ``appearance`` the appearance net (matching net frozen). The base stays frozen in both
    (``lora_rank`` > 0 adds trainable LoRA adapters to it in the appearance stage).
    """

    stage: str
    output_dir: str
    data: list[str] = field(default_factory=list)
    val_data: str | None = None
    # model: a spec for fresh weights (vae), else a pipeline folder to start from
    spec: str = "tiny"
    init: str | None = None
    # optimisation
    steps: int = 1000
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    device: str = "auto"              # auto: CUDA when available (accelerate places the model)
    ema_decay: float | None = None
    seed: int = 0
    # bookkeeping
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    validate_every: int = 0
    # data and method
    mask_ratio: float = MASK_RATIO
    same_light: bool | None = None
    yaw_gap: tuple[float, float] = (0.0, 180.0)
    self_pairs: bool = False
    # appearance stage: share of pairs whose template is another identity in the target's
    # view and light (data rendered with --shared-views), the target staying the truth;
    # matching stage (descriptor nets): share of pairs matched template -> profile across
    # two identities
    cross_identity: float = 0.0
    # appearance stage: read the clean canvas at this timestep, once per image (None: the
    # noisy canvas at every step); weight warped features by the match confidence; the share
    # of batches whose flow is the ground truth instead of the matching net's
    reference_timestep: int | None = None
    confidence_gate: bool = False
    teacher_forcing: float = 0.0
    # appearance stage: train an attention-free copy of the --init pipeline's appearance net
    # (a third of its compute); distil: learn that net's F_ref residuals (the teacher's, on
    # the same canvases and flows) instead of the denoising loss
    attention_free: bool = False
    distill: bool = False
    # appearance stage: noise the target half from the warp start (the profile pulled along
    # the flow, relit with the template's light) instead of the truth, as warp-initialised
    # sampling does, and score the predicted clean target against the truth: F_ref must
    # correct what the warp got wrong
    warp_start: bool = False
    descriptor_dim: int = DESCRIPTOR_DIM  # matching stage: head size, 0 = paper's variant
    match_locality: float = MATCH_LOCALITY  # the descriptor's displacement prior (std / width)
    correspondence_loss: float = 0.0
    correspondence_temperature: float = 0.07
    match_timestep: int = MATCH_TIMESTEP
    kl_weight: float = 1e-6
    # Denoising stages: timesteps are drawn below this one only (None: all). A model sampled
    # from a warp-initialised latent at strength s only ever sees t < s * 1000.
    max_timestep: int | None = None
    # Random square crops for VAE training (0: whole images). Off by default: on the tiny
    # spec, 64 px crops of 128 px renders left full images with a global colour shift
    # (GroupNorm and mid-block attention statistics differ; validation PSNR 18.3 dB).
    vae_crop: int = 0
    # Photo crops per photo corpus in a VAE run's data (synthetic folders add every view).
    photo_crops: int = 10000
    # Crop pairs of one photo per photo corpus in a base, matching or appearance run's data.
    photo_pairs: int = PHOTO_PAIRS
    # LoRA rank on the frozen base UNet's attention projections, trained with the appearance
    # net (0: off). Merged into the UNet on export, so the pipeline folder stays plain.
    lora_rank: int = 0

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ICPortraitError(f"unknown stage {self.stage!r}; choose from {', '.join(STAGES)}")
        if not self.data:
            raise ICPortraitError("no training data given (--data DIR)")
        if self.stage != "vae" and not self.init:
            raise ICPortraitError(f"stage {self.stage} starts from a pipeline folder: pass --init")
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "log_every",
                     "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ICPortraitError(f"--{name.replace('_', '-')} must be at least 1")
        check_mask_ratio(self.mask_ratio)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ICPortraitError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ICPortraitError(f"mixed precision must be no, fp16 or bf16, got "
                                  f"{self.mixed_precision!r}")
        if self.lora_rank < 0 or (self.lora_rank and self.stage != "appearance"):
            raise ICPortraitError("--lora-rank must be >= 0, and LoRA trains with the appearance "
                                  "stage only")
        if self.max_timestep is not None and not 1 <= self.max_timestep <= 1000:
            raise ICPortraitError(f"--max-timestep must be in [1, 1000], got {self.max_timestep}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ICPortraitError(f"EMA decay must be in (0, 1), got {self.ema_decay}")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ICPortraitError(f"--teacher-forcing must be in [0, 1], got "
                                  f"{self.teacher_forcing}")
        if self.reference_timestep is not None and not 0 <= self.reference_timestep < 1000:
            raise ICPortraitError(f"--reference-timestep must be in [0, 999], got "
                                  f"{self.reference_timestep}")
        if (self.attention_free or self.distill or self.warp_start) and \
                self.stage != "appearance":
            raise ICPortraitError("--attention-free, --distill and --warp-start train the "
                                  "appearance net: use them with `train appearance`")
        if self.distill and self.warp_start:
            raise ICPortraitError("--distill learns the teacher's F_ref, --warp-start the "
                                  "portrait: choose one")
        if self.distill and not self.attention_free:
            raise ICPortraitError("--distill trains a smaller copy of the teacher: add "
                                  "--attention-free")
        if self.distill and self.lora_rank:
            raise ICPortraitError("--distill learns the teacher's F_ref, not the portrait: "
                                  "there is nothing for --lora-rank to learn")
        if self.stage == "matching" and self.cross_identity and not self.descriptor_dim:
            raise ICPortraitError("--cross-identity trains descriptor nets only: the paper's "
                                  "variant (--descriptor-dim 0) learns from denoising the truth")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        d = json.loads(text)
        d["yaw_gap"] = tuple(d.get("yaw_gap", (0.0, 180.0)))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_json(Path(path).read_text())
