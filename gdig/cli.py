"""The `gdig` command.  Each command is a thin shell over a library function."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

from gdig import __version__

app = typer.Typer(
    name="gdig",
    help="G-DIG instruction-data selection for machine translation: ingest data, select with "
    "influence + gradient diversity, finetune and evaluate against baselines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print an error to stderr and exit with `code` (2: bad input, 1: a stage failed)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gdig {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """gdig: select translation finetuning data with G-DIG and prove the selection."""


# --- commands are registered below, one section per concern ---------------------------------


if __name__ == "__main__":  # pragma: no cover
    app(sys.argv[1:])
