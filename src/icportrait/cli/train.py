"""`icportrait train`: every stage, on accelerate, resumable."""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Annotated

import typer

from icportrait.cli.common import AsJson, MaskRatio, Seed, progress_bar
from icportrait.defaults import DESCRIPTOR_DIM, MASK_RATIO, MATCH_LOCALITY, PHOTO_PAIRS

train_app = typer.Typer(help="Train every stage (accelerate; resumable).", no_args_is_help=True)

Steps = Annotated[int, typer.Option(help="Optimiser steps.")]
Batch = Annotated[int, typer.Option(help="Batch size per process.")]
Lr = Annotated[float, typer.Option(help="Learning rate.")]
CheckpointEvery = Annotated[int, typer.Option(help="Checkpoint every N steps.")]
EmaDecay = Annotated[float | None, typer.Option(help="EMA decay (off by default).")]


def _option(name: str, annotation, default=inspect.Parameter.empty) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


# The options every training command takes, defined once (see training_command).
SHARED_OPTIONS = [
    _option("data", Annotated[list[Path], typer.Option(
        "--data", help="Training dataset folder(s).")]),
    _option("output_dir", Annotated[Path, typer.Option(
        "--output-dir", "-o", help="Run folder (checkpoints, logs).")]),
    _option("photo_pairs", Annotated[int, typer.Option(
        help="Pairs drawn from each photo corpus (`data photos`) in --data: two crops of "
             "one photo, exact flow.")], PHOTO_PAIRS),
    _option("val_data", Annotated[Path | None, typer.Option(help="Held-out dataset folder.")],
            None),
    _option("max_timestep", Annotated[int | None, typer.Option(
        help="Train on noise levels below this timestep only (a model for warp-initialised "
             "sampling at strength max_timestep / 1000; default: all).")], None),
    _option("validate_every", Annotated[int, typer.Option(
        help="Validate every N steps (0: never).")], 0),
    _option("grad_accum", Annotated[int, typer.Option(help="Gradient accumulation steps.")], 1),
    _option("mixed_precision", Annotated[str, typer.Option(
        help="Mixed precision: no, fp16 or bf16.")], "no"),
    _option("device", Annotated[str, typer.Option(
        help="auto (CUDA when available), cpu or cuda.")], "auto"),
    _option("seed", Seed, 0),
    _option("resume", Annotated[bool, typer.Option(
        "--resume", help="Continue from the latest checkpoint.")], False),
    _option("stop_after", Annotated[int | None, typer.Option(
        help="Stop after N steps this run.")], None),
    _option("as_json", AsJson, False),
]
RUN_OPTIONS = ("resume", "stop_after", "as_json")  # how to run, not what (not in TrainConfig)


def training_command(name: str):
    """Register ``fn`` as ``train NAME`` with its own options plus SHARED_OPTIONS; ``fn``
    gets the shared ones in ``**shared``."""

    def register(fn):
        own = list(inspect.signature(fn, eval_str=True).parameters.values())[:-1]  # **shared

        @functools.wraps(fn)
        def command(**kw):
            return fn(**kw)

        command.__signature__ = inspect.Signature(
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + SHARED_OPTIONS)
        return train_app.command(name)(command)

    return register


def run_stage(shared: dict, **config) -> dict:
    """Build the stage's TrainConfig from the shared and its own options, and train it."""
    from icportrait.training.config import TrainConfig

    run = {k: shared.pop(k) for k in RUN_OPTIONS}
    shared["data"] = [str(d) for d in shared["data"]]
    shared["output_dir"] = str(shared["output_dir"])
    shared["val_data"] = str(shared["val_data"]) if shared["val_data"] else None
    return _train(TrainConfig(**{**shared, **config}), **run)


