"""``emda adapt`` and ``emda finetune``: commands that train a run."""

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from emda.cli.common import (
    ConfigOpt,
    DeviceOpt,
    OverwriteOpt,
    PrecisionOpt,
    QuietOpt,
    ResumeOpt,
    TargetChannelOpt,
    ThreadsOpt,
    app,
    console,
    option,
    resolved,
    setup,
    user_errors,
    with_options,
)
from emda.device import DeviceChoice
from emda.errors import EmdaError
from emda.methods.losses import SegLoss
from emda.precision import Precision
from emda.training.config import (
    FINETUNE_ITERATIONS,
    FINETUNE_LR,
    LrSchedule,
    TargetPlanes,
    TrainConfig,
)

T = "Training"
D = "Data"


def training_options(iterations: int, lr: float) -> list:
    """The options of one training run, shared by adapt and finetune (their own defaults)."""

    def opt(name, kind, default, text):
        return option(name, Annotated[kind, typer.Option(help=text, rich_help_panel=T)], default)

    return [
        opt("iterations", int, iterations, "Training iterations (optimiser steps)."),
        opt("batch_size", int, 8, "Patches per batch (per domain)."),
        opt("patch_size", int, 128, "Square patch side in pixels; multiple of 2^depth."),
        opt("lr", float, lr, "Adam learning rate."),
        opt("lr_schedule", LrSchedule, LrSchedule.cosine, "Learning-rate schedule."),
        opt("seed", int, 0, "Seed for weights, sampling and augmentation."),
        opt("augment", bool, True, "Random flips and 90-degree rotations."),
        opt("intensity_jitter", float, 0.1, "Random contrast/brightness jitter (0: off)."),
        opt("noise", float, 0.0, "Maximum std of added Gaussian noise (0: off)."),
        opt("seg_loss", SegLoss, SegLoss.bce_dice, "Segmentation loss."),
        opt("checkpoint_every", int, 250, "Save the training state every N iterations."),
        opt(
            "average_weights",
            float,
            0.0,
            "Save the mean of the weights over this last fraction of the iterations "
            "(stochastic weight averaging) instead of the last iteration's; 0 = off.",
        ),
    ]


def general_options() -> list:
    return [
        option("device", DeviceOpt, DeviceChoice.auto),
        option("precision", PrecisionOpt, Precision.auto),
        option("threads", ThreadsOpt, None),
        option("overwrite", OverwriteOpt, False),
        option("resume", ResumeOpt, False),
        option("quiet", QuietOpt, False),
        option("config", ConfigOpt, None),
    ]


