"""`icportrait faces`: the face toolkit on your photos."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from icportrait.cli.common import fail, progress_bar
from icportrait.errors import ICPortraitError

faces_app = typer.Typer(help="Face toolkit for real photos.", no_args_is_help=True)


@faces_app.command("inspect")
def faces_inspect(
    images: Annotated[list[Path], typer.Argument(help="Image files to inspect.")],
    out: Annotated[
        Path | None, typer.Option(help="Write <name>_annotated.png and <name>_aligned.png here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
    size: Annotated[int, typer.Option(help="Side of the aligned crop in pixels.")] = 256,
    margin: Annotated[float, typer.Option(help="Crop margin (1 = FFHQ framing).")] = 1.0,
    detector: Annotated[str, typer.Option(
        help="all (every pass: the faces --profile-face/--template-face/--face count), auto "
             "(stops at a portrait's face), mediapipe, dlib or dlib-cnn (slow).")] = "all",
    single: Annotated[
        bool, typer.Option("--single", help="Fail images with more than one face.")
    ] = False,
) -> None:
    """Find faces: box, score, yaw/pitch/roll and landmarks, per image.

    Exits 1 if any image is unreadable or has no usable face; the others are still reported.
    """
    from icportrait.faces import MIN_FACE_SIZE, analyze_faces, prepare_face
    from icportrait.faces.detect import DETECTORS
    from icportrait.faces.draw import annotate
    from icportrait.io import load_image, save_image

    if detector not in DETECTORS:
        raise ICPortraitError(f"unknown detector {detector!r}: use {', '.join(DETECTORS)}")
    if not 16 <= size <= 4096:
        raise ICPortraitError(f"--size must be in [16, 4096] px, got {size}")
    if not 0.25 <= margin <= 4:
        raise ICPortraitError(f"--margin must be in [0.25, 4], got {margin}")
    reports, failed = [], 0
    with progress_bar(disable=len(images) < 2) as bar:
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
                    why = "; ".join(
                        f"face {i}: " + (f"{f.box.size:.0f} px across, at least {MIN_FACE_SIZE}"
                                         " px needed" if f.box.size < MIN_FACE_SIZE
                                         else "no landmarks could be placed")
                        for i, f in enumerate(faces))
                    raise ICPortraitError(f"{len(faces)} face(s) found but none usable ({why})")
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
                fail(f"{path}: {exc}")
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
    print(f"{report['image']}: {len(faces)} face(s), {report['seconds']:.2f} s (indices left to "
          "right, for --profile-face / --template-face / --face)")
    for i, f in enumerate(faces):
        pose = f["pose"]
        pose_txt = "pose n/a" if pose is None else (
            f"yaw {pose['yaw']:+.1f} pitch {pose['pitch']:+.1f} roll {pose['roll']:+.1f}"
        )
        print(f"  [{i}] box {f['box']} {f['size_px']:.0f} px score {f['score']:.3f} "
              f"({f['detector']}) {pose_txt} landmarks {f['landmarks']}")
