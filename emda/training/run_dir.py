"""The run directory: what a training command writes, and how it refuses to mix two runs.

A run directory holds ``checkpoint.pt`` (the model ``predict`` uses), ``state.pt``
(everything ``--resume`` needs), ``log.jsonl``, ``config.toml`` (the resolved settings,
rerunnable with ``--config``) and ``training_curve.png``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from emda import __version__
from emda.errors import EmdaError
from emda.evaluation.plots import training_curve
from emda.safety.locks import output_lock
from emda.safety.paths import refuse_writing_inputs
from emda.training.config import TrainConfig
from emda.training.state import CHECKPOINT_NAME, LOG_NAME, STATE_NAME, read_log

CONFIG_NAME = "config.toml"
CONFIG_HEADER = "# resolved settings of this run; rerun with:"  # marks the file as emda's
CURVE_NAME = "training_curve.png"
RUN_FILES = (CHECKPOINT_NAME, STATE_NAME, LOG_NAME, CONFIG_NAME, CURVE_NAME)
#: what a recipe run adds (emda.training.recipe_run): removed with a half-made run
RECIPE_FILES = ("recipe.json", "stages")

log = logging.getLogger("emda")


@dataclass
class RunSummary:
    """What a training command reports when it finishes."""

    run_dir: Path
    iterations: int
    seconds: float
    final_terms: dict[str, float]
    source_validation: dict | None = None  # scores on held-out source slices, as trained
    stages: list[dict] | None = None  # a recipe's stages as recipe.json records them


def check_run_dir(run_dir: Path, overwrite: bool, resume: bool = False) -> None:
    """:func:`prepare_run_dir`'s refusals alone, for commands that do long work (a
    teacher's prediction) before the run directory is made. Writes nothing, except that
    a half-made run (one that stopped before saving anything) is cleared for this one."""
    run_dir = Path(run_dir)
    if resume:
        if overwrite:
            raise EmdaError("--resume and --overwrite contradict each other: choose one")
        if not (run_dir / STATE_NAME).is_file():
            finished = (run_dir / CHECKPOINT_NAME).is_file()
            raise EmdaError(
                f"--resume: {run_dir} "
                + ("holds a finished run: nothing to resume" if finished else "has no saved state")
            )
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise EmdaError(f"--out {run_dir}: exists and is not a directory")
    existing = [f for f in RUN_FILES if (run_dir / f).exists()]
    if existing and not overwrite and half_made(run_dir):
        log.warning("%s: removed a run that stopped before saving anything to resume",
                    run_dir)  # fmt: skip
        remove_half_made(run_dir, keep_dir=True)
        existing = []
    if existing and not overwrite:
        raise EmdaError(f"--out {run_dir}: already holds a run (pass --overwrite to replace it)")
    parent = run_dir.parent if str(run_dir.parent) else Path(".")
    if not run_dir.exists() and not parent.exists():
        raise EmdaError(f"--out {run_dir}: parent directory {parent} does not exist")


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool = False) -> None:
    """Refuse to mix two runs; ``overwrite`` removes only files emda itself writes;
    ``resume`` keeps an interrupted run's files (the loop checks they fit)."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, overwrite, resume)
    if resume:
        for leftover in run_dir.glob(".*.tmp"):  # from a save that a kill cut short
            leftover.unlink()
        return
    existing = [f for f in RUN_FILES if (run_dir / f).exists()]
    try:
        run_dir.mkdir(exist_ok=True)
        probe = run_dir / ".emda-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise EmdaError(f"--out {run_dir}: not writable ({exc.strerror})") from None
    for name in existing:
        (run_dir / name).unlink()


def checkpoint_file(run: str | Path) -> Path:
    """A run directory's ``checkpoint.pt``, or the checkpoint file given itself."""
    return Path(run) / CHECKPOINT_NAME if Path(run).is_dir() else Path(run)


def emda_files(run_dir: Path) -> list[str]:
    """The run files in ``run_dir`` that emda wrote (a user's own ``config.toml`` is not)."""
    run_dir = Path(run_dir)
    found = []
    for name in (*RUN_FILES, *RECIPE_FILES):
        path = run_dir / name
        if not path.exists():
            continue
        if name in (CONFIG_NAME, LOG_NAME, RECIPE_FILES[0]) and path.is_file():
            with open(path, "rb") as fh:
                head = fh.read(200)
            signed = {CONFIG_NAME: head.startswith(CONFIG_HEADER.encode()),
                      LOG_NAME: head.startswith(b'{"iteration"') or not head,
                      RECIPE_FILES[0]: head.lstrip(b"{ \n").startswith(b'"recipe"')}  # fmt: skip
            if not signed[name]:
                continue
        found.append(name)
    return found


