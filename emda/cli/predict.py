"""``emda predict``: segment a volume of any size with a trained run."""

from pathlib import Path
from typing import Annotated

import typer

from emda.cli.common import (
    ChannelOpt,
    ConfigOpt,
    DeviceOpt,
    KeyOpt,
    NgffOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    ThreadsOpt,
    ThresholdOpt,
    app,
    check_ngff,
    console,
    progress_bar,
    setup,
    user_errors,
)
from emda.data.normalization import NormalizeMode
from emda.data.planes import Planes
from emda.device import DeviceChoice
from emda.errors import EmdaError
from emda.inference.jobs import ProbDtype
from emda.inference.sliding_window import BlendMode
from emda.precision import Precision

W = "Window"
L = "Large volumes"
ProbDtypeOpt = Annotated[ProbDtype, typer.Option(help="uint8 stores round(255 p).")]


@app.command(no_args_is_help=True)
@user_errors
def predict(
    run: Annotated[str, typer.Argument(help="Run directory or checkpoint.pt.")],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Volume(s) to segment (TIFF, zarr, HDF5, MRC); with several, --output and "
            "--mask name each output with {name}, the input's file name.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Probabilities (.tif, .zarr, .ome.zarr, .h5, .mrc)."),
    ] = None,
    mask: Annotated[
        str | None,
        typer.Option(help="Binary mask at --threshold (.tif, .zarr, .ome.zarr, .h5, .mrc)."),
    ] = None,
    key: KeyOpt = None,
    channel: ChannelOpt = None,
    threshold: ThresholdOpt = 0.5,
    prob_dtype: ProbDtypeOpt = ProbDtype.uint8,
    tile_size: Annotated[
        int,
        typer.Option(
            help="Sliding-window tile side in pixels; an image side shorter than it gets "
            "a tile of its own length (rounded up to the network's multiple).",
            rich_help_panel=W,
        ),
    ] = 256,
    overlap: Annotated[
        float, typer.Option(help="Tile overlap fraction in [0, 1).", rich_help_panel=W)
    ] = 0.25,
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass.", rich_help_panel=W)] = 8,
    blend: Annotated[
        BlendMode, typer.Option(help="How overlapping tiles are averaged.", rich_help_panel=W)
    ] = BlendMode.gaussian,
    normalize: Annotated[
        NormalizeMode,
        typer.Option(help="Percentiles of this volume, or the training source's range."),
    ] = NormalizeMode.volume,
    voxel_size: Annotated[
        str | None,
        typer.Option(help="Voxel size Z,Y,X in nm for the outputs (overrides the file)."),
    ] = None,
    device: DeviceOpt = DeviceChoice.auto,
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
    planes: Annotated[
        Planes,
        typer.Option(
            help="xy: segment (y, x) slices; ortho: also the (z, x) and (z, y) planes, "
            "averaged (three predictions; for isotropic volumes and a model trained on that "
            "microscope); auto: ortho when the volume's voxels are isotropic and the model "
            "saw such planes in training (an isotropic source, or the target's three "
            "planes), else xy.",
            rich_help_panel=W,
        ),
    ] = Planes.auto,
    resample: Annotated[
        bool,
        typer.Option(
            help="Resample tiles to the model's pixel size (its checkpoint) when the "
            "volume's differs by more than 10 %; the outputs stay on the volume's grid.",
            rich_help_panel=W,
        ),
    ] = True,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Average over the 8 flips/rotations of each tile: 8x the time, same memory.",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted prediction: keep the blocks it finished.",
            rich_help_panel="General",
        ),
    ] = False,
    block_size: Annotated[
        int,
        typer.Option(
            help="Slices larger than this (y or x) are predicted in blocks of this size "
            "(a multiple of 256); memory holds one block.",
            rich_help_panel=L,
        ),
    ] = 2048,
    halo: Annotated[
        int | None,
        typer.Option(
            help="Context read around each block, in pixels [default: tile size / 2].",
            rich_help_panel=L,
        ),
    ] = None,
    pyramid: Annotated[
        int,
        typer.Option(
            help="Downsampled levels (each half in y, x) below an .ome.zarr output.",
            rich_help_panel=L,
        ),
    ] = 0,
    ngff: NgffOpt = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler address (tcp://host:8786): workers predict the blocks.",
            rich_help_panel=L,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Predict with a local Dask cluster of this many worker processes.",
            rich_help_panel=L,
        ),
    ] = None,
    precision: PrecisionOpt = Precision.auto,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Segment volumes of any size with a trained run, in one process or on Dask."""
    from emda import api
    from emda.inference.predict import PredictSettings
    from emda.io.volume import parse_voxel_size

    dev = setup(device, threads)
    settings = PredictSettings(
        threshold=threshold,
        prob_dtype=prob_dtype.value,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        blend=blend.value,
        normalize=normalize.value,
        tta=tta,
        planes=planes.value,
        block_size=block_size,
        halo=halo,
        pyramid=pyramid,
        resample=resample,
        ngff=check_ngff(ngff, output, mask),
        precision=precision.value,
    )
    jobs = batch_outputs(inputs, output, mask, overwrite or resume)
    for input, (out, out_mask) in jobs.items():
        bar, advance = progress_bar(quiet, f"predicting {Path(input).name}" if len(jobs) > 1
                                    else "predicting blocks")  # fmt: skip
        with bar:
            result = api.predict(
                run, input, out, out_mask, settings=settings, key=key, channel=channel,
                voxel_size=parse_voxel_size(voxel_size), device=dev, overwrite=overwrite,
                resume=resume, progress=advance, scheduler=scheduler, workers=workers,
                threads=threads,
            )  # fmt: skip
        written = ", ".join(p for p in (out, out_mask) if p)
        console.print(
            f"wrote {written} ({'+'.join(result.planes)} planes, {result.precision}, "
            f"{result.seconds:.1f} s, {result.voxels_per_second / 1e6:.2f} Mvoxel/s)"
        )


def batch_outputs(inputs: list[str], output: str | None, mask: str | None,
                  replacing: bool) -> dict[str, tuple[str | None, str | None]]:  # fmt: skip
    """The outputs of each input: ``{name}`` in --output/--mask becomes the input's file
    name. Checked for every input before the first is predicted, so a batch does not stop
    at its third volume over a name clash."""
    from emda.safety.paths import check_output, refuse_writing_inputs

    several = len(inputs) > 1
    for option, template in (("--output", output), ("--mask", mask)):
        if several and template and "{name}" not in template:
            raise EmdaError(f"{option} {template}: with {len(inputs)} inputs, put {{name}} in "
                            "it (e.g. pred/{name}.ome.zarr)")  # fmt: skip
    jobs: dict[str, tuple[str | None, str | None]] = {}
    for input in inputs:
        name = input_name(input)
        outs = tuple(t.replace("{name}", name) if t else None for t in (output, mask))
        if input in jobs or outs in jobs.values():
            raise EmdaError(f"{input}: two inputs would write the same outputs ({name})")
        for option, path in zip(("--output", "--mask"), outs):
            if path is not None and several:
                check_output(path, replacing, option)
        jobs[input] = outs  # type: ignore[assignment]
    for out, out_mask in jobs.values() if several else ():  # one input: predict checks
        refuse_writing_inputs({"--output": out, "--mask": out_mask}, list(jobs))
    return jobs


def input_name(address: str) -> str:
    """``data/cell1.ome.zarr/raw`` -> ``cell1``: the file name without its suffixes."""
    from emda.io.volume import split_address

    name = split_address(address)[0].name
    for suffix in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".hdf5", ".h5",
                   ".hdf", ".mrc", ".rec", ".st", ".ali", ".map"):  # fmt: skip
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name
