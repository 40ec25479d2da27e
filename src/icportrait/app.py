"""The web UI (`icportrait serve`): a Gradio page over the same calls as `icportrait generate`.

Safety, since a web page takes files from strangers:

* it binds 127.0.0.1 unless told otherwise, and never makes a public link unless asked;
* one model run at a time (a shared queue slot), with a bounded waiting line;
* uploads are size-limited by the server, photos are checked by ``load_image`` (formats,
  decompression bombs, MAX_PIXELS), and at most MAX_PROFILES profile photos are taken;
* everything it writes (uploads, Gradio's copies, results) stays in ``workdir``, and the only
  folder it may serve besides Gradio's own upload cache is ``workdir/outputs``;
* no analytics, no version check, no web fonts: the page fetches nothing from elsewhere.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
import uuid
from pathlib import Path

# Gradio reads this when it is imported: no analytics and no version check over the network.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr
import numpy as np

from icportrait.defaults import MASK_RATIO, STEPS, check_strength
from icportrait.errors import FaceError, ICPortraitError
from icportrait.generation import (
    LIGHT_SWEEP,
    Settings,
    flow_picture,
    generate_portrait,
    make_template,
    sweep_lights,
    sweep_poses,
    sweep_sheet,
)
from icportrait.generation.pose_templates import LIMITS, parse_pose
from icportrait.generation.relight import COLOURS, NAMED_DIRECTIONS, parse_light
from icportrait.io import atomic_write_text, load_image, save_image

MAX_PROFILES = 8
MAX_STEPS = 100
LIGHT_CHOICES = ("none", *NAMED_DIRECTIONS)
QUEUE_SIZE = 16                                 # waiting requests beyond that are refused
# System fonts: the default theme would make every visitor's browser fetch Google Fonts.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "monospace"])


def _user_errors(fn):
    """Errors the user caused become a message in the page, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ICPortraitError as exc:
            raise gr.Error(str(exc), title="Could not generate", print_exception=False) from None

    return wrapper


def _face_index(text, name: str) -> int | None:
    """A face field: blank for automatic, else a face index (0, 1, ...)."""
    text = "" if text is None else str(text).strip()
    if not text:
        return None
    if not text.isdigit():
        raise ICPortraitError(f"{name} # must be blank or a face index (0, 1, ...), got {text!r}")
    return int(text)


