"""``emda methods`` and ``emda info``: what is installed, what a volume or a run holds."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emda.cli.common import ChannelOpt, KeyOpt, app, console, out, user_errors
from emda.errors import EmdaError


@app.command()
@user_errors
def methods(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the registered adaptation methods, their plugins and options."""
    from emda.methods.options import describe_options
    from emda.methods.registry import load_registry

    registry = load_registry()
    if as_json:
        data = {
            "schema": METHODS_SCHEMA,
            "methods": [
                {
                    "name": m.name,
                    "plugin": m.plugin,
                    "origin": m.origin,
                    "description": m.cls.description,
                    "options": [
                        {"name": n, "type": t, "default": _plain(d), "help": h}
                        for n, t, d, h in describe_options(m.cls.Options, as_text=False)
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
        table.add_row(m.name, f"{m.plugin}\n[dim]{m.origin}[/dim]", m.cls.description, opts or "-")
    out.print(table)
    for f in registry.failures:
        console.print(f"[red]plugin '{f.plugin}' failed to load[/red] ({f.origin}): {f.error}")
    if registry.disabled:
        console.print(f"disabled by EMDA_DISABLE_PLUGINS: {', '.join(registry.disabled)}")


def _plain(value):
    """A default as JSON has it: tuples as lists, anything else JSON lacks as text."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


@app.command()
@user_errors
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the pretrained models shipped with emda (use them as emda:NAME)."""
    from emda.pretrained import PREFIX, card, names

    cards = [card(n) for n in names()]
    if as_json:
        typer.echo(json.dumps({"models": cards}, indent=2))
        return
    table = Table(title="pretrained models (emda predict emda:NAME VOLUME ...)")
    for col in ("model", "trained on", "IoU in-domain", "IoU elsewhere (+ target BN)",
                "licence", "size"):  # fmt: skip
        table.add_column(col)
    for c in cards:
        scores = c.get("scores", {})
        table.add_row(
            PREFIX + c["name"], c.get("training_data", "-"),
            _iou(scores.get("in_domain")), _iou(scores.get("cross_domain_target_bn")),
            c.get("licence", "-"), f"{c['bytes'] / 2**20:.1f} MB",
        )  # fmt: skip
    out.print(table)


def _iou(scores: dict | None) -> str:
    return "-" if not scores else f"{100 * scores['iou']:.1f} ({scores.get('on', '')})"


@app.command(no_args_is_help=True)
@user_errors
def info(
    path: Annotated[
        str, typer.Argument(help="A volume (TIFF/zarr), a run directory or a checkpoint.pt.")
    ],
    key: KeyOpt = None,
    channel: ChannelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Describe a volume (shape, dtype, voxel size, intensities) or a run's checkpoint."""
    from emda.pretrained import resolve

    p = resolve(path)  # emda:NAME, a shipped model
    from emda.io.volume import split_address

    if not split_address(p)[0].exists():  # a zarr or HDF5 address names a file's array
        raise EmdaError(f"{path}: no such file or directory")
    is_run = p.suffix == ".pt" or (p.is_dir() and (p / "checkpoint.pt").is_file())
    if as_json:
        data = run_json(p) if is_run else volume_json(path, key, channel)
        typer.echo(json.dumps({"schema": INFO_SCHEMA, **data}, indent=2, default=str))
        return
    rows = run_rows(p) if is_run else volume_rows(path, key, channel)
    table = Table(show_header=False, title=path)
    for k, v in rows.items():
        table.add_row(k, v)
    out.print(table)


# bumped when a field changes meaning or goes away (emda/schemas/*.schema.json)
INFO_SCHEMA = "emda-info/1"
METHODS_SCHEMA = "emda-methods/1"


def run_json(p: Path) -> dict:
    """What ``info`` shows of a run, as values: the checkpoint's record and its log."""
    from emda.model.checkpoint import load_checkpoint
    from emda.training.state import log_summary, read_log

    ckpt = load_checkpoint(p)
    records = read_log(p if p.is_dir() else p.parent)
    return {
        "kind": "run", "path": str(p), "method": ckpt.method,
        "method_options": ckpt.method_options, "network": ckpt.model_config.to_dict(),
        "iteration": ckpt.iteration, "voxel_size_nm": ckpt.voxel_size,
        "pixel_size_nm": ckpt.pixel_size,
        "normalization": {"lower_percentile": ckpt.normalization.lower_percentile,
                          "upper_percentile": ckpt.normalization.upper_percentile,
                          "source_range": [ckpt.source_range.low, ckpt.source_range.high]},
        "emda_version": ckpt.emda_version, "training": ckpt.training,
        "log": {"iterations": len(records), "seconds": records[-1]["seconds"],
                "last_mean": log_summary(records)} if records else None,
    }  # fmt: skip


def volume_json(path: str, key: str | None, channel: int | None = None) -> dict:
    """What ``info`` shows of a volume, as values, with the attributes emda wrote."""
    from emda.data.normalization import Normalization
    from emda.io.volume import open_volume

    volume = open_volume(path, key, channel=channel)
    rng = Normalization().fit(volume)
    attrs = volume.attributes()
    return {
        "kind": "volume", "path": str(path), "shape": list(volume.shape),
        "dtype": str(volume.dtype), "on_disk": volume.lazy,
        "voxel_size_nm": list(volume.voxel_size) if volume.voxel_size else None,
        "percentiles": {"1": rng.low, "99": rng.high},
        "emda": {k: v for k, v in attrs.items() if k.startswith("emda_")},
    }  # fmt: skip


def run_rows(p: Path) -> dict[str, str]:
    from emda.model.checkpoint import load_checkpoint
    from emda.training.state import SUMMARY_ITERATIONS, log_summary, read_log

    ckpt = load_checkpoint(p)
    rows = {
        "method": f"{ckpt.method} {ckpt.method_options or ''}",
        "network": str(ckpt.model_config),
        "iterations": f"{ckpt.iteration} of {ckpt.training.get('iterations', '?')}",
        "voxel size (z, y, x) nm": str(ckpt.voxel_size),
        "works at pixel size": f"{ckpt.pixel_size:g} nm (other volumes are resampled)"
        if ckpt.pixel_size
        else "any (no resampling)",
        "normalisation": f"percentiles {ckpt.normalization.lower_percentile}-"
        f"{ckpt.normalization.upper_percentile}; source range "
        f"{ckpt.source_range.low:.1f}-{ckpt.source_range.high:.1f}",
        "emda version": ckpt.emda_version,
    }
    if computed := computed_with(ckpt.training):
        rows["trained with"] = computed
    if fraction := ckpt.training.get("average_weights"):
        rows["weights"] = averaged_text(ckpt.iteration, ckpt.training["iterations"], fraction)
    if scores := ckpt.training.get("source_validation"):
        rows["held-out source slices"] = validation_text(scores)
    if recipe := ckpt.training.get("recipe"):
        rows.update(recipe_rows(recipe))
    records = read_log(p if p.is_dir() else p.parent)
    if records:
        ended = log_summary(records)
        rows[f"last {min(len(records), SUMMARY_ITERATIONS)} iterations (mean)"] = "  ".join(
            f"{k} {v:.4g}" for k, v in ended.items()
        )
        rows["training time"] = f"{records[-1]['seconds'] / 60:.1f} min"
    return rows


def recipe_rows(record: dict) -> dict[str, str]:
    """One row per stage of a recipe run: method, settings, what became of it, its time
    and its label-free target statistics."""
    rows = {
        "recipe": f"{record['recipe']['name']}: model from {record.get('model', '?')}",
        "training time": f"{record.get('seconds', 0) / 60:.1f} min, all stages",
    }
    for stage in record["stages"]:
        settings = {**stage.get("options", {}), **stage.get("settings", {})}
        settings.pop("teacher", None)  # the stage before it, by construction
        text = f"{stage['method']} {settings or ''} {stage.get('iterations', '?')} it., "
        text += stage["status"]
        if "seconds" in stage:
            text += f", {stage['seconds'] / 60:.1f} min"
        if target := stage.get("target"):
            text += (
                f"; target: {target['foreground']:.1%} marked mitochondria, mean confidence "
                f"{target['confidence']:.3f}"
            )
        if reason := stage.get("reason"):
            text += f" (not kept: {reason})"
        rows[f"stage {stage['name']}"] = text
    return rows


def volume_rows(path: str, key: str | None, channel: int | None = None) -> dict[str, str]:
    from emda.data.normalization import Normalization
    from emda.io.volume import open_volume

    volume = open_volume(path, key, channel=channel)
    rng = Normalization().fit(volume)
    rows = {
        "shape (z, y, x)": str(volume.shape),
        "dtype": str(volume.dtype),
        "storage": "on disk (read block by block)" if volume.lazy else "in memory",
        "voxel size (z, y, x) nm": str(volume.voxel_size),
        "1st-99th percentile": f"{rng.low:g} - {rng.high:g}",
    }
    attrs = volume.attributes()
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
    if "emda_instances" in attrs:  # written by `emda instances`
        i = attrs["emda_instances"]
        across = "across slices" if i.get("connect_z") else "slice by slice"
        rows["objects"] = (
            f"{i['count']} from {i['input']} at {i['threshold']:g} ({across}"
            + (f", under {i['min_size_nm3']:g} nm^3 removed" if i.get("min_size_nm3") else "")
            + ")"
        )
    return rows


def computed_with(training: dict) -> str | None:
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
    used = f", {training['precision_used']}" if "precision_used" in training else ""
    return f"torch {training['torch_version']}, {training['cpu_threads']} CPU threads{vector}{used}"


def averaged_text(iteration: int, iterations: int, fraction: float) -> str:
    from emda.training.averaging import first_averaged

    first = first_averaged(iterations, fraction)
    if iteration < iterations:  # an intermediate checkpoint: the average comes at the end
        return f"iteration {iteration}'s (the mean of {first}-{iterations} is saved at the end)"
    return f"mean of iterations {first}-{iterations} (--average-weights {fraction})"


def validation_text(scores: dict) -> str:
    start, stop = scores["z_range"]
    return (
        f"z {start}:{stop}, as trained: IoU {scores['iou']:.3f} (precision "
        f"{scores['precision']:.3f}, recall {scores['recall']:.3f})"
    )
