"""``finetune``: continue a run on a fraction of the target's labelled slices."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from emda.data.resample import in_plane, pixel_zoom
from emda.data.sampling import PatchSampler, choose_slices
from emda.device import as_device
from emda.errors import EmdaError
from emda.methods.base import Supervised
from emda.model.checkpoint import Checkpoint, load_checkpoint
from emda.precision import resolve_precision
from emda.training import ddp
from emda.training.config import TrainConfig
from emda.training.inputs import VolumeSpec, load_training_volume
from emda.training.loop import train
from emda.training.run_dir import (
    RunSummary,
    checkpoint_file,
    prepare_run_dir,
    training_record,
    write_config,
    write_curve,
    writes_run,
)

log = logging.getLogger("emda")


def _finetune_inputs(arguments: dict) -> list:
    target = arguments["target"]
    return [checkpoint_file(arguments["run"]), target.raw, target.labels]


@writes_run(_finetune_inputs)
def finetune(
    run: str | Path,
    target: VolumeSpec,
    out: str | Path,
    *,
    fraction: float = 1.0,
    config: TrainConfig | None = None,
    device: str | torch.device = "auto",
    overwrite: bool = False,
    resume: bool = False,
    show_progress: bool = False,
    resolved_config: dict | None = None,
) -> RunSummary:
    """Continue ``run``'s model on ``fraction`` of the labelled z-slices of ``target``
    (its ``labels`` are required) into the run directory ``out``."""
    base, run_dir, device = run, Path(out), as_device(device)
    config = config or TrainConfig.finetuning()
    resolve_precision(config.precision, device, "train")  # refused before anything is read
    if not 0 < fraction <= 1:
        raise EmdaError(f"--fraction {fraction}: must be in (0, 1]")
    method = Supervised()  # finetuning trains on target labels alone, whatever ran before
    ckpt = load_checkpoint(base)
    if target.labels is None:
        raise EmdaError("--target-labels is required for finetuning")
    raw, labels, zs = load_training_volume(target, "target")
    chosen = [zs[i] for i in choose_slices(len(zs), fraction, config.seed)]
    assert labels is not None
    if not any(np.any(labels.read(z)) for z in chosen):
        log.warning("the chosen target slices %s contain no foreground", chosen)
    if ddp.is_main():
        prepare_run_dir(run_dir, overwrite, resume)
    tgt_range = ckpt.normalization.fit(raw)
    zoom = pixel_zoom(in_plane(raw.voxel_size), ckpt.pixel_size)  # at the base's pixel size
    sampler = PatchSampler(
        raw, tgt_range, config.patch_size, labels, chosen, config.augmentation(), zoom=zoom
    )
    model = ckpt.build_model()
    template = Checkpoint(
        model_config=ckpt.model_config,
        state_dict={},
        normalization=ckpt.normalization,
        source_range=tgt_range,
        voxel_size=raw.voxel_size or ckpt.voxel_size,
        method=ckpt.method,
        method_options=ckpt.method_options,
        training={
            "command": "finetune",
            **training_record(config),
            "base": str(base),
            "base_training": ckpt.training,
            "fraction": fraction,
            "labelled_slices": chosen,
            "target": target.raw,
            "pixel_size": ckpt.pixel_size,
            "target_zoom": zoom,
        },
    )
    if not resume and ddp.is_main():
        write_config(run_dir, "finetune", resolved_config)
    result = train(
        model, method, sampler, None, config, device, run_dir, template, show_progress, resume
    )
    if ddp.is_main():
        write_curve(run_dir)
    return RunSummary(run_dir, result.iterations, result.seconds, result.final_terms)
