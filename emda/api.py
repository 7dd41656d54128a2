"""emda's Python API: the functions the ``emda`` commands call, usable from a notebook.

Each function takes typed settings, writes what its command writes and returns a
typed result; bad input raises :class:`emda.EmdaError` with a one-line message.

    import emda

    run = emda.adapt(
        emda.VolumeSpec("source.tif", labels="source_labels.tif"),
        emda.VolumeSpec("target.tif"),
        "runs/ynet",
        method="ynet",
    )
    emda.predict(run.run_dir, "target.tif", output="target_prob.ome.zarr")
    [scores] = emda.evaluate(["target_prob.ome.zarr"], "target_labels.tif")
    print(scores.total.scores()["iou"])
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from emda.data.normalization import Normalization
from emda.device import resolve_device
from emda.errors import EmdaError
from emda.evaluation.evaluate import Evaluation, evaluate_many
from emda.inference.predict import PredictResult, PredictSettings
from emda.io.volume import VoxelSize
from emda.methods.base import Method
from emda.model import UNetConfig
from emda.training.adapt import RunSummary, VolumeSpec, resolve_method
from emda.training.batchnorm import DEFAULT_BATCHES
from emda.training.config import TrainConfig

__all__ = [
    "PredictResult",
    "PredictSettings",
    "RunSummary",
    "TrainConfig",
    "VolumeSpec",
    "adapt",
    "evaluate",
    "finetune",
    "predict",
    "recalibrate",
]

Device = str | torch.device


def _device(device: Device) -> torch.device:
    return device if isinstance(device, torch.device) else resolve_device(device)


def adapt(
    source: VolumeSpec,
    target: VolumeSpec | None,
    out: str | Path,
    *,
    method: str | Method = "ft",
    options: dict[str, Any] | list[str] | None = None,
    config: TrainConfig | None = None,
    model: UNetConfig | None = None,
    normalization: Normalization | None = None,
    target_bn: bool = True,
    source_val_z: str | None = None,
    device: Device = "auto",
    overwrite: bool = False,
    resume: bool = False,
    show_progress: bool = False,
    resolved_config: dict | None = None,
) -> RunSummary:
    """Train a model on the labelled ``source`` (and the unlabelled ``target``) with a
    domain-adaptation ``method`` (a registered name, with ``options``, or a
    :class:`~emda.Method` instance) into the run directory ``out``.

    With ``target_bn`` and a target, batch-norm statistics are re-estimated on the
    target afterwards. ``source_val_z`` (START:STOP) scores held-out source slices.
    ``resolved_config`` is written to the run's ``config.toml``.
    """
    from emda.training.adapt import adapt as run_adapt

    if isinstance(method, str):
        method = resolve_method(method, options or [])
    elif options:
        raise EmdaError("options: give them with a method name, not a Method instance")
    model = model or UNetConfig()
    config = config or TrainConfig()
    if config.patch_size % model.divisor:
        raise EmdaError(
            f"--patch-size {config.patch_size}: must be a multiple of {model.divisor} (2^depth)"
        )
    return run_adapt(
        source,
        target,
        Path(out),
        method=method,
        config=config,
        model_config=model,
        normalization=normalization or Normalization(),
        device=_device(device),
        overwrite=overwrite,
        show_progress=show_progress,
        resolved_config=resolved_config,
        target_bn=target_bn,
        resume=resume,
        source_val_z=source_val_z,
    )


def finetune(
    run: str | Path,
    target: VolumeSpec,
    out: str | Path,
    *,
    fraction: float = 1.0,
    config: TrainConfig | None = None,
    device: Device = "auto",
    overwrite: bool = False,
    resume: bool = False,
    show_progress: bool = False,
    resolved_config: dict | None = None,
) -> RunSummary:
    """Continue ``run``'s model on ``fraction`` of the labelled slices of ``target``
    (its ``labels`` are required) into the run directory ``out``."""
    from emda.training.adapt import finetune as run_finetune

    return run_finetune(
        run,
        target,
        Path(out),
        fraction=fraction,
        config=config or TrainConfig(iterations=500, lr=1e-4),
        device=_device(device),
        overwrite=overwrite,
        show_progress=show_progress,
        resolved_config=resolved_config,
        resume=resume,
    )


def recalibrate(
    run: str | Path,
    target: VolumeSpec,
    out: str | Path,
    *,
    batches: int = DEFAULT_BATCHES,
    device: Device = "auto",
    overwrite: bool = False,
) -> Path:
    """A new run directory ``out`` whose model is ``run``'s with batch-norm statistics
    estimated on ``target`` (AdaBN): adaptation without training or labels."""
    from emda.training.adapt import recalibrate as run_recalibrate

    return run_recalibrate(
        run, target, Path(out), device=_device(device), batches=batches, overwrite=overwrite
    )


def predict(
    run: str | Path,
    volume: str,
    output: str | None = None,
    mask: str | None = None,
    *,
    settings: PredictSettings | None = None,
    key: str | None = None,
    voxel_size: VoxelSize | None = None,
    device: Device = "auto",
    overwrite: bool = False,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> PredictResult:
    """Segment ``volume`` (TIFF or zarr, any size) with ``run``'s model: probabilities
    to ``output`` and/or a binary mask to ``mask`` (``.tif``, ``.zarr``, ``.ome.zarr``).
    ``progress(done, total)`` is called after every block."""
    from emda.inference.predict import predict as run_predict

    return run_predict(
        run,
        volume,
        output,
        mask,
        device=_device(device),
        settings=settings or PredictSettings(),
        key=key,
        voxel_size=voxel_size,
        overwrite=overwrite,
        resume=resume,
        progress=progress,
        scheduler=scheduler,
        workers=workers,
        threads=threads,
    )


def evaluate(
    predictions: list[str],
    labels: str,
    *,
    threshold: float = 0.5,
    z_range: str | None = None,
    foreground: float | None = None,
    key: str | None = None,
    labels_key: str | None = None,
) -> list[Evaluation]:
    """Score each prediction (probabilities or a mask) against the ground-truth mask
    ``labels``: IoU, Dice, precision and recall, overall and per slice."""
    return evaluate_many(predictions, labels, threshold, z_range, foreground, key, labels_key)
