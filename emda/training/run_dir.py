"""The run directory: what a training command writes, and how it refuses to mix two runs.

A run directory holds ``checkpoint.pt`` (the model ``predict`` uses), ``state.pt``
(everything ``--resume`` needs), ``log.jsonl``, ``config.toml`` (the resolved settings,
rerunnable with ``--config``) and ``training_curve.png``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from emda import __version__
from emda.errors import EmdaError
from emda.evaluation.plots import training_curve
from emda.training.config import TrainConfig
from emda.training.state import CHECKPOINT_NAME, LOG_NAME, STATE_NAME, read_log

CONFIG_NAME = "config.toml"
CURVE_NAME = "training_curve.png"
RUN_FILES = (CHECKPOINT_NAME, STATE_NAME, LOG_NAME, CONFIG_NAME, CURVE_NAME)


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
    """:func:`prepare_run_dir`'s refusals alone, writing nothing: for commands that do
    long work (a teacher's prediction) before the run directory is made."""
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
        f"# resolved settings of this run; rerun with: emda {command} --config {CONFIG_NAME}\n"
        + tomli_w.dumps({command: clean})
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
