"""`icportrait serve`, `eval` and `demo`: the web UI, the benchmark and the demo."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from icportrait.cli.common import AsJson, Device, Dtype, Model, Seed, progress_bar
from icportrait.defaults import EVAL_STEPS
from icportrait.errors import ICPortraitError


def serve(
    model: Model = None,
    host: Annotated[str, typer.Option(
        help="Address to listen on; 0.0.0.0 opens the UI to your whole network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 7860,
    share: Annotated[bool, typer.Option(
        "--share", help="Also open a public gradio.live link (needs internet).")] = False,
    max_upload_mb: Annotated[int, typer.Option(help="Largest accepted upload, in MB.")] = 20,
    workdir: Annotated[Path | None, typer.Option(
        help="Folder for uploads and results (default: a fresh temporary folder).")] = None,
    device: Device = "auto",
    dtype: Dtype = "auto",
) -> None:
    """Serve the web UI (Gradio) until Ctrl+C: upload photos, generate, sweep poses and lights."""
    from icportrait.app import serve as serve_app

    serve_app(model=model, host=host, port=port, share=share, workdir=workdir,
              max_upload_mb=max_upload_mb, device=device, dtype=dtype)


def evaluate(
    suite: Annotated[str, typer.Option(
        help="synth-small, synth-full, real, people, people-heldout (real people from "
             "registry packages), or folder:DIR (your photos, one per person).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")],
    model: Model = None,
    baselines: Annotated[str, typer.Option(
        help="Comma list of baselines: classical-swap, template, masked-template, gt-warp, "
             "truth (the last two on synthetic suites only).")
    ] = "classical-swap,template,masked-template,gt-warp,truth",
    ablations: Annotated[str, typer.Option(
        help="Comma list of IC-Portrait ablations (no-warp, zero-shot, net-flow, mesh-flow, "
             "latent-warp, image-warp, mask-0.5, mask-0.95, single-ref, per-step, base-only, "
             "from-noise, gt-flow, no-confidence, photo-fill, mirror-fill, profile-tone, "
             "no-detail, appearance-per-step), 'all' or ''.")] = "",
    baselines_only: Annotated[
        bool, typer.Option(help="Skip the model: run the baselines only.")] = False,
    judges: Annotated[str, typer.Option(
        help="Comma list of identity judges: dlib (always), sface (a second opinion, fetched "
             "once from PyPI; evaluation only, docs/evaluation.md).")] = "dlib",
    steps: Annotated[int, typer.Option(help="Denoising steps.")] = EVAL_STEPS,
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
    from icportrait.store import default_model_path

    model = None if baselines_only else (model or default_model_path())
    with progress_bar(disable=as_json) as bar:
        task = bar.add_task("eval", total=None)
        results = run_eval(suite, out, names, model=model, steps=steps, seed=seed, limit=limit,
                           progress=lambda msg, i, n: bar.update(task, description=msg,
                                                                 completed=i, total=n),
                           judges=tuple(dict.fromkeys(
                               ["dlib", *(j.strip() for j in judges.split(",") if j.strip())])))
    report = write_report(out)
    if as_json:
        print(json.dumps({k: results[k] for k in ("suite", "model", "methods", "summary")},
                         indent=2))
    else:
        print(markdown_table(results))
        print(f"wrote {out / 'results.json'} and {report}")


def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("icportrait-demo"),
    as_json: Annotated[bool, typer.Option("--json", help="Print results JSON to stdout.")] = False,
) -> None:
    """Run the project's most complete job on bundled public-domain inputs -> report.html."""
    from icportrait.demo import run_demo

    t0 = time.perf_counter()
    with progress_bar(disable=False) as bar:
        task = bar.add_task("demo", total=None)
        results = run_demo(out, progress=lambda msg: bar.update(task, description=msg))
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        print(f"demo finished in {time.perf_counter() - t0:.1f} s: open {out / 'report.html'}")


# Options that take several values after one flag (`--profile a.jpg b.jpg`), which click
