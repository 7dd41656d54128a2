"""The ``emda`` command line: thin wrappers that parse options and call :mod:`emda.workflows`."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
import tomllib
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from emda import __version__
from emda.errors import EmdaError
from emda.planes import Planes

app = typer.Typer(
    name="emda",
    help="Domain-adaptive segmentation for volume electron microscopy.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ProbDtype(str, Enum):
    uint8 = "uint8"
    float32 = "float32"


class Blend(str, Enum):
    gaussian = "gaussian"
    constant = "constant"


class Normalize(str, Enum):
    volume = "volume"
    source = "source"


class SegLossChoice(str, Enum):
    bce = "bce"
    dice = "dice"
    bce_dice = "bce_dice"


class Schedule(str, Enum):
    cosine = "cosine"
    constant = "constant"


class TargetPlanes(str, Enum):  # emda.train.TARGET_PLANES
    xy = "xy"
    ortho = "ortho"


# --- shared behaviour ---------------------------------------------------------------------


def user_errors(fn):
    """EmdaError -> one line on stderr and exit 1 (full traceback with EMDA_DEBUG=1)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EmdaError as exc:
            if os.environ.get("EMDA_DEBUG") == "1":
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(getattr(exc, "exit_code", 1)) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing half-written was kept", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _config_callback(ctx: typer.Context, param: Any, value: Path | None) -> Path | None:
    """Load ``--config FILE`` (TOML) as defaults; options given on the command line win.

    The file may hold a table per command (``[adapt]``, ``[predict]``...) or plain
    top-level keys; keys are option names with ``-`` or ``_``. ``opt`` may be a table.
    """
    if value is None:
        return value
    try:
        with open(value, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise typer.BadParameter(f"{value}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise typer.BadParameter(f"{value}: invalid TOML ({exc})") from None
    command = ctx.info_name
    section = data.get(command) if isinstance(data.get(command), dict) else data
    known = {p.name for p in ctx.command.params}
    defaults: dict[str, Any] = {}
    for key, val in section.items():
        name = key.replace("-", "_")
        if isinstance(val, dict) and name != "opt":
            continue  # another command's table
        if name not in known or name == "config":
            raise typer.BadParameter(f"{value}: unknown setting '{key}' for `emda {command}`")
        if name == "opt" and isinstance(val, dict):
            val = [
                f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in val.items()
            ]
        defaults[name] = val
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file of option values (command line wins).",
        is_eager=True,
        callback=_config_callback,
        rich_help_panel="General",
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option(help="Where to compute: auto picks CUDA when present.", rich_help_panel="General"),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(help="CPU threads for torch (default: all cores).", rich_help_panel="General"),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bars.", rich_help_panel="General")
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue an interrupted run in --out from its last saved state (same settings).",
        rich_help_panel="General",
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Replace outputs that already exist.", rich_help_panel="General"
    ),
]


def _computed_with(training: dict) -> str | None:
    """torch version and CPU threads of the training run (of the base run, for a
    recalibrated model); None for runs older than the record."""
    while "cpu_threads" not in training and "base_training" in training:
        training = training["base_training"]
    if "cpu_threads" not in training:
        return None
    vectors = [training["cpu_capability"]] if "cpu_capability" in training else []
    if "onednn_max_cpu_isa" in training:  # convolutions capped (ONEDNN_MAX_CPU_ISA)
        vectors.append(f"oneDNN at most {training['onednn_max_cpu_isa']}")
    vector = f" ({', '.join(vectors)})" if vectors else ""
    return f"torch {training['torch_version']}, {training['cpu_threads']} CPU threads{vector}"


def _setup(device: Device, threads: int | None):
    import torch

    from emda.device import resolve_device

    if threads is not None:
        if threads < 1:
            raise EmdaError(f"--threads {threads}: must be >= 1")
        torch.set_num_threads(threads)
    return resolve_device(device.value)


def _resolved(ctx: typer.Context) -> dict:
    # --config itself and per-invocation switches do not belong in a reproducible config
    skip = ("config", "overwrite", "quiet", "resume")
    return {k: v for k, v in ctx.params.items() if k not in skip}


def _train_config(**kw):
    from emda.train import TrainConfig

    kw["seg_loss"] = kw["seg_loss"].value
    kw["lr_schedule"] = kw["lr_schedule"].value
    return TrainConfig(**kw)


# --- training options shared by adapt and finetune -------------------------------------------

