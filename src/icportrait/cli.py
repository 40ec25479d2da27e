"""The `icportrait` command.

Every error a user can cause ends in one line on stderr and a non-zero exit code:
1 when some inputs failed (the others are still processed), 2 for unusable arguments or
set-up problems.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from icportrait import __version__
from icportrait.errors import ICPortraitError

app = typer.Typer(
    name="icportrait",
    help="Personalised portraits in any pose and lighting (IC-Portrait).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
faces_app = typer.Typer(help="Face toolkit for real photos.", no_args_is_help=True)
app.add_typer(faces_app, name="faces")
data_app = typer.Typer(help="Synthetic view-consistent profile data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
train_app = typer.Typer(help="Train every stage (accelerate; resumable).", no_args_is_help=True)
app.add_typer(train_app, name="train")

# Progress bars only; messages go through _fail so they stay one unwrapped line.
err = Console(stderr=True, highlight=False)


def _fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress(disable: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=err, transient=True, disable=disable,
    )


def _version(value: bool) -> None:
    if value:
        print(f"icportrait {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """Personalised portraits in any pose and lighting (IC-Portrait)."""


@faces_app.command("inspect")
def faces_inspect(
    images: Annotated[list[Path], typer.Argument(help="Image files to inspect.")],
    out: Annotated[
        Path | None, typer.Option(help="Write <name>_annotated.png and <name>_aligned.png here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
    size: Annotated[int, typer.Option(help="Side of the aligned crop in pixels.")] = 256,
    margin: Annotated[float, typer.Option(help="Crop margin (1 = FFHQ framing).")] = 1.0,
    detector: Annotated[str, typer.Option(help="auto, mediapipe or dlib.")] = "auto",
    single: Annotated[
        bool, typer.Option("--single", help="Fail images with more than one face.")
    ] = False,
) -> None:
    """Find faces: box, score, yaw/pitch/roll and landmarks, per image.

    Exits 1 if any image is unreadable or has no usable face; the others are still reported.
    """
    from icportrait.faces import MIN_FACE_SIZE, analyze_faces, load_image, prepare_face
    from icportrait.faces.draw import annotate
    from icportrait.faces.io import save_image

    if detector not in ("auto", "mediapipe", "dlib"):
        raise ICPortraitError(f"unknown detector {detector!r}: use auto, mediapipe or dlib")
    if not 16 <= size <= 4096:
        raise ICPortraitError(f"--size must be in [16, 4096] px, got {size}")
    if not 0.25 <= margin <= 4:
        raise ICPortraitError(f"--margin must be in [0.25, 4], got {margin}")
    reports, failed = [], 0
    with _progress(disable=len(images) < 2) as bar:
        task = bar.add_task("inspecting", total=len(images))
        for path in images:
            report: dict = {"image": str(path)}
            t0 = time.perf_counter()
            try:
                image = load_image(path)
                faces = analyze_faces(image, detector)  # type: ignore[arg-type]
                report["size"] = [image.shape[1], image.shape[0]]
                report["faces"] = [f.to_dict() for f in faces]
                usable = [f for f in faces if f.box.size >= MIN_FACE_SIZE and f.mesh is not None]
                if not faces:
                    raise ICPortraitError("no face found")
                if not usable:
                    raise ICPortraitError(
                        f"{len(faces)} face(s) found but none usable (smaller than "
                        f"{MIN_FACE_SIZE} px or without landmarks)"
                    )
                if single and len(faces) > 1:
                    raise ICPortraitError(f"{len(faces)} faces found, --single wants one")
                if out is not None:
                    prepared = prepare_face(image, size, margin, detector=detector)  # type: ignore[arg-type]
                    stem = path.stem
                    report["annotated"] = str(save_image(annotate(image, faces),
                                                         out / f"{stem}_annotated.png"))
                    report["aligned"] = str(save_image(prepared.image, out / f"{stem}_aligned.png"))
            except ICPortraitError as exc:
                failed += 1
                report["error"] = str(exc)
                _fail(f"{path}: {exc}")
            report["seconds"] = round(time.perf_counter() - t0, 4)
            reports.append(report)
            bar.advance(task)
            if not as_json:
                _print_inspect(report)
    if as_json:
        print(json.dumps(reports, indent=2))
    if failed:
        raise typer.Exit(1)


def _print_inspect(report: dict) -> None:
    if "error" in report:
        return
    faces = report["faces"]
    print(f"{report['image']}: {len(faces)} face(s), {report['seconds']:.2f} s")
    for i, f in enumerate(faces):
        pose = f["pose"]
        pose_txt = "pose n/a" if pose is None else (
            f"yaw {pose['yaw']:+.1f} pitch {pose['pitch']:+.1f} roll {pose['roll']:+.1f}"
        )
        print(f"  [{i}] box {f['box']} score {f['score']:.3f} {pose_txt} "
              f"landmarks {f['landmarks']}")


def _range(text: str, name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise ICPortraitError(f"--{name} must be MIN,MAX in degrees (e.g. -60,60), got "
                              f"{text!r}") from None
    return lo, hi


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Dataset folder (created; resumable).")],
    identities: Annotated[int, typer.Option(help="Number of identities.")] = 100,
    views: Annotated[int, typer.Option(help="Head poses per identity.")] = 8,
    lights: Annotated[int, typer.Option(help="Lightings per identity.")] = 2,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same data.")] = 0,
    yaw: Annotated[str, typer.Option(help="Yaw range MIN,MAX (degrees).")] = "-60,60",
    pitch: Annotated[str, typer.Option(help="Pitch range MIN,MAX (degrees).")] = "-25,25",
    roll: Annotated[str, typer.Option(help="Roll range MIN,MAX (degrees).")] = "-10,10",
    per_shard: Annotated[int, typer.Option(help="Identities per shard file.")] = 16,
    shard: Annotated[
        str | None, typer.Option(help="i/n: this worker renders shards j with j % n == i.")
    ] = None,
    source: Annotated[
        str, typer.Option(help="procedural, or photos:DIR to lift your own portraits.")
    ] = "procedural",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Render identities x views x lights with ground-truth geometry into sharded files."""
    from icportrait.synth.generate import SynthConfig, generate, parse_shard

    cfg = SynthConfig(identities=identities, views=views, lights=lights, size=size, seed=seed,
                      yaw=_range(yaw, "yaw"), pitch=_range(pitch, "pitch"),
                      roll=_range(roll, "roll"), per_shard=per_shard, source=source)
    part = parse_shard(shard)
    if source != "procedural" and not source.startswith("photos:"):
        raise ICPortraitError(f"--source must be 'procedural' or 'photos:DIR', got {source!r}")
    with _progress(disable=as_json) as bar:
        task = bar.add_task("rendering shards", total=None)
        summary = generate(out, cfg, part,
                           progress=lambda done, total: bar.update(task, completed=done,
                                                                   total=total))
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{out}: {summary['shards_written']} shard(s) written, "
              f"{summary['shards_skipped']} already done, {summary['views_rendered']} views "
              f"({summary['views_per_second']} views/s)")