def _train(cfg, resume: bool, stop_after: int | None, as_json: bool) -> dict:
    from icportrait.training.stages import Stage
    from icportrait.training.trainer import Trainer, make_accelerator

    cfg.validate()
    import diffusers

    diffusers.utils.logging.disable_progress_bar()
    acc = make_accelerator(cfg)
    stage = Stage(cfg, acc.device)
    with progress_bar(disable=as_json or not acc.is_main_process) as bar:
        task = bar.add_task(f"training {cfg.stage}", total=cfg.steps)
        result = Trainer(cfg, stage, acc).run(
            resume, stop_after=stop_after,
            progress=lambda done, total, logs: bar.update(
                task, completed=done, description=f"{cfg.stage} loss {logs['loss']:.4f}"),
        )
    if acc.is_main_process:
        if as_json:
            print(json.dumps(result, indent=2))
        else:
            state = "finished" if result["finished"] else "stopped (resume with --resume)"
            print(f"{cfg.stage}: steps {result['start_step']}->{result['end_step']} {state}, "
                  f"{result['steps_per_second']} steps/s, world size {result['world_size']}; "
                  f"{cfg.output_dir}")
    return result


@training_command("base")
def train_base(
    spec: Annotated[str, typer.Option(help="Model spec to pretrain.")] = "tiny",
    vae_data: Annotated[list[Path] | None, typer.Option(
        "--vae-data", help="Data of the VAE phase: photo corpora (`data photos`) and "
                           "synthetic folders (default: --data).")] = None,
    vae_steps: Annotated[int, typer.Option(help="VAE steps (phase 1).")] = 2000,
    vae_batch_size: Annotated[int, typer.Option(help="Images per VAE step.")] = 8,
    vae_lr: Annotated[float | None, typer.Option(help="VAE learning rate (default: --lr).")
                      ] = None,
    steps: Steps = 10000, batch_size: Batch = 8, lr: Lr = 2e-4,
    checkpoint_every: CheckpointEvery = 200,
    ema_decay: EmaDecay = None,
    init: Annotated[Path | None, typer.Option(
        help="Fine-tune this pipeline's UNet (its VAE stays; no VAE phase).")] = None,
    **shared,
) -> None:
    """Pretrain the tiny spec's VAE (on photos and renders), then its UNet (on renders)."""
    out = Path(shared["output_dir"])
    resume = shared["resume"]
    vae_dir = out / "vae"
    if init is None and not (vae_dir / "pipeline" / "model_index.json").is_file():
        vae = {**shared, "output_dir": vae_dir, "data": vae_data or shared["data"]}
        r = run_stage(vae, stage="vae", spec=spec, steps=vae_steps, lr=vae_lr or lr,
                      batch_size=vae_batch_size, checkpoint_every=checkpoint_every)
        if not r["finished"]:
            return
        resume = False
    unet = {**shared, "output_dir": out / "unet",
            "resume": resume or (out / "unet" / "checkpoints").is_dir()}
    run_stage(unet, stage="base", init=str(init or vae_dir / "pipeline"), steps=steps, lr=lr,
              batch_size=batch_size, ema_decay=ema_decay, checkpoint_every=checkpoint_every)


@training_command("matching")
def train_matching(
    base: Annotated[Path, typer.Option(
        help="Pipeline folder of the (pretrained) base, or a Stable Diffusion 1.5 folder or "
             "single file.")],
    steps: Steps = 1000, batch_size: Batch = 8, lr: Lr = 3e-4,
    descriptor_dim: Annotated[int, typer.Option(
        help="Channels of the matching descriptor head, trained with a dual-softmax loss on "
             "ground-truth matches (0: the paper's variant, raw features, denoising loss).")
    ] = DESCRIPTOR_DIM,
    match_locality: Annotated[float, typer.Option(
        help="Descriptor nets: standard deviation of the prior on a match's displacement, as "
             "a fraction of the half's width (faces are aligned, so they barely move).")
    ] = MATCH_LOCALITY,
    correspondence_loss: Annotated[
        float, typer.Option(help="Paper's variant: weight of the optional correspondence "
                                 "loss (0: off).")
    ] = 0.0,
    cross_identity: Annotated[float, typer.Option(
        help="Descriptor nets: share of pairs matched across two identities, with the same "
             "point of the face as ground truth: another identity's render in the target's "
             "view (data made with `data synth --shared-views`), and for photo corpora "
             "another face of the corpus (the two meshes' flow).")] = 0.0,
    mask_ratio: MaskRatio = MASK_RATIO,
    checkpoint_every: CheckpointEvery = 50,
    **shared,
) -> None:
    """Train the matching net (base frozen) on cross-view pairs."""
    run_stage(shared, stage="matching", init=str(base), steps=steps, batch_size=batch_size,
              lr=lr, descriptor_dim=descriptor_dim, match_locality=match_locality,
              correspondence_loss=correspondence_loss, cross_identity=cross_identity,
              mask_ratio=mask_ratio,
              checkpoint_every=checkpoint_every)


