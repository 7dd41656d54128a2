"""``emda ensemble``, ``clean``, ``instances`` and ``measure``: work on predictions already
written."""

from pathlib import Path
from typing import Annotated

import typer

from emda.cli.common import (
    KeyOpt,
    NgffOpt,
    OverwriteOpt,
    QuietOpt,
    ThresholdOpt,
    app,
    check_ngff,
    console,
    progress_bar,
    user_errors,
)
from emda.cli.predict import ProbDtypeOpt
from emda.inference.jobs import ProbDtype

VoxelSizeOpt = Annotated[str | None, typer.Option(help="Z,Y,X in nm when the file has none.")]


@app.command(no_args_is_help=True)
@user_errors
def ensemble(
    predictions: Annotated[
        list[str],
        typer.Argument(help="Predictions of one volume (emda predict outputs, or masks)."),
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Mean probability (.tif, .zarr, .h5, .mrc)."),
    ] = None,
    mask: Annotated[
        str | None, typer.Option(help="Binary mask of the mean at --threshold.")
    ] = None,
    threshold: ThresholdOpt = 0.5,
    prob_dtype: ProbDtypeOpt = ProbDtype.uint8,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Average several predictions of one volume: an ensemble of runs or seeds.

    Predict the volume with each model (`emda predict`), then average the probability
    maps voxel by voxel; masks given as inputs count as 0/1 votes. Errors that belong
    to one seed are smoothed out; errors every member makes stay.
    """
    from emda.postprocessing.ensemble import ensemble_predictions

    bar, advance = progress_bar(quiet, "averaging slices")
    with bar:
        done = ensemble_predictions(
            predictions, output, mask, threshold, prob_dtype.value, overwrite, progress=advance
        )
    written = " and ".join(str(p) for p in (output, mask) if p)
    console.print(
        f"wrote {written}: mean of {done.members} predictions, shape {done.shape}, "
        f"{done.seconds:.1f} s"
    )


@app.command(no_args_is_help=True)
@user_errors
def clean(
    prediction: Annotated[str, typer.Argument(help="A prediction (probabilities or a mask).")],
    mask: Annotated[
        str, typer.Option(help="Cleaned binary mask (.tif, .zarr, .ome.zarr, .h5, .mrc).")
    ],
    sizes_from: Annotated[
        str | None,
        typer.Option(help="Labels to read the sizes from, e.g. the source's training labels."),
    ] = None,
    sizes_z: Annotated[
        str | None, typer.Option(help="Slices START:STOP of --sizes-from to read.")
    ] = None,
    min_size: Annotated[
        int | None, typer.Option(help="Remove objects smaller than this (pixels per slice).")
    ] = None,
    max_hole: Annotated[
        int | None, typer.Option(help="Fill holes up to this area (pixels per slice).")
    ] = None,
    threshold: Annotated[float, typer.Option(help="Probability threshold.")] = 0.5,
    key: KeyOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Threshold a prediction, then remove specks and fill holes, slice by slice.

    A mitochondrion in a section is one solid blob: objects smaller than --min-size
    are removed (unless they touch the slice border) and holes up to --max-hole are
    filled. --sizes-from LABELS sets both from labels you have, typically the source's
    training labels: the 1st percentile and the median area of their objects.
    """
    from emda.postprocessing.cleaning import clean_prediction

    bar, advance = progress_bar(quiet, "cleaning slices")
    with bar:
        done = clean_prediction(
            prediction, mask, min_size, max_hole, sizes_from, sizes_z, threshold, key,
            overwrite, progress=advance,
        )  # fmt: skip
    c = done.counts
    console.print(
        f"wrote {mask}: min size {done.sizes.min_size} px, max hole {done.sizes.max_hole} px; "
        f"removed {c.removed_objects} objects ({c.removed_pixels} px), filled {c.filled_holes} "
        f"holes ({c.filled_pixels} px); shape {done.shape}, {done.seconds:.1f} s"
    )


@app.command(no_args_is_help=True)
@user_errors
def instances(
    prediction: Annotated[str, typer.Argument(help="A prediction (emda predict) or a mask.")],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="Label image (.tif, .zarr, .ome.zarr, .h5): 0 background."
        ),
    ],
    threshold: ThresholdOpt = 0.5,
    min_size: Annotated[
        float | None,
        typer.Option(
            help="Remove objects smaller than this, in nm^3 [default: a tenth of the median "
            "object of the source that trained the model, when recorded]."
        ),
    ] = None,
    connect_z: Annotated[
        bool | None,
        typer.Option(
            "--connect-z/--no-connect-z",
            help="Join objects across slices (default: when the z-step is at most 100 nm).",
        ),
    ] = None,
    split: Annotated[
        bool, typer.Option("--split", help="Separate touching objects (seeded watershed).")
    ] = False,
    voxel_size: VoxelSizeOpt = None,
    key: KeyOpt = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted run (same input and settings)."),
    ] = False,
    ngff: NgffOpt = None,
    run: Annotated[
        str | None,
        typer.Option(
            help="The run that made the prediction: its source's objects set the "
            "minimum size when the prediction does not record them (TIFF)."
        ),
    ] = None,
    all_objects: Annotated[
        bool, typer.Option("--all-objects", help="Keep every object, specks too.")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Individual mitochondria: a label image of the prediction's connected objects.

    Thresholds the prediction and numbers its 3D connected components 1..N, block by
    block, so volumes of any size fit in memory; objects crossing block boundaries keep
    one number. An interrupted run keeps its work beside the output for --resume.
    """
    from emda.io.volume import parse_voxel_size
    from emda.postprocessing.instances import label_instances

    bar, advance = progress_bar(quiet, "labelling blocks")
    with bar:
        done = label_instances(
            prediction, output, threshold=threshold, min_size=min_size, connect_z=connect_z,
            split=split, key=key, voxel_size=parse_voxel_size(voxel_size), overwrite=overwrite,
            resume=resume, ngff=check_ngff(ngff, output), run=run, all_objects=all_objects,
            progress=advance,
        )  # fmt: skip
    across = "across slices" if done.connect_z else "slice by slice"
    removed = f", {done.removed} under {done.min_voxels} voxels removed" if done.removed else ""
    removed += f", {done.split} more from splitting" if done.split else ""
    console.print(
        f"wrote {output}: {done.count} objects ({across}{removed}), {done.dtype}, "
        f"{done.seconds:.1f} s; minimum size: {done.min_size_from}"
    )


@app.command(no_args_is_help=True)
@user_errors
def measure(
    labels: Annotated[str, typer.Argument(help="A label image (emda instances).")],
    csv_out: Annotated[
        str | None, typer.Option("--csv", help="One row per object (units in the names).")
    ] = None,
    raw: Annotated[
        str | None, typer.Option(help="The image, for each object's mean intensity.")
    ] = None,
    figure: Annotated[str | None, typer.Option(help="Histogram of object volumes (.png).")] = None,
    voxel_size: VoxelSizeOpt = None,
    key: KeyOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Measure every object of a label image: volume, surface, centroid, axes, elongation.

    Block by block, so volumes of any size fit in memory. Prints a per-volume summary
    (count, density, size distribution); --csv writes one row per object.
    """
    from rich.table import Table

    from emda.analysis.measure import measure_labels
    from emda.analysis.report import objects_csv, size_histogram, summary
    from emda.cli.common import out
    from emda.io.volume import open_volume, parse_voxel_size
    from emda.safety.paths import check_reports, write_atomically

    check_reports({"--csv": csv_out, "--figure": figure}, [labels, raw], overwrite)
    volume = open_volume(labels, key, parse_voxel_size(voxel_size))
    if volume.voxel_size is None:
        console.print(f"[yellow]{labels} has no voxel size: lengths are in voxels "
                      "(give --voxel-size)[/]")  # fmt: skip
    image = open_volume(raw) if raw else None
    bar, advance = progress_bar(quiet, "measuring blocks")
    with bar:
        rows, intensity = measure_labels(volume, image, advance)
    table = Table(title=f"objects in {labels}")
    table.add_column("")
    table.add_column("value", justify="right")
    for name, value in summary(rows, volume.shape, volume.voxel_size).items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    out.print(table)
    if csv_out:
        text = objects_csv(rows, intensity)
        write_atomically(csv_out, lambda tmp: Path(tmp).write_text(text))
    if figure:
        size_histogram(rows, figure, f"{len(rows['id'])} objects in {Path(labels).name}")