class _Handlers:
    """The button callbacks, bound to one pipeline and one output folder."""

    def __init__(self, pipe, outputs: Path):
        self.pipe, self.outputs = pipe, outputs

    # --- inputs ---------------------------------------------------------------------------

    def profiles(self, files) -> tuple[list[np.ndarray], list[str]]:
        paths = [Path(f) for f in files or []]
        if not paths:
            raise ICPortraitError("upload at least one profile photo of the person")
        if len(paths) > MAX_PROFILES:
            raise ICPortraitError(f"at most {MAX_PROFILES} profile photos, got {len(paths)}")
        images = []
        for p in paths:
            try:
                images.append(load_image(p))
            except ICPortraitError as exc:
                raise type(exc)(f"profile photo {p.name}: {exc}") from None
        return images, [f"profile photo {p.name}" for p in paths]

    @staticmethod
    def template_photo(path) -> np.ndarray | None:
        if not path:
            return None
        try:
            return load_image(path)
        except ICPortraitError as exc:
            raise type(exc)(f"template photo: {exc}") from None

    @staticmethod
    def light(direction: str, colour: str):
        if direction == "none":
            return None
        if direction not in NAMED_DIRECTIONS or colour not in COLOURS:
            raise ICPortraitError(f"unknown light {direction!r} or colour {colour!r}")
        return parse_light(f"{direction},{colour}")

    @staticmethod
    def settings(steps, seed, mask_ratio, profile_face=None, template_face=None,
                 strength=None, mirror_fill=False, profile_tone=False,
                 photo_fill=False) -> Settings:
        # The API takes any number: bound the work one request can ask for.
        if not 1 <= int(steps) <= MAX_STEPS:
            raise ICPortraitError(f"steps must be in [1, {MAX_STEPS}], got {steps}")
        faces = [_face_index(f, name) for f, name in ((profile_face, "profile face"),
                                                       (template_face, "template face"))]
        return Settings(steps=int(steps), seed=int(seed or 0), mask_ratio=float(mask_ratio),
                        profile_face=faces[0], template_face=faces[1],
                        strength=None if strength is None else check_strength(float(strength)),
                        mirror_fill=bool(mirror_fill), profile_tone=bool(profile_tone),
                        photo_fill=bool(photo_fill))

    @staticmethod
    def faces_found(files, template_path) -> tuple[list, str]:
        """Annotated thumbnails of the uploaded photos that hold several faces, numbered as
        the face fields count them, and a line saying what was found."""
        from icportrait.faces import analyze_faces
        from icportrait.faces.draw import annotate

        photos = [(f"profile photo {Path(f).name}", f) for f in files or []]
        if template_path:
            photos.append(("template photo", template_path))
        shown, notes = [], []
        for name, path in photos:
            try:
                image = load_image(path)
            except ICPortraitError:
                continue  # said when generating
            faces = analyze_faces(image, "all")  # the faces the indices count
            if len(faces) > 1:
                shown.append((annotate(image, faces), f"{name}: {len(faces)} faces"))
                notes.append(f"{name}: {len(faces)} faces (0-{len(faces) - 1})")
        line = ("Several faces found, numbered left to right: " + "; ".join(notes) +
                ". Choose with the face fields (blank: the largest).") if notes else ""
        return shown, line

    # --- running --------------------------------------------------------------------------

    def run(self, profiles, names, template, settings, template_name="the template"):
        """One portrait; a face error names the photo it came from."""
        try:
            return generate_portrait(self.pipe, profiles, template, settings)
        except FaceError:
            from icportrait.faces import prepare_face

            # The pipeline checks all photos at once; find the culprit only on failure.
            checks = [(name, image, "clear", settings.profile_face)
                      for name, image in zip(names, profiles, strict=True)]
            checks.append((template_name, template, "largest", settings.template_face))
            for name, image, policy, face in checks:
                try:
                    prepare_face(image, size=self.pipe.resolution, policy=policy, face=face)
                except FaceError as exc:
                    raise type(exc)(f"{name}: {exc}") from None
            raise

    def folder(self) -> Path:
        """A fresh folder per request, so concurrent users never overwrite each other."""
        out = self.outputs / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        out.mkdir(parents=True)
        return out

    def record(self, out: Path, info: dict) -> str:
        return str(atomic_write_text(out / "run.json", json.dumps(info, indent=2) + "\n"))

    # --- buttons --------------------------------------------------------------------------

    def generate(self, files, template_path, yaw, pitch, roll, direction, colour, steps, seed,
                 mask_ratio, profile_face=None, template_face=None, strength=None,
                 mirror_fill=False, profile_tone=False, photo_fill=False):
        t0 = time.perf_counter()
        profiles, names = self.profiles(files)
        photo = self.template_photo(template_path)
        light = self.light(direction, colour)
        pose = None if photo is not None else parse_pose(f"yaw={yaw},pitch={pitch},roll={roll}")
        settings = self.settings(steps, seed, mask_ratio, profile_face,
                                 template_face if photo is not None else None, strength,
                                 mirror_fill, profile_tone, photo_fill)
        template = make_template(photo, pose, light, face=settings.template_face)
        what = "template photo" if photo is not None else "rendered pose template"
        result = self.run(profiles, names, template, settings, f"the {what}")
        out = self.folder()
        portrait = save_image(result.image, out / "portrait.png")
        flow = save_image(np.asarray(flow_picture(result.flow, confidence=result.confidence)),
                          out / "flow.png")
        used = save_image(result.template, out / "template.png")
        source = "your template photo" if photo is not None else \
            f"pose yaw {pose.yaw:+g}° pitch {pose.pitch:+g}° roll {pose.roll:+g}°"
        status = (f"Done in {time.perf_counter() - t0:.1f} s (model {result.seconds:.1f} s): "
                  f"{len(profiles)} profile photo(s), {source}, "
                  f"light {direction}{'' if light is None else ' ' + colour}, "
                  f"{settings.steps} steps, strength {settings.strength or 'default'}, "
                  f"seed {settings.seed}"
                  f"{', photo fill' if settings.photo_fill else ''}"
                  f"{', mirror fill' if settings.mirror_fill else ''}"
                  f"{', profile skin tone' if settings.profile_tone else ''}.")
        sidecar = self.record(out, {**settings.to_dict(), "profiles": len(profiles),
                                    "template": source, "light": direction, "colour": colour,
                                    "faces": result.faces,
                                    "seconds_generate": round(result.seconds, 3)})
        files_out = [str(portrait), str(flow), str(used), sidecar]
        return str(portrait), str(flow), str(used), status, files_out

    def sweep(self, kind, files, template_path, yaw, pitch, roll, direction, colour, steps,
              seed, mask_ratio, profile_face=None, template_face=None, strength=None,
              mirror_fill=False, profile_tone=False, photo_fill=False, progress=None):
        profiles, names = self.profiles(files)
        photo = self.template_photo(template_path)
        use_photo = photo is not None and kind == "light"
        settings = self.settings(steps, seed, mask_ratio, profile_face,
                                 template_face if use_photo else None, strength, mirror_fill,
                                 profile_tone, photo_fill)
        note = ""
        if kind == "pose":
            # A photo has one pose: a pose sweep renders the neutral head instead.
            light = self.light(direction, colour)
            base = parse_pose(f"yaw=0,pitch={pitch},roll={roll}")
            cases = [(f"yaw {p.yaw:+g}°", make_template(None, p, light))
                     for p in sweep_poses(base.pitch, base.roll)]
            if photo is not None:
                note = " (rendered heads: the template photo is not used for a pose sweep)"
        else:
            pose = None if photo is not None else \
                parse_pose(f"yaw={yaw},pitch={pitch},roll={roll}")
            cases = [(f"light {d}", make_template(photo, pose, light,
                                                  face=settings.template_face))
                     for d, light in zip(LIGHT_SWEEP, sweep_lights(colour), strict=True)]
        out, results = self.folder(), []
        for k, (label, template) in enumerate(cases):
            progress(k / len(cases), desc=f"{label} ({k + 1}/{len(cases)})")
            results.append(self.run(profiles, names, template, settings, f"the {label} template"))
            save_image(results[-1].image, out / f"portrait-{k:02d}.png")
        size = max(self.pipe.resolution, 128)
        sheet = save_image(sweep_sheet(results, size), out / f"{kind}-sweep.png")
        seconds = sum(r.seconds for r in results)
        sidecar = self.record(out, {**settings.to_dict(), "sweep": kind,
                                    "views": [label for label, _ in cases],
                                    "seconds_generate": round(seconds, 3)})
        status = (f"{kind.capitalize()} sweep done in {seconds:.1f} s: {len(results)} views, "
                  f"templates above, portraits below{note}.")
        return str(sheet), status, [str(sheet), *sorted(map(str, out.glob("portrait-*.png"))),
                                    sidecar]