@training_command("appearance")
def train_appearance(
    matching: Annotated[Path, typer.Option(help="Pipeline folder from `train matching`.")],
    steps: Steps = 10000, batch_size: Batch = 8, lr: Lr = 1e-4,
    self_pairs: Annotated[bool, typer.Option(help="Also train on self-pairs.")] = True,
    cross_identity: Annotated[float, typer.Option(
        help="Share of pairs whose template is another identity in the target's view and "
             "light (needs data made with `data synth --shared-views`); 0: the template is "
             "the truth itself.")] = 0.0,
    lora_rank: Annotated[int, typer.Option(
        help="Also train LoRA adapters of this rank on the base UNet (0: base frozen).")] = 0,
    reference_timestep: Annotated[int | None, typer.Option(
        help="Read the clean canvas [profile | masked template] at this timestep, so that "
             "sampling computes F_ref once per image (default: the noisy canvas per step, "
             "as the paper).")] = None,
    confidence_gate: Annotated[bool, typer.Option(
        help="Weight the warped profile features by the match confidence.")] = False,
    teacher_forcing: Annotated[float, typer.Option(
        help="Share of batches trained with the ground-truth flow (template -> profile) "
             "instead of the matching net's.")] = 0.0,
    attention_free: Annotated[bool, typer.Option(
        help="Train an attention-free copy of the --matching pipeline's appearance net (a "
             "third of its compute per portrait).")] = False,
    distill: Annotated[bool, typer.Option(
        help="With --attention-free: learn the --matching pipeline's appearance net's F_ref "
             "residuals on the same canvases and flows, instead of the denoising loss "
             "(how F_ref is made, --reference-timestep and the gate, is the teacher's).")
    ] = False,
    warp_start: Annotated[bool, typer.Option(
        help="Noise the target from the warp start (the profile pulled along the flow and "
             "relit), as warp-initialised sampling does, and score the predicted clean "
             "target against the truth, instead of denoising the truth.")] = False,
    mask_ratio: MaskRatio = MASK_RATIO,
    checkpoint_every: CheckpointEvery = 200,
    ema_decay: EmaDecay = None,
    **shared,
) -> None:
    """Train the appearance net (matching net and base frozen): lighting-aware stitching."""
    run_stage(shared, stage="appearance", init=str(matching), steps=steps,
              batch_size=batch_size, lr=lr, self_pairs=self_pairs,
              cross_identity=cross_identity, lora_rank=lora_rank,
              reference_timestep=reference_timestep, confidence_gate=confidence_gate,
              teacher_forcing=teacher_forcing, attention_free=attention_free, distill=distill,
              warp_start=warp_start,
              mask_ratio=mask_ratio, checkpoint_every=checkpoint_every, ema_decay=ema_decay)


@train_app.command("release")
def train_release(
    pipeline: Annotated[Path, typer.Option(help="Trained pipeline folder (e.g. RUN/pipeline).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Release folder (e.g. weights/tiny).")],
    fp16: Annotated[bool, typer.Option(help="Store weights in fp16 (checked against fp32).")
                    ] = True,
    strength: Annotated[float | None, typer.Option(
        help="The shipped model's default strength (default: as trained).")] = None,
    match_locality: Annotated[float | None, typer.Option(
        help="The shipped matching net's displacement prior (default: as trained).")] = None,
    flow_source: Annotated[str | None, typer.Option(
        help="The shipped model's flow source: net or mesh (default: as trained).")] = None,
    warp_space: Annotated[str | None, typer.Option(
        help="Where the shipped model warps: latent or image (default: as trained).")] = None,
    as_json: AsJson = False,
) -> None:
    """Package a trained pipeline for shipping: fp16 safetensors, outputs checked vs fp32."""
    from icportrait.training.release import release

    summary = release(pipeline, out, fp16=fp16, strength=strength,
                      match_locality=match_locality, flow_source=flow_source,
                      warp_space=warp_space)
    print(json.dumps(summary, indent=2) if as_json else
          f"wrote {out}: {summary['size_mb']} MB ({summary['dtype']}); outputs vs fp32 "
          f"{summary.get('psnr_vs_fp32_db')} dB PSNR")