def train_config(options: dict, **extra) -> TrainConfig:
    """A TrainConfig from a command's options (enums to their values)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: getattr(v, "value", v) for k, v in options.items() if k in fields}
    return TrainConfig(**values, **extra)


def report_run(summary) -> None:
    from emda.cli.describe import validation_text

    terms = "  ".join(f"{k}={v:.4f}" for k, v in summary.final_terms.items())
    console.print(
        f"[green]done[/green]: {summary.iterations} iterations in {summary.seconds:.0f} s"
        + (f"; final {terms}" if terms else "")
        + f"; run in {summary.run_dir}"
    )
    if summary.stages:
        for stage in summary.stages:
            console.print(f"  stage {stage['name']}: {stage['status']}")
    if scores := summary.source_validation:
        console.print(f"held-out source slices: {validation_text(scores)}")


@app.command(no_args_is_help=True)
@user_errors
@with_options(training_options(1500, 1e-3), general_options())
def adapt(
    ctx: typer.Context,
    source: Annotated[
        list[str],
        typer.Option(
            help="Labelled source raw volume (TIFF or zarr: a.zarr/raw); repeat for several "
            "sources (patches drawn from each equally often).",
            rich_help_panel=D,
        ),
    ],
    source_labels: Annotated[
        list[str],
        typer.Option(
            help="Source mitochondria mask, same shape; one per --source, in order.",
            rich_help_panel=D,
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory to create.", rich_help_panel=D)
    ],
    target: Annotated[
        str | None,
        typer.Option(
            help="Unlabelled target raw volume (needed by the recipe and every method but ft).",
            rich_help_panel=D,
        ),
    ] = None,
    target_bn: Annotated[
        bool,
        typer.Option(
            help="After training, re-estimate batch-norm statistics on the target (AdaBN); "
            "applies to every method, ft included, when --target is given.",
            rich_help_panel="Method",
        ),
    ] = True,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            "-m",
            help="Train one adaptation method (see `emda methods`) instead of the recipe.",
            rich_help_panel="Method",
        ),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(
            help="A recipe TOML file to run instead of the default recipe (docs/recipe.md).",
            rich_help_panel="Method",
        ),
    ] = None,
    opt: Annotated[
        list[str] | None,
        typer.Option(
            "--opt", help="Method option NAME=VALUE; repeatable.", rich_help_panel="Method"
        ),
    ] = None,
    source_z: Annotated[
        list[str] | None,
        typer.Option(
            help="Source slices START:STOP to train on; once for all sources or once each.",
            rich_help_panel=D,
        ),
    ] = None,
    target_z: Annotated[
        str | None, typer.Option(help="Target slices START:STOP to adapt on.", rich_help_panel=D)
    ] = None,
    source_channel: Annotated[
        list[int] | None,
        typer.Option(
            help="Channel of a multichannel OME-Zarr source (from 0); once for all or once each.",
            rich_help_panel=D,
        ),
    ] = None,
    target_channel: TargetChannelOpt = None,
    target_planes: Annotated[
        TargetPlanes,
        typer.Option(
            help="Target patches from (y, x) slices only, or from all three plane stacks "
            "(ortho; isotropic volumes such as FIB-SEM, z rows inside --target-z).",
            rich_help_panel=D,
        ),
    ] = TargetPlanes.xy,
    source_val_z: Annotated[
        str | None,
        typer.Option(
            help="Held-out source slices START:STOP (outside --source-z), scored after "
            "training with the source's statistics: a model that fails its own source has "
            "learned a cue real images lack. Needs no target label.",
            rich_help_panel=D,
        ),
    ] = None,
    foreground: Annotated[
        float | None,
        typer.Option(
            help="Label value of the foreground when labels are not a {0,1}/{0,255} mask.",
            rich_help_panel=D,
        ),
    ] = None,
    voxel_size: Annotated[
        str | None,
        typer.Option(
            help="Source voxel size Z,Y,X in nm (overrides the files; every source).",
            rich_help_panel=D,
        ),
    ] = None,
    target_voxel_size: Annotated[
        str | None,
        typer.Option(help="Target voxel size Z,Y,X in nm (overrides the file).", rich_help_panel=D),
    ] = None,
    resample: Annotated[
        bool,
        typer.Option(
            help="Work at the first source's pixel size: patches of volumes whose pixel size "
            "differs by more than 10 % are resampled, and so are tiles at prediction.",
            rich_help_panel=D,
        ),
    ] = True,
    amplitude_mix: Annotated[
        float,
        typer.Option(
            help="Give source patches a target patch's Fourier amplitude spectrum, mixed in "
            "with a weight ~ U(0, A) (its look; the source's structure stays); 0 = off.",
            rich_help_panel=T,
        ),
    ] = 0.0,
    base_channels: Annotated[
        int, typer.Option(help="U-Net feature maps at the first level.", rich_help_panel="Model")
    ] = 16,
    depth: Annotated[
        int, typer.Option(help="U-Net levels before the bottleneck.", rich_help_panel="Model")
    ] = 4,
    lower_percentile: Annotated[
        float, typer.Option(help="Intensity percentile mapped to 0.", rich_help_panel="Model")
    ] = 1.0,
    upper_percentile: Annotated[
        float, typer.Option(help="Intensity percentile mapped to 1.", rich_help_panel="Model")
    ] = 99.0,
    **options,
) -> None:
    """Adapt a model from labelled sources to an unlabelled target.

    Without --method, runs the recipe: Y-Net alignment, then self-training rounds, each
    kept only if the target's own statistics say it did not shrink the objects
    (`emda info RUN` shows the stages). --method trains one method.
    """
    from emda import api
    from emda.data.normalization import Normalization
    from emda.io.volume import parse_voxel_size
    from emda.methods.options import options_to_dict
    from emda.model import UNetConfig
    from emda.training.adapt import VolumeSpec, resolve_method
    from emda.training.recipe import DEFAULT_RECIPE, load_recipe

    device = setup(options["device"], options["threads"])
    if method is None and opt:
        raise EmdaError("--opt needs --method (a recipe's stages carry their own options)")
    if method is not None and recipe is not None:
        raise EmdaError("--method and --recipe contradict each other: choose one")
    if method is None and target is None:
        raise EmdaError("--target is required by the recipe (or give --method ft to train on "
                        "the source alone)")  # fmt: skip
    chosen = resolve_method(method, opt or []) if method else None
    plan = None if chosen else (load_recipe(recipe) if recipe else DEFAULT_RECIPE)
    config = train_config(options, amplitude_mix=amplitude_mix, target_planes=target_planes.value)
    try:
        model = UNetConfig(base_channels=base_channels, depth=depth)
    except ValueError as exc:
        raise EmdaError(f"--base-channels/--depth: {exc}") from None
    voxel = parse_voxel_size(voxel_size)
    sources = source_specs(source, source_labels, source_z or [], voxel, foreground,
                           source_channel or [])  # fmt: skip
    tgt = None
    if target:
        tgt_voxel = parse_voxel_size(target_voxel_size, "--target-voxel-size")
        tgt = VolumeSpec(target, None, target_z, tgt_voxel, channel=target_channel)
    elif given := [name for name, value in (("--target-voxel-size", target_voxel_size),
                   ("--target-z", target_z), ("--target-channel", target_channel))
                   if value is not None]:  # fmt: skip
        raise EmdaError(f"{given[0]} needs --target")
    settings = resolved(ctx)
    common = dict(
        model_config=model, normalization=Normalization(lower_percentile, upper_percentile),
        target_bn=target_bn, source_val_z=source_val_z, resample=resample, device=device,
        overwrite=options["overwrite"], resume=options["resume"],
        show_progress=not options["quiet"], resolved_config=settings,
    )  # fmt: skip
    if chosen is not None:
        settings["opt"] = options_to_dict(chosen.options)
        summary = api.adapt(sources, tgt, out, method=chosen, config=config, **common)
    else:
        assert plan is not None and tgt is not None
        settings["recipe"] = str(recipe) if recipe else None  # None: the default recipe
        summary = api.adapt_with_recipe(sources, tgt, out, plan, config=config, **common)
    report_run(summary)


def source_specs(raws, labels, z_ranges, voxel, foreground, channels=()) -> list:
    """One VolumeSpec per --source, paired in order with --source-labels (and --source-z
    and --source-channel, each given once for all or once each)."""
    from emda.training.adapt import VolumeSpec

    if len(labels) != len(raws):
        raise EmdaError(
            f"--source-labels: {len(labels)} given for {len(raws)} --source volumes (one each)"
        )
    zs, cs = (
        once_or_each(z_ranges, raws, "--source-z"),
        once_or_each(channels, raws, "--source-channel"),
    )
    return [VolumeSpec(r, y, z, voxel, foreground, c)
            for r, y, z, c in zip(raws, labels, zs, cs, strict=True)]  # fmt: skip


def once_or_each(values, raws, option: str) -> list:
    """An option given once for every --source, or once per --source in order."""
    if len(values) > 1 and len(values) != len(raws):
        raise EmdaError(f"{option}: give it once, or once per --source ({len(raws)})")
    return list(values) if len(values) > 1 else [values[0] if values else None] * len(raws)


@app.command(no_args_is_help=True)
@user_errors
@with_options(training_options(FINETUNE_ITERATIONS, FINETUNE_LR), general_options())
def finetune(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(help="Run directory (or checkpoint.pt) to start from.")],
    target: Annotated[str, typer.Option(help="Target raw volume.", rich_help_panel=D)],
    target_labels: Annotated[
        str,
        typer.Option(
            help="Target labels (only the chosen fraction of slices is used).", rich_help_panel=D
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New run directory.", rich_help_panel=D)],
    fraction: Annotated[
        float,
        typer.Option(
            help="Fraction of the target's labelled z-slices to train on, in (0, 1]; slices "
            "are drawn by a permutation seeded with --seed.",
            rich_help_panel=D,
        ),
    ] = 1.0,
    target_z: Annotated[
        str | None,
        typer.Option(
            help="Target slices START:STOP the fraction is drawn from.", rich_help_panel=D
        ),
    ] = None,
    foreground: Annotated[
        float | None,
        typer.Option(help="Foreground label value if not a {0,1}/{0,255} mask.", rich_help_panel=D),
    ] = None,
    target_channel: TargetChannelOpt = None,
    **options,
) -> None:
    """Continue a run on a fraction of the target labels (works after any method)."""
    from emda import api
    from emda.training.adapt import VolumeSpec

    summary = api.finetune(
        run,
        VolumeSpec(target, target_labels, target_z, None, foreground, target_channel),
        out,
        fraction=fraction,
        config=train_config(options),
        device=setup(options["device"], options["threads"]),
        overwrite=options["overwrite"],
        resume=options["resume"],
        show_progress=not options["quiet"],
        resolved_config=resolved(ctx),
    )
    report_run(summary)
