"""``emda recalibrate``: a run's model with batch-norm statistics of a new target."""

from pathlib import Path
from typing import Annotated

import typer

from emda.cli.common import (
    DeviceOpt,
    OverwriteOpt,
    TargetChannelOpt,
    ThreadsOpt,
    app,
    console,
    setup,
    user_errors,
)
from emda.device import DeviceChoice


@app.command(no_args_is_help=True)
@user_errors
def recalibrate(
    run: Annotated[Path, typer.Argument(help="Run directory (or checkpoint.pt) to start from.")],
    target: Annotated[str, typer.Option(help="Unlabelled target raw volume.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create.")],
    target_z: Annotated[
        str | None, typer.Option(help="Target slices START:STOP to estimate statistics on.")
    ] = None,
    batches: Annotated[
        int, typer.Option(help="Batches of target patches to average the statistics over.")
    ] = 100,
    resample: Annotated[
        bool,
        typer.Option(
            help="Resample target patches to the model's pixel size when the target's "
            "differs by more than 10 %."
        ),
    ] = True,
    target_channel: TargetChannelOpt = None,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Re-estimate a model's batch-norm statistics on a target (AdaBN): no training, no labels.

    The step `adapt` ends with by default, for any finished run, e.g. a model trained
    elsewhere that now meets a new microscope.
    """
    from emda import api
    from emda.training.adapt import VolumeSpec

    done = api.recalibrate(
        run, VolumeSpec(target, None, target_z, channel=target_channel), out, batches=batches,
        resample=resample, device=setup(device, threads), overwrite=overwrite,
    )  # fmt: skip
    console.print(f"recalibrated model written to {done / 'checkpoint.pt'}")
