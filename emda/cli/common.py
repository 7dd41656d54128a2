"""What every command shares: the app, error handling, ``--config``, option types.

Options used by several commands are declared once here; a group of them
(:func:`with_options`) is appended to a command's signature, so ``adapt`` and
``finetune`` take the same training options from one declaration.
"""

import functools
import inspect
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.exceptions import TyperException

from emda.device import DeviceChoice
from emda.errors import EmdaError
from emda.precision import Precision
from emda.safety.boundary import as_user_error, internal_error

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in emda, not a problem with the input

app = typer.Typer(
    name="emda",
    help="Domain-adaptive segmentation for volume electron microscopy.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)  # progress and messages
out = Console()  # results (tables, JSON)


def user_errors(fn: Callable) -> Callable:
    """Every failure -> one line on stderr and a non-zero exit; never a traceback (set
    EMDA_DEBUG=1 for one). Operating-system errors are worded by :mod:`emda.safety.boundary`;
    anything else is reported as an internal error, exit status 70."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, TyperException):  # typer's own: usage errors
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted: nothing half-written was kept", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("EMDA_DEBUG") == "1":
                raise
            error = as_user_error(exc)
            if error is None:
                typer.echo(f"error: {internal_error(exc)}", err=True)
                raise typer.Exit(INTERNAL_ERROR) from None
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(getattr(error, "exit_code", 1)) from None

    return wrapper


def with_options(*groups: list[inspect.Parameter]) -> Callable:
    """Append option groups (lists of keyword parameters) to a command's signature; the
    command receives them in its ``**options``."""

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        extra = [p for group in groups for p in group]

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *extra]}
        return wrapper

    return decorate


def option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)  # fmt: skip


def load_config(ctx: typer.Context, param: Any, value: Path | None) -> Path | None:
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
    except IsADirectoryError:
        raise typer.BadParameter(f"{value}: is a directory, not a TOML file") from None
    except OSError as exc:
        raise typer.BadParameter(f"{value}: unreadable ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise typer.BadParameter(f"{value}: not UTF-8 text, so not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise typer.BadParameter(f"{value}: invalid TOML ({exc})") from None
    command = ctx.info_name
    section = data.get(command) if isinstance(data.get(command), dict) else data
    params = {p.name: p for p in ctx.command.params}
    known = set(params)
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
        if getattr(params[name], "multiple", False) and not isinstance(val, list):
            val = [val]  # a repeatable option (--source) given one value
        defaults[name] = val
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def resolved(ctx: typer.Context) -> dict:
    """The command's settings as a rerunnable config: per-invocation switches left out."""
    skip = ("config", "overwrite", "quiet", "resume")
    return {k: v for k, v in ctx.params.items() if k not in skip}


def setup(device: DeviceChoice, threads: int | None):
    """Apply ``--threads`` and resolve ``--device`` to a torch device."""
    import torch

    from emda.device import resolve_device

    if threads is not None:
        if threads < 1:
            raise EmdaError(f"--threads {threads}: must be >= 1")
        torch.set_num_threads(threads)
    return resolve_device(device.value)


def check_ngff(version: str | None, *outputs: str | None) -> str | None:
    """``--ngff`` needs an OME-Zarr output to apply to."""
    if version is not None and not any(o and ".ome.zarr" in str(o).lower() for o in outputs):
        raise EmdaError(f"--ngff {version}: applies to .ome.zarr outputs only")
    return version


def progress_bar(quiet: bool, description: str):
    """A transient progress bar (lines in a log without a terminal) and the ``(done,
    total)`` callback that advances it."""
    from emda.progress import make_progress

    bar = make_progress(not quiet, console=console, transient=True)
    task = bar.add_task(description, total=None)
    return bar, lambda done, total: bar.update(task, completed=done, total=total)


G = "General"
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file of option values (command line wins).",
        is_eager=True,
        callback=load_config,
        rich_help_panel=G,
    ),
]
DeviceOpt = Annotated[
    DeviceChoice,
    typer.Option(help="Where to compute: auto picks CUDA when present.", rich_help_panel=G),
]
PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        help="The network's arithmetic. auto: bfloat16 on CPUs with bfloat16 "
        "instructions; on CUDA, float32 to train and float16 to predict.",
        rich_help_panel=G,
    ),
]
ThreadsOpt = Annotated[
    int | None, typer.Option(help="CPU threads for torch (default: all cores).", rich_help_panel=G)
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bars.", rich_help_panel=G)
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue an interrupted run in --out from its last saved state (same settings).",
        rich_help_panel=G,
    ),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace outputs that already exist.", rich_help_panel=G)
]
KeyOpt = Annotated[str | None, typer.Option(help="Array inside a zarr input.")]
NgffOpt = Annotated[
    str | None,
    typer.Option(
        "--ngff",
        help="NGFF version of .ome.zarr outputs: 0.5 (zarr v3) or 0.4 (zarr v2, for older "
        "viewers) [default: 0.5, or the image's when writing into its labels/].",
    ),
]
ChannelOpt = Annotated[
    int | None, typer.Option(help="Channel of a multichannel OME-Zarr input (from 0).")
]
TargetChannelOpt = Annotated[
    int | None, typer.Option(help="Channel of a multichannel OME-Zarr target (from 0).")
]
ThresholdOpt = Annotated[float, typer.Option(help="Probability threshold for --mask.")]