def build_app(pipe, workdir: Path, max_upload_mb: int = 20) -> gr.Blocks:
    """The page, bound to ``pipe``. Results go to ``workdir/outputs``; Gradio's uploads and
    copies to ``workdir/gradio`` (so this process serves one app at a time). Launch it with
    :func:`launch`, which applies the upload limit and the allowed paths."""
    workdir = Path(workdir).resolve()
    outputs = workdir / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    # Components and the server read Gradio's upload/cache folder from this variable.
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")
    h = _Handlers(pipe, outputs)

    with gr.Blocks(title="IC-Portrait", analytics_enabled=False,
                   delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown("# IC-Portrait\nA portrait of the person in your profile photos, in the "
                    "pose, framing and light of a template photo, or of a rendered head posed "
                    "with the sliders.")
        with gr.Row():
            with gr.Column():
                profiles = gr.File(label=f"Profile photos of the person (1 to {MAX_PROFILES}, "
                                         f"up to {max_upload_mb} MB each)",
                                   file_count="multiple", file_types=["image"], type="filepath",
                                   elem_id="profiles")
                template = gr.Image(label="Template photo (optional: else the pose below)",
                                    type="filepath", image_mode=None,
                                    sources=["upload", "clipboard"], elem_id="template")
                found_note = gr.Markdown("", elem_id="faces-note")
                found = gr.Gallery(label="Faces found (photos with several faces)",
                                   columns=3, height="auto", object_fit="contain",
                                   elem_id="faces-found")
                with gr.Row():
                    # Text, not a number field: blank (automatic) must stay distinct from 0.
                    profile_face = gr.Textbox("", label="Profile face # (blank: the largest)",
                                              max_lines=1, elem_id="profile-face")
                    template_face = gr.Textbox("", label="Template face # (blank: the largest)",
                                               max_lines=1, elem_id="template-face")
                with gr.Accordion("Pose (when there is no template photo)", open=True):
                    yaw = gr.Slider(-LIMITS["yaw"], LIMITS["yaw"], value=0, step=1,
                                    label="Yaw (°)", elem_id="yaw")
                    pitch = gr.Slider(-LIMITS["pitch"], LIMITS["pitch"], value=0, step=1,
                                      label="Pitch (°)", elem_id="pitch")
                    roll = gr.Slider(-LIMITS["roll"], LIMITS["roll"], value=0, step=1,
                                     label="Roll (°)", elem_id="roll")
                with gr.Row():
                    direction = gr.Radio(list(LIGHT_CHOICES), value="none", label="Light")
                    colour = gr.Radio(list(COLOURS), value="white", label="Light colour")
                with gr.Accordion("Settings", open=True):
                    steps = gr.Slider(1, MAX_STEPS, value=STEPS, step=1, label="Denoising steps",
                                      elem_id="steps")
                    seed = gr.Number(0, precision=0, minimum=0, label="Seed")
                    mask_ratio = gr.Slider(0, 0.95, value=MASK_RATIO, step=0.05, label="Mask ratio")
                    strength = gr.Slider(
                        0.05, 1.0, value=pipe.config.default_strength, step=0.05,
                        label="Strength (share of the schedule run; 1 = from noise; the "
                              f"model's default {pipe.config.default_strength:g})",
                        elem_id="strength")
                    with gr.Row():
                        photo_fill = gr.Checkbox(
                            False, label="Photo fill (what the profile photo nearest the "
                                         "template's pose does not show, from the others)",
                            elem_id="photo-fill")
                        mirror_fill = gr.Checkbox(
                            False, label="Mirror fill (the side of the face the profile "
                                         "photos do not show, from its other side)",
                            elem_id="mirror-fill")
                        profile_tone = gr.Checkbox(
                            False, label="Keep the profile's skin tone (with its photo's "
                                         "light colour; the face only)",
                            elem_id="profile-tone")
                with gr.Row():
                    go = gr.Button("Generate", variant="primary", elem_id="generate")
                    pose_sweep = gr.Button("Pose sweep", elem_id="pose-sweep")
                    light_sweep = gr.Button("Light sweep", elem_id="light-sweep")
            with gr.Column():
                status = gr.Textbox(label="Status", interactive=False, elem_id="status")
                with gr.Row():
                    portrait = gr.Image(label="Portrait", type="filepath", format="png",
                                        height=300, interactive=False,
                                        buttons=["download", "fullscreen"], elem_id="portrait")
                    used = gr.Image(label="Template used", type="filepath", format="png",
                                    height=300, interactive=False, buttons=["download"],
                                    elem_id="used")
                flow = gr.Image(label="Matching flow (profile colours | where each portrait "
                                      "pixel came from)", type="filepath", format="png",
                                interactive=False, buttons=["download"], elem_id="flow")
                sheet = gr.Image(label="Sweep (templates above, portraits below)",
                                 type="filepath", format="png", interactive=False,
                                 buttons=["download", "fullscreen"], elem_id="sweep")
                downloads = gr.File(label="Downloads", file_count="multiple",
                                    interactive=False, elem_id="downloads")

        inputs = [profiles, template, yaw, pitch, roll, direction, colour, steps, seed,
                  mask_ratio, profile_face, template_face, strength, mirror_fill, profile_tone,
                  photo_fill]
        for upload in (profiles, template):
            upload.change(_user_errors(h.faces_found), [profiles, template],
                          [found, found_note], concurrency_limit=1, concurrency_id="faces")

        # Gradio finds its progress tracker by this default value (its documented idiom).
        @_user_errors
        def pose_sweep_fn(*args, progress=gr.Progress()):  # noqa: B008
            return h.sweep("pose", *args, progress=progress)

        @_user_errors
        def light_sweep_fn(*args, progress=gr.Progress()):  # noqa: B008
            return h.sweep("light", *args, progress=progress)

        # One shared slot: the pipeline is not thread-safe and a model run fills the machine.
        run = dict(concurrency_limit=1, concurrency_id="model")
        go.click(_user_errors(h.generate), inputs,
                 [portrait, flow, used, status, downloads], **run)
        pose_sweep.click(pose_sweep_fn, inputs, [sheet, status, downloads], **run)
        light_sweep.click(light_sweep_fn, inputs, [sheet, status, downloads], **run)

    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    demo.icportrait_launch = dict(  # what launch() needs to apply the limits
        max_file_size=max_upload_mb * 1024 * 1024, allowed_paths=[str(outputs)])
    return demo


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           block: bool = True):
    """Start the server; returns (demo, local URL) when ``block`` is False (tests)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}: anyone who can reach this machine can use the "
              f"model and upload files", flush=True)
    # prevent_thread_lock: start, print the address, then block here (Ctrl+C stops it).
    _, url, share_url = demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=True,
        theme=THEME, show_error=False, enable_monitoring=False, mcp_server=False,
        footer_links=[], quiet=True, **demo.icportrait_launch)
    if block:
        print(f"serving on {url}" + (f" and {share_url}" if share_url else "")
              + " (Ctrl+C to stop)", flush=True)
        demo.block_thread()
    return demo, url


def serve(model: Path | None = None, host: str = "127.0.0.1", port: int = 7860,
          share: bool = False, workdir: Path | None = None, max_upload_mb: int = 20,
          device: str = "auto", dtype: str = "auto", block: bool = True):
    """Load the model and serve the UI (blocks until Ctrl+C unless ``block`` is False).
    ``workdir`` defaults to a fresh temporary folder."""
    from icportrait.store import load_pipeline

    if not 1 <= port <= 65535:
        raise ICPortraitError(f"--port must be in [1, 65535], got {port}")
    if max_upload_mb < 1:
        raise ICPortraitError(f"--max-upload-mb must be at least 1, got {max_upload_mb}")
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="icportrait-web-"))
    pipe = load_pipeline(model, device, dtype)
    print(f"results and uploads go to {workdir.resolve()}", flush=True)
    return launch(build_app(pipe, workdir, max_upload_mb), host, port, share, block)
