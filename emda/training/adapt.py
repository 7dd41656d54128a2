"""``adapt``: train a new model with one method on labelled sources and a target.

The recipe (several stages, :mod:`emda.training.recipe_run`) calls it once per stage;
``finetune`` and ``recalibrate`` continue a finished run (their own modules)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from emda.analysis.source_objects import source_objects
from emda.data.normalization import Normalization
from emda.data.planes import is_isotropic
from emda.data.resample import in_plane, pixel_zoom, working_pixel_size
from emda.data.sampling import MixedSampler, PatchSampler
from emda.device import as_device
from emda.errors import EmdaError
from emda.evaluation.evaluate import parse_z_range
from emda.io.volume import Volume, split_address
from emda.methods.base import Method
from emda.methods.options import options_to_dict, parse_options
from emda.methods.registry import load_registry
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import Checkpoint, save_checkpoint
from emda.precision import autocast, resolve_precision
from emda.training import ddp, validation
from emda.training.config import TARGET_PLANES, TrainConfig
from emda.training.inputs import VolumeSpec, load_training_volume
from emda.training.loop import train
from emda.training.recalibrate import recalibrate_on_target
from emda.training.run_dir import (
    RunSummary,
    check_run_dir,
    prepare_run_dir,
    training_record,
    write_config,
    write_curve,
    writes_run,
)
from emda.training.state import CHECKPOINT_NAME

log = logging.getLogger("emda")


def resolve_method(name: str, opts: list[str] | dict) -> Method:
    info = load_registry().get(name)
    return info.cls(parse_options(info.cls.Options, opts, name))


def _adapt_inputs(arguments: dict[str, Any]) -> list[Any]:
    """The files ``adapt`` reads: volumes, and any method option naming a file (a teacher)."""
    source, target = arguments["source"], arguments["target"]
    specs = [source] if isinstance(source, VolumeSpec) else list(source)
    if target is not None:
        specs.append(target)
    paths: list[Any] = [p for s in specs for p in (s.raw, s.labels)]
    options = arguments.get("options") or {}
    values = options.values() if isinstance(options, dict) else (
        o.partition("=")[2] for o in options)  # fmt: skip
    paths += [v for v in values if isinstance(v, str | Path) and v and Path(v).exists()]
    method = arguments.get("method")
    if not isinstance(method, str) and hasattr(method, "options"):
        teacher = getattr(method.options, "teacher", None)
        if isinstance(teacher, str | Path) and teacher and Path(teacher).exists():
            paths.append(Path(teacher) / CHECKPOINT_NAME if Path(teacher).is_dir() else teacher)
    return paths


@writes_run(_adapt_inputs)
def adapt(
    source: VolumeSpec | Sequence[VolumeSpec],
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
    resample: bool = True,
    device: str | torch.device = "auto",
    overwrite: bool = False,
    resume: bool = False,
    show_progress: bool = False,
    resolved_config: dict | None = None,
) -> RunSummary:
    """Train a model on the labelled ``source`` (one volume or several) and the unlabelled
    ``target`` with a domain-adaptation ``method`` (a registered name with its
    ``options``, or a :class:`~emda.methods.Method`) into the run directory ``out``.

    Several sources: each patch comes from one of them drawn with equal probability,
    each normalised on its own. With ``resample``, the network works at the first
    source's pixel size and every other volume's patches are resampled to it when their
    pixel sizes differ by more than 10 % (:mod:`emda.data.resample`); the checkpoint
    records it, so ``emda predict`` resamples too. With ``target_bn`` and a target, the
    batch-norm statistics are re-estimated on the target after training
    (``emda.training.batchnorm``), for every method, ft too. ``source_val_z``: held-out
    slices START:STOP of the first source, scored after training with its statistics
    (``emda.training.validation``) and recorded in the checkpoint. ``resolved_config`` is
    written to the run's ``config.toml``.
    """
    if isinstance(method, str):
        method = resolve_method(method, options or [])
    elif options:
        raise EmdaError("options: give them with a method name, not a Method instance")
    sources = [source] if isinstance(source, VolumeSpec) else list(source)
    if not sources:
        raise EmdaError("--source: at least one labelled source volume is needed")
    config = config or TrainConfig()
    model_config = model_config or UNetConfig()
    normalization = normalization or Normalization()
    run_dir, device = Path(out), as_device(device)
    resolve_precision(config.precision, device, "train")  # refused before anything is read
    if config.patch_size % model_config.divisor:
        raise EmdaError(
            f"--patch-size {config.patch_size}: must be a multiple of {model_config.divisor} "
            "(2^depth)"
        )
    for option, spec in [*(("--source", s) for s in sources), ("--target", target)]:
        if spec is not None and not split_address(spec.raw)[0].exists():
            raise EmdaError(f"{option} {spec.raw}: no such file")  # even if the method ignores it
    loaded = [load_training_volume(spec, "source") for spec in sources]
    for spec, (_, labels, _) in zip(sources, loaded):
        if labels is None:
            raise EmdaError(
                f"--source {spec.raw}: --source-labels is required (sources are labelled)"
            )
    src_raw, src_labels, src_z = loaded[0]
    val_z = None
    if source_val_z is not None:
        val_z = parse_z_range(source_val_z, src_raw.shape[0], "--source-val-z")
        validation.check_held_out(val_z, src_z, "--source-val-z")
    tgt_sampler = None
    tgt_range = None
    tgt_raw = None
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
    pixel, zooms, tgt_zoom = _pixel_sizes(sources, loaded, target, tgt_raw, resample)
    objects = source_objects(loaded)  # for emda instances' minimum size, label-free
    torch.manual_seed(config.seed)  # the initial weights are part of what the seed fixes
    model = UNet(model_config)
    method.build_heads(model)  # a method's option errors surface before anything is written
    if tgt_range is not None:  # after build_heads: a guide may come from a head's model
        guide = None
        if method.uses_target:
            if ddp.is_main():  # other ranks could find the files rank 0 has since written
                check_run_dir(run_dir, overwrite, resume)  # before minutes of a teacher's work
            # the teacher predicts whole slices as emda predict would, in its precision
            with autocast(device, resolve_precision(config.precision, device, "predict")):
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
            zoom=tgt_zoom,
        )
    if not resume:  # a resumed run's weights come from its saved state
        method.initialise(model)
    if ddp.is_main():  # under torchrun, rank 0 alone writes the run directory
        prepare_run_dir(run_dir, overwrite, resume)
    ranges = [normalization.fit(raw) for raw, _, _ in loaded]
    src_sampler = MixedSampler([
        PatchSampler(raw, rng, config.patch_size, labels, zs, config.augmentation(), zoom=zoom)
        for (raw, labels, zs), rng, zoom in zip(loaded, ranges, zooms)
    ])  # fmt: skip
    template = Checkpoint(
        model_config=model_config,
        state_dict={},
        normalization=normalization,
        source_range=ranges[0],
        voxel_size=src_raw.voxel_size,
        method=method.name,
        method_options=options_to_dict(method.options),
        training={
            "command": "adapt",
            **training_record(config),
            "source": sources[0].raw,
            **({"sources": [s.raw for s in sources]} if len(sources) > 1 else {}),
            "target": target.raw if target else None,
            "target_range": [tgt_range.low, tgt_range.high] if tgt_range else None,
            "target_bn": bool(target_bn and tgt_sampler is not None),
            "pixel_size": pixel,
            "target_zoom": tgt_zoom,
            "source_objects": objects,
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
        scores = validation.score_slices(model, src_raw, src_labels, ranges[0], val_z, device)
        template.training["source_validation"] = scores
        save_checkpoint(template, run_dir / CHECKPOINT_NAME)
    if target_bn and tgt_sampler is not None:
        recalibrate_on_target(
            model, tgt_raw, tgt_range, tgt_z, config, device, run_dir, template, zoom=tgt_zoom
        )
    write_curve(run_dir)
    return RunSummary(run_dir, result.iterations, result.seconds, result.final_terms, scores)


def _pixel_sizes(sources, loaded, target, tgt_raw, resample: bool):
    """The working pixel size (None without resampling), each source's zoom, the target's."""
    if not resample:
        return None, [1.0] * len(sources), 1.0
    tgt_voxel = tgt_raw.voxel_size if tgt_raw is not None else None
    tgt_name = target.raw if target is not None and tgt_raw is not None else ""
    pixel, tgt_zoom = working_pixel_size(
        loaded[0][0].voxel_size, tgt_voxel, sources[0].raw, tgt_name
    )
    zooms = [1.0]
    for spec, (raw, _, _) in zip(sources[1:], loaded[1:]):
        if raw.voxel_size is None and pixel is not None:
            log.warning("%s has no voxel size: assumed the working %g nm pixels", spec.raw, pixel)
        zooms.append(pixel_zoom(in_plane(raw.voxel_size), pixel))
    for spec, zoom in [*zip(sources, zooms), (target, tgt_zoom)]:
        if zoom != 1.0:
            log.info(
                "%s: patches resampled by %.3g to the working %g nm pixels", spec.raw, zoom, pixel
            )
    return pixel, zooms, tgt_zoom


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
