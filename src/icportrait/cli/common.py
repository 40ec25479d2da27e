"""What every command shares: one-line errors, progress bars and the option types."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

# Progress bars only; messages go through fail so they stay one unwrapped line.
err = Console(stderr=True, highlight=False)


def fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress_bar(disable: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=err, transient=True, disable=disable,
    )


def command_line() -> str:
    return " ".join(["icportrait", *sys.argv[1:]])


Seed = Annotated[int, typer.Option(help="Seed.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON results.")]
MaskRatio = Annotated[float, typer.Option(help="Template patches hidden, in [0, 1).")]
Model = Annotated[
    Path | None, typer.Option(help="Pipeline folder (default: the embedded tiny model).")
]
Device = Annotated[str, typer.Option(help="auto (CUDA when available), cpu or cuda.")]
Dtype = Annotated[str, typer.Option(help="auto (fp16 on CUDA, else fp32), fp32 or fp16.")]