T = "Training"
ItersOpt = Annotated[
    int, typer.Option(help="Training iterations (optimiser steps).", rich_help_panel=T)
]
BatchOpt = Annotated[int, typer.Option(help="Patches per batch (per domain).", rich_help_panel=T)]
PatchOpt = Annotated[
    int, typer.Option(help="Square patch side in pixels; multiple of 2^depth.", rich_help_panel=T)
]
LrOpt = Annotated[float, typer.Option(help="Adam learning rate.", rich_help_panel=T)]
ScheduleOpt = Annotated[Schedule, typer.Option(help="Learning-rate schedule.", rich_help_panel=T)]
SeedOpt = Annotated[
    int, typer.Option(help="Seed for weights, sampling and augmentation.", rich_help_panel=T)
]
AugmentOpt = Annotated[
    bool, typer.Option(help="Random flips and 90-degree rotations.", rich_help_panel=T)
]
JitterOpt = Annotated[
    float,
    typer.Option(
        help="Random contrast/brightness jitter amplitude (0 turns it off).", rich_help_panel=T
    ),
]
SharpnessOpt = Annotated[
    float,
    typer.Option(
        help="Random blur/sharpen amplitude: x + a(x - blur(x)), a in [-min(s,1), s]; 0 = off.",
        rich_help_panel=T,
    ),
]
NoiseOpt = Annotated[
    float,
    typer.Option(help="Maximum std of added Gaussian noise (0 turns it off).", rich_help_panel=T),
]
AmplitudeMixOpt = Annotated[
    float,
    typer.Option(
        help="Give source patches a target patch's Fourier amplitude spectrum, mixed in "
        "with a weight ~ U(0, A) (its look; the source's structure stays); 0 = off.",
        rich_help_panel=T,
    ),
]
SmoothObjectsOpt = Annotated[
    float,
    typer.Option(
        help="Blur the inside of labelled source objects by a ~ U(0, A), their outline kept; "
        "0 = off. Measured harmful VNC -> EPFL (the network learns the blur itself: check "
        "with --source-val-z; benchmarks/FINDINGS.md).",
        rich_help_panel=T,
    ),
]
SegLossOpt = Annotated[SegLossChoice, typer.Option(help="Segmentation loss.", rich_help_panel=T)]
CkptEveryOpt = Annotated[
    int, typer.Option(help="Save the checkpoint every N iterations.", rich_help_panel=T)
]
AmpOpt = Annotated[
    bool, typer.Option(help="Mixed precision on CUDA (ignored on CPU).", rich_help_panel=T)
]
AVERAGE_HELP = (
    "Save the mean of the weights over this last fraction of the iterations (stochastic "
    "weight averaging) instead of the last iteration's; 0 = off. Intermediate checkpoints "
    "keep the weights of their iteration."
)
AverageWeightsOpt = Annotated[float, typer.Option(help=AVERAGE_HELP, rich_help_panel=T)]
# adapt: a method may carry its own measured default (Method.average_weights)
MethodAverageWeightsOpt = Annotated[
    float | None,
    typer.Option(
        "--average-weights",
        help=AVERAGE_HELP + " Default: the method's own, which `emda methods` shows.",
        show_default=False,
        rich_help_panel=T,
    ),
]


# --- commands ------------------------------------------------------------------------------


