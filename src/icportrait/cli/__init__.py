"""The `icportrait` command: one module per command group, each a thin caller of the library.

Every error a user can cause ends in one line on stderr and a non-zero exit code:
1 when some inputs failed (the others are still processed), 2 for unusable arguments or
set-up problems.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from icportrait import __version__
from icportrait.cli import apps, generate
from icportrait.cli.common import fail
from icportrait.cli.data import data_app
from icportrait.cli.faces import faces_app
from icportrait.cli.train import train_app
from icportrait.errors import ICPortraitError

app = typer.Typer(
    name="icportrait",
    help="Personalised portraits in any pose and lighting (IC-Portrait).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(faces_app, name="faces")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.command()(generate.generate)
app.command()(generate.relight)
app.command()(apps.serve)
app.command("eval")(apps.evaluate)
app.command()(apps.demo)


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


# cannot express; main() rewrites them to the repeated form (`--profile a --profile b`).
MULTI_VALUE_OPTIONS = ("--profile", "--data", "--vae-data")


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
        fail(f"error: {exc}")
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        fail("aborted")
        return 130
    except Exception as exc:
        # Usage errors (typer bundles its own click, whose exceptions are not click's).
        if callable(getattr(exc, "show", None)) and hasattr(exc, "exit_code"):
            exc.show()
            return exc.exit_code
        raise
    # Without standalone mode, click returns the code of a `typer.Exit` instead of raising.
    return code if isinstance(code, int) else 0
