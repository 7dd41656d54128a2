"""``emda export``: a run's network for tools outside emda."""

from pathlib import Path
from typing import Annotated

import typer

from emda.cli.common import OverwriteOpt, app, console, user_errors


@app.command(no_args_is_help=True)
@user_errors
def export(
    run: Annotated[str, typer.Argument(help="A run directory or its checkpoint.pt.")],
    output: Annotated[
        str,
        typer.Option("--output", "-o", help="model.zip (bioimage.io), model.onnx or model.pt."),
    ],
    format: Annotated[
        str | None,
        typer.Option(help="bioimageio, onnx or torchscript (default: from the output's suffix)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="bioimage.io: the model's name.")] = None,
    author: Annotated[
        list[str] | None, typer.Option(help="bioimage.io: an author (repeat for several).")
    ] = None,
    license: Annotated[
        str,
        typer.Option(help="bioimage.io: SPDX licence of the weights (check your training data's)."),
    ] = "CC-BY-4.0",
    sample: Annotated[
        str | None,
        typer.Option(help="bioimage.io: volume for the test tile (default: the bundled crop)."),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Export the network: a bioimage.io package (ilastik, deepImageJ, BiaPy), ONNX or
    TorchScript, each checked against PyTorch before it is written."""
    from emda.export.export import export_model

    done = export_model(run, output, format, name=name, authors=author, license_id=license,
                        sample=sample, overwrite=overwrite)  # fmt: skip
    checks = []
    if done.max_difference is not None:
        checks.append(f"max difference from PyTorch {done.max_difference:.1e}")
    if done.test is not None:
        checks.append(f"bioimage.io model test {done.test}")
    weights = f" ({', '.join(done.weights)} weights)" if done.format == "bioimageio" else ""
    console.print(f"wrote {Path(output)}: {done.format}{weights}"
                  + (f"; {', '.join(checks)}" if checks else ""))  # fmt: skip