def half_made(run_dir: Path) -> bool:
    """A run directory a command left before it saved anything to resume or use."""
    run_dir = Path(run_dir)
    saved = [run_dir, *(run_dir / RECIPE_FILES[1]).glob("*")]  # a recipe's stages too
    kept = any((d / STATE_NAME).exists() or (d / CHECKPOINT_NAME).exists() for d in saved)
    return bool(emda_files(run_dir)) and not kept


def remove_half_made(run_dir: Path, keep_dir: bool = False, keep: set[str] = frozenset()) -> None:
    """Remove the run files emda wrote in ``run_dir`` (nothing else, nothing in ``keep``),
    then the directory if that leaves it empty."""
    run_dir = Path(run_dir)
    for name in emda_files(run_dir):
        path = run_dir / name
        if name in keep:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    for leftover in run_dir.glob(".*.tmp"):
        leftover.unlink()
    if not keep_dir and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


@contextmanager
def writing_run(
    run_dir: str | Path, inputs: Iterable[Any] = (), resume: bool = False, main: bool = True
) -> Iterator[None]:
    """Around a command that writes the run directory ``run_dir``: refuse it when it would
    replace one of the command's ``inputs``; hold its lock (one writer at a time); and if
    the command fails before it saved anything to resume, remove what it made, so that a
    plain rerun is not blocked by a half-made run."""
    run_dir = Path(run_dir)
    refuse_writing_inputs({"--out": run_dir}, inputs, replaced=(*RUN_FILES, *RECIPE_FILES))
    if not main:  # under torchrun, rank 0 alone writes the run directory
        yield
        return
    if not run_dir.parent.is_dir():
        raise EmdaError(f"--out {run_dir}: parent directory {run_dir.parent} does not exist")
    existed = run_dir.exists()
    with output_lock(run_dir, "--out"):
        mtimes = {n: (run_dir / n).stat().st_mtime_ns for n in emda_files(run_dir)}
        try:
            yield
        except BaseException:
            if not resume and run_dir.is_dir() and half_made(run_dir):
                # what this command did not write stays (an earlier half-made run's files
                # are cleared by the next plain run, not by a failure)
                same = {n for n, t in mtimes.items() if _mtime(run_dir / n) == t}
                remove_half_made(run_dir, keep_dir=existed, keep=same)
            raise


def _mtime(path: Path) -> int | None:
    return path.stat().st_mtime_ns if path.exists() else None


def writes_run(inputs: Callable[[dict[str, Any]], Iterable[Any]]) -> Callable:
    """Decorate a training command whose ``out`` is a run directory: it runs inside
    :func:`writing_run`; ``inputs(arguments)`` lists the paths it reads."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from emda.training import ddp

            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            with writing_run(arguments["out"], list(inputs(arguments)),
                             bool(arguments.get("resume")), ddp.is_main()):  # fmt: skip
                return fn(*args, **kwargs)

        return wrapper

    return decorate


def training_record(config: TrainConfig) -> dict[str, Any]:
    """The settings a checkpoint records, with what the computation ran on."""
    # a CPU run repeats bit for bit only with the same torch, thread count and vector
    # instructions (each sums in another order), so they are kept beside the settings
    computed = {
        "torch_version": str(torch.__version__),
        "cpu_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    # the convolutions' instructions are oneDNN's own choice: capping them is what makes
    # an AVX-512 CPU repeat an AVX2 one's run, so a cap is part of the record
    if isa := onednn_isa_cap():
        computed["onednn_max_cpu_isa"] = isa
    return {**asdict(config), "emda_version": __version__, **computed}


def onednn_isa_cap() -> str | None:
    """The instruction-set cap oneDNN reads from the environment (``ONEDNN_MAX_CPU_ISA``,
    or its old name ``DNNL_MAX_CPU_ISA``), upper-cased; None when uncapped."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return isa.upper() if isa else None


def write_config(run_dir: Path, command: str, resolved: dict | None) -> None:
    """``config.toml``: the settings as resolved, so ``--config`` repeats the run."""
    if resolved is None:
        return
    import tomli_w

    clean = {k: _plain(v) for k, v in resolved.items() if v is not None}
    (run_dir / CONFIG_NAME).write_text(
        f"{CONFIG_HEADER} emda {command} --config {CONFIG_NAME}\n" + tomli_w.dumps({command: clean})
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value"):  # enums
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


def write_curve(run_dir: Path) -> None:
    records = read_log(run_dir)
    if records:
        training_curve(records, run_dir / CURVE_NAME)
