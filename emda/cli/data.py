"""``emda data`` (public EM datasets) and ``emda demo`` (the main job on bundled crops)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emda.cli.common import (
    DeviceOpt,
    OverwriteOpt,
    QuietOpt,
    ThreadsOpt,
    app,
    console,
    out,
    progress_bar,
    setup,
    user_errors,
)
from emda.device import DeviceChoice

data_app = typer.Typer(
    help="Public EM datasets: list them, fetch them from their original sources.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("list")
@user_errors
def data_list() -> None:
    """The datasets `emda data fetch` knows: source, licence, files."""
    from emda.io.datasets import DATASETS

    table = Table(title="emda data")
    for col in ("name", "dataset", "files", "voxel nm (z,y,x)", "licence / cite"):
        table.add_column(col)
    for d in DATASETS.values():
        files = "\n".join(s.output for s in d.stacks)
        table.add_row(d.name, f"{d.title}\n[dim]{d.source}[/dim]", files,
                      str(d.voxel_size), f"{d.license}\n{d.cite}")  # fmt: skip
    out.print(table)


@data_app.command("fetch", no_args_is_help=True)
@user_errors
def data_fetch(
    names: Annotated[list[str], typer.Argument(help="Dataset name(s); see `emda data list`.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to write <name>/ into.")],
    mirror: Annotated[
        str | None,
        typer.Option(help="URL or local folder laid out like the source, used instead of it."),
    ] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download datasets, check their content (SHA-256) and write raw.tif/labels.tif.

    Failed downloads are retried; downloaded slices are kept in a cache (EMDA_CACHE, else
    the user's cache directory), so an interrupted fetch resumes where it stopped.
    """
    from emda.io.datasets import DATASETS, fetch

    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise typer.BadParameter(
            f"unknown dataset {', '.join(unknown)}; known: {', '.join(DATASETS)}",
            param_hint="NAMES",
        )
    for name in names:
        bar, advance = progress_bar(quiet, f"fetching {name}")
        with bar:
            dest = fetch(DATASETS[name], to, mirror, overwrite, advance)
        console.print(f"{name}: checked and written to {dest}")


@app.command()
@user_errors
def demo(
    out_dir: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where to write the demo's run, predictions and figure."),
    ] = Path("demo-output"),
    iterations: Annotated[int, typer.Option(help="Training iterations per method.")] = 120,
    data: Annotated[
        Path | None,
        typer.Option(help="Folder with the crops (default: the ones installed with emda)."),
    ] = None,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Adapt EPFL -> Drosophila VNC on bundled crops, predict, evaluate, draw an overlay."""
    from emda.demo import run_demo

    run_demo(out_dir, iterations, data, setup(device, threads), not quiet)
