"""The ``emda`` command line: thin wrappers that parse options and call :mod:`emda.api`.

One module per group of commands; each registers its commands on the shared ``app``.
"""

import inspect
import logging
import sys
from importlib import import_module
from typing import Annotated

import typer

from emda import __version__
from emda.cli.common import app

# each module registers its commands on `app`; this order is the order of `emda --help`
for _module in (
    "train",
    "recalibrate",
    "predict",
    "postprocess",
    "evaluate",
    "export",
    "describe",
    "data",
):
    import_module(f"emda.cli.{_module}")

__all__ = ["app", "main"]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"emda {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")


def reflow_help(typer_app: typer.Typer) -> None:
    """Give each command its docstring with every paragraph on one line, for Rich to
    wrap at the terminal's width: typer keeps a docstring's own line breaks, so text
    wrapped at the code's 100 columns broke mid-sentence in an 80-column terminal."""
    for info in typer_app.registered_commands:
        if info.help is None and info.callback is not None and info.callback.__doc__:
            paragraphs = inspect.cleandoc(info.callback.__doc__).split("\n\n")
            info.help = "\n\n".join(
                p if p.startswith("\b") else " ".join(p.split("\n")) for p in paragraphs
            )
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


reflow_help(app)


def main() -> None:
    app(prog_name="emda")


if __name__ == "__main__":
    sys.exit(main())