@data_app.command("check")
def data_check(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    pairs: Annotated[int, typer.Option(help="View pairs to check the flow on.")] = 64,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts, and the reprojection error of the ground-truth flow."""
    from icportrait.synth.check import check_dataset

    report = check_dataset(root, pairs=pairs)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    r = report["reprojection_px"]
    print(f"{root}: {report['identities']}/{report['identities_expected']} identities, "
          f"{report['views']} views x {report['lights']} lights at {report['size']} px; "
          f"GT-flow reprojection error median {r.get('median')} px, p95 {r.get('p95')} px "
          f"over {report['pairs_checked']} pairs")


@data_app.command("preview")
def data_preview(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")],
    identities: Annotated[int, typer.Option(help="Rows (identities).")] = 6,
    columns: Annotated[int, typer.Option(help="Columns (views x lights).")] = 8,
) -> None:
    """A grid of identities x views x lights."""
    from icportrait.faces.io import save_image
    from icportrait.synth.check import preview_grid

    path = save_image(preview_grid(root, identities, columns), output)
    print(f"wrote {path}")


Data = Annotated[list[Path], typer.Option("--data", help="Training dataset folder(s).")]
Out = Annotated[Path, typer.Option("--output-dir", "-o", help="Run folder (checkpoints, logs).")]
Steps = Annotated[int, typer.Option(help="Optimiser steps.")]
Batch = Annotated[int, typer.Option(help="Batch size per process.")]
Lr = Annotated[float, typer.Option(help="Learning rate.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from the latest checkpoint.")]
ValData = Annotated[Path | None, typer.Option(help="Held-out dataset folder.")]
ValidateEvery = Annotated[int, typer.Option(help="Validate every N steps (0: never).")]
CheckpointEvery = Annotated[int, typer.Option(help="Checkpoint every N steps.")]
GradAccum = Annotated[int, typer.Option(help="Gradient accumulation steps.")]
EmaDecay = Annotated[float | None, typer.Option(help="EMA decay (off by default).")]
Precision = Annotated[str, typer.Option(help="Mixed precision: no, fp16 or bf16.")]
Seed = Annotated[int, typer.Option(help="Seed.")]
StopAfter = Annotated[int | None, typer.Option(help="Stop after N steps this run.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON results.")]
MaskRatio = Annotated[float, typer.Option(help="Template patches hidden.")]


def _train(cfg, resume: bool, stop_after: int | None, as_json: bool) -> dict:
    from icportrait.training.stages import Stage
    from icportrait.training.trainer import Trainer, make_accelerator

    cfg.validate()
    import diffusers

    diffusers.utils.logging.disable_progress_bar()
    acc = make_accelerator(cfg)
    stage = Stage(cfg, acc.device)
    with _progress(disable=as_json or not acc.is_main_process) as bar:
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


def _common(**kw):
    from icportrait.training.config import TrainConfig

    kw["data"] = [str(d) for d in kw["data"]]
    kw["output_dir"] = str(kw["output_dir"])
    return TrainConfig(**kw)


@train_app.command("base")
def train_base(
    data: Data, output_dir: Out,
    spec: Annotated[str, typer.Option(help="Model spec to pretrain.")] = "tiny",
    vae_steps: Annotated[int, typer.Option(help="VAE steps (phase 1).")] = 2000,
    steps: Steps = 10000, batch_size: Batch = 8, lr: Lr = 2e-4,
    val_data: ValData = None,
    validate_every: ValidateEvery = 0,
    checkpoint_every: CheckpointEvery = 200,
    grad_accum: GradAccum = 1,
    ema_decay: EmaDecay = None,
    mixed_precision: Precision = "no",
    seed: Seed = 0,
    resume: Resume = False,
    stop_after: StopAfter = None,
    as_json: AsJson = False,
) -> None:
    """Pretrain the tiny spec's VAE, then its UNet, on synthetic renders."""
    common = dict(data=data, val_data=str(val_data) if val_data else None,
                  validate_every=validate_every, checkpoint_every=checkpoint_every,
                  grad_accum=grad_accum, mixed_precision=mixed_precision, seed=seed,
                  batch_size=batch_size)
    vae_dir = output_dir / "vae"
    if not (vae_dir / "pipeline" / "model_index.json").is_file():
        r = _train(_common(stage="vae", output_dir=vae_dir, spec=spec, steps=vae_steps, lr=lr,
                           **common), resume, stop_after, as_json)
        if not r["finished"]:
            return
        resume = False
    _train(_common(stage="base", output_dir=output_dir / "unet", init=str(vae_dir / "pipeline"),
                   steps=steps, lr=lr, ema_decay=ema_decay, **common),
           resume or (output_dir / "unet" / "checkpoints").is_dir(), stop_after, as_json)


@train_app.command("matching")
def train_matching(
    data: Data, output_dir: Out,
    base: Annotated[Path, typer.Option(
        help="Pipeline folder of the (pretrained) base, or a Stable Diffusion 1.5 folder or "
             "single file.")],
    steps: Steps = 200, batch_size: Batch = 8, lr: Lr = 1e-4,
    correspondence_loss: Annotated[
        float, typer.Option(help="Weight of the optional correspondence loss (0: off).")
    ] = 0.0,
    mask_ratio: MaskRatio = 0.8,
    val_data: ValData = None,
    validate_every: ValidateEvery = 0,
    checkpoint_every: CheckpointEvery = 50,
    grad_accum: GradAccum = 1,
    mixed_precision: Precision = "no",
    seed: Seed = 0,
    resume: Resume = False,
    stop_after: StopAfter = None,
    as_json: AsJson = False,
) -> None:
    """Train the matching net (base frozen) on cross-view pairs."""
    _train(_common(stage="matching", data=data, output_dir=output_dir, init=str(base),
                   steps=steps, batch_size=batch_size, lr=lr,
                   correspondence_loss=correspondence_loss, mask_ratio=mask_ratio,
                   val_data=str(val_data) if val_data else None, validate_every=validate_every,
                   checkpoint_every=checkpoint_every, grad_accum=grad_accum,
                   mixed_precision=mixed_precision, seed=seed), resume, stop_after, as_json)


@train_app.command("appearance")
def train_appearance(
    data: Data, output_dir: Out,
    matching: Annotated[Path, typer.Option(help="Pipeline folder from `train matching`.")],
    steps: Steps = 10000, batch_size: Batch = 8, lr: Lr = 1e-4,
    self_pairs: Annotated[bool, typer.Option(help="Also train on self-pairs.")] = True,
    lora_rank: Annotated[int, typer.Option(
        help="Also train LoRA adapters of this rank on the base UNet (0: base frozen).")] = 0,
    mask_ratio: MaskRatio = 0.8,
    val_data: ValData = None,
    validate_every: ValidateEvery = 0,
    checkpoint_every: CheckpointEvery = 200,
    grad_accum: GradAccum = 1,
    ema_decay: EmaDecay = None,
    mixed_precision: Precision = "no",
    seed: Seed = 0,
    resume: Resume = False,
    stop_after: StopAfter = None,
    as_json: AsJson = False,
) -> None:
    """Train the appearance net (matching net and base frozen): lighting-aware stitching."""
    _train(_common(stage="appearance", data=data, output_dir=output_dir, init=str(matching),
                   steps=steps, batch_size=batch_size, lr=lr, self_pairs=self_pairs,
                   lora_rank=lora_rank, mask_ratio=mask_ratio,
                   val_data=str(val_data) if val_data else None, validate_every=validate_every,
                   checkpoint_every=checkpoint_every, grad_accum=grad_accum, ema_decay=ema_decay,
                   mixed_precision=mixed_precision, seed=seed), resume, stop_after, as_json)


@train_app.command("release")
def train_release(
    pipeline: Annotated[Path, typer.Option(help="Trained pipeline folder (e.g. RUN/pipeline).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Release folder (e.g. weights/tiny).")],
    fp16: Annotated[bool, typer.Option(help="Store weights in fp16 (checked against fp32).")
                    ] = True,
    as_json: AsJson = False,
) -> None:
    """Package a trained pipeline for shipping: fp16 safetensors, outputs checked vs fp32."""
    from icportrait.training.release import release

    summary = release(pipeline, out, fp16=fp16)
    print(json.dumps(summary, indent=2) if as_json else
          f"wrote {out}: {summary['size_mb']} MB ({summary['dtype']}); outputs vs fp32 "
          f"{summary.get('psnr_vs_fp32_db')} dB PSNR")


@app.command()
def generate(
    profile: Annotated[list[Path], typer.Option(help="Photo(s) of the person.")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Image to write (.png/.jpg); a folder when --template is one.")],
    template: Annotated[Path | None, typer.Option(
        help="Portrait fixing pose, framing and light, or a folder of them (batch, resumable).")
    ] = None,
    pose: Annotated[str | None, typer.Option(
        help="No template photo: render one in this pose, e.g. yaw=30,pitch=-10,roll=0.")
    ] = None,
    poses: Annotated[str | None, typer.Option(
        help="Several poses: 'yaw=-30;yaw=0;yaw=30' or a sweep yaw=-40:40:5 (also a grid).")
    ] = None,
    light: Annotated[str | None, typer.Option(
        help="Relight the template: left|right|top|bottom|front|AZ:EL[,colour[,intensity]] "
             "or sh:c0,...,c8.")] = None,
    model: Annotated[
        Path | None, typer.Option(help="Pipeline folder (default: the embedded tiny model).")
    ] = None,
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 30,
    seed: Seed = 0,
    mask_ratio: MaskRatio = 0.8,
    paste_back: Annotated[
        bool, typer.Option("--paste-back", help="Paste the face back into the template photo.")
    ] = False,
    save_flow: Annotated[
        Path | None, typer.Option(help="Also write the matching flow picture here.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto (fp16 on CUDA, else fp32), fp32 or fp16.")
    ] = "auto",
) -> None:
    """Render the template (a photo, a folder of photos, or a pose) with the profile's identity."""
    from icportrait.faces.io import load_image
    from icportrait.generation import Settings, default_model_path, load_pipeline
    from icportrait.pose_templates import parse_pose, parse_poses
    from icportrait.relight import parse_light

    if sum(x is not None for x in (template, pose, poses)) != 1:
        raise ICPortraitError("give exactly one of --template, --pose or --poses")
    if template is not None and not template.exists():
        raise ICPortraitError(f"template not found: {template}")
    batch = template is not None and template.is_dir()
    if batch and save_flow is not None:
        raise ICPortraitError("--save-flow takes one file: not with a template folder")
    if paste_back and template is None:
        raise ICPortraitError("--paste-back needs a template photo")
    # Parse everything before the slow model load, so a typo fails at once.
    the_light = parse_light(light) if light else None
    the_poses = [parse_pose(pose)] if pose else parse_poses(poses) if poses else None
    profiles = [load_image(p) for p in profile]
    settings = Settings(steps=steps, seed=seed, mask_ratio=mask_ratio, paste_back=paste_back)
    t0 = time.perf_counter()
    pipe = load_pipeline(model, device, dtype)
    run = _GenerateRun(pipe, profiles, settings, the_light, {
        "profile": [str(p) for p in profile], "model": str(model or default_model_path()),
        "device": str(pipe.device), "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "seconds_load": round(time.perf_counter() - t0, 3)})
    if batch:
        failed = run.folder(template, output)
        if failed:
            raise typer.Exit(1)
    elif poses is not None:
        run.poses(the_poses, output, save_flow)
    elif pose is not None:
        run.one(None, output, save_flow, {"pose": the_poses[0].as_dict(), "_pose": the_poses[0]})
    else:
        run.one(load_image(template), output, save_flow, {"template": str(template)})


class _GenerateRun:
    """One `icportrait generate` invocation: writes outputs with JSON sidecars."""

    def __init__(self, pipe, profiles, settings, light, info: dict):
        self.pipe, self.profiles, self.settings, self.light = pipe, profiles, settings, light
        self.info = {**info, **settings.to_dict(),
                     "light": None if light is None else light.to_dict(),
                     "icportrait": __version__,
                     "command": " ".join(["icportrait", *sys.argv[1:]])}

    def one(self, template, output: Path, save_flow: Path | None, extra: dict):
        import numpy as np

        from icportrait.faces.io import atomic_write_text, save_image
        from icportrait.generation import generate_portrait, make_template
        from icportrait.visualize import flow_picture

        tmpl = make_template(template, extra.get("_pose"), self.light)
        with _progress(disable=False) as bar:
            bar.add_task(f"generating {output.name}", total=None)
            result = generate_portrait(self.pipe, self.profiles, tmpl, self.settings)
        save_image(result.image, output)
        if save_flow is not None:
            save_image(np.asarray(flow_picture(result.flow)), save_flow)
        sidecar = {**self.info, **{k: v for k, v in extra.items() if not k.startswith("_")},
                   "seconds_generate": round(result.seconds, 3)}
        # The sidecar is written last: in batch mode it marks the template as done.
        atomic_write_text(output.with_suffix(".json"), json.dumps(sidecar, indent=2) + "\n")
        print(f"wrote {output} ({result.seconds:.1f} s)")
        return result

    def folder(self, folder: Path, out: Path) -> int:
        from icportrait.faces.io import load_image
        from icportrait.synth.generate import PHOTO_SUFFIXES

        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not paths:
            raise ICPortraitError(f"{folder} has no .png/.jpg/.webp templates")
        if out.suffix:
            raise ICPortraitError(f"with a template folder, -o must be a folder, got {out}")
        failed = 0
        for path in paths:
            target = out / f"{path.stem}.png"
            if target.with_suffix(".json").is_file():
                print(f"skip {path.name}: {target} is done")
                continue
            try:
                self.one(load_image(path), target, None, {"template": str(path)})
            except ICPortraitError as exc:
                failed += 1
                _fail(f"error: {path}: {exc}")
        return failed

    def poses(self, poses, output: Path, save_flow: Path | None) -> None:
        from icportrait.faces.io import atomic_write_text, save_image
        from icportrait.generation import grid

        results = []
        for k, p in enumerate(poses):
            path = output.with_name(f"{output.stem}-{k:02d}{output.suffix or '.png'}")
            flow = save_flow if (save_flow is not None and k == 0) else None
            results.append(self.one(None, path, flow, {"pose": p.as_dict(), "_pose": p}))
        save_image(grid([r.template for r in results] + [r.image for r in results],
                        cols=len(results), size=self.pipe.resolution), output)
        atomic_write_text(output.with_suffix(".json"), json.dumps(
            {**self.info, "poses": [p.as_dict() for p in poses],
             "images": [f"{output.stem}-{k:02d}{output.suffix or '.png'}"
                        for k in range(len(poses))],
             "seconds_generate": round(sum(r.seconds for r in results), 3)}, indent=2) + "\n")
        print(f"wrote {output} (grid of {len(poses)} poses: templates above, portraits below)")


@app.command()
def relight(
    image: Annotated[Path, typer.Option(help="Portrait to relight (e.g. a generated one).")],
    light: Annotated[str, typer.Option(
        help="left|right|top|bottom|front|AZ:EL[,colour[,intensity]] or sh:c0,...,c8.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image to write.")],
) -> None:
    """Relight a portrait through its 3D face surface (the face mesh's normals)."""
    from icportrait.faces.io import load_image, save_image
    from icportrait.relight import parse_light, relight_photo

    the_light = parse_light(light)
    t0 = time.perf_counter()
    save_image(relight_photo(load_image(image), the_light), output)
    print(f"wrote {output} ({time.perf_counter() - t0:.1f} s)")


@app.command()
def serve(
    model: Annotated[
        Path | None, typer.Option(help="Pipeline folder (default: the embedded tiny model).")
    ] = None,
    host: Annotated[str, typer.Option(
        help="Address to listen on; 0.0.0.0 opens the UI to your whole network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    share: Annotated[bool, typer.Option(
        "--share", help="Also open a public gradio.live link (needs internet).")] = False,
    max_upload_mb: Annotated[int, typer.Option(help="Largest accepted upload, in MB.")] = 20,
    workdir: Annotated[Path | None, typer.Option(
        help="Folder for uploads and results (default: a fresh temporary folder).")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto (fp16 on CUDA, else fp32), fp32 or fp16.")
    ] = "auto",
) -> None:
    """Serve the web UI (Gradio) until Ctrl+C: upload photos, generate, sweep poses and lights."""
    from icportrait.app import serve as serve_app

    serve_app(model=model, host=host, port=port, share=share, workdir=workdir,
              max_upload_mb=max_upload_mb, device=device, dtype=dtype)


@app.command("eval")
def evaluate(
    suite: Annotated[str, typer.Option(
        help="synth-small, synth-full, real, or folder:DIR (your photos, one per person).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")],
    model: Annotated[
        Path | None, typer.Option(help="Pipeline folder (default: the embedded tiny model).")
    ] = None,
    baselines: Annotated[str, typer.Option(
        help="Comma list of baselines: classical-swap, template, masked-template, gt-warp.")
    ] = "classical-swap,template,masked-template,gt-warp",
    ablations: Annotated[str, typer.Option(
        help="Comma list of IC-Portrait ablations (no-warp, zero-shot, mask-0.5, mask-0.95, "
             "single-ref, per-step, base-only), 'all' or ''.")] = "",
    baselines_only: Annotated[
        bool, typer.Option(help="Skip the model: run the baselines only.")] = False,
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = 20,
    seed: Seed = 0,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples.")] = None,
    as_json: AsJson = False,
) -> None:
    """Benchmark the model, its ablations and baselines on a suite -> results.json, report.html."""
    from icportrait.evaluation.methods import ABLATIONS
    from icportrait.evaluation.report import markdown_table, write_report
    from icportrait.evaluation.runner import run_eval

    names = [] if baselines_only else ["icportrait"]
    wanted = [a.strip() for a in ablations.split(",") if a.strip()]
    if wanted == ["all"]:
        wanted = [m.split(":", 1)[1] for m in ABLATIONS if ":" in m]
    names += [f"icportrait:{a}" for a in wanted]
    names += [b.strip() for b in baselines.split(",") if b.strip()]
    if baselines_only and wanted:
        raise ICPortraitError("--baselines-only runs no model: drop --ablations")
    from icportrait.generation import default_model_path

    model = None if baselines_only else (model or default_model_path())
    with _progress(disable=as_json) as bar:
        task = bar.add_task("eval", total=None)
        results = run_eval(suite, out, names, model=model, steps=steps, seed=seed, limit=limit,
                           progress=lambda msg, i, n: bar.update(task, description=msg,
                                                                 completed=i, total=n))
    report = write_report(out)
    if as_json:
        print(json.dumps({k: results[k] for k in ("suite", "model", "methods", "summary")},
                         indent=2))
    else:
        print(markdown_table(results))
        print(f"wrote {out / 'results.json'} and {report}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("icportrait-demo"),
    as_json: Annotated[bool, typer.Option("--json", help="Print results JSON to stdout.")] = False,
) -> None:
    """Run the project's most complete job on bundled public-domain inputs -> report.html."""
    from icportrait.demo import run_demo

    t0 = time.perf_counter()
    with _progress(disable=False) as bar:
        task = bar.add_task("demo", total=None)
        results = run_demo(out, progress=lambda msg: bar.update(task, description=msg))
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        print(f"demo finished in {time.perf_counter() - t0:.1f} s: open {out / 'report.html'}")


# Options that take several values after one flag (`--profile a.jpg b.jpg`), which click
# cannot express; main() rewrites them to the repeated form (`--profile a --profile b`).
MULTI_VALUE_OPTIONS = ("--profile", "--data")


def expand_multi_value(argv: list[str]) -> list[str]:
    out: list[str] = []
    current = None
    for arg in argv:
        if arg in MULTI_VALUE_OPTIONS:
            current = arg
            out.append(arg)
            continue
        if current and not arg.startswith("-") and out[-1] != current:
            out.extend([current, arg])
            continue
        if arg.startswith("-"):
            current = None
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; expected errors become one line and a non-zero exit code."""
    args = expand_multi_value(list(sys.argv[1:] if argv is None else argv))
    try:
        code = app(args=args, standalone_mode=False)
    except ICPortraitError as exc:
        _fail(f"error: {exc}")
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _fail("aborted")
        return 130
    except Exception as exc:
        # Usage errors (typer bundles its own click, whose exceptions are not click's).
        if callable(getattr(exc, "show", None)) and hasattr(exc, "exit_code"):
            exc.show()
            return exc.exit_code
        raise
    # Without standalone mode, click returns the code of a `typer.Exit` instead of raising.
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