@app.command(no_args_is_help=True)
@user_errors
def adapt(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Option(help="Source raw volume (TIFF or zarr: a.zarr/raw).", rich_help_panel="Data"),
    ],
    source_labels: Annotated[
        str, typer.Option(help="Source mitochondria mask, same shape.", rich_help_panel="Data")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run directory to create.", rich_help_panel="Data")
    ],
    target: Annotated[
        str | None,
        typer.Option(
            help="Unlabelled target raw volume (needed by every method except ft).",
            rich_help_panel="Data",
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
        str,
        typer.Option(
            "--method",
            "-m",
            help="Adaptation method; see `emda methods`.",
            rich_help_panel="Method",
        ),
    ] = "ft",
    opt: Annotated[
        list[str] | None,
        typer.Option(
            "--opt", help="Method option NAME=VALUE; repeatable.", rich_help_panel="Method"
        ),
    ] = None,
    source_z: Annotated[
        str | None,
        typer.Option(help="Source slices START:STOP to train on.", rich_help_panel="Data"),
    ] = None,
    target_z: Annotated[
        str | None,
        typer.Option(help="Target slices START:STOP to adapt on.", rich_help_panel="Data"),
    ] = None,
    target_planes: Annotated[
        TargetPlanes,
        typer.Option(
            help="Target patches from (y, x) slices only, or from all three plane stacks "
            "(ortho; isotropic volumes such as FIB-SEM, z rows inside --target-z).",
            rich_help_panel="Data",
        ),
    ] = TargetPlanes.xy,
    source_val_z: Annotated[
        str | None,
        typer.Option(
            help="Held-out source slices START:STOP (outside --source-z), scored after "
            "training with the source's statistics: a model that fails its own source has "
            "learned a cue real images lack. Needs no target label.",
            rich_help_panel="Data",
        ),
    ] = None,
    foreground: Annotated[
        float | None,
        typer.Option(
            help="Label value of the foreground when labels are not a {0,1}/{0,255} mask.",
            rich_help_panel="Data",
        ),
    ] = None,
    voxel_size: Annotated[
        str | None,
        typer.Option(
            help="Source voxel size Z,Y,X in nm (overrides the file).", rich_help_panel="Data"
        ),
    ] = None,
    iterations: ItersOpt = 1500,
    batch_size: BatchOpt = 8,
    patch_size: PatchOpt = 128,
    lr: LrOpt = 1e-3,
    lr_schedule: ScheduleOpt = Schedule.cosine,
    seed: SeedOpt = 0,
    augment: AugmentOpt = True,
    intensity_jitter: JitterOpt = 0.1,
    sharpness: SharpnessOpt = 0.0,
    noise: NoiseOpt = 0.0,
    amplitude_mix: AmplitudeMixOpt = 0.0,
    smooth_objects: SmoothObjectsOpt = 0.0,
    seg_loss: SegLossOpt = SegLossChoice.bce_dice,
    checkpoint_every: CkptEveryOpt = 250,
    amp: AmpOpt = True,
    average_weights: MethodAverageWeightsOpt = None,
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
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Train a model on a labelled source and an unlabelled target with a DA method."""
    from emda.model import UNetConfig
    from emda.normalization import Normalization
    from emda.options import options_to_dict
    from emda.volume import parse_voxel_size
    from emda.workflows import VolumeSpec, adapt, resolve_method

    dev = _setup(device, threads)
    chosen = resolve_method(method, opt or [])
    train_cfg = _train_config(
        iterations=iterations,
        batch_size=batch_size,
        patch_size=patch_size,
        lr=lr,
        lr_schedule=lr_schedule,
        seed=seed,
        augment=augment,
        intensity_jitter=intensity_jitter,
        sharpness=sharpness,
        noise=noise,
        amplitude_mix=amplitude_mix,
        smooth_objects=smooth_objects,
        seg_loss=seg_loss,
        checkpoint_every=checkpoint_every,
        amp=amp,
        average_weights=average_weights,
        target_planes=target_planes.value,
    ).for_method(chosen)
    try:
        model_cfg = UNetConfig(base_channels=base_channels, depth=depth)
    except ValueError as exc:
        raise EmdaError(f"--base-channels/--depth: {exc}") from None
    if patch_size % model_cfg.divisor:
        raise EmdaError(
            f"--patch-size {patch_size}: must be a multiple of {model_cfg.divisor} (2^depth)"
        )
    resolved = _resolved(ctx)
    resolved["opt"] = options_to_dict(chosen.options)
    resolved["average_weights"] = train_cfg.average_weights  # the method's, if not given
    summary = adapt(
        VolumeSpec(source, source_labels, source_z, parse_voxel_size(voxel_size), foreground),
        VolumeSpec(target, None, target_z) if target else None,
        out,
        chosen,
        train_cfg,
        model_cfg,
        Normalization(lower_percentile, upper_percentile),
        dev,
        overwrite,
        not quiet,
        resolved,
        target_bn,
        resume,
        source_val_z,
    )
    _report_run(summary)


@app.command(no_args_is_help=True)
@user_errors
def finetune(
    ctx: typer.Context,
    run: Annotated[Path, typer.Argument(help="Run directory (or checkpoint.pt) to start from.")],
    target: Annotated[str, typer.Option(help="Target raw volume.", rich_help_panel="Data")],
    target_labels: Annotated[
        str,
        typer.Option(
            help="Target labels (only the chosen fraction of slices is used).",
            rich_help_panel="Data",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="New run directory.", rich_help_panel="Data")
    ],
    fraction: Annotated[
        float,
        typer.Option(
            help="Fraction of the target's labelled z-slices "
            "to train on, in (0, 1]; slices are drawn by a "
            "permutation seeded with --seed.",
            rich_help_panel="Data",
        ),
    ] = 1.0,
    target_z: Annotated[
        str | None,
        typer.Option(
            help="Target slices START:STOP the fraction is drawn from.", rich_help_panel="Data"
        ),
    ] = None,
    foreground: Annotated[
        float | None,
        typer.Option(
            help="Foreground label value if not a {0,1}/{0,255} mask.", rich_help_panel="Data"
        ),
    ] = None,
    iterations: ItersOpt = 500,
    batch_size: BatchOpt = 8,
    patch_size: PatchOpt = 128,
    lr: LrOpt = 1e-4,
    lr_schedule: ScheduleOpt = Schedule.cosine,
    seed: SeedOpt = 0,
    augment: AugmentOpt = True,
    intensity_jitter: JitterOpt = 0.1,
    sharpness: SharpnessOpt = 0.0,
    noise: NoiseOpt = 0.0,
    seg_loss: SegLossOpt = SegLossChoice.bce_dice,
    checkpoint_every: CkptEveryOpt = 250,
    amp: AmpOpt = True,
    average_weights: AverageWeightsOpt = 0.0,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
    resume: ResumeOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Continue a run on a fraction of the target labels (works after any method)."""
    from emda.workflows import VolumeSpec, finetune

    dev = _setup(device, threads)
    train_cfg = _train_config(
        iterations=iterations,
        batch_size=batch_size,
        patch_size=patch_size,
        lr=lr,
        lr_schedule=lr_schedule,
        seed=seed,
        augment=augment,
        intensity_jitter=intensity_jitter,
        sharpness=sharpness,
        noise=noise,
        seg_loss=seg_loss,
        checkpoint_every=checkpoint_every,
        amp=amp,
        average_weights=average_weights,
    )
    summary = finetune(
        run,
        VolumeSpec(target, target_labels, target_z, None, foreground),
        out,
        fraction,
        train_cfg,
        dev,
        overwrite,
        not quiet,
        _resolved(ctx),
        resume,
    )
    _report_run(summary)


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
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Re-estimate a model's batch-norm statistics on a target (AdaBN): no training, no labels.

    The step `adapt` ends with by default, for any finished run, e.g. a model trained
    elsewhere that now meets a new microscope.
    """
    from emda.workflows import VolumeSpec
    from emda.workflows import recalibrate as run_recalibrate

    dev = _setup(device, threads)
    done = run_recalibrate(run, VolumeSpec(target, None, target_z), out, dev, batches, overwrite)
    console.print(f"recalibrated model written to {done / 'checkpoint.pt'}")


@app.command(no_args_is_help=True)
@user_errors
def predict(
    run: Annotated[Path, typer.Argument(help="Run directory or checkpoint.pt.")],
    input: Annotated[str, typer.Argument(help="Volume to segment (TIFF or zarr).")],
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Probabilities (.tif, .zarr, or .ome.zarr for OME-Zarr)."
        ),
    ] = None,
    mask: Annotated[
        str | None, typer.Option(help="Binary mask at --threshold (.tif, .zarr, .ome.zarr).")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Array inside a zarr input.")] = None,
    threshold: Annotated[float, typer.Option(help="Probability threshold for --mask.")] = 0.5,
    prob_dtype: Annotated[ProbDtype, typer.Option(help="uint8 stores round(255 p).")] = (
        ProbDtype.uint8
    ),
    tile_size: Annotated[
        int,
        typer.Option(
            help="Sliding-window tile side in pixels; an image side shorter than it gets "
            "a tile of its own length (rounded up to the network's multiple).",
            rich_help_panel="Window",
        ),
    ] = 256,
    overlap: Annotated[
        float, typer.Option(help="Tile overlap fraction in [0, 1).", rich_help_panel="Window")
    ] = 0.25,
    batch_size: Annotated[
        int, typer.Option(help="Tiles per forward pass.", rich_help_panel="Window")
    ] = 8,
    blend: Annotated[
        Blend, typer.Option(help="How overlapping tiles are averaged.", rich_help_panel="Window")
    ] = Blend.gaussian,
    normalize: Annotated[
        Normalize, typer.Option(help="Percentiles of this volume, or the training source's range.")
    ] = Normalize.volume,
    voxel_size: Annotated[
        str | None,
        typer.Option(help="Voxel size Z,Y,X in nm for the outputs (overrides the file)."),
    ] = None,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    overwrite: OverwriteOpt = False,
    planes: Annotated[
        Planes,
        typer.Option(
            help="xy: segment (y, x) slices; ortho: also the (z, x) and (z, y) planes, "
            "averaged (three predictions; for isotropic volumes and a model trained on that "
            "microscope); auto: ortho when the volume's voxels and those the model was "
            "trained on (its checkpoint) are both isotropic, else xy.",
            rich_help_panel="Window",
        ),
    ] = Planes.xy,
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
            rich_help_panel="Large volumes",
        ),
    ] = 2048,
    halo: Annotated[
        int | None,
        typer.Option(
            help="Context read around each block, in pixels [default: tile size / 2].",
            rich_help_panel="Large volumes",
        ),
    ] = None,
    pyramid: Annotated[
        int,
        typer.Option(
            help="Downsampled levels (each half in y, x) below an .ome.zarr output.",
            rich_help_panel="Large volumes",
        ),
    ] = 0,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler address (tcp://host:8786): workers predict the blocks.",
            rich_help_panel="Large volumes",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Predict with a local Dask cluster of this many worker processes.",
            rich_help_panel="Large volumes",
        ),
    ] = None,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Segment a volume of any size with a trained run, in one process or on Dask."""
    from rich.progress import Progress

    from emda.volume import parse_voxel_size
    from emda.workflows import predict as run_predict

    dev = _setup(device, threads)
    with Progress(console=console, disable=quiet, transient=True) as progress:
        task = progress.add_task("predicting blocks", total=None)
        info = run_predict(
            run,
            input,
            output,
            mask,
            dev,
            key,
            threshold,
            prob_dtype.value,
            tile_size,
            overlap,
            batch_size,
            blend.value,
            normalize.value,
            parse_voxel_size(voxel_size),
            overwrite,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            resume=resume,
            tta=tta,
            planes=planes.value,
            block_size=block_size,
            halo=halo,
            pyramid=pyramid,
            scheduler=scheduler,
            workers=workers,
            threads=threads,
        )
    written = ", ".join(p for p in (output, mask) if p)
    planes_used = "+".join(info["planes"])
    console.print(
        f"wrote {written} ({planes_used} planes, {info['seconds']:.1f} s, "
        f"{info['voxels_per_second'] / 1e6:.2f} Mvoxel/s)"
    )


@app.command(no_args_is_help=True)
@user_errors
def smooth(
    input: Annotated[str, typer.Argument(help="Volume to blur (TIFF or zarr).")],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Blurred volume (.tif, .zarr, .ome.zarr).")
    ],
    sigma: Annotated[
        float | None, typer.Option(help="Gaussian sigma in pixels, in-plane (y, x).")
    ] = None,
    like: Annotated[
        str | None,
        typer.Option(help="Reference volume: blur INPUT until it is as sharp as this one."),
    ] = None,
    z_range: Annotated[
        str | None, typer.Option(help="Slices START:STOP of INPUT to measure sharpness on.")
    ] = None,
    like_z: Annotated[
        str | None, typer.Option(help="Slices START:STOP of --like to measure sharpness on.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Array inside a zarr input.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Blur a volume in-plane, by --sigma or to the sharpness of a --like volume.

    Sharpness is the mean gradient magnitude of the normalised slices (no labels). When
    the target differs from the source mainly in noise or focus, blur the sharper one
    --like the other and use the result wherever that volume goes (adapt, recalibrate,
    predict). The whole volume gets the sigma found on --z-range (e.g. the training
    slices). Blurring the source VNC like EPFL lifted Y-Net by 9.7 and 2.4 IoU points
    (two seeds); blurring the target VNC the other way changed nothing
    (benchmarks/FINDINGS.md).
    """
    from rich.progress import Progress

    from emda.workflows import smooth as run_smooth

    with Progress(console=console, disable=quiet, transient=True) as progress:
        task = progress.add_task("blurring slices", total=None)
        done = run_smooth(
            input, output, sigma, like, z_range, like_z, key, overwrite,
            progress=lambda d, t: progress.update(task, completed=d, total=t),
        )  # fmt: skip
    reference = f" (--like: {done.reference_level:.4f})" if done.reference_level else ""
    console.print(
        f"wrote {output}: sigma {done.sigma:g} px, gradient level {done.level_before:.4f} -> "
        f"{done.level_after:.4f}{reference}, {done.seconds:.1f} s"
    )


@app.command(no_args_is_help=True)
@user_errors
def ensemble(
    predictions: Annotated[
        list[str],
        typer.Argument(help="Predictions of one volume (emda predict outputs, or masks)."),
    ],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Mean probability (.tif, .zarr).")
    ] = None,
    mask: Annotated[
        str | None, typer.Option(help="Binary mask of the mean at --threshold.")
    ] = None,
    threshold: Annotated[float, typer.Option(help="Probability threshold for --mask.")] = 0.5,
    prob_dtype: Annotated[ProbDtype, typer.Option(help="uint8 stores round(255 p).")] = (
        ProbDtype.uint8
    ),
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Average several predictions of one volume: an ensemble of runs or seeds.

    Predict the volume with each model (`emda predict`), then average the probability
    maps voxel by voxel; masks given as inputs count as 0/1 votes. Part of a model's
    errors belong to its seed: VNC -> EPFL, three seeds of the mixed Y-Net scored
    54.2 +- 3.2 IoU one by one and 55.7 averaged, its students 56.2 +- 4.0 and 57.0
    (benchmarks/FINDINGS.md). It smooths out a bad seed; errors every seed makes stay.
    """
    from rich.progress import Progress

    from emda.workflows import ensemble as run_ensemble

    with Progress(console=console, disable=quiet, transient=True) as progress:
        task = progress.add_task("averaging slices", total=None)
        done = run_ensemble(
            predictions, output, mask, threshold, prob_dtype.value, overwrite,
            progress=lambda d, t: progress.update(task, completed=d, total=t),
        )  # fmt: skip
    written = " and ".join(str(p) for p in (output, mask) if p)
    console.print(
        f"wrote {written}: mean of {done.members} predictions, shape {done.shape}, "
        f"{done.seconds:.1f} s"
    )


@app.command(no_args_is_help=True)
@user_errors
def clean(
    prediction: Annotated[str, typer.Argument(help="A prediction (probabilities or a mask).")],
    mask: Annotated[str, typer.Option(help="Cleaned binary mask (.tif, .zarr, .ome.zarr).")],
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
    key: Annotated[str | None, typer.Option(help="Array inside a zarr input.")] = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Threshold a prediction, then remove specks and fill holes, slice by slice.

    A mitochondrion in a section is one solid blob: objects smaller than --min-size
    are removed (unless they touch the slice border) and holes up to --max-hole are
    filled. --sizes-from LABELS sets both from labels you have, typically the source's
    training labels: the 1st percentile and the median area of their objects.
    """
    from rich.progress import Progress

    from emda.workflows import clean as run_clean

    with Progress(console=console, disable=quiet, transient=True) as progress:
        task = progress.add_task("cleaning slices", total=None)
        done = run_clean(
            prediction, mask, min_size, max_hole, sizes_from, sizes_z, threshold, key,
            overwrite, progress=lambda d, t: progress.update(task, completed=d, total=t),
        )  # fmt: skip
    c = done.counts
    console.print(
        f"wrote {mask}: min size {done.sizes.min_size} px, max hole {done.sizes.max_hole} px; "
        f"removed {c.removed_objects} objects ({c.removed_pixels} px), filled {c.filled_holes} "
        f"holes ({c.filled_pixels} px); shape {done.shape}, {done.seconds:.1f} s"
    )


@app.command(no_args_is_help=True)
@user_errors
def evaluate(
    predictions: Annotated[
        list[str], typer.Argument(help="Prediction volumes (probabilities or masks).")
    ],
    labels: Annotated[str, typer.Option("--labels", "-l", help="Ground-truth mask.")],
    threshold: Annotated[float, typer.Option(help="Probability threshold in [0, 1].")] = 0.5,
    z_range: Annotated[
        str | None, typer.Option(help="Score only slices START:STOP (half-open).")
    ] = None,
    foreground: Annotated[
        float | None, typer.Option(help="Foreground label value if not a {0,1}/{0,255} mask.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Array inside zarr predictions.")] = None,
    labels_key: Annotated[
        str | None, typer.Option(help="Array inside a zarr ground truth.")
    ] = None,
    per_slice: Annotated[bool, typer.Option(help="Also report every slice.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Write results as CSV.")] = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Score predictions against ground truth: IoU, Dice, precision, recall."""
    from emda.workflows import evaluate_many

    for path, option in ((json_out, "--json"), (csv_out, "--csv")):
        if path is not None and path.exists() and not overwrite:
            raise EmdaError(f"{option} {path}: already exists (pass --overwrite to replace it)")
    results = evaluate_many(predictions, labels, threshold, z_range, foreground, key, labels_key)
    table = Table(title=f"against {labels}" + (f" (z {z_range})" if z_range else ""))
    for col in ("prediction", "IoU", "Dice", "precision", "recall"):
        table.add_column(col, justify="left" if col == "prediction" else "right", overflow="fold")
    for r in results:
        s = r.total.scores()
        table.add_row(
            r.prediction, *(f"{s[k]:.4f}" for k in ("iou", "dice", "precision", "recall"))
        )
        if per_slice:
            for z, c in r.per_slice:
                cs = c.scores()
                table.add_row(
                    f"  z={z}",
                    *(f"{cs[k]:.4f}" for k in ("iou", "dice", "precision", "recall")),
                    style="dim",
                )
    out.print(table)
    if json_out is not None:
        _atomic_write(json_out, json.dumps([r.to_dict(per_slice) for r in results], indent=2))
    if csv_out is not None:
        _atomic_write(csv_out, _csv(results, per_slice))


@app.command()
@user_errors
def methods(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the registered adaptation methods, their plugins and options."""
    from emda.options import describe_options
    from emda.registry import load_registry

    registry = load_registry()
    if as_json:
        data = {
            "methods": [
                {
                    "name": m.name,
                    "plugin": m.plugin,
                    "origin": m.origin,
                    "description": m.cls.description,
                    "average_weights": m.cls.average_weights,
                    "options": [
                        dict(zip(("name", "type", "default", "help"), row))
                        for row in describe_options(m.cls.Options)
                    ],
                }
                for m in registry.methods.values()
            ],
            "failed_plugins": [f.__dict__ for f in registry.failures],
            "disabled_plugins": registry.disabled,
        }
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title="emda methods")
    for col in ("method", "plugin", "description", "options (default)"):
        table.add_column(col)
    for m in sorted(registry.methods.values(), key=lambda m: m.name):
        opts = "\n".join(f"{n}: {t} = {d}" for n, t, d, _ in describe_options(m.cls.Options))
        about = m.cls.description
        if m.cls.average_weights:  # a training default of the method's own
            about += f"\n[dim]--average-weights {m.cls.average_weights} by default[/dim]"
        table.add_row(m.name, f"{m.plugin}\n[dim]{m.origin}[/dim]", about, opts or "-")
    out.print(table)
    for f in registry.failures:
        console.print(f"[red]plugin '{f.plugin}' failed to load[/red] ({f.origin}): {f.error}")
    if registry.disabled:
        console.print(f"disabled by EMDA_DISABLE_PLUGINS: {', '.join(registry.disabled)}")


@app.command(no_args_is_help=True)
@user_errors
def info(
    path: Annotated[
        str, typer.Argument(help="A volume (TIFF/zarr), a run directory or a checkpoint.pt.")
    ],
    key: Annotated[str | None, typer.Option(help="Array inside a zarr store.")] = None,
) -> None:
    """Describe a volume (shape, dtype, voxel size, intensities) or a run's checkpoint."""
    from emda.checkpoint import load_checkpoint
    from emda.normalization import Normalization
    from emda.train import SUMMARY_ITERATIONS, log_summary, read_log
    from emda.volume import open_volume

    table = Table(show_header=False, title=path)
    p = Path(path)
    if not p.exists():
        raise EmdaError(f"{path}: no such file or directory")
    if p.suffix == ".pt" or (p.is_dir() and (p / "checkpoint.pt").is_file()):
        ckpt = load_checkpoint(p)
        rows = {
            "method": f"{ckpt.method} {ckpt.method_options or ''}",
            "network": str(ckpt.model_config),
            "iterations": f"{ckpt.iteration} of {ckpt.training.get('iterations', '?')}",
            "voxel size (z, y, x) nm": str(ckpt.voxel_size),
            "normalisation": f"percentiles {ckpt.normalization.lower_percentile}-"
            f"{ckpt.normalization.upper_percentile}; source range "
            f"{ckpt.source_range.low:.1f}-{ckpt.source_range.high:.1f}",
            "emda version": ckpt.emda_version,
        }
        if computed := _computed_with(ckpt.training):
            rows["trained with"] = computed
        if fraction := ckpt.training.get("average_weights"):
            rows["weights"] = _averaged_text(ckpt.iteration, ckpt.training["iterations"], fraction)
        if scores := ckpt.training.get("source_validation"):
            rows["held-out source slices"] = _validation_text(scores)
        records = read_log(p if p.is_dir() else p.parent)
        if records:
            ended = log_summary(records)
            rows[f"last {min(len(records), SUMMARY_ITERATIONS)} iterations (mean)"] = "  ".join(
                f"{k} {v:.4g}" for k, v in ended.items()
            )
            rows["training time"] = f"{records[-1]['seconds'] / 60:.1f} min"
    else:
        volume = open_volume(path, key)
        rng = Normalization().fit(volume)
        rows = {
            "shape (z, y, x)": str(volume.shape),
            "dtype": str(volume.dtype),
            "storage": "zarr (read lazily)" if volume.lazy else "in memory",
            "voxel size (z, y, x) nm": str(volume.voxel_size),
            "1st-99th percentile": f"{rng.low:g} - {rng.high:g}",
        }
        attrs = dict(getattr(volume.array, "attrs", None) or {})
        if "emda_smooth_sigma" in attrs:  # written by `emda smooth` (zarr keeps it)
            rows["blurred by emda smooth"] = (
                f"sigma {attrs['emda_smooth_sigma']:g} px in-plane, from "
                f"{attrs.get('emda_smooth_input', '?')}"
            )
        if "emda_ensemble_inputs" in attrs:  # written by `emda ensemble`
            inputs = attrs["emda_ensemble_inputs"]
            rows[f"mean of {len(inputs)} predictions"] = ", ".join(map(str, inputs))
        if "emda_clean" in attrs:  # written by `emda clean`
            c = attrs["emda_clean"]
            rows["cleaned"] = (
                f"{c['input']} at {c['threshold']:g}: objects under {c['min_size']} px "
                f"removed, holes up to {c['max_hole']} px filled"
                + (f" (sizes from {c['sizes_from']})" if c.get("sizes_from") else "")
            )
    for k, v in rows.items():
        table.add_row(k, v)
    out.print(table)


@app.command()
@user_errors
def demo(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where to write the demo's run, predictions and figure."),
    ] = Path("demo-output"),
    iterations: Annotated[int, typer.Option(help="Training iterations per method.")] = 120,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder with the bundled crops (default: examples/data of this checkout)."
        ),
    ] = None,
    device: DeviceOpt = Device.auto,
    threads: ThreadsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Adapt EPFL -> Drosophila VNC on bundled crops, predict, evaluate, draw an overlay."""
    from emda.demo import run_demo

    dev = _setup(device, threads)
    run_demo(out, iterations, data, dev, not quiet)


data_app = typer.Typer(
    help="Public EM datasets: list them, fetch them from their original sources.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("list")
@user_errors
def data_list() -> None:
    """The datasets `emda data fetch` knows: source, licence, files."""
    from emda.datasets import DATASETS

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
    """Download datasets, check their content (SHA-256) and write raw.tif/labels.tif."""
    from rich.progress import Progress

    from emda.datasets import DATASETS, fetch

    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise typer.BadParameter(
            f"unknown dataset {', '.join(unknown)}; known: {', '.join(DATASETS)}",
            param_hint="NAMES",
        )
    for name in names:
        with Progress(console=console, disable=quiet, transient=True) as bar:
            task = bar.add_task(f"fetching {name}", total=None)
            report = functools.partial(_advance, bar, task)
            dest = fetch(DATASETS[name], to, mirror, overwrite, report)
        console.print(f"{name}: checked and written to {dest}")


# --- helpers ---------------------------------------------------------------------------------


def _advance(bar, task, done: int, total: int) -> None:
    bar.update(task, completed=done, total=total)


def _report_run(summary) -> None:
    terms = "  ".join(f"{k}={v:.4f}" for k, v in summary.final_terms.items())
    console.print(
        f"[green]done[/green]: {summary.iterations} iterations in "
        f"{summary.seconds:.0f} s; final {terms}; run in {summary.run_dir}"
    )
    if scores := summary.source_validation:
        console.print(f"held-out source slices: {_validation_text(scores)}")


def _averaged_text(iteration: int, iterations: int, fraction: float) -> str:
    from emda.averaging import first_averaged

    first = first_averaged(iterations, fraction)
    if iteration < iterations:  # an intermediate checkpoint: the average comes at the end
        return f"iteration {iteration}'s (the mean of {first}-{iterations} is saved at the end)"
    return f"mean of iterations {first}-{iterations} (--average-weights {fraction})"


def _validation_text(scores: dict) -> str:
    start, stop = scores["z_range"]
    return (
        f"z {start}:{stop}, as trained: IoU {scores['iou']:.3f} (precision "
        f"{scores['precision']:.3f}, recall {scores['recall']:.3f})"
    )


def _csv(results, per_slice: bool) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "prediction",
            "truth",
            "z",
            "threshold",
            "iou",
            "dice",
            "precision",
            "recall",
            "tp",
            "fp",
            "fn",
            "tn",
        ]
    )
    for r in results:
        rows = [("all", r.total)] + (list(r.per_slice) if per_slice else [])
        for z, c in rows:
            s = c.scores()
            writer.writerow(
                [
                    r.prediction,
                    r.truth,
                    z,
                    r.threshold,
                    s["iou"],
                    s["dice"],
                    s["precision"],
                    s["recall"],
                    c.tp,
                    c.fp,
                    c.fn,
                    c.tn,
                ]
            )
    return buf.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise EmdaError(f"{path}: directory {parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise EmdaError(f"{path}: cannot write ({exc.strerror})") from None


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
