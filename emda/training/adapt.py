"""Training commands as functions: ``adapt`` a new model, ``finetune`` one on target
labels, ``recalibrate`` its batch-norm statistics on a target."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emda import __version__
from emda.data.normalization import Normalization
from emda.data.planes import is_isotropic
from emda.data.sampling import Augmentation, PatchSampler, choose_slices
from emda.device import as_device
from emda.errors import EmdaError
from emda.evaluation.evaluate import parse_z_range
from emda.io.volume import Volume, open_volume, read_labels, split_address
from emda.methods.base import Method, Supervised
from emda.methods.options import options_to_dict, parse_options
from emda.methods.registry import load_registry
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from emda.training import ddp, validation
from emda.training.batchnorm import DEFAULT_BATCHES, recalibrate_batchnorm
from emda.training.config import TARGET_PLANES, TrainConfig
from emda.training.loop import train
from emda.training.run_dir import (
    check_run_dir,
    prepare_run_dir,
    training_record,
    write_config,
    write_curve,
)
from emda.training.state import CHECKPOINT_NAME

log = logging.getLogger("emda")


@dataclass
class VolumeSpec:
    """Where a training volume is and which z-slices of it to use."""

    raw: str
    labels: str | None = None
    z_range: str | None = None
    voxel_size: tuple[float, float, float] | None = None
    foreground: float | None = None


@dataclass
class RunSummary:
    run_dir: Path
    iterations: int
    seconds: float
    final_terms: dict[str, float]
    source_validation: dict | None = None  # scores on held-out source slices, as trained


def load_training_volume(spec: VolumeSpec, role: str) -> tuple[Volume, Volume | None, list[int]]:
    raw = open_volume(spec.raw, voxel_size=spec.voxel_size)
    labels = None
    if spec.labels:
        labels = read_labels(spec.labels, foreground=spec.foreground)
        if labels.shape != raw.shape:
            raise EmdaError(
                f"{spec.labels}: label shape {labels.shape} differs from {role} raw "
                f"{spec.raw} shape {raw.shape}"
            )
    start, stop = parse_z_range(spec.z_range, raw.shape[0], f"--{role}-z")
    zs = list(range(start, stop))
    if labels is not None and not any(np.any(labels.read(z)) for z in zs):
        raise EmdaError(f"{spec.labels}: no foreground voxels in the {role} labels used")
    return raw, labels, zs


def resolve_method(name: str, opts: list[str] | dict) -> Method:
    info = load_registry().get(name)
    return info.cls(parse_options(info.cls.Options, opts, name))


def adapt(
    source: VolumeSpec,
    target: VolumeSpec | None,
    out: str | Path,
    *,
    method: str | Method = "ft",
    options: dict[str, Any] | list[str] | None = None,
    config: TrainConfig | None = None,
    model_config: UNetConfig | None = None,
    normalization: Normalization | None = None,
    target_bn: bool = True,
    source_val_z: str | None = None,
    device: str | torch.device = "auto",
    overwrite: bool = False,
    resume: bool = False,
    show_progress: bool = False,
    resolved_config: dict | None = None,
) -> RunSummary:
    """Train a model on the labelled ``source`` (and the unlabelled ``target``) with a
    domain-adaptation ``method`` (a registered name with its ``options``, or a
    :class:`~emda.methods.Method`) into the run directory ``out``.

    With ``target_bn`` and a target, the batch-norm statistics are re-estimated on the
    target after training (``emda.training.batchnorm``), for every method, ft too.
    ``source_val_z``: held-out source slices START:STOP, scored after training with the
    source's statistics (``emda.training.validation``) and recorded in the checkpoint.
    ``resolved_config`` is written to the run's ``config.toml``.
    """
    if isinstance(method, str):
        method = resolve_method(method, options or [])
    elif options:
        raise EmdaError("options: give them with a method name, not a Method instance")
    config = config or TrainConfig()
    model_config = model_config or UNetConfig()
    normalization = normalization or Normalization()
    run_dir, device = Path(out), as_device(device)
    if config.patch_size % model_config.divisor:
        raise EmdaError(
            f"--patch-size {config.patch_size}: must be a multiple of {model_config.divisor} "
            "(2^depth)"
        )
    for option, spec in (("--source", source), ("--target", target)):
        if spec is not None and not split_address(spec.raw)[0].exists():
            raise EmdaError(f"{option} {spec.raw}: no such file")  # even if the method ignores it
    src_raw, src_labels, src_z = load_training_volume(source, "source")
    if src_labels is None:
        raise EmdaError("--source-labels is required: the source must be labelled")
    val_z = None
    if source_val_z is not None:
        val_z = parse_z_range(source_val_z, src_raw.shape[0], "--source-val-z")
        validation.check_held_out(val_z, src_z, "--source-val-z")
    tgt_sampler = None
    tgt_range = None
    mixes = config.amplitude_mix > 0  # target patches lend their style to the source's
    if mixes and target is None:
        raise EmdaError("--amplitude-mix needs --target (the style comes from target patches)")
    if target is not None and (method.uses_target or target_bn or mixes):
        tgt_raw, _, tgt_z = load_training_volume(target, "target")
        tgt_range = normalization.fit(tgt_raw)
        _check_target_planes(config.target_planes, tgt_raw, tgt_z, config.patch_size)
    elif method.uses_target:
        raise EmdaError(f"--target is required by method '{method.name}'")
    elif config.target_planes != "xy":
        raise EmdaError("--target-planes needs --target")
    torch.manual_seed(config.seed)  # the initial weights are part of what the seed fixes
    model = UNet(model_config)
    method.build_heads(model)  # a method's option errors surface before anything is written
    if tgt_range is not None:  # after build_heads: a guide may come from a head's model
        guide = None
        if method.uses_target:
            if ddp.is_main():  # other ranks could find the files rank 0 has since written
                check_run_dir(run_dir, overwrite, resume)  # before minutes of a teacher's work
            guide = method.target_guide(tgt_raw, tgt_range, tgt_z, device)
        tgt_sampler = PatchSampler(
            tgt_raw,
            tgt_range,
            config.patch_size,
            None,
            tgt_z,
            config.augmentation(),
            TARGET_PLANES[config.target_planes],
            guide,
        )
    if not resume:  # a resumed run's weights come from its saved state
        method.initialise(model)
    if ddp.is_main():  # under torchrun, rank 0 alone writes the run directory
        prepare_run_dir(run_dir, overwrite, resume)
    src_range = normalization.fit(src_raw)
    src_sampler = PatchSampler(
        src_raw,
        src_range,
        config.patch_size,
        src_labels,
        src_z,
        config.augmentation(),
    )
    template = Checkpoint(
        model_config=model_config,
        state_dict={},
        normalization=normalization,
        source_range=src_range,
        voxel_size=src_raw.voxel_size,
        method=method.name,
        method_options=options_to_dict(method.options),
        training={
            "command": "adapt",
            **training_record(config),
            "source": source.raw,
            "target": target.raw if target else None,
            "target_range": [tgt_range.low, tgt_range.high] if tgt_range else None,
            "target_bn": bool(target_bn and tgt_sampler is not None),
        },
    )
    if not resume and ddp.is_main():
        write_config(run_dir, "adapt", resolved_config)
    train_target = tgt_sampler if method.uses_target or mixes else None
    result = train(
        model,
        method,
        src_sampler,
        train_target,
        config,
        device,
        run_dir,
        template,
        show_progress,
        resume,
    )
    if not ddp.is_main():
        return RunSummary(run_dir, result.iterations, result.seconds, result.final_terms)
    scores = None
    if val_z is not None:  # before target statistics replace the source's
        scores = validation.score_slices(model, src_raw, src_labels, src_range, val_z, device)
        template.training["source_validation"] = scores
        save_checkpoint(template, run_dir / CHECKPOINT_NAME)
    if target_bn and tgt_sampler is not None:
        _recalibrate_on_target(model, tgt_raw, tgt_range, tgt_z, config, device, run_dir, template)
    write_curve(run_dir)
    return RunSummary(run_dir, result.iterations, result.seconds, result.final_terms, scores)


def recalibrate(
    run: str | Path,
    target: VolumeSpec,
    out: str | Path,
    *,
    batches: int = DEFAULT_BATCHES,
    device: str | torch.device = "auto",
    overwrite: bool = False,
) -> Path:
    """A new run directory ``out`` whose model is ``run``'s with batch-norm statistics
    estimated on ``target`` (AdaBN): adaptation without training or labels.

    The same step ``adapt`` ends with (same patch size, batch size and seed as the base
    run's training), usable on any finished run.
    """
    base, run_dir, device = run, Path(out), as_device(device)
    if batches <= 0:
        raise EmdaError(f"--batches {batches}: must be positive")
    ckpt = load_checkpoint(base)
    raw, _, zs = load_training_volume(target, "target")
    prepare_run_dir(run_dir, overwrite)
    training = ckpt.training or {}
    config = TrainConfig(
        patch_size=int(training.get("patch_size", 128)),
        batch_size=int(training.get("batch_size", 8)),
        seed=int(training.get("seed", 0)),
    )
    intensity = ckpt.normalization.fit(raw)
    model = ckpt.build_model()
    ckpt.training = {
        "command": "recalibrate",
        "base": str(base),
        "base_training": training,
        "target": target.raw,
        "target_z": [zs[0], zs[-1] + 1],
        "batches": batches,
        "emda_version": __version__,
        "target_bn": True,
    }
    _recalibrate_on_target(model, raw, intensity, zs, config, device, run_dir, ckpt, batches)
    return run_dir


def _recalibrate_on_target(
    model, raw, intensity, z_indices, config, device, run_dir, template, batches=DEFAULT_BATCHES
) -> None:
    """Target batch-norm statistics, then rewrite the final checkpoint with them."""
    # the target as inference sees it: dihedral copies only, no intensity changes
    plain = PatchSampler(raw, intensity, config.patch_size, None, z_indices, Augmentation())
    recalibrate_batchnorm(model, plain, device, batches, config.batch_size, config.seed)
    template.state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(template, run_dir / CHECKPOINT_NAME)


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
    sampler = PatchSampler(raw, tgt_range, config.patch_size, labels, chosen, config.augmentation())
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


def _check_target_planes(choice: str, raw: Volume, z: list[int], patch_size: int) -> None:
    """``--target-planes ortho`` needs a 3D target; anisotropic voxels, or fewer slices
    than a patch has rows (its off-axis patches are then mirror-padded), only warn."""
    if choice == "xy":
        return
    if raw.shape[0] == 1:
        raise EmdaError(f"--target-planes {choice}: {raw.path} is a 2D image, it has only (y, x)")
    if len(z) < patch_size:
        log.warning(
            "--target-planes %s: %d target slices, fewer than the patch's %d rows; its (z, x) "
            "and (z, y) patches are mirror-padded",
            choice,
            len(z),
            patch_size,
        )
    if not is_isotropic(raw.voxel_size):
        log.warning(
            "--target-planes %s: %s has voxel size %s (not isotropic, or unknown); its (z, x) "
            "and (z, y) planes are stretched images",
            choice,
            raw.path,
            raw.voxel_size,
        )
