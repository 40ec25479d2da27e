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


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning expected errors into one line and exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)
    except ICPortraitError as exc:
        _fail(f"error: {exc}")
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        _fail("aborted")
        return 130
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        raise
    # Without standalone mode, click returns the code of a `typer.Exit` instead of raising.
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
